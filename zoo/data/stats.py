"""Channel mean/std of a training set (``data.mean=auto data.std=auto``), computed once and cached.

The statistics are taken over every pixel of the decoded training images as the uint8 cache
holds them (:func:`zoo.data.cache.decode_square`: shorter side resized to the cache side, long
side center-cropped), in [0, 1] units, with the population standard deviation. They are read
from the uint8 cache when it exists, else the images are decoded once. A 256-bin histogram per
channel is summed in integers, so the result does not depend on the order or the batching.

The result is a small JSON file beside the uint8 cache, named with the cache's key
(:func:`zoo.data.cache.cache_key`): changed images, classes, cache side or interpolation never
read stale statistics. It is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from .cache import _DecodeDataset, _collate_list
from .folder import Sample

__all__ = ["channel_stats", "cached_batches", "decoded_batches", "training_set_stats"]

STATS_VERSION = 1


def channel_stats(batches: Iterable[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` in [0, 1] units of uint8 ``N x C x H x W`` batches (population std)."""
    hist: np.ndarray | None = None
    for batch in batches:
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4:
            raise ValueError(f"expected uint8 batches N x C x H x W, got {batch.dtype} with shape {batch.shape}")
        counts = np.stack([np.bincount(batch[:, c].ravel(), minlength=256) for c in range(batch.shape[1])])
        hist = counts if hist is None else hist + counts
    if hist is None or hist.sum() == 0:
        raise ValueError("no pixels to compute a mean and std from: the training split has no decodable image")
    levels = np.arange(256, dtype=np.float64)
    n = hist.sum(axis=1).astype(np.float64)
    mean = (hist * levels).sum(axis=1) / n
    var = (hist * (levels - mean[:, None]) ** 2).sum(axis=1) / n
    return tuple(float(m) for m in mean / 255), tuple(float(s) for s in np.sqrt(var) / 255)


def cached_batches(cache_file: str | Path, batch_size: int = 64) -> Iterator[np.ndarray]:
    """The valid images of a uint8 cache (:func:`zoo.data.cache.build_uint8_cache`), in batches."""
    cache_file = Path(cache_file)
    valid = np.flatnonzero(json.loads(cache_file.with_suffix(".json").read_text())["valid"])
    array = np.load(cache_file, mmap_mode="r")
    for start in range(0, len(valid), batch_size):
        yield np.asarray(array[valid[start:start + batch_size]])


def decoded_batches(samples: Sequence[Sample], short_side: int, interpolation: str = "bilinear",
                    num_workers: int = 0, batch_size: int = 64) -> Iterator[np.ndarray]:
    """The images of ``samples`` decoded as the uint8 cache would hold them, in batches (undecodable ones left out)."""
    loader = DataLoader(_DecodeDataset([p for p, _ in samples], short_side, interpolation), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate_list)
    for batch in loader:
        images = [img.numpy() for _, img in batch if img is not None]
        if images:
            yield np.stack(images)


def training_set_stats(stats_file: str | Path, batches: Iterable[np.ndarray], num_images: int,
                       progress: bool = True) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` read from ``stats_file``, or computed from ``batches`` (:func:`channel_stats`)
    and written there first. ``batches`` is consumed only when the file is absent."""
    stats_file = Path(stats_file)
    if stats_file.is_file():
        saved = json.loads(stats_file.read_text())
        return tuple(saved["mean"]), tuple(saved["std"])
    if progress:
        print(f"zoo.data: computing the channel mean/std of {num_images} training images -> {stats_file.name}",
              file=sys.stderr, flush=True)
    mean, std = channel_stats(batches)
    stats_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = stats_file.with_name(f"{stats_file.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps({"version": STATS_VERSION, "num_images": num_images, "mean": mean, "std": std}))
        os.replace(tmp, stats_file)
    finally:
        tmp.unlink(missing_ok=True)
    return mean, std
