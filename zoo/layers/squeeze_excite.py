"""Squeeze-and-Excitation (Hu et al. 2018, Sec. 3; MobileNetV3 Sec. 5.3)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.helpers import make_divisible

__all__ = ["SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool -> 1x1 reduce -> act -> 1x1 expand -> gate.

    ``rd_ratio`` sets the bottleneck width (0.25 in MobileNetV3/GhostNet on the expanded
    channels, 1/16 in SE-ResNet on the block output), rounded by ``make_divisible`` to
    ``rd_divisor``. The gate is ``sigmoid`` (SENet) or ``hard_sigmoid`` (MobileNetV3);
    ``act_layer`` and ``gate_layer`` are names or classes (an export-friendly network
    passes ``HardSigmoidPrimitive``). ``rd_chs`` gives the bottleneck width explicitly instead
    (a pruned network's table, see :mod:`zoo.compress.prune`).
    """

    def __init__(
        self,
        chs: int,
        rd_ratio: float = 0.25,
        *,
        rd_divisor: int = 8,
        act_layer: ActLayer = "relu",
        gate_layer: ActLayer = "sigmoid",
        rd_chs: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < rd_ratio <= 1.0:
            raise ValueError(f"SqueezeExcite rd_ratio must be in (0, 1], got {rd_ratio}")
        rd_chs = make_divisible(chs * rd_ratio, rd_divisor) if rd_chs is None else rd_chs
        self.conv_reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act = create_act(act_layer)
        self.conv_expand = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = create_act(gate_layer, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = self.conv_expand(self.act(self.conv_reduce(scale)))
        return x * self.gate(scale)
