"""torch Dataset over a scanned ImageFolder, using the shared preprocessing transform."""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from slipway.contract.preprocessing import Preprocessing
from slipway.data.scan import Sample
from slipway.data.storage import open_root


class PixelSource(Protocol):
    """Pre-decoded uint8 pixels, one row per image (`slipway.training.cache.PixelCache`)."""

    shape: tuple[int, ...]

    @property
    def array(self) -> np.ndarray: ...

    def rows(self, samples: list[Sample]) -> np.ndarray: ...


class ImageDataset(torch.utils.data.Dataset):
    """Decodes each image once and keeps the resized uint8 pixels in memory.

    Later epochs then skip PNG/JPEG decoding. The cache lives in the process that reads the
    item, so use `persistent_workers=True` when loading with worker processes.
    """

    def __init__(
        self,
        root: str,
        samples: list[Sample],
        preprocessing: Preprocessing,
        cache: bool = True,
    ) -> None:
        self.root = root
        self.samples = samples
        self.preprocessing = preprocessing
        self.cache = cache
        self._pixels: dict[int, np.ndarray] = {}
        self._fs: Any = None
        self._fs_root = ""

    def __len__(self) -> int:
        return len(self.samples)

    def pixels(self, index: int) -> np.ndarray:
        """The resized uint8 pixels of one sample."""
        cached = self._pixels.get(index)
        if cached is not None:
            return cached
        if self._fs is None:
            self._fs, self._fs_root = open_root(self.root)
        payload = self._fs.cat_file(f"{self._fs_root}/{self.samples[index].path}")
        with Image.open(io.BytesIO(payload)) as image:
            array = np.asarray(self.preprocessing.resize(image))
        if self.cache:
            self._pixels[index] = array
        return array

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        array = self.preprocessing.normalize(self.pixels(index))
        return torch.from_numpy(array), self.samples[index].label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        return state


class PixelBatches(torch.utils.data.Dataset):
    """Whole batches of resized uint8 pixels per fetch, indexed by a list of positions.

    One fetch per batch (not per image) keeps Python overhead per image tiny, and the pixels
    stay uint8 until they reach the device, where `normalize_batch` does the float math: a
    quarter of the bytes to copy and pin, and no per-image work in worker processes. Pixels
    come from a `PixelSource` (the memmap cache) when one is given, else from `images`
    (decoded and kept in memory per process).
    """

    def __init__(
        self, samples: list[Sample], images: ImageDataset, cache: PixelSource | None = None
    ) -> None:
        self.images = images
        self.cache = cache
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
        self.rows = cache.rows(samples) if cache is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixels uint8 (B, H, W[, C]), labels, positions) of the batch `indices`."""
        positions = np.asarray(indices, dtype=np.int64)
        if self.cache is not None and self.rows is not None:
            rows = self.rows[positions]
            order = np.argsort(rows, kind="stable")  # read the file front to back
            pixels = np.empty((len(rows), *self.cache.shape[1:]), dtype=np.uint8)
            pixels[order] = self.cache.array[rows[order]]
        else:
            pixels = np.stack([self.images.pixels(int(i)) for i in positions])
        return torch.from_numpy(pixels), self.labels[positions], torch.from_numpy(positions)


def normalize_batch(
    pixels: torch.Tensor, preprocessing: Preprocessing, channels_last: bool = False
) -> torch.Tensor:
    """`Preprocessing.normalize` for a uint8 batch (B, H, W[, C]) on any device.

    The same float32 operations in the same order (scale by 1/255, subtract mean, divide by
    std), so the model sees bit-for-bit what serving feeds it; a test holds the two equal.
    """
    array = pixels.to(torch.float32) / 255.0
    array = array.unsqueeze(1) if array.ndim == 3 else array.permute(0, 3, 1, 2)
    shape = (1, preprocessing.channels, 1, 1)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=pixels.device)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=pixels.device)
    out = (array - mean.view(shape)) / std.view(shape)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


def batch_loader(
    dataset: PixelBatches,
    batch_size: int,
    sampler: torch.utils.data.Sampler[int] | list[int],
    workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> torch.utils.data.DataLoader:
    """A DataLoader that hands each worker whole batches of positions from `sampler`.

    Persistent workers keep their memmap (or in-memory pixels) across epochs, and
    `prefetch_factor` batches per worker are decoded ahead of the accelerator. The loader seeds
    its workers from its own generator, never from the global RNG that dropout draws from, so
    the number of workers does not change the trained model.
    """
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=False)
    return torch.utils.data.DataLoader(
        dataset,
        sampler=batches,
        batch_size=None,
        generator=torch.Generator().manual_seed(0),
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
    )
