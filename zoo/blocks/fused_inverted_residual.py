"""Fused inverted residual, or "edge residual": the expansion 1x1 and the depthwise kxk of
an inverted residual replaced by one full kxk conv (Gupta & Tan 2019, "EfficientNet-EdgeTPU";
Fused-MBConv in EfficientNetV2, Tan & Le 2021, Sec. 3.2, Fig. 2; the FusedIB rows of
MobileNetV4's architecture tables, Qin et al. 2024)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.helpers import make_divisible

__all__ = ["FusedInvertedResidual"]


class FusedInvertedResidual(nn.Module):
    """kxk conv expand (strided) -> linear 1x1 project, identity shortcut.

    Full convs use accelerators (EdgeTPU, GPUs) better than depthwise ones in the early,
    high-resolution stages, at more MACs. The shortcut exists only when stride is 1 and
    ``in_chs == out_chs``; drop-path applies to the residual branch only. ``mid_chs``
    defaults to ``make_divisible(in_chs * exp_ratio)``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        exp_ratio: float = 4.0,
        mid_chs: int | None = None,
        act_layer: ActLayer = "relu",
        dilation: int = 1,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FusedInvertedResidual stride must be 1 or 2, got {stride}")
        mid_chs = make_divisible(in_chs * exp_ratio) if mid_chs is None else mid_chs
        self.has_skip = stride == 1 and in_chs == out_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        self.conv_exp = conv(in_chs, mid_chs, kernel_size, stride, dilation=dilation, act_layer=act_layer)  # fused expand
        self.conv_pwl = conv(mid_chs, out_chs, 1, act_layer=None)  # linear projection
        self.drop_path = StochasticDepth(drop_path_rate, "row") if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv_exp(x))
        if self.has_skip:
            out = self.drop_path(out)
            out += x  # in place on the branch output (never on x): one allocation less
        return out
