"""The saliency map drawn over the model's view of the image, as PNG bytes (Pillow only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from slipway.contract.preprocessing import Preprocessing

MIN_SIDE = 224  # small inputs (28x28) are drawn larger so the map can be seen
ALPHA = 0.55


def model_view(array: np.ndarray, transform: Preprocessing) -> np.ndarray:
    """The (H, W, 3) uint8 image the model saw: the normalisation undone."""
    mean = np.asarray(transform.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(transform.std, dtype=np.float32)[:, None, None]
    pixels = np.clip(array * std + mean, 0.0, 1.0)
    rgb = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels
    return (rgb.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8, dark blue through red to yellow."""
    r = np.clip(2.0 * heat, 0, 1)
    g = np.clip(2.0 * heat - 1.0, 0, 1)
    b = np.clip(0.6 - 1.2 * heat, 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def overlay_png(array: np.ndarray, saliency: np.ndarray, transform: Preprocessing) -> bytes:
    """PNG of the saliency (positive part, scaled to its maximum) blended over the image."""
    positive = np.maximum(saliency, 0.0)
    peak = float(positive.max())
    heat = positive / peak if peak > 0 else positive
    side = max(MIN_SIDE, transform.image_size)
    base = Image.fromarray(model_view(array, transform)).resize((side, side), Image.NEAREST)
    scaled = Image.fromarray((heat * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    level = np.asarray(scaled, dtype=np.float32) / 255.0
    colors = heat_colors(level).astype(np.float32)
    weight = (ALPHA * level)[..., None]
    blended = np.asarray(base, dtype=np.float32) * (1 - weight) + colors * weight
    out = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()
