"""Typed errors raised by the critic.

Every failure the critic can diagnose is one of these: each carries a stable
``code`` (used by the transports to pick a status code) and a message a user can
act on. Nothing in the critic returns a blank frame, ``None`` or a default reward
in place of raising.
"""

from __future__ import annotations


class CriticError(Exception):
    """Base class: ``code`` is stable and machine-readable, the message is for people."""

    code = "critic_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


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
