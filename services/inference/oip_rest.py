"""The Open Inference Protocol's REST encoding: JSON, and the binary tensor data extension.

A request body is JSON, or (with the `Inference-Header-Content-Length: N` header) N bytes of
JSON followed by the raw tensors its inputs announce with `binary_data_size`. A response carries
an output in the binary part when the requested output says `binary_data: true`, or the request
says `binary_data_output: true`; it is then `application/octet-stream` with the same header.
`Content-Encoding: gzip` or `deflate` request bodies are inflated (within the upload limit).
Every malformed body is a `BadInputError` (400) naming what is wrong.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.inference.dataplane import InferRequest, InferResponse, RequestedOutput, Tensor
from services.inference.errors import BadInputError, TooLargeError, UnsupportedMediaError
from services.inference.schemas import InferenceRequest
from slipway.oip.tensors import (
    HEADER_LENGTH,
    TensorError,
    binary_body,
    from_raw,
    from_values,
    split_chunks,
    to_raw,
)

BINARY_MEDIA = "application/octet-stream"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_request(request: Request, limit: int) -> tuple[InferRequest, set[str]]:
    """The body as an `InferRequest`, and the names of the outputs to answer in binary."""
    body = _inflate(await request.body(), request.headers.get("content-encoding"), limit)
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        content_type = request.headers.get("content-type", "application/json").lower()
        if "json" not in content_type:
            raise UnsupportedMediaError(
                f"expected application/json, or a binary body with the {HEADER_LENGTH} header; "
                f"got {content_type}"
            )
        header, binary = body, b""
    else:
        length = _header_length(declared, len(body))
        header, binary = body[:length], memoryview(body)[length:]
    parsed = _parse_json(header)
    try:
        inputs = _inputs(parsed, binary)
    except TensorError as exc:
        raise BadInputError(str(exc)) from exc
    outputs = [RequestedOutput(o.name, dict(o.parameters or {})) for o in parsed.outputs or []]
    parameters = dict(parsed.parameters or {})
    return (
        InferRequest(inputs, outputs, parsed.id or "", parameters),
        _binary_outputs(outputs, parameters),
    )


def _inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in _WBITS:
        raise UnsupportedMediaError(
            f"Content-Encoding {coding} is not supported (gzip, deflate or none)"
        )
    inflater = zlib.decompressobj(_WBITS[coding])
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadInputError(f"request body is not valid {coding} data: {exc}") from exc
    if len(data) > limit:
        raise TooLargeError(f"inflated request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise BadInputError(f"request body is truncated {coding} data")
    return data


def _header_length(declared: str, size: int) -> int:
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if length < 0:
        raise BadInputError(f"{HEADER_LENGTH} must be a non-negative integer, got {declared!r}")
    if length > size:
        raise BadInputError(
            f"{HEADER_LENGTH} is {length}, past the end of the {size}-byte request body"
        )
    return length


def _parse_json(header: bytes | memoryview) -> InferenceRequest:
    try:
        text = bytes(header).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"request JSON is not valid UTF-8: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BadInputError(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadInputError("request JSON is nested too deeply") from exc
    try:
        return InferenceRequest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise BadInputError(f"invalid inference request: {detail}") from exc


def _inputs(parsed: InferenceRequest, binary: bytes | memoryview) -> list[Tensor]:
    sizes = [_binary_size(i.name, i.parameters or {}) for i in parsed.inputs]
    chunks = iter(split_chunks(binary, [s for s in sizes if s is not None]))
    tensors = []
    for item, size in zip(parsed.inputs, sizes, strict=True):
        name = item.name
        try:
            if size is not None:
                if item.data is not None:
                    raise TensorError("has both data and binary_data_size")
                data = from_raw(next(chunks), item.datatype, item.shape)
            elif item.data is None:
                raise TensorError("has no data (nor binary_data_size)")
            else:
                data = from_values(item.data, item.datatype, item.shape)
        except TensorError as exc:
            raise TensorError(f"input {name!r}: {exc}") from exc
        tensors.append(Tensor(name, item.datatype, list(item.shape), data, item.parameters or {}))
    return tensors


def _binary_size(name: str, parameters: dict[str, Any]) -> int | None:
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadInputError(
            f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}"
        )
    return size


def _flag(where: str, parameters: dict[str, Any], key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise BadInputError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _binary_outputs(outputs: list[RequestedOutput], parameters: dict[str, Any]) -> set[str]:
    everything = _flag("request parameters", parameters, "binary_data_output", False)
    if not outputs:
        return {"*"} if everything else set()
    return {
        o.name
        for o in outputs
        if _flag(f"output {o.name!r}", o.parameters, "binary_data", everything)
    }


def encode_response(response: InferResponse, binary: set[str]) -> Response:
    """JSON, or JSON + binary part when any output is to be binary."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if tensor.name in binary or "*" in binary:
            raw = to_raw(tensor.data, tensor.datatype)
            chunks.append(raw)
            entry["parameters"] = {"binary_data_size": len(raw)}
        else:
            entry["data"] = _json_values(tensor)
        outputs.append(entry)
    header = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    }
    if not chunks:
        return Response(json.dumps(header).encode(), media_type="application/json")
    body, length = binary_body(header, chunks)
    return Response(body, media_type=BINARY_MEDIA, headers={HEADER_LENGTH: str(length)})


def _json_values(tensor: Tensor) -> list[Any]:
    values = tensor.data.ravel().tolist()
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    return values
