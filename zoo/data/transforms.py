"""Train/eval transforms built from ``torchvision.transforms.v2``.

Every pipeline accepts a PIL image or a ``uint8`` CHW tensor and returns a ``uint8``
CHW tensor; float conversion + normalisation is a separate step
(:func:`normalize_transform`, or on the batch in ``ImageDataModule.on_after_batch_transfer``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "basic", "randaugment", "trivialaugment")


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """``"bilinear"`` -> ``InterpolationMode.BILINEAR`` (also ``nearest``, ``bicubic``)."""
    allowed = ("nearest", "bilinear", "bicubic")
    if name not in allowed:
        raise ValueError(f"interpolation must be one of {allowed}, got {name!r}")
    return v2.InterpolationMode(name)


def eval_resize_size(res: int, crop_pct: float) -> int:
    """Shorter side to resize to before a ``res`` center crop (``floor(res / crop_pct)``, timm's rule)."""
    return int(math.floor(res / crop_pct))


def eval_transform(res: int, crop_pct: float = 0.875, interpolation: str = "bilinear") -> v2.Compose:
    """Resize the shorter side to ``res / crop_pct``, center-crop ``res``, output uint8 CHW."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(eval_resize_size(res, crop_pct), interpolation=interpolation_mode(interpolation), antialias=True),
        v2.CenterCrop(res),
    ])


def train_transform(
    res: int,
    aug: str = "basic",
    *,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Training pipeline at resolution ``res``, output uint8 CHW.

    ``aug``: ``none`` = the eval resize + center crop; ``basic`` = RandomResizedCrop
    (``scale``, ratio 3/4..4/3) + horizontal flip (prob ``hflip``); ``randaugment`` =
    basic + ``v2.RandAugment(num_ops=2, magnitude=9)`` (the ``rand-m9-n2`` policy);
    ``trivialaugment`` = basic + ``v2.TrivialAugmentWide``. PIL input is cropped as PIL
    (cheaper) and converted at the end; tensor input stays uint8 throughout.
    """
    if aug not in AUGMENTATIONS:
        raise ValueError(f"aug must be one of {AUGMENTATIONS}, got {aug!r}")
    interp = interpolation_mode(interpolation)
    if aug == "none":
        return eval_transform(res, crop_pct, interpolation)
    ops: list[v2.Transform] = [v2.RandomResizedCrop(res, scale=tuple(scale), interpolation=interp, antialias=True)]
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    if aug == "randaugment":
        ops.append(v2.RandAugment(num_ops=2, magnitude=9, interpolation=interp))
    elif aug == "trivialaugment":
        ops.append(v2.TrivialAugmentWide(interpolation=interp))
    ops.append(v2.PILToTensor())
    return v2.Compose(ops)


def normalize_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 CHW (or NCHW) -> float32 in [0, 1] -> ``(x - mean) / std``."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
