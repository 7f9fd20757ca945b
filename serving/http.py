"""HTTP request parsing and error responses (FastAPI/Starlette), transport-only."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from serving.errors import ServiceError
from serving.protocol import ErrorBody

JSON = "application/json"
MULTIPART = "multipart/form-data"

ERROR_RESPONSES = {s: {"model": ErrorBody} for s in (401, 403, 404, 413, 415, 422, 500, 503, 504)}


def error_response(e: ServiceError, request_id: str | None = None) -> JSONResponse:
    return JSONResponse(e.body(request_id).model_dump(exclude_none=True), status_code=e.status, headers=e.headers())


def invalid(e: ValidationError) -> ServiceError:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return ServiceError("invalid_request", f"{where}: {first['msg']}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) past ``limit`` bytes whether or not Content-Length was sent."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServiceError("payload_too_large", f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError("payload_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse(request: Request, model: type[BaseModel], limit: int, files: tuple[str, ...] = ()):
    """A JSON body, or (when ``files`` are named) multipart form fields + uploads.

    Returns (validated model, {file field: bytes}). Other media types get 415.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == JSON:
        body = await read_body(request, limit)
        try:
            return model.model_validate_json(body), {}
        except ValidationError as e:
            raise invalid(e) from None
    if ctype == MULTIPART and files:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ServiceError("payload_too_large", f"request body is {declared} bytes; the limit is {limit}")
        form = await request.form(max_part_size=limit)
        uploads, fields = {}, {}
        for key, value in form.multi_items():
            if key in files and hasattr(value, "read"):
                uploads[key] = await value.read()
            elif isinstance(value, str):
                fields[key] = json.loads(value) if key == "sampling" else value
            else:
                raise ServiceError("invalid_request", f"unexpected file field {key!r}; expected {list(files)}")
        try:
            return model.model_validate(fields), uploads
        except ValidationError as e:
            raise invalid(e) from None
    accepted = f"{JSON} or {MULTIPART}" if files else JSON
    raise ServiceError("unsupported_media_type", f"content type {ctype or 'none'!r} is not supported; send {accepted}")
