"""The Open Inference Protocol's tensor layout: round trips, and every malformed input refused
with a message before anything is allocated by the claimed shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slipway.oip.tensors import (
    DATATYPES,
    TensorError,
    binary_body,
    deserialize_bytes,
    from_raw,
    from_values,
    serialize_bytes,
    split_chunks,
    to_raw,
)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_numeric_round_trip_is_little_endian_row_major(datatype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 2).astype(DATATYPES[datatype])
    raw = to_raw(array, datatype)
    assert raw == array.astype(DATATYPES[datatype].newbyteorder("<")).tobytes(order="C")
    np.testing.assert_array_equal(from_raw(raw, datatype, [2, 3, 4]), array)
    np.testing.assert_array_equal(from_values(array.tolist(), datatype, [2, 3, 4]), array)


def test_fp32_bytes_are_the_protocols() -> None:
    assert to_raw(np.array([1.0, -2.0], np.float32), "FP32") == b"\0\0\x80?\0\0\0\xc0"


def test_bytes_elements_carry_a_4_byte_little_endian_length() -> None:
    items = [b"", b"ab", "é"]
    raw = serialize_bytes(items)
    assert raw == b"\0\0\0\0" + b"\2\0\0\0ab" + b"\2\0\0\0\xc3\xa9"
    assert deserialize_bytes(raw, 3) == [b"", b"ab", "é".encode()]
    array = from_raw(raw, "BYTES", [3, 1])
    assert array.shape == (3, 1) and array[1, 0] == b"ab"
    assert to_raw(array, "BYTES") == raw


@pytest.mark.parametrize(
    ("raw", "datatype", "shape", "words"),
    [
        (b"\0" * 7, "FP32", [2], "7 bytes do not match FP32 shape [2] (8 bytes expected)"),
        (b"\0" * 8, "FP32", [2**40, 2**40], "bytes do not match"),
        (b"\5\0\0\0abc", "BYTES", [1], "announces 5 bytes; 3 remain"),
        (b"\1\0", "BYTES", [1], "cut short"),
        (serialize_bytes([b"a", b"b"]), "BYTES", [3], "2 BYTES elements do not fill"),
        (b"", "BYTES", [2**40], "0 BYTES elements"),
        (b"\0\0", "BF16", [1], "unknown datatype 'BF16'"),
        (b"", "FP32", [-1, 4], "non-negative"),
    ],
)
def test_raw_that_does_not_fit_is_refused(raw: bytes, datatype: str, shape, words: str) -> None:
    with pytest.raises(TensorError, match=None) as caught:
        from_raw(raw, datatype, shape)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("values", "datatype", "shape", "words"),
    [
        ([1, 2, 3], "FP32", [2, 2], "3 values do not fill shape [2, 2]"),
        ([[1, 2], [3]], "FP32", [3], "not a regular"),
        (["a", "b"], "FP32", [2], "must be numeric"),
        ([1.5], "INT32", [1], "must be integers"),
        ([256], "UINT8", [1], "must lie in [0, 255]"),
        ([-1], "UINT8", [1], "must lie in [0, 255]"),
        ([1, "a"], "BYTES", [2], "must be strings"),
        (["a"], "BYTES", [2], "1 values do not fill"),
    ],
)
def test_values_that_do_not_fit_are_refused(values, datatype: str, shape, words: str) -> None:
    with pytest.raises(TensorError) as caught:
        from_values(values, datatype, shape)
    assert words in str(caught.value)


def test_values_may_be_nested_and_bytes_text_stays_text() -> None:
    assert from_values([[1, 2], [3, 4]], "UINT8", [4]).dtype == np.uint8
    assert from_values([["a"], ["b"]], "BYTES", [2, 1])[1, 0] == "b"
    assert from_values([b"\x89PNG"], "BYTES", [1])[0] == b"\x89PNG"
    deep: object = "a"
    for _ in range(5000):
        deep = [deep]
    for datatype in ("BYTES", "FP32"):
        with pytest.raises(TensorError, match=r"nested too deeply|not a regular"):
            from_values(deep, datatype, [1])


def test_binary_body_and_its_chunks() -> None:
    body, length = binary_body({"inputs": []}, [b"abc", b"de"])
    assert json.loads(body[:length]) == {"inputs": []}
    assert [bytes(c) for c in split_chunks(body[length:], [3, 2])] == [b"abc", b"de"]
    with pytest.raises(TensorError, match="more than the 5 bytes"):
        split_chunks(body[length:], [3, 3])
    with pytest.raises(TensorError, match="1 bytes after the JSON header belong to no tensor"):
        split_chunks(body[length:], [4])
