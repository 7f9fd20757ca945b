"""Python clients of the critic service: HTTP (sync / async) and gRPC. No torch needed.

Installs alone from the repo, with the ``contract`` package it speaks (its own distribution,
clients/pyproject.toml): ``pip install "./clients[grpc]"`` (httpx; grpcio + protobuf for
``clients.grpc``, whose stubs are ``contract.critic_pb2*``).
"""

from clients.errors import CriticClientError, CriticRequestError, CriticUnavailableError
from clients.http import AsyncCriticClient, CriticClient
from clients.retry import RetryPolicy

__all__ = ["AsyncCriticClient", "CriticClient", "CriticClientError", "CriticRequestError", "CriticUnavailableError",
           "RetryPolicy"]
