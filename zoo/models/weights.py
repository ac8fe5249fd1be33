"""Loading weights: zoo state_dicts, files, and torchvision/timm layouts.

A reference implementation of the same architecture registers the same layers in the
same order (stem, blocks in order, each conv before its BatchNorm, head last); only the
names differ. ``convert_state_dict`` therefore pairs the tensors in order and checks
every pair: the parameter kind (weight, bias, running_mean, ...) and the shape must
agree, a fully connected weight may become a 1x1 conv weight (MobileNetV3's head),
and the counts must be equal. Any mismatch is an error that names both tensors; there
is never a silent partial load.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["convert_state_dict", "load_weights", "reference_state_dict"]


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def convert_state_dict(src: Mapping[str, torch.Tensor], model: nn.Module, source: str = "reference") -> OrderedDict:
    """Rename a reference state_dict to ``model``'s keys, pairing tensors in order."""
    dst = model.state_dict()
    src_items, dst_items = list(src.items()), list(dst.items())
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i, (dst_key, dst_t) in enumerate(dst_items):
        if i >= len(src_items):
            raise ValueError(
                f"{source} state_dict has {len(src_items)} tensors but the zoo model has {len(dst_items)}: "
                f"nothing to load into {dst_key!r} {tuple(dst_t.shape)} and the {len(dst_items) - i - 1} after it"
            )
        src_key, src_t = src_items[i]
        shape_ok = src_t.shape == dst_t.shape or (
            src_t.dim() == 2 and dst_t.dim() == 4 and dst_t.shape[2:] == (1, 1) and src_t.shape == dst_t.shape[:2]
        )
        if _kind(src_key) != _kind(dst_key) or not shape_ok:
            raise ValueError(
                f"cannot match {source} tensor {src_key!r} {tuple(src_t.shape)} to zoo tensor {dst_key!r} "
                f"{tuple(dst_t.shape)} (position {i}): the architectures differ here"
            )
        out[dst_key] = src_t.reshape(dst_t.shape)
    if len(src_items) > len(dst_items):
        extra = [k for k, _ in src_items[len(dst_items):]]
        raise ValueError(f"{source} state_dict has {len(extra)} tensors the zoo model lacks, from {extra[0]!r}")
    return out


def reference_state_dict(source: str, model_name: str) -> dict[str, torch.Tensor]:
    """The published ImageNet-1k weights of a torchvision/timm model, via their own download code."""
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(model_name, weights="DEFAULT").state_dict()
    import timm

    return timm.create_model(model_name, pretrained=True).state_dict()


def _read(weights: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(weights, Mapping):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (expected a state_dict saved with torch.save)")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, Mapping) and "state_dict" in data:
        data = data["state_dict"]
    return data


def load_weights(model: nn.Module, weights: Any, weights_from: str = "zoo", reference: str | None = None) -> None:
    """Load ``weights`` (state_dict, path or ``"imagenet"``) in ``weights_from`` layout into ``model``, strictly."""
    if isinstance(weights, str) and weights == "imagenet":
        if reference is None:
            raise ValueError("weights='imagenet' needs a torchvision or timm reference model")
        state = reference_state_dict(weights_from, reference)
    else:
        state = _read(weights)
    if weights_from != "zoo":
        state = convert_state_dict(state, model, weights_from)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
