"""Tensors of the Open Inference Protocol: datatypes, the raw layout and the binary REST body.

The raw layout is the one of the REST binary tensor data extension and of gRPC's
`raw_input_contents` / `raw_output_contents`: the tensor flattened row-major, little-endian,
without padding; a BYTES element is a 4-byte unsigned little-endian length followed by its
bytes. A binary REST body is the JSON object (its length in the `Inference-Header-Content-Length`
header) followed by the raw tensors, each announced by `binary_data_size` in the JSON.

Every way the bytes can disagree with a datatype and shape is a `TensorError` with a message
for the client; nothing here allocates by a client's shape before the data has shown it is real.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from slipway.errors import SlipwayError

HEADER_LENGTH = "Inference-Header-Content-Length"
BYTES = "BYTES"
DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"), ("UINT8", "u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
        ("INT8", "i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
        ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"),
    )
}  # fmt: skip
_LENGTH = struct.Struct("<I")


class TensorError(SlipwayError):
    """A tensor's data does not fit its datatype and shape, or a binary body is malformed."""


def element_count(shape: Sequence[int]) -> int:
    """Elements of `shape`; a negative or non-integer dimension is a `TensorError`."""
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise TensorError(f"shape {list(shape)} must hold non-negative integers")
    return math.prod(shape)


def _dtype(datatype: str) -> np.dtype[Any]:
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        known = ", ".join([*DATATYPES, BYTES])
        raise TensorError(f"unknown datatype {datatype!r}; the protocol's are {known}")
    return dtype


def serialize_bytes(items: Iterable[bytes | str]) -> bytes:
    """BYTES elements in the raw layout; text is encoded as UTF-8."""
    parts: list[bytes] = []
    for item in items:
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts += (_LENGTH.pack(len(data)), data)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int) -> list[bytes]:
    """Exactly `count` BYTES elements from the raw layout, or a `TensorError` saying what is off."""
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise TensorError(f"BYTES element {len(items)}: its 4-byte length is cut short")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + size > len(view):
            raise TensorError(
                f"BYTES element {len(items)} announces {size} bytes; {len(view) - offset} remain"
            )
        items.append(bytes(view[offset : offset + size]))
        offset += size
    if len(items) != count:
        raise TensorError(f"{len(items)} BYTES elements do not fill a shape of {count} elements")
    return items


def from_raw(raw: bytes | memoryview, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A tensor from its raw bytes: numeric dtypes as a (read-only) view, BYTES as objects."""
    count = element_count(shape)
    if datatype == BYTES:
        items = deserialize_bytes(raw, count)
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = _dtype(datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"{len(raw)} bytes do not match {datatype} shape {list(shape)} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of a tensor (BYTES elements may be `bytes` or `str`)."""
    if datatype == BYTES:
        return serialize_bytes(array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=_dtype(datatype)).tobytes()


def from_values(values: Any, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A tensor from listed values (JSON `data`, gRPC typed contents), flat or nested row-major.

    Integers must be integral and within the datatype's range; BYTES values must all be `str`
    (JSON text) or all `bytes` (gRPC).
    """
    count = element_count(shape)
    if datatype == BYTES:
        try:
            flat = list(_flatten(values))
        except RecursionError as exc:
            raise TensorError("data is nested too deeply") from exc
        if not all(isinstance(v, str) for v in flat) and not all(
            isinstance(v, bytes) for v in flat
        ):
            raise TensorError("BYTES data must be strings")
        if len(flat) != count:
            raise TensorError(f"{len(flat)} values do not fill shape {list(shape)}")
        array = np.empty(count, dtype=object)
        array[:] = flat
        return array.reshape(shape)
    dtype = _dtype(datatype)
    try:
        given = np.asarray(values)
    except (ValueError, TypeError, RecursionError) as exc:
        raise TensorError(f"data is not a regular (row-major, maybe nested) list: {exc}") from exc
    if given.dtype.kind not in "biuf":
        raise TensorError(f"{datatype} data must be numeric")
    if given.size != count:
        raise TensorError(f"{given.size} values do not fill shape {list(shape)}")
    given = given.reshape(shape)
    if dtype.kind in "iu":
        if given.dtype.kind == "f" and not np.array_equal(given, np.floor(given)):
            raise TensorError(f"{datatype} data must be integers")
        limits = np.iinfo(dtype)
        if given.size and (given.min() < limits.min or given.max() > limits.max):
            raise TensorError(f"{datatype} data must lie in [{limits.min}, {limits.max}]")
    return given.astype(dtype)


def _flatten(values: Any) -> Iterable[Any]:
    if isinstance(values, list | tuple):
        for value in values:
            yield from _flatten(value)
    else:
        yield values


def split_chunks(binary: bytes | memoryview, sizes: Sequence[int]) -> list[memoryview]:
    """Cut the binary part of a body into one chunk per announced size, all of it used."""
    view = memoryview(binary)
    chunks: list[memoryview] = []
    offset = 0
    for size in sizes:
        if offset + size > len(view):
            raise TensorError(
                f"binary_data_size values add up to {offset + size} bytes, more than the "
                f"{len(view)} bytes after the JSON header"
            )
        chunks.append(view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise TensorError(
            f"{len(view) - offset} bytes after the JSON header belong to no tensor "
            f"(binary_data_size values add up to {offset})"
        )
    return chunks


def binary_body(header: dict[str, Any], chunks: Sequence[bytes]) -> tuple[bytes, int]:
    """A binary REST body: the JSON header, then the chunks; and the header's length."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(chunks), len(head)
