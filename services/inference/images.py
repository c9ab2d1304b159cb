"""Turn uploaded bytes into model inputs with the shared `slipway.contract.preprocessing` transform.

Every way an upload can be unusable (empty, not an image, truncated, a decompression bomb, too
many pixels, an unsupported pixel mode) becomes a typed 4xx error with a message. These
functions block (decoding is CPU work): the service prepares small uploads on the event loop
(`pixel_count` tells them apart by their headers, without decoding) and the rest on a thread.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from services.inference.errors import BadInputError, TooLargeError, UnsupportedMediaError
from slipway.contract.preprocessing import ACCEPTED_MODES, Preprocessing, image_stats


@dataclass(frozen=True)
class Prepared:
    """One model input and the input statistics the prediction log and metrics record."""

    array: np.ndarray
    width: int
    height: int
    brightness: float
    contrast: float


def decode_image(payload: bytes, max_pixels: int, label: str = "file") -> Image.Image:
    """Decode fully, refusing bombs before any pixel is decompressed."""
    if not payload:
        raise BadInputError(f"{label}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(payload))
            width, height = image.size
            if width * height > max_pixels:
                raise TooLargeError(
                    f"{label}: {width}x{height} = {width * height} pixels exceeds the limit of "
                    f"{max_pixels} (decompression bomb guard)"
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLargeError(f"{label}: too many pixels (decompression bomb guard)") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(
            f"{label}: not a decodable image (PNG, JPEG, BMP, GIF, WebP, TIFF are accepted)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInputError(f"{label}: truncated or corrupt image: {exc}") from exc
    if image.mode not in ACCEPTED_MODES:
        raise UnsupportedMediaError(f"{label}: unsupported pixel mode {image.mode!r}")
    if min(image.size) < 1:
        raise BadInputError(f"{label}: image has no pixels")
    return image


def prepare(payload: bytes, transform: Preprocessing, max_pixels: int, label: str) -> Prepared:
    """Decode and preprocess one upload exactly as training did."""
    image = decode_image(payload, max_pixels, label)
    stats = image_stats(image)
    return Prepared(
        array=transform(image),
        width=image.size[0],
        height=image.size[1],
        brightness=stats["brightness"],
        contrast=stats["contrast"],
    )


def pixel_count(payloads: list[tuple[str, bytes]]) -> int:
    """The uploads' pixels in all, read from their headers; one whose header cannot be read
    counts 0 (`prepare` says what is wrong with it)."""
    total = 0
    for _, data in payloads:
        try:
            width, height = Image.open(io.BytesIO(data)).size
        except Exception:  # any unreadable header is prepare's to report
            continue
        total += width * height
    return total


def prepare_many(
    payloads: list[tuple[str, bytes]], transform: Preprocessing, max_pixels: int
) -> list[Prepared]:
    """All uploads of one request, in one trip off the event loop."""
    return [prepare(data, transform, max_pixels, label) for label, data in payloads]


def tensor_stats(array: np.ndarray, transform: Preprocessing) -> Prepared:
    """Statistics of a raw tensor input, undoing the normalisation to recover pixel levels."""
    mean = np.asarray(transform.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(transform.std, dtype=np.float32)[:, None, None]
    pixels = np.clip(array * std + mean, 0.0, 1.0)
    gray = pixels.mean(axis=0) if pixels.shape[0] == 1 else _luma(pixels)
    return Prepared(
        array=array,
        width=int(array.shape[2]),
        height=int(array.shape[1]),
        brightness=float(gray.mean()),
        contrast=float(gray.std()),
    )


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, what Pillow's convert("L") uses."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
