"""torch Dataset over a scanned ImageFolder, using the shared preprocessing transform."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from slipway.data import Sample
from slipway.preprocessing import Preprocessing
from slipway.storage import open_root


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
