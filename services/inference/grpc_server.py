"""The gRPC server of the service: grpc.aio in uvicorn's event loop, started and stopped with it.

One process, one event loop, one dataplane: gRPC calls share the batcher, the bounded queue,
the metrics and the prediction log with the HTTP routes. `server.DrainingServer` starts it
before HTTP and, on shutdown, stops it first: no new calls, and every accepted call answered
(within the grace period) while the inference thread still runs.
"""

from __future__ import annotations

import logging

import grpc

from services.inference.dataplane import DataPlane
from services.inference.grpc_servicer import InferenceServicer
from services.inference.metrics import Metrics
from services.inference.settings import Settings
from slipway.oip import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


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
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
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
