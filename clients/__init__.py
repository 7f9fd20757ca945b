"""Python clients of the critic service: HTTP (sync / async) and gRPC. No torch needed.

Installs alone from the repo (its own distribution, clients/pyproject.toml):
``pip install "./clients[grpc]"`` (httpx; grpcio + protobuf for ``clients.grpc``). The gRPC
contract (critic.proto and its generated stubs) lives here; the service imports it from here.
"""

from clients.errors import CriticClientError, CriticRequestError, CriticUnavailableError
from clients.http import AsyncCriticClient, CriticClient
from clients.retry import RetryPolicy

__all__ = ["AsyncCriticClient", "CriticClient", "CriticClientError", "CriticRequestError", "CriticUnavailableError",
           "RetryPolicy"]
