"""Data for zoo: ``ImageDataModule`` (ImageFolder trees, embedded Imagenette-mini, uint8 cache), samplers,
transforms, and ``Preprocessing`` (a model's eval preprocessing, from its ``pretrained_cfg``)."""

from .datamodule import IMAGENETTE_URL, MINI_ROOT, ImageDataModule, read_class_list
from .preprocess import Preprocessing
from .samplers import UnpaddedDistributedSampler
from .transforms import eval_transform, normalize_transform, normalize_uint8, train_transform

__all__ = [
    "IMAGENETTE_URL",
    "MINI_ROOT",
    "ImageDataModule",
    "Preprocessing",
    "UnpaddedDistributedSampler",
    "eval_transform",
    "normalize_transform",
    "normalize_uint8",
    "read_class_list",
    "train_transform",
]
