"""Builders that turn plain config dicts into a network and a data module.

These are the only two places that know where models and data come from, so the
training code never imports ``timm`` or a dataset class directly.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import lightning as L
from torch import nn

__all__ = ["build_model", "build_datamodule", "model_config_of"]

#: Keys of ``cfg.model`` that are not ``create_model`` arguments.
_NON_MODEL_KEYS = ("family",)


def _clean_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (``model.drop_rate: null`` = the model's own default) and config-only keys."""
    return {k: v for k, v in kwargs.items() if v is not None and k not in _NON_MODEL_KEYS}


def build_model(name: str, num_classes: int, in_chans: int = 3, **overrides: Any) -> nn.Module:
    """Create a zoo network; ``overrides`` are ``zoo.create_model`` keyword arguments (``None`` = default).

    Raises:
        ValueError: if ``name`` is not a registered model.
    """
    import zoo

    return zoo.create_model(name, num_classes=num_classes, in_chans=in_chans, **_clean_kwargs(overrides))


def model_config_of(model: nn.Module) -> dict[str, Any]:
    """The plain dict such that ``zoo.create_model(**cfg)`` rebuilds ``model``'s architecture."""
    cfg = getattr(model, "model_config", None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no `model_config`; cannot store it in a checkpoint")
    return copy.deepcopy(dict(cfg))


def build_datamodule(**kwargs: Any) -> L.LightningDataModule:
    """Create ``zoo.data.ImageDataModule(**kwargs)`` (the embedded mini set when ``root`` is None)."""
    from zoo.data import ImageDataModule

    return ImageDataModule(**kwargs)
