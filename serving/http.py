"""HTTP request parsing and error responses (FastAPI/Starlette), transport-only.

Every body is read here, whole, before anything parses it: with a byte cap (413, whether
or not Content-Length was sent: chunked uploads are counted as they arrive), a deadline
and a minimum rate (408: a client trickling bytes holds a slot for seconds, not minutes).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.formparsers import MultiPartException, MultiPartParser

from contract.errors import CriticError, ServiceError, invalid
from contract.protocol import ErrorBody

JSON = "application/json"
MULTIPART = "multipart/form-data"
MAX_FORM_FIELDS = 16  # the request models have fewer fields than this


def error_response(e: CriticError, request_id: str | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody.of(e, request_id).model_dump(exclude_none=True), status_code=e.status,
                        headers=e.headers())


class BodyLimits:
    """``limit`` bytes at most, all of it within ``timeout_s``, and never slower on average
    than ``min_rate`` bytes/s once ``grace_s`` have passed."""

    def __init__(self, limit: int, timeout_s: float, min_rate: float, grace_s: float = 2.0):
        self.limit, self.timeout_s, self.min_rate, self.grace_s = limit, timeout_s, min_rate, grace_s

    def wait_s(self, started: float, received: int, now: float) -> float:
        """How long the next chunk may take before the request is too slow."""
        rate_deadline = started + max(self.grace_s, received / self.min_rate) if self.min_rate else float("inf")
        return min(started + self.timeout_s, rate_deadline) - now


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The whole body under ``limits``: 413 past the byte cap, 408 when too slow."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.limit:
        raise ServiceError("payload_too_large", f"request body is {declared} bytes; the limit is {limits.limit}")
    chunks, size, started = [], 0, time.monotonic()
    stream = request.stream().__aiter__()
    while True:
        wait = limits.wait_s(started, size, time.monotonic())
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), wait)
        except StopAsyncIteration:
            return b"".join(chunks)
        except asyncio.TimeoutError:
            raise ServiceError("body_timeout", f"request body too slow: {size} bytes in "
                               f"{time.monotonic() - started:.1f}s (needs {limits.min_rate:.0f} B/s, "
                               f"all within {limits.timeout_s}s)") from None
        size += len(chunk)
        if size > limits.limit:
            raise ServiceError("payload_too_large", f"request body exceeds the limit of {limits.limit} bytes")
        chunks.append(chunk)


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _form(request: Request, body: bytes, files: tuple[str, ...], limit: int):
    """Multipart fields and uploads from an already-read body (at most one part per upload field)."""
    parser = MultiPartParser(request.headers, _replay(body), max_files=len(files), max_fields=MAX_FORM_FIELDS,
                             max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise ServiceError("invalid_request", f"malformed multipart body: {e.message}") from None
    uploads, fields = {}, {}
    try:
        for key, value in form.multi_items():
            if key in uploads or key in fields:
                raise ServiceError("invalid_request", f"field {key!r} is given more than once")
            if key in files and hasattr(value, "read"):
                uploads[key] = await value.read()
            elif isinstance(value, str):
                fields[key] = _json_field(key, value) if key == "sampling" else value
            else:
                raise ServiceError("invalid_request", f"unexpected file field {key!r}; expected {list(files)}")
    finally:
        await form.close()
    return fields, uploads


def _json_field(key: str, value: str):
    try:
        return json.loads(value)
    except ValueError as e:
        raise ServiceError("invalid_request", f"{key}: not valid JSON ({e})") from None


async def parse(request: Request, model: type[BaseModel], limits: BodyLimits, files: tuple[str, ...] = ()):
    """A JSON body, or (when ``files`` are named) multipart form fields + uploads.

    Returns (validated model, {file field: bytes}). Other media types get 415.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (JSON, MULTIPART) or (ctype == MULTIPART and not files):
        accepted = f"{JSON} or {MULTIPART}" if files else JSON
        raise ServiceError("unsupported_media_type", f"content type {ctype or 'none'!r} is not supported; send {accepted}")
    body = await read_body(request, limits)
    try:
        if ctype == JSON:
            return model.model_validate_json(body), {}
        fields, uploads = await _form(request, body, files, limits.limit)
        return model.model_validate(fields), uploads
    except ValidationError as e:
        raise invalid(e) from None
