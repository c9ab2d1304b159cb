"""Write a real demo dataset (Fashion-MNIST) as an ImageFolder, offline.

Fashion-MNIST comes from the Debian package `dataset-fashion-mnist` or from a folder given by
the user. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from slipway.errors import DataError

log = logging.getLogger(__name__)

DEBIAN_SOURCE = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
_PARTS = {"train": "train", "t10k": "test"}
_MARKER = ".slipway-demo.json"


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: only unsigned byte IDX files are supported")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated IDX file")
    return array.reshape(shape)


def _find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise DataError(f"{source} has no {stem}[.gz]")


def find_source(source: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files, or a clear error saying how to get it."""
    candidates = [Path(source)] if source else [DEBIAN_SOURCE]
    for candidate in candidates:
        if (candidate / "train-images-idx3-ubyte.gz").is_file() or (
            candidate / "train-images-idx3-ubyte"
        ).is_file():
            return candidate
    where = str(candidates[0])
    raise DataError(
        f"Fashion-MNIST IDX files not found in {where}. Install them with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass --source DIR "
        "pointing at a folder with train-images-idx3-ubyte.gz and the other three IDX files "
        "from https://github.com/zalandoresearch/fashion-mnist."
    )


def write_demo_dataset(
    out: str | os.PathLike[str],
    per_class: int = 1000,
    seed: int = 0,
    source: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Write `per_class` images per class as PNG files under OUT/<class>/.

    The choice of images depends only on the seed and per_class, so the same call always writes
    the same files; a second call with the same arguments finds the marker and does nothing.
    Returns the number of images per class.
    """
    if per_class < 1:
        raise DataError("per_class must be at least 1")
    src = find_source(source)
    out_dir = Path(out)
    params = {"source": "fashion-mnist", "per_class": per_class, "seed": seed}
    marker = out_dir / _MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        log.info("demo dataset already present in %s", out_dir)
        return {c: per_class for c in FASHION_MNIST_CLASSES}
    if out_dir.exists() and any(out_dir.iterdir()) and not marker.is_file():
        raise DataError(f"{out_dir} exists and is not a slipway demo dataset; choose another --out")
    pool: list[tuple[str, np.ndarray, np.ndarray]] = []
    for prefix, part in _PARTS.items():
        images = read_idx(_find(src, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(src, f"{prefix}-labels-idx1-ubyte"))
        pool.append((part, images, labels))
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, int, int]] = []
    for label in range(len(FASHION_MNIST_CLASSES)):
        candidates = [
            (part, int(i)) for part, _, labels in pool for i in np.flatnonzero(labels == label)
        ]
        if per_class > len(candidates):
            raise DataError(f"per_class={per_class} exceeds the {len(candidates)} images per class")
        for idx in sorted(rng.choice(len(candidates), size=per_class, replace=False)):
            chosen.append((*candidates[idx], label))
    if out_dir.exists():
        for old in out_dir.glob("*/*.png"):
            old.unlink()
    arrays = {part: images for part, images, _ in pool}
    for part, index, label in tqdm(chosen, desc="demo data", unit="img", disable=not progress):
        folder = out_dir / FASHION_MNIST_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arrays[part][index]).save(folder / f"{part}-{index:05d}.png")
    marker.write_text(json.dumps(params))
    return {c: per_class for c in FASHION_MNIST_CLASSES}
