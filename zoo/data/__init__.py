"""Data for zoo: ``ImageDataModule`` (ImageFolder trees, embedded Imagenette-mini, uint8 cache), samplers,
transforms."""

from .datamodule import IMAGENETTE_URL, MINI_ROOT, ImageDataModule, read_class_list
from .samplers import UnpaddedDistributedSampler
from .transforms import eval_transform, normalize_transform, train_transform

__all__ = [
    "IMAGENETTE_URL",
    "MINI_ROOT",
    "ImageDataModule",
    "UnpaddedDistributedSampler",
    "eval_transform",
    "normalize_transform",
    "read_class_list",
    "train_transform",
]
