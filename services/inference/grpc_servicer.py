"""Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`): a thin adapter.

Messages become the dataplane's `InferRequest` (inputs from `raw_input_contents`, or from typed
`contents`) and its answer becomes `raw_output_contents`, as Triton answers. The rules are the
REST routes': the bearer token in the `authorization` metadata when AUTH_TOKEN is set (the health
RPCs ServerLive and ServerReady stay open, as `/v2/health/*` do), ModelInfer counted in the
request metrics under route `grpc` (by the model and variant that answered: the canary's choice,
client key from the metadata named by CANARY_HEADER; trailing metadata `x-slipway-variant` and
`x-slipway-model-version` say which), and the HTTP errors mapped to status codes:

  400, 413, 415, 422 (bad input)   INVALID_ARGUMENT
  401                              UNAUTHENTICATED
  404                              NOT_FOUND
  503 (loading, overloaded: queue full or timed out, draining)   UNAVAILABLE
  500                              INTERNAL
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from services.inference.dataplane import DataPlane, InferRequest, RequestedOutput, Tensor
from services.inference.deps import token_matches
from services.inference.errors import (
    InferenceError,
    ModelNotFoundError,
    ServiceError,
    UnauthorizedError,
    UnavailableError,
)
from services.inference.metrics import GRPC_ROUTE, Metrics
from services.inference.variants import VARIANT_HEADER, VERSION_HEADER
from slipway.oip import grpc_predict_v2_pb2 as pb
from slipway.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from slipway.oip.tensors import TensorError, from_raw, from_values, to_raw

log = logging.getLogger(__name__)

T = TypeVar("T")
Code = grpc.StatusCode
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
_CLASS = {Code.OK: "2xx", Code.INTERNAL: "5xx", Code.UNAVAILABLE: "5xx", Code.UNKNOWN: "5xx"}


def status_of(exc: ServiceError) -> Code:
    if isinstance(exc, UnauthorizedError):
        return Code.UNAUTHENTICATED
    if isinstance(exc, ModelNotFoundError):
        return Code.NOT_FOUND
    if isinstance(exc, UnavailableError):
        return Code.UNAVAILABLE
    if isinstance(exc, InferenceError) or exc.status_code >= 500:
        return Code.INTERNAL
    return Code.INVALID_ARGUMENT


def _parameters(entries: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out = {}
    for key, value in entries.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def to_infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """The dataplane's request; a `TensorError` when contents and tensors disagree."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise TensorError(f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs")
    inputs = []
    for n, item in enumerate(message.inputs):
        shape = list(item.shape)
        try:
            if raw:
                if item.HasField("contents"):
                    raise TensorError("has contents although raw_input_contents are used")
                data = from_raw(raw[n], item.datatype, shape)
            else:
                field = CONTENTS.get(item.datatype)
                if field is None:
                    raise TensorError(f"datatype {item.datatype!r} has no typed contents")
                data = from_values(list(getattr(item.contents, field)), item.datatype, shape)
        except TensorError as exc:
            raise TensorError(f"input {item.name!r}: {exc}") from exc
        inputs.append(Tensor(item.name, item.datatype, shape, data, _parameters(item.parameters)))
    outputs = [RequestedOutput(o.name, _parameters(o.parameters)) for o in message.outputs]
    return InferRequest(inputs, outputs, message.id, _parameters(message.parameters))


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol over one `DataPlane`."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, auth_token: str = "") -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.auth_token = auth_token
        service = dataplane.service
        self.models = set(service.slots)
        self.default_model = service.main.name

    async def ServerLive(  # noqa: N802 - the protocol's method names
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        async def answer() -> pb.ModelReadyResponse:
            ready = self.dataplane.model_ready(request.name, request.version)
            return pb.ModelReadyResponse(ready=ready)

        return await self._guard(context, answer)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def answer() -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

        return await self._guard(context, answer)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def answer() -> pb.ModelMetadataResponse:
            meta = self.dataplane.model_metadata(request.name, request.version)
            tensors = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensors(**t) for t in meta["inputs"]],
                outputs=[tensors(**t) for t in meta["outputs"]],
            )

        return await self._guard(context, answer)

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        began = time.perf_counter()
        model = request.model_name if request.model_name in self.models else self.default_model
        variants = self.dataplane.service.variants
        variant = variants.variant_of(model)
        code = Code.CANCELLED

        async def answer() -> pb.ModelInferResponse:
            nonlocal model, variant
            slot = self.dataplane.model(request.model_name, request.model_version)[0]
            metadata = dict(context.invocation_metadata() or ())
            key = metadata.get(variants.header.lower())
            chosen = variants.choose(slot, request.model_version, str(key) if key else None)
            model, variant = chosen.name, variants.variant_of(chosen.name)
            inference = to_infer_request(request)
            result = await self.dataplane.infer(
                request.model_name, request.model_version, inference, GRPC_ROUTE, chosen
            )
            context.set_trailing_metadata(
                ((VARIANT_HEADER.lower(), variant), (VERSION_HEADER.lower(), result.model_version))
            )
            reply = pb.ModelInferResponse(
                model_name=result.model_name, model_version=result.model_version, id=result.id
            )
            for tensor in result.outputs:
                reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                reply.raw_output_contents.append(to_raw(tensor.data, tensor.datatype))
            return reply

        try:
            reply = await self._guard(context, answer)
            code = Code.OK
            return reply
        except grpc.aio.AbortError:
            code = context.code() or Code.UNKNOWN
            raise
        finally:
            self.observe(model, variant, code, time.perf_counter() - began)

    def observe(self, model: str, variant: str, code: Code, seconds: float) -> None:
        """Count one ModelInfer call under route `grpc`, its status as an HTTP code class."""
        self.metrics.requests.labels(model, GRPC_ROUTE, _CLASS.get(code, "4xx"), variant).inc()
        self.metrics.request_duration.labels(model, GRPC_ROUTE, variant).observe(seconds)

    async def _guard(
        self, context: grpc.aio.ServicerContext, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Check the token, run `call`, and end the RPC with the status of any error."""
        try:
            self._authorize(context)
            return await call()
        except ServiceError as exc:
            if isinstance(exc, InferenceError):
                log.error("inference failed: %s", exc.message)
            code, message = status_of(exc), exc.message
        except TensorError as exc:
            code, message = Code.INVALID_ARGUMENT, str(exc)
        except Exception as exc:
            log.exception("unexpected error in a gRPC call")
            code, message = Code.INTERNAL, f"internal error: {type(exc).__name__}"
        await context.abort(code, message)
        raise AssertionError("abort returns by raising")  # pragma: no cover

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        if not self.auth_token:
            return
        metadata = dict(context.invocation_metadata() or ())
        header = metadata.get("authorization", "")
        scheme, _, given = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token_matches(given, self.auth_token):
            raise UnauthorizedError(
                "missing or wrong bearer token (metadata authorization: Bearer <token>)"
            )
