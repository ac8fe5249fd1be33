"""Train/eval transforms built from ``torchvision.transforms.v2``.

Every pipeline accepts a PIL image or a ``uint8`` CHW tensor and returns a ``uint8``
CHW tensor; float conversion + normalisation is a separate step
(:func:`normalize_transform`, or on the batch in ``ImageDataModule.on_after_batch_transfer``).
A model's eval pipeline as one object: :class:`zoo.data.preprocess.Preprocessing`.
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


def normalize_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 CHW or NCHW -> float32 ``(x - 255 mean) / (255 std)``; ``mean``/``std`` in [0, 1] units.

    Computed as ``ImageDataModule.normalize_batch`` does it (subtract, then multiply by the
    reciprocal), so a normalised loader and a normalised batch hold the same bits.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 image tensor, got {x.dtype}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1) * 255
    inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1) * 255)
    return (x.float() - m) * inv_std


class NormalizeUint8(torch.nn.Module):
    """:func:`normalize_uint8` as a transform step."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_uint8(x, self.mean, self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def normalize_transform(mean: Sequence[float], std: Sequence[float]) -> NormalizeUint8:
    """uint8 CHW (or NCHW) -> normalised float32 (:func:`normalize_uint8`)."""
    return NormalizeUint8(mean, std)
