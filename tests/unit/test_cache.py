"""The pre-decoded pixel cache and the batched loader, on real Fashion-MNIST PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slipway.config.training import TrainConfig
from slipway.contract.preprocessing import Preprocessing
from slipway.data.scan import DatasetScan, normalisation_for, scan_dataset
from slipway.training.cache import build_pixel_cache, cache_key, open_pixel_cache
from slipway.training.datasets import ImageDataset, PixelBatches, batch_loader
from slipway.training.loop import train


@pytest.fixture(scope="module")
def scan(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> DatasetScan:
    """A private copy of the demo set, so a test may take the image files away."""
    root = tmp_path_factory.mktemp("cache") / "data"
    shutil.copytree(demo_data, root)
    return scan_dataset(root, progress=False)


def _prep(scan: DatasetScan, size: int = 20) -> Preprocessing:
    mean, std = normalisation_for(scan, 1)
    return Preprocessing(size, 1, mean, std)


def test_cache_holds_exactly_the_resize_output(scan: DatasetScan, tmp_path: Path) -> None:
    prep = _prep(scan)
    cache = build_pixel_cache(tmp_path, scan, prep, workers=2, progress=False)
    assert cache.shape == (len(scan.samples), 20, 20)
    for index in (0, 17, len(scan.samples) - 1):
        sample = scan.samples[index]
        with Image.open(Path(scan.root) / sample.path) as image:
            expected = np.asarray(prep.resize(image))
        np.testing.assert_array_equal(cache.array[cache.rows([sample])[0]], expected)


def test_cache_is_written_once_and_keyed_by_geometry(scan: DatasetScan, tmp_path: Path) -> None:
    prep = _prep(scan)
    first = build_pixel_cache(tmp_path, scan, prep, progress=False)
    written = first.data_path.stat().st_mtime_ns
    again = build_pixel_cache(tmp_path, scan, prep, progress=False)
    assert again.data_path == first.data_path
    assert again.data_path.stat().st_mtime_ns == written
    assert cache_key(scan.fingerprint, _prep(scan, 24)) != cache_key(scan.fingerprint, prep)
    assert cache_key("other", prep) != cache_key(scan.fingerprint, prep)
    assert open_pixel_cache(tmp_path, scan, _prep(scan, 24)) is None


def test_a_truncated_cache_is_not_used(scan: DatasetScan, tmp_path: Path) -> None:
    prep = _prep(scan)
    cache = build_pixel_cache(tmp_path, scan, prep, progress=False)
    with open(cache.data_path, "r+b") as handle:
        handle.truncate(100)
    assert open_pixel_cache(tmp_path, scan, prep) is None
    rebuilt = build_pixel_cache(tmp_path, scan, prep, progress=False)
    assert rebuilt.data_path.stat().st_size == len(scan.samples) * 20 * 20


def test_workers_read_the_memmap_without_the_image_files(scan: DatasetScan, tmp_path: Path) -> None:
    prep = _prep(scan)
    samples = scan.split("train")
    cache = build_pixel_cache(tmp_path / "c", scan, prep, progress=False)
    decoded = PixelBatches(samples, ImageDataset(scan.root, samples, prep))
    order = list(range(len(samples)))[::-1]
    expected = [batch for batch in batch_loader(decoded, 32, order)]
    hidden = Path(scan.root).with_name("hidden")
    Path(scan.root).rename(hidden)  # no worker can decode a file now
    try:
        cached = PixelBatches(samples, ImageDataset(scan.root, samples, prep), cache)
        loader = batch_loader(cached, 32, order, workers=2, prefetch_factor=2)
        for epoch in range(2):  # persistent workers keep their mapping across epochs
            got = list(loader)
            assert len(got) == len(expected), epoch
            for (p, labels, pos), (ep, elabels, epos) in zip(got, expected, strict=True):
                assert p.dtype == torch.uint8
                assert torch.equal(p, ep) and torch.equal(labels, elabels)
                assert torch.equal(pos, epos)
    finally:
        hidden.rename(scan.root)


@pytest.mark.slow
def test_training_from_the_cache_equals_training_from_files(
    scan: DatasetScan, tmp_path: Path
) -> None:
    config = dict(
        arch="mobilenet_v3_small", epochs=1, batch_size=32, image_size=16, max_batches_per_epoch=2
    )
    plain = train(scan, tmp_path / "plain", TrainConfig(**config))
    cached_config = TrainConfig(**config, cache_dir=str(tmp_path / "pixels"), num_workers=2)
    cached = train(scan, tmp_path / "cached", cached_config)
    assert list((tmp_path / "pixels").glob("pixels-*.u8"))
    assert cached.history[0].train_loss == plain.history[0].train_loss
    assert cached.history[0].val_loss == plain.history[0].val_loss
