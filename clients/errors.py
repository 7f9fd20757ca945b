"""Typed errors raised by the clients. A client never returns ``None`` or a made-up reward."""

from __future__ import annotations


class CriticClientError(Exception):
    """Base: ``status`` (HTTP-style), ``code`` (the service's error code), ``request_id``."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, attempts: int = 1):
        super().__init__(message)
        self.message, self.status, self.code, self.request_id, self.attempts = message, status, code, request_id, attempts

    def __str__(self) -> str:
        where = f" [{self.status} {self.code}]" if self.status else ""
        return f"{self.message}{where} (request {self.request_id}, {self.attempts} attempt(s))"


class CriticRequestError(CriticClientError):
    """The service refused the request (4xx): fix the input; retrying will not help."""


class CriticUnavailableError(CriticClientError):
    """Retries were exhausted on connection errors, 5xx or 503: the service could not answer."""
