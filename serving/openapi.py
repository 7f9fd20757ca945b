"""The OpenAPI document a client generator can use, and docs pages that render offline.

- Request bodies are required and documented for JSON and (where files are taken) multipart,
  and every schema they use is hoisted into ``components/schemas``: no dangling ``$defs``.
- Results are typed field by field (``contract.protocol``); errors share ``ErrorBody``.
- The bearer scheme is declared; probes and docs are marked public.
- ``/docs`` (Swagger UI) and ``/redoc`` load their assets from this service, taken from the
  ``fastapi-offline`` package (serving extra), never from a CDN.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from contract.protocol import ErrorBody

REF = "#/components/schemas/{model}"
PUBLIC = {"security": []}  # openapi_extra of routes that need no key
_DESCRIPTIONS = {401: "Missing or invalid API key.", 403: "Path outside the allowed directories.",
                 404: "Unknown adapter.", 408: "Request body too slow.", 409: "Request id used for other content.",
                 413: "Body, message or video too large.", 415: "Unsupported content type or media.",
                 422: "Invalid request or video.", 500: "Internal error.", 503: "Overloaded or not ready; "
                 "retry after Retry-After.", 504: "Scoring timed out."}
ERROR_RESPONSES = {s: {"model": ErrorBody, "description": d} for s, d in _DESCRIPTIONS.items()}
METRICS_RESPONSE = {200: {"description": "Prometheus text exposition format.",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}}
_BODY_MODELS: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {}
_ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}


def body_doc(model: type[BaseModel], files: tuple[str, ...] = ()) -> dict:
    """``openapi_extra`` for a route whose body is ``model`` as JSON (and multipart with ``files``)."""
    _BODY_MODELS[model.__name__] = (model, files)
    content = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
    if files:
        content["multipart/form-data"] = {"schema": {"$ref": REF.format(model=f"{model.__name__}Form")}}
    return {"requestBody": {"required": True, "content": content}}


def _form_schema(model: type[BaseModel], files: tuple[str, ...]) -> dict:
    """The multipart form of ``model``: scalar fields as text, ``sampling`` as JSON text, files as binary."""
    schema = model.model_json_schema(ref_template=REF)
    props = {}
    for name, prop in schema["properties"].items():
        if name.endswith(("_b64", "_path")) and name.rsplit("_", 1)[0] in files:
            continue  # the form carries the file itself
        if name == "sampling":
            prop = {"type": "string", "contentMediaType": "application/json", "description": "Sampling as JSON."}
        props[name] = prop
    props.update({f: {"type": "string", "format": "binary", "description": "The video file."} for f in files})
    return {"type": "object", "title": f"{model.__name__}Form", "properties": props,
            "required": [*schema.get("required", []), *files], "additionalProperties": False}


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, (model, files) in _BODY_MODELS.items():
            schema = model.model_json_schema(ref_template=REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
            if files:
                schemas[f"{name}Form"] = _form_schema(model, files)
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                           "description": "An API key, when the service has keys."}}
        doc["security"] = [{"bearer": []}]
        app.openapi_schema = doc
    return app.openapi_schema


def _assets_dir() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    return Path(spec.origin).parent / "static" if spec and spec.origin else None


def document(app: FastAPI) -> None:
    """Install the OpenAPI builder and the offline ``/docs`` and ``/redoc`` pages on ``app``."""
    app.openapi = lambda: _openapi(app)
    assets = _assets_dir()

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - reference",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)

    @app.get("/docs-assets/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if assets is None or name not in _ASSETS:
            raise HTTPException(404, "no such asset (the docs assets come with the 'fastapi-offline' package)")
        return FileResponse(assets / name)
