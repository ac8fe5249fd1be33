"""Decode-once uint8 image cache on disk, read through a memory map.

Layout: each image is decoded once, its shorter side resized to ``short_side``
and its longer side center-cropped, giving a ``3 x S x S`` uint8 square (the usual
Imagenette/ImageNet framing; the outer parts of the long side are lost). All the
squares of one split go into one ``.npy`` array ``(N, 3, S, S)`` next to a JSON
index (targets, a valid-mask for undecodable files, the key's inputs).

The file name is a hash of (format version, resolved root, split, classes,
short side, interpolation, and every file's relative path, size and mtime), so
a changed config or changed data never reads a stale cache. Both files are
written under temporary names and renamed when complete; the index is renamed
last and is what marks a cache as usable, so an interrupted build is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from .folder import _DECODE_ERRORS, Sample
from .transforms import interpolation_mode

logger = logging.getLogger("zoo.data")

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$ZOO_CACHE_DIR`` if set, else ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo")


def check_cache_dir(cache_dir: str | Path, data_root: str | Path) -> Path:
    """Resolve ``cache_dir``; raise ``ValueError`` if it lies inside ``data_root`` (data stays read-only)."""
    cache = Path(cache_dir).expanduser().resolve()
    root = Path(data_root).expanduser().resolve()
    if cache == root or root in cache.parents:
        raise ValueError(
            f"cache_dir {cache} is inside the data root {root}; the data root is treated as read-only. "
            "Pass a cache_dir outside it (default: $ZOO_CACHE_DIR or ~/.cache/zoo)."
        )
    return cache


def cache_key(
    root: str | Path,
    split: str,
    classes: Sequence[str],
    short_side: int,
    interpolation: str,
    samples: Sequence[Sample],
    stats: dict[str, tuple[int, int]],
) -> str:
    """Hex digest naming the cache of one split (see the module docstring)."""
    root = Path(root).resolve()
    h = hashlib.sha256()
    head = {"v": CACHE_VERSION, "root": str(root), "split": split, "classes": list(classes),
            "short_side": short_side, "interpolation": interpolation}
    h.update(json.dumps(head, sort_keys=True).encode())
    for path, target in samples:
        size, mtime = stats.get(path, (-1, -1))
        h.update(f"\n{os.path.relpath(path, root)}\t{target}\t{size}\t{mtime}".encode())
    return h.hexdigest()[:24]


def decode_square(path: str, short_side: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Decode ``path`` to a ``3 x S x S`` uint8 tensor (shorter side resized to S, center-cropped).

    JPEGs are decoded at a reduced DCT scale when that still leaves the shorter side >= S.
    """
    with Image.open(path) as img:
        img.draft("RGB", (short_side, short_side))
        img = img.convert("RGB")
    img = F.resize(img, short_side, interpolation=interpolation_mode(interpolation), antialias=True)
    return F.pil_to_tensor(F.center_crop(img, short_side))


class _DecodeDataset(Dataset):
    def __init__(self, paths: Sequence[str], short_side: int, interpolation: str) -> None:
        self.paths, self.short_side, self.interpolation = list(paths), short_side, interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None]:
        try:
            return index, decode_square(self.paths[index], self.short_side, self.interpolation)
        except _DECODE_ERRORS:
            return index, None


def _collate_list(batch: list[Any]) -> list[Any]:
    return batch


def build_uint8_cache(
    cache_file: Path,
    samples: Sequence[Sample],
    short_side: int,
    interpolation: str = "bilinear",
    *,
    num_workers: int = 0,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> None:
    """Decode ``samples`` once into ``cache_file`` (``.npy``) + ``cache_file.with_suffix('.json')``.

    Writes under temporary names, then renames (data first, index last). Undecodable
    files get ``valid = false`` in the index; their count is logged once.
    """
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    index_file = cache_file.with_suffix(".json")
    tmp_data = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.partial")
    tmp_index = index_file.with_name(f"{index_file.name}.{os.getpid()}.partial")
    n, s = len(samples), short_side
    array = np.lib.format.open_memmap(tmp_data, mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
    valid = np.zeros(n, dtype=bool)
    loader = DataLoader(
        _DecodeDataset([p for p, _ in samples], s, interpolation),
        batch_size=64, num_workers=num_workers, collate_fn=_collate_list,
    )
    start, done, next_report = time.perf_counter(), 0, 0.0
    try:
        for batch in loader:
            for i, img in batch:
                if img is not None:
                    array[i] = img.numpy()
                    valid[i] = True
            done += len(batch)
            if progress and (done / n >= next_report or done == n):
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"zoo.data: caching {done}/{n} images at {s} px -> {cache_file.name} ({rate:.0f} img/s)",
                      file=sys.stderr, flush=True)
                next_report += 0.1
        array.flush()
        del array
        bad = [p for (p, _), ok in zip(samples, valid) if not ok]
        if bad:
            logger.warning("skipped %d undecodable image(s) while building the uint8 cache, e.g. %s", len(bad), bad[0])
        index = dict(meta or {}, version=CACHE_VERSION, short_side=s, num_samples=n,
                     targets=[t for _, t in samples], valid=valid.tolist(), num_bad=len(bad))
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_data, cache_file)
        os.replace(tmp_index, index_file)
    finally:
        for tmp in (tmp_data, tmp_index):
            tmp.unlink(missing_ok=True)


class Uint8CacheDataset(Dataset):
    """``(uint8 3xHxW tensor, target)`` from a cache written by :func:`build_uint8_cache`.

    The memory map is opened lazily in each process and never pickled, so
    DataLoader workers (fork or spawn) share the page cache instead of copying.
    Entries marked invalid (undecodable files) are left out.
    """

    def __init__(self, cache_file: str | Path, transform: Callable[[torch.Tensor], Any] | None = None) -> None:
        self.cache_file = Path(cache_file)
        index = json.loads(self.cache_file.with_suffix(".json").read_text())
        valid = index["valid"]
        self.indices = [i for i, ok in enumerate(valid) if ok]
        self.targets = [index["targets"][i] for i in self.indices]
        self.short_side = index["short_side"]
        self.num_bad = index["num_bad"]
        self.transform = transform
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self._array is None:
            self._array = np.load(self.cache_file, mmap_mode="r")
        img = torch.from_numpy(np.array(self._array[self.indices[index]]))
        return (self.transform(img) if self.transform is not None else img), self.targets[index]
