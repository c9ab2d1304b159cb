"""A pre-decoded pixel cache: every image's `Preprocessing.resize()` output in one uint8 memmap.

Decoding PNG/JPEG is what starves an accelerator: a resnet18 step on a GPU takes less time than
decoding its batch on a few CPU cores. The cache is written once per dataset version and image
geometry (key: dataset fingerprint, image size, channels, resample filter) and then read by
every epoch, every run and every DataLoader worker process as a plain memory-mapped file; the
operating system's page cache shares its pages between workers, so no worker decodes or copies
the dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from slipway.contract.preprocessing import Preprocessing
from slipway.data.scan import DatasetScan, Sample
from slipway.errors import DataError
from slipway.training.datasets import ImageDataset
from slipway.training.distributed import DistContext, barrier

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def cache_key(fingerprint: str, prep: Preprocessing) -> str:
    """Short stable name for one dataset version at one geometry."""
    text = f"v{FORMAT_VERSION}|{fingerprint}|{prep.image_size}|{prep.channels}|{prep.resample}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def pixel_shape(prep: Preprocessing) -> tuple[int, ...]:
    """Shape of one cached image: (H, W) for grayscale, (H, W, 3) for RGB, as resize() gives."""
    size = prep.image_size
    return (size, size) if prep.channels == 1 else (size, size, 3)


class PixelCache:
    """Read side of the cache: rows of a read-only memmap, found by sample path.

    Pickles without its memmap, so each DataLoader worker maps the file itself.
    """

    def __init__(self, data_path: Path, meta: dict[str, Any]) -> None:
        self.data_path = data_path
        self.meta = meta
        self.shape = (len(meta["paths"]), *meta["pixel_shape"])
        self._row = {p: i for i, p in enumerate(meta["paths"])}
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The (N, H, W[, C]) uint8 memmap, opened on first use in this process."""
        if self._array is None:
            self._array = np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._array

    def rows(self, samples: list[Sample]) -> np.ndarray:
        """Memmap rows of `samples`, in their order."""
        try:
            return np.asarray([self._row[s.path] for s in samples], dtype=np.int64)
        except KeyError as exc:
            raise DataError(f"pixel cache {self.data_path} has no entry for {exc}") from exc

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"pixels-{key}.u8", cache_dir / f"pixels-{key}.json"


def open_pixel_cache(
    cache_dir: str | os.PathLike[str], scan: DatasetScan, prep: Preprocessing
) -> PixelCache | None:
    """The finished cache for this dataset and geometry, or None when it is not written yet."""
    data_path, meta_path = _paths(Path(cache_dir), cache_key(scan.fingerprint, prep))
    if not meta_path.is_file() or not data_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    expected = len(meta["paths"]) * int(np.prod(meta["pixel_shape"]))
    if data_path.stat().st_size != expected:
        log.warning("ignoring pixel cache %s: size does not match its index", data_path)
        return None
    return PixelCache(data_path, meta)


def build_pixel_cache(
    cache_dir: str | os.PathLike[str],
    scan: DatasetScan,
    prep: Preprocessing,
    workers: int = 0,
    progress: bool = True,
) -> PixelCache:
    """Decode every sample once into the memmap (reusing a finished one), and return it.

    Decoding runs in `workers` DataLoader processes. The file is written under a temporary name
    and renamed, and its index is written last, so a killed build is never mistaken for a
    finished one, and two writers of the same key (two nodes on one shared volume) both
    produce the same bytes.
    """
    existing = open_pixel_cache(cache_dir, scan, prep)
    if existing is not None:
        return existing
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(scan.fingerprint, prep)
    data_path, meta_path = _paths(folder, key)
    suffix = f".{socket.gethostname()}.{os.getpid()}.tmp"
    tmp_data, tmp_meta = Path(f"{data_path}{suffix}"), Path(f"{meta_path}{suffix}")
    shape = (len(scan.samples), *pixel_shape(prep))
    array = np.memmap(tmp_data, dtype=np.uint8, mode="w+", shape=shape)
    source = ImageDataset(scan.root, scan.samples, prep, cache=False)
    loader = torch.utils.data.DataLoader(
        _Decoded(source),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        generator=torch.Generator().manual_seed(0),  # leave the global RNG to training
        prefetch_factor=8 if workers else None,
    )
    bar = tqdm(loader, total=len(source), desc="pixel cache", unit="img", disable=not progress)
    for index, pixels in bar:
        array[index] = pixels
    array.flush()
    del array
    os.replace(tmp_data, data_path)
    meta = {
        "format": FORMAT_VERSION,
        "fingerprint": scan.fingerprint,
        "preprocessing": prep.to_dict(),
        "pixel_shape": list(shape[1:]),
        "paths": [s.path for s in scan.samples],
    }
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)
    log.info("pixel cache written: %s (%.1f MB)", data_path, data_path.stat().st_size / 1e6)
    return PixelCache(data_path, meta)


def _as_is(item: Any) -> Any:
    return item


class _Decoded(torch.utils.data.Dataset):
    """(index, resized uint8 pixels) pairs, decoded in worker processes."""

    def __init__(self, source: ImageDataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray]:
        return index, self.source.pixels(index)


def shared_pixel_cache(
    cache_dir: str | os.PathLike[str],
    scan: DatasetScan,
    prep: Preprocessing,
    ctx: DistContext,
    workers: int = 0,
) -> PixelCache:
    """The cache for a (possibly distributed) run: the first process of each node writes it
    while the others wait, then every process maps it. Works for node-local and shared dirs."""
    error: Exception | None = None
    if ctx.local_rank == 0:
        try:
            build_pixel_cache(cache_dir, scan, prep, workers, progress=ctx.is_main)
        except Exception as exc:  # release the waiting ranks before failing
            error = exc
    barrier(ctx)
    if error is not None:
        raise error
    cache = open_pixel_cache(cache_dir, scan, prep)
    if cache is None:
        raise DataError(f"pixel cache in {cache_dir} is not readable by rank {ctx.rank}")
    return cache
