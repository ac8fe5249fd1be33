"""Scanning ImageFolder trees and a decode-error-tolerant image dataset."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import make_dataset

logger = logging.getLogger("zoo.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
# File signatures of the formats above (first bytes of the file).
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF", b"P5", b"P6", b"II*\x00", b"MM\x00*")

Sample = tuple[str, int]


class _ImageFileCheck:
    """``is_valid_file`` for ``make_dataset``: extension + file signature; remembers what it rejected.

    Also records ``(size, mtime_ns)`` of every accepted file, used to key the uint8 cache.
    """

    def __init__(self) -> None:
        self.rejected: list[str] = []
        self.stats: dict[str, tuple[int, int]] = {}

    def __call__(self, path: str) -> bool:
        ok = path.lower().endswith(IMAGE_EXTENSIONS)
        if ok:
            try:
                st = os.stat(path)
                with open(path, "rb") as f:
                    head = f.read(12)
            except OSError:
                ok = False
            else:
                ok = head.startswith(_MAGIC) and (not head.startswith(b"RIFF") or head[8:12] == b"WEBP")
                if ok:
                    self.stats[path] = (st.st_size, st.st_mtime_ns)
        if not ok:
            self.rejected.append(path)
        return ok


def find_class_folders(split_dir: str | Path) -> list[str]:
    """Sorted names of the class sub-folders of ``split_dir`` (hidden folders ignored)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"no split folder at {split_dir}: expected an ImageFolder tree <root>/<split>/<class>/<image files>"
        )
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def scan_split(split_dir: str | Path, classes: Sequence[str]) -> tuple[list[Sample], dict[str, tuple[int, int]]]:
    """List ``(path, class_index)`` for the images of ``classes`` under ``split_dir``.

    Files without an image extension or signature are skipped and counted, and the
    count is logged once (logger ``zoo.data``).

    Returns:
        The samples, sorted by class then path, and ``{path: (size, mtime_ns)}``.

    Raises:
        FileNotFoundError: ``split_dir`` or one of ``classes`` is missing, or holds no image.
    """
    split_dir = Path(split_dir)
    present = set(find_class_folders(split_dir))
    missing = [c for c in classes if c not in present]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} class folder(s) missing under {split_dir}: {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} (expected <split>/<class>/<image files>)"
        )
    check = _ImageFileCheck()
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(str(split_dir), class_to_idx, extensions=None, is_valid_file=check, allow_empty=True)
    if check.rejected:
        logger.warning(
            "skipped %d non-image file(s) under %s (unknown extension or bad file signature), e.g. %s",
            len(check.rejected), split_dir, check.rejected[0],
        )
    counts = torch.bincount(torch.tensor([t for _, t in samples], dtype=torch.long), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts.tolist()) if n == 0]
    if empty:
        raise FileNotFoundError(
            f"no image files found for {len(empty)} class(es) under {split_dir}: {empty[:5]}"
            f" (expected <split>/<class>/*.JPEG or another of {IMAGE_EXTENSIONS})"
        )
    return samples, check.stats


def load_rgb(path: str) -> Image.Image:
    """Open ``path`` and fully decode it as an RGB PIL image (raises on truncated files)."""
    with Image.open(path) as img:
        return img.convert("RGB")


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageListDataset(Dataset):
    """``(image, target)`` pairs from a list of ``(path, target)``, decoded with PIL.

    An image that fails to decode (truncated, corrupt) is replaced by the next
    decodable sample in the list; each bad file is logged once per process and
    counted in ``num_bad``.

    Args:
        samples: ``(path, class_index)`` pairs.
        transform: applied to the PIL image.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Any], Any] | None = None) -> None:
        if len(samples) == 0:
            raise ValueError("ImageListDataset needs at least one sample")
        self.samples = list(samples)
        self.targets = [t for _, t in self.samples]
        self.transform = transform
        self.bad_paths: set[str] = set()

    @property
    def num_bad(self) -> int:
        """How many undecodable files this process has met so far."""
        return len(self.bad_paths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for offset in range(len(self.samples)):
            path, target = self.samples[(index + offset) % len(self.samples)]
            if path in self.bad_paths:
                continue
            try:
                img = load_rgb(path)
            except _DECODE_ERRORS as err:
                self.bad_paths.add(path)
                logger.warning("skipping undecodable image %s (%s); %d bad file(s) so far", path, err, self.num_bad)
                continue
            return (self.transform(img) if self.transform is not None else img), target
        raise RuntimeError(f"none of the {len(self.samples)} images could be decoded")
