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
