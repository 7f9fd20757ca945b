"""The contract between the critic, the service, its clients and the trainer: one definition of each.

- ``contract.sampling``: ``FrameSampling``, the frame-sampling spec and its index rules;
- ``contract.protocol``: requests, results (``CriticResult``, field by field), responses, ``ModelInfo``;
- ``contract.errors``: every error code with its HTTP and gRPC status, and the typed errors;
- ``contract.video``: PyAV decoding under ``VideoLimits`` and deterministic encoding;
- ``contract/critic.proto`` and its stubs ``contract.critic_pb2*``.

Needs numpy, pydantic, av and (for the stubs) grpcio / protobuf; never torch, transformers or ray.
``contract.errors`` needs only the standard library. This file imports nothing, so each
module costs only its own dependencies.
"""
