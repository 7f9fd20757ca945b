"""One typed error for every failure the service reports, with its HTTP and gRPC status."""

from __future__ import annotations

import grpc
from pydantic import ValidationError

from serving.protocol import ErrorBody, ErrorInfo

# critic / service error code -> HTTP status
HTTP_STATUS = {
    "invalid_video": 422,
    "empty_video": 422,
    "invalid_parameter": 422,
    "invalid_rubric": 422,
    "unknown_rubric": 422,
    "invalid_request": 422,
    "invalid_path": 422,
    "video_too_large": 413,
    "payload_too_large": 413,
    "unsupported_media_type": 415,  # the request's Content-Type
    "unsupported_media": 415,  # the file is not a video (e.g. a still image), raised by the decoder
    "body_timeout": 408,
    "request_id_conflict": 409,
    "unauthorized": 401,
    "path_not_allowed": 403,
    "unknown_adapter": 404,
    "not_found": 404,
    "overloaded": 503,
    "not_ready": 503,
    "replica_unavailable": 503,
    "timeout": 504,
    "internal": 500,
}

GRPC_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    # a request id already used for other content: the id exists (the retry is not safe)
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class ServiceError(Exception):
    def __init__(self, code: str, message: str, *, retry_after: float | None = None, details: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.retry_after, self.details = code, message, retry_after, details

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return GRPC_STATUS[self.status]

    @classmethod
    def from_dict(cls, d: dict) -> "ServiceError":
        return cls(d["code"], d["message"], details=d.get("details"))

    def body(self, request_id: str | None = None) -> ErrorBody:
        return ErrorBody(error=ErrorInfo(code=self.code, message=self.message, request_id=request_id, details=self.details))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after is not None else {}


def invalid(e: ValidationError) -> ServiceError:
    """The first validation failure as a typed 422 (both transports)."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return ServiceError("invalid_request", f"{where}: {first['msg']}")
