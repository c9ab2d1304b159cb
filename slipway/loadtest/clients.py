"""The load generator's clients: one prepared request, sent again and again, its outcome read.

Four kinds of request, each carrying one image:

  multipart   POST /v1/predict, multipart field `files` (what `curl -F files=@x.png` sends)
  raw         POST /v1/predict with the image as the whole body, `Content-Type: image/...`
              (what `curl --data-binary @x.jpg -H 'Content-Type: image/jpeg'` sends)
  oip-binary  POST /v2/models/<model>/infer, the Open Inference Protocol's binary tensor data
              extension: a BYTES `image` input, every output asked for in binary (what
              tritonclient.http sends by default)
  grpc        ModelInfer of `inference.GRPCInferenceService` with raw_input_contents (what
              tritonclient.grpc sends)

The HTTP client is a minimal kept-alive HTTP/1.1 connection of its own, a fraction of the CPU
time per request that httpx needs; the gRPC client sends the request bytes serialised once and
does not parse the answer, for the same reason. An outcome is "ok", an HTTP status code, or a
gRPC status name.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from typing import Literal, NamedTuple, Protocol

from slipway.errors import SlipwayError
from slipway.oip.tensors import BYTES, HEADER_LENGTH, binary_body, serialize_bytes

RequestKind = Literal["multipart", "raw", "oip-binary", "grpc"]
KINDS: tuple[RequestKind, ...] = ("multipart", "raw", "oip-binary", "grpc")
Payload = tuple[str, bytes, str]  # (file name, bytes, content type)
BOUNDARY = "slipway-load-boundary"
OK = "ok"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
IMAGE_INPUT = "image"


class Connection(Protocol):
    # Seconds the last answer's Retry-After asked for (a 429 or 503), else 0.
    retry_after_s: float

    async def post(self, request: bytes) -> str: ...

    async def aclose(self) -> None: ...


class HttpTarget(NamedTuple):
    host: str
    port: int
    tls: bool
    authority: str
    path: str  # with the query

    @classmethod
    def parse(cls, url: str, top_k: int | None) -> HttpTarget:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SlipwayError(f"not an http(s) URL: {url}")
        tls = parts.scheme == "https"
        query = "&".join(q for q in (parts.query, "" if top_k is None else f"top_k={top_k}") if q)
        path = (parts.path or "/") + (f"?{query}" if query else "")
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.netloc, path)

    def request(self, payload: Payload, kind: RequestKind = "multipart") -> bytes:
        """The bytes of one POST of `payload` (one image): multipart, raw or OIP binary body."""
        name, data, content_type = payload
        extra = ""
        if kind == "raw":
            content = data
        elif kind == "oip-binary":
            content, length = oip_binary_body(data)
            content_type = "application/octet-stream"
            extra = f"{HEADER_LENGTH}: {length}\r\n"
        else:
            head = (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: {content_type}\r\n\r\n'
            )
            content = head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
            content_type = f"multipart/form-data; boundary={BOUNDARY}"
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n"
            f"Content-Type: {content_type}\r\n{extra}Content-Length: {len(content)}\r\n\r\n"
        ).encode() + content


def oip_binary_body(image: bytes) -> tuple[bytes, int]:
    """An OIP REST binary body with one raw image as the BYTES `image` input; its JSON length."""
    raw = serialize_bytes([image])
    header = {
        "inputs": [
            {
                "name": IMAGE_INPUT,
                "shape": [1],
                "datatype": BYTES,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    return binary_body(header, [raw])


def grpc_infer_request(model: str, image: bytes) -> bytes:
    """A serialised ModelInferRequest with one raw image as the BYTES `image` input."""
    # Imported here: the stubs register `inference.*` protobuf names for the whole process.
    from slipway.oip import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=IMAGE_INPUT, datatype=BYTES, shape=[1])
    request.raw_input_contents.append(serialize_bytes([image]))
    return request.SerializeToString()


class HttpConnection:
    """One kept-alive HTTP/1.1 connection: a prepared POST out, its whole answer read back."""

    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.retry_after_s = 0.0

    async def post(self, request: bytes) -> str:
        """Send `request`; the outcome. A kept-alive connection the server closed in the
        meantime is re-opened once."""
        reused = self.streams is not None
        self.retry_after_s = 0.0  # a request that gets no answer asks for no pause
        try:
            status = await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.aclose()
            if not reused:
                raise
            status = await self._exchange(request)
        return OK if 200 <= status < 300 else str(status)

    async def _exchange(self, request: bytes) -> int:
        if self.streams is None:
            target = self.target
            context = ssl.create_default_context() if target.tls else None
            self.streams = await asyncio.open_connection(target.host, target.port, ssl=context)
        reader, writer = self.streams
        writer.write(request)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(":") for line in lines[1:])
        headers = {key.strip().lower(): value.strip().lower() for key, _, value in fields}
        refused = status in (429, 503)
        self.retry_after_s = retry_after_s(headers.get("retry-after")) if refused else 0.0
        if headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")  # servers send no trailers to a request like this
        elif "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        else:
            await reader.read()  # the body runs to the end of the connection
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            await self.aclose()
        return status

    async def aclose(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def retry_after_s(value: str | None) -> float:
    """Seconds of a Retry-After header in its delay form; 0 when absent or an HTTP date."""
    return float(value) if value and value.isdigit() else 0.0


def grpc_target(url: str) -> str:
    """`grpc://host:port` (or plain `host:port`) as a gRPC channel target."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme != "grpc" or not parts.hostname or not parts.port:
        raise SlipwayError(f"not a gRPC address (grpc://HOST:PORT): {url}")
    return parts.netloc


class GrpcConnection:
    """One channel (one HTTP/2 connection) sending prepared ModelInfer requests."""

    def __init__(self, target: str, timeout_s: float) -> None:
        import grpc

        self._rpc_error = grpc.aio.AioRpcError
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.aio.insecure_channel(target, options=options)
        # No serialisers: the request goes out as the bytes given, the answer is not parsed.
        self.infer = self.channel.unary_unary(GRPC_INFER)
        self.timeout_s = timeout_s
        self.retry_after_s = 0.0  # gRPC refusals carry no delay here

    async def post(self, request: bytes) -> str:
        try:
            await self.infer(request, timeout=self.timeout_s)
        except self._rpc_error as exc:
            return str(exc.code().name)
        return OK

    async def aclose(self) -> None:
        await self.channel.close()
