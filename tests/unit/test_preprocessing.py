from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slipway.contract.preprocessing import Preprocessing, image_stats


def test_shapes_and_normalisation() -> None:
    prep = Preprocessing(image_size=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = prep(Image.new("L", (40, 30), 255))
    assert out.shape == (3, 16, 16) and out.dtype == np.float32
    assert np.allclose(out, (1.0 - 0.5) / 0.25)


def test_rgba_transparency_is_flattened_on_white() -> None:
    prep = Preprocessing(image_size=8, channels=1, mean=(0.0,), std=(1.0,))
    out = prep(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    assert np.allclose(out, 1.0)


def test_sixteen_bit_grayscale_is_scaled() -> None:
    prep = Preprocessing(image_size=8, channels=1, mean=(0.0,), std=(1.0,))
    image = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert prep(image).max() == pytest.approx(1.0, abs=0.01)


def test_round_trip_through_dict() -> None:
    prep = Preprocessing(image_size=24, channels=1, mean=(0.3,), std=(0.2,), resample="bicubic")
    assert Preprocessing.from_dict(prep.to_dict()) == prep


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 2},
        {"image_size": 4},
        {"channels": 3, "mean": (0.5,), "std": (0.5,)},
        {"std": (0.0,)},
        {"resample": "nearest-ish"},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Preprocessing(**kwargs)


def test_image_stats() -> None:
    image = Image.fromarray(np.array([[0, 255], [0, 255]], dtype=np.uint8))
    stats = image_stats(image)
    assert stats["brightness"] == pytest.approx(0.5)
    assert stats["contrast"] == pytest.approx(0.5)
    assert stats["width"] == 2


@pytest.mark.parametrize("channels", [1, 3])
def test_normalisation_by_lookup_is_bit_identical_to_the_formula(channels: int) -> None:
    rng = np.random.default_rng(channels)
    mean = tuple(float(v) for v in rng.uniform(0, 1, channels))
    std = tuple(float(v) for v in rng.uniform(0.05, 1, channels))
    prep = Preprocessing(image_size=16, channels=channels, mean=mean, std=std)
    shape = (37, 23) if channels == 1 else (37, 23, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    scaled = pixels.astype(np.float32) / 255.0
    planes = scaled[None] if channels == 1 else scaled.transpose(2, 0, 1)
    formula = (planes - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    got = prep.normalize(pixels)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got.view(np.uint32), formula.astype(np.float32).view(np.uint32))
    image = Image.fromarray(pixels, "L" if channels == 1 else "RGB").resize((16, 16))
    from_image = prep(image)  # Pillow's band lookup: the same bits as `normalize`
    assert from_image.shape == (channels, 16, 16) and from_image.dtype == np.float32
    np.testing.assert_array_equal(
        from_image.view(np.uint32), prep.normalize(np.asarray(image)).view(np.uint32)
    )


def test_image_stats_equal_the_float64_mean_and_deviation_of_the_gray_image() -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (31, 17, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    gray = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    stats = image_stats(image)
    assert stats["brightness"] == pytest.approx(gray.mean(), rel=1e-12)
    assert stats["contrast"] == pytest.approx(gray.std(), rel=1e-12)
    assert (stats["width"], stats["height"]) == (17, 31)
