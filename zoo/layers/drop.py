"""Structured dropout on feature maps: DropBlock (Ghiasi et al. 2018) and spatial dropout.

DropBlock drops contiguous ``block_size x block_size`` regions of a feature map (shared by
all channels) instead of independent units, which convolutions would otherwise fill in
from their neighbours (Sec. 3). The layer is timm's ``DropBlock2d``; this module decides
where it goes and schedules its rate:

* Where: after the BatchNorm of a block's first spatial (k x k, k > 1) conv, before its
  activation, in the blocks of the network's last two downsampling levels (stride 16 and
  32). The paper applies DropBlock to groups 3 and 4 of ResNet-50 after the convolutions
  (Sec. 4.1); timm's ResNet puts it after the BatchNorm of each block's 3x3 conv in its last
  two stages. For MobileNet-style blocks the first spatial conv is the depthwise one.
* Block size: 5 at stride 16, 3 at stride 32 (timm's ResNet sizes; 14 x 14 and 7 x 7 maps
  at 224 pixels). timm clips the block to a smaller map.
* Schedule: the paper's "scheduled DropBlock" (Sec. 3): the drop rate grows linearly from
  0 to its final value over training. :func:`drop_block_layers` lists a network's layers
  with their final rates, :func:`set_drop_block_progress` sets the rates for a fraction of
  training done (the Lightning module calls it before every training step).

Spatial dropout (``nn.Dropout2d``, Tompson et al. 2015: whole channels dropped) can go at
the same places, with a fixed rate. Both are identities in eval mode, so exported and
benchmarked networks are unchanged.
"""

from __future__ import annotations

from typing import Iterable

from timm.layers import DropBlock2d
from torch import nn

__all__ = ["DropBlock2d", "add_feature_dropout", "insert_after_norm", "drop_block_layers", "set_drop_block_progress"]


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")


def insert_after_norm(layer: nn.Sequential, name: str, module: nn.Module) -> None:
    """Put ``module`` as child ``name`` of a conv-norm-act ``layer``, between its norm (or conv)
    and its activation: module paths and ``state_dict`` keys of the others are unchanged."""
    if name in layer._modules:
        raise ValueError(f"{type(layer).__name__} already has a child named {name!r}")
    act = layer._modules.pop("act", None)
    layer.add_module(name, module)
    if act is not None:
        layer.add_module("act", act)


def _first_spatial_conv(block: nn.Module) -> nn.Sequential | None:
    """The first conv-norm-act (an ``nn.Sequential`` with a ``conv`` child) of ``block``
    whose kernel is larger than 1x1, in module order."""
    for m in block.modules():
        conv = getattr(m, "conv", None) if isinstance(m, nn.Sequential) else None
        if isinstance(conv, nn.Conv2d) and max(conv.kernel_size) > 1:
            return m
    return None


def add_feature_dropout(
    blocks: Iterable[nn.Module], *, drop_block_rate: float = 0.0, drop_spatial_rate: float = 0.0, block_size: int = 7,
) -> int:
    """After the norm of the first spatial conv of each of ``blocks``: a ``DropBlock2d``
    (child ``drop_block``) and/or an ``nn.Dropout2d`` (child ``drop_spatial``) when their
    rate is > 0. Blocks without a spatial conv are left alone. Returns the number of blocks changed."""
    _check_rate("drop_block_rate", drop_block_rate)
    _check_rate("drop_spatial_rate", drop_spatial_rate)
    if block_size < 1:
        raise ValueError(f"DropBlock block_size must be >= 1, got {block_size}")
    changed = 0
    for block in blocks:
        layer = _first_spatial_conv(block) if drop_block_rate or drop_spatial_rate else None
        if layer is None:
            continue
        if drop_block_rate:
            insert_after_norm(layer, "drop_block", DropBlock2d(drop_prob=drop_block_rate, block_size=block_size))
        if drop_spatial_rate:
            insert_after_norm(layer, "drop_spatial", nn.Dropout2d(drop_spatial_rate))
        changed += 1
    return changed


def drop_block_layers(model: nn.Module) -> list[tuple[DropBlock2d, float]]:
    """The ``DropBlock2d`` layers of ``model`` with their current rates (as built: the final
    rates of the schedule). Call before training changes them."""
    return [(m, float(m.drop_prob)) for m in model.modules() if isinstance(m, DropBlock2d)]


def set_drop_block_progress(layers: Iterable[tuple[DropBlock2d, float]], step: int, total_steps: int) -> float:
    """Scheduled DropBlock (Ghiasi et al. 2018, Sec. 3): set each layer's rate to its final
    rate times ``min(step / total_steps, 1)``, a linear ramp from 0 at the first step to the
    final rate at the end of training. Returns that factor."""
    factor = min(max(step, 0) / max(total_steps, 1), 1.0)
    for layer, final_rate in layers:
        layer.drop_prob = final_rate * factor
    return factor
