"""``Preprocessing``: a model's eval preprocessing as one object, in timm's ``pretrained_cfg`` names.

torchvision ties weights to their transforms (``Weights.transforms()``). Here every model carries
``model.pretrained_cfg`` (``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``;
:func:`zoo.models.checkpoint.load_checkpoint` restores it from the checkpoint), and everything that
feeds a model images (``eval.py``, ``predict.py``, ``python -m zoo.deploy``) builds its input from it::

    pre = Preprocessing.from_pretrained_cfg(model)
    x = pre.transform()(pil_image)                   # normalised float32 C x res x res
    dm = ImageDataModule(**pre.datamodule_kwargs())  # the same tensor: uint8 loader + normalize_batch
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchvision.transforms import v2

from .transforms import eval_transform, interpolation_mode, normalize_transform

__all__ = ["DATAMODULE_NAMES", "Preprocessing"]

#: ``ImageDataModule`` argument -> :class:`Preprocessing` attribute.
DATAMODULE_NAMES = {"val_res": "res", "val_crop_pct": "crop_pct", "interpolation": "interpolation",
                    "mean": "mean", "std": "std"}


@dataclass(frozen=True)
class Preprocessing:
    """Eval preprocessing: resize the shorter side to ``floor(res / crop_pct)``, center-crop
    ``res x res``, then ``(x / 255 - mean) / std``.

    Attributes are timm's ``pretrained_cfg`` keys; ``input_size`` is ``(channels, res, res)``.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD

    def __post_init__(self) -> None:
        # lists from YAML or a checkpoint become tuples, so equal settings compare equal
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 3 or self.input_size[1] != self.input_size[2] or self.input_size[1] < 8:
            raise ValueError(f"input_size must be (channels, res, res) with res >= 8, got {self.input_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        interpolation_mode(self.interpolation)  # validates
        if len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0:
            raise ValueError(f"mean and std need one value per channel (std > 0), got {self.mean}, {self.std}")

    @classmethod
    def from_pretrained_cfg(cls, source: Mapping[str, Any] | nn.Module, res: int | None = None) -> Preprocessing:
        """From a model's ``pretrained_cfg`` (pass the model or the dict); absent or None keys take
        the defaults, other keys are ignored. ``res`` replaces the resolution."""
        cfg = source if isinstance(source, Mapping) else getattr(source, "pretrained_cfg", None) or {}
        pre = cls(**{f.name: cfg[f.name] for f in fields(cls) if cfg.get(f.name) is not None})
        return pre if res is None else pre.with_res(res)

    @property
    def res(self) -> int:
        """Side of the square crop the model sees."""
        return self.input_size[-1]

    def with_res(self, res: int) -> Preprocessing:
        """The same preprocessing at another resolution."""
        return replace(self, input_size=(self.input_size[0], int(res), int(res)))

    def datamodule_kwargs(self) -> dict[str, Any]:
        """The same settings as ``ImageDataModule`` arguments (``val_res``, ``val_crop_pct``, ...)."""
        return {key: getattr(self, name) for key, name in DATAMODULE_NAMES.items()}

    def resize_crop(self) -> v2.Compose:
        """PIL image or uint8 CHW -> uint8 ``C x res x res`` (the loader half; normalise after)."""
        return eval_transform(self.res, self.crop_pct, self.interpolation)

    def transform(self) -> v2.Compose:
        """PIL image or uint8 CHW -> normalised float32 ``C x res x res``: :meth:`resize_crop`, then
        :func:`~zoo.data.transforms.normalize_transform` (the arithmetic of ``ImageDataModule.normalize_batch``)."""
        return v2.Compose([self.resize_crop(), normalize_transform(self.mean, self.std)])
