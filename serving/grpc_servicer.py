"""The gRPC service's registration, for Ray Serve's ``grpc_servicer_functions``.

As ``contract.critic_pb2_grpc.add_CriticServiceServicer_to_server`` but the request bytes pass through
undecoded: grpc would run ``ScoreRequest.FromString`` before Ray Serve or this service sees the call
and answer a message that does not parse with UNKNOWN. Ray's proxy hands whatever the deserializer
returned to the ingress as is, and the ingress parses it (``serving.grpc_convert.parse_message``):
bytes that are not the RPC's message are ``invalid_request``, INVALID_ARGUMENT.
"""

from __future__ import annotations

import grpc

from contract import critic_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["CriticService"]  # its RPCs, all unary, as the .proto declares them


def add_CriticServiceServicer_to_server(servicer, server) -> None:  # noqa: N802 (the generated name)
    handlers = {m.name: grpc.unary_unary_rpc_method_handler(getattr(servicer, m.name), request_deserializer=None,
                                                            response_serializer=_serialize)
                for m in SERVICE.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    add_registered = getattr(server, "add_registered_method_handlers", None)
    if add_registered is not None:
        add_registered(SERVICE.full_name, handlers)


def _serialize(reply) -> bytes:
    return reply.SerializeToString()
