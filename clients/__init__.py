"""Python clients of the critic service: HTTP (sync / async) and gRPC. No torch needed."""

from clients.errors import CriticClientError, CriticRequestError, CriticUnavailableError
from clients.http import AsyncCriticClient, CriticClient
from clients.retry import RetryPolicy

__all__ = ["AsyncCriticClient", "CriticClient", "CriticClientError", "CriticRequestError", "CriticUnavailableError",
           "RetryPolicy"]
