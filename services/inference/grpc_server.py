"""The gRPC server of the service: grpc.aio in uvicorn's event loop, started and stopped with it.

One process, one event loop, one dataplane: gRPC calls share the batcher, the bounded queue,
the metrics and the prediction log with the HTTP routes. `server.DrainingServer` starts it
before HTTP and, on shutdown, stops it first: no new calls, and every accepted call answered
(within the grace period) while the inference thread still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from services.inference.dataplane import DataPlane
from services.inference.grpc_servicer import InferenceServicer
from services.inference.metrics import PRODUCTION, Metrics
from services.inference.settings import Settings
from slipway.oip import grpc_predict_v2_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Undecodable:
    """A request protobuf could not parse; the call ends with INVALID_ARGUMENT, not UNKNOWN."""

    def __init__(self, kind: str, error: str) -> None:
        self.message = f"request is not a valid {kind}: {error}"


def _parser(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def parse(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return Undecodable(message.DESCRIPTOR.full_name, str(exc))

    return parse


def _checked(name: str, method: Method, servicer: InferenceServicer) -> Method:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            if name == "ModelInfer":
                code = grpc.StatusCode.INVALID_ARGUMENT
                servicer.observe(servicer.default_model, PRODUCTION, code, 0.0)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await method(request, context)

    return call


def service_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The service's methods, as the generated `add_..._to_server` registers them, except that
    a message that does not parse is the client's error (INVALID_ARGUMENT)."""
    handlers = {}
    for method in SERVICE.methods:
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _checked(method.name, getattr(servicer, method.name), servicer),
            request_deserializer=_parser(request),
            response_serializer=response.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def address(host: str, port: int) -> str:
    """`host:port` for gRPC, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    """`inference.GRPCInferenceService` on `settings.host:settings.grpc_port`."""

    def __init__(self, dataplane: DataPlane, settings: Settings, metrics: Metrics) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.metrics = metrics
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Bind and serve; the bound port. A port in use raises `OSError`."""
        s = self.settings
        options = [
            ("grpc.max_receive_message_length", s.max_upload_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a silent second server
        ]
        server = grpc.aio.server(options=options)
        servicer = InferenceServicer(self.dataplane, self.metrics, s.auth_token)
        server.add_generic_rpc_handlers((service_handler(servicer),))
        target = address(s.host, s.grpc_port)
        try:
            self.port = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {target}: {exc}") from exc
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {target}")
        await server.start()
        self.server = server
        log.info("gRPC (inference.GRPCInferenceService) on %s", address(s.host, self.port))
        return self.port

    async def stop(self, grace: float) -> None:
        """Refuse new calls, wait up to `grace` seconds for the ones in progress."""
        if self.server is None:
            return
        await self.server.stop(grace)
        self.server = None
        log.info("gRPC stopped")
