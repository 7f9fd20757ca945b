"""Every error code of the critic and its service, with its HTTP and gRPC status: one table.

Every failure the critic or the service can diagnose is a ``CriticError``: a stable ``code``
(the key of ``ERRORS``), a message a user can act on, optional ``details`` and, for what is
worth retrying, ``retry_after`` seconds. Errors are raised, never returned as values; they
pickle with all their fields, so they cross process boundaries (Ray) intact. Nothing here
imports more than the standard library: the clients read this table without pydantic or grpc.
"""

from __future__ import annotations

from typing import NamedTuple


class Status(NamedTuple):
    http: int
    grpc: str  # a ``grpc.StatusCode`` name, e.g. "INVALID_ARGUMENT"


_BAD_INPUT = Status(422, "INVALID_ARGUMENT")

# code -> statuses. Bad input is INVALID_ARGUMENT over gRPC, never INTERNAL.
ERRORS: dict[str, Status] = {
    # not a decodable video: corrupt, not a container, no video stream, or none in a codec FFmpeg knows
    "invalid_video": _BAD_INPUT,
    "empty_video": _BAD_INPUT,  # decodes to zero frames
    "invalid_parameter": _BAD_INPUT,  # a parameter out of range or inconsistent with the video
    "invalid_request": _BAD_INPUT,  # a request that fails its schema
    "invalid_rubric": _BAD_INPUT,  # a malformed rubric, or one for another kind of critic
    "unknown_rubric": _BAD_INPUT,
    "invalid_path": _BAD_INPUT,
    "invalid_ratings": _BAD_INPUT,  # a ratings file (training data) with a bad row
    "evaluation_only_data": _BAD_INPUT,  # evaluation-only rows given to training
    "model_load_error": Status(500, "INTERNAL"),  # a configured checkpoint or adapter that cannot be loaded
    "unsupported_media": Status(415, "INVALID_ARGUMENT"),  # the file is not a video (e.g. a still image)
    "unsupported_media_type": Status(415, "INVALID_ARGUMENT"),  # the request's Content-Type
    "video_too_large": Status(413, "RESOURCE_EXHAUSTED"),  # a VideoLimits bound
    "payload_too_large": Status(413, "RESOURCE_EXHAUSTED"),
    "body_timeout": Status(408, "DEADLINE_EXCEEDED"),
    # a request id already used for other content: the id exists (the retry is not safe)
    "request_id_conflict": Status(409, "ALREADY_EXISTS"),
    "unauthorized": Status(401, "UNAUTHENTICATED"),
    "path_not_allowed": Status(403, "PERMISSION_DENIED"),
    "unknown_adapter": Status(404, "NOT_FOUND"),
    "not_found": Status(404, "NOT_FOUND"),
    "overloaded": Status(503, "UNAVAILABLE"),
    "not_ready": Status(503, "UNAVAILABLE"),
    "replica_unavailable": Status(503, "UNAVAILABLE"),
    "timeout": Status(504, "DEADLINE_EXCEEDED"),
    "internal": Status(500, "INTERNAL"),
}

# gRPC status -> the HTTP status a client reads it as when the reply carries no typed body
GRPC_TO_HTTP: dict[str, int] = {"INVALID_ARGUMENT": 422, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
                                "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 413,
                                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}


class CriticError(Exception):
    """Base class: ``code`` is stable and machine-readable, the message is for people."""

    code = "internal"

    def __init__(self, message: str, *, retry_after: float | None = None, **details):
        super().__init__(message)
        if self.code not in ERRORS:
            raise ValueError(f"{type(self).__name__}: error code {self.code!r} is not in contract.errors.ERRORS")
        self.message, self.retry_after, self.details = message, retry_after, details

    @property
    def status(self) -> int:
        """The HTTP status."""
        return ERRORS[self.code].http

    @property
    def grpc_status(self) -> str:
        """The ``grpc.StatusCode`` name."""
        return ERRORS[self.code].grpc

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after is not None else {}

    def __reduce__(self):  # pickles with the code, the retry hint and the details (Ray ships errors so)
        return _rebuild, (type(self), self.code, self.message, self.retry_after, self.details)


def _rebuild(cls, code, message, retry_after, details):
    e = cls.__new__(cls)
    Exception.__init__(e, message)
    e.code, e.message, e.retry_after, e.details = code, message, retry_after, details
    return e


class ServiceError(CriticError):
    """An error of the service itself (transport, auth, capacity): the code is given per instance."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None, details: dict | None = None):
        self.code = code
        super().__init__(message, retry_after=retry_after, **(details or {}))


class InvalidVideoError(CriticError):
    """The bytes are not a decodable video (corrupt, not a container, no video stream)."""

    code = "invalid_video"


class EmptyVideoError(InvalidVideoError):
    """The container decodes but yields no frames."""

    code = "empty_video"


class UnsupportedMediaError(InvalidVideoError):
    """The bytes decode, but not as a video: a still image (PNG, JPEG, ...) whatever its file name."""

    code = "unsupported_media"


class VideoTooLargeError(CriticError):
    """A configured limit (bytes, duration, frames, pixels, sampled pixels, decode time) is exceeded."""

    code = "video_too_large"


class InvalidParameterError(CriticError):
    """A request parameter is out of range or inconsistent (e.g. more segments than frames)."""

    code = "invalid_parameter"


class UnknownRubricError(CriticError):
    """The rubric name is not registered and is not a readable YAML file."""

    code = "unknown_rubric"


class InvalidRubricError(CriticError):
    """A rubric definition is malformed, or cannot be used with the chosen model."""

    code = "invalid_rubric"


class UnknownAdapterError(CriticError):
    """The request names a critic adapter this critic does not have."""

    code = "unknown_adapter"


class ModelLoadError(CriticError):
    """A checkpoint could not be loaded from the given folder or hub id."""

    code = "model_load_error"


def first_error(e, whole: str = "body") -> str:
    """The first failure of a pydantic ``ValidationError`` as ``"where: what is wrong"`` (``whole``
    names the place when the failure is about the whole object)."""
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}"


def invalid(e, error: type[CriticError] | None = None) -> CriticError:
    """A pydantic ``ValidationError`` as one typed error: ``invalid_request`` (what a transport
    answers 422 / INVALID_ARGUMENT), or an instance of ``error``."""
    return error(first_error(e)) if error is not None else ServiceError("invalid_request", first_error(e))
