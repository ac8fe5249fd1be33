"""Inverted residual with linear bottleneck (MobileNetV2, Sandler et al. 2018, Sec. 3.3, Table 1;
with SE and h-swish as in MobileNetV3, Howard et al. 2019, Sec. 5, Fig. 4)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.helpers import make_divisible
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["InvertedResidual"]


class InvertedResidual(nn.Module):
    """1x1 expand -> kxk depthwise -> (SE) -> linear 1x1 project, identity shortcut.

    The expansion is skipped when ``mid_chs == in_chs`` (MobileNetV2's t = 1 rows). The
    projection has no activation (the "linear bottleneck", Sec. 3.2). The shortcut exists
    only when stride is 1 and ``in_chs == out_chs``; drop-path applies to the residual
    branch only. ``mid_chs`` defaults to ``make_divisible(in_chs * exp_ratio)``.
    ``act_layer``/``se_gate`` are names or classes.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        exp_ratio: float = 6.0,
        mid_chs: int | None = None,
        act_layer: ActLayer = "relu6",
        se_ratio: float = 0.0,
        se_gate: ActLayer = "hard_sigmoid",
        se_divisor: int = 8,
        se_chs: int | None = None,
        dilation: int = 1,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        mid_chs = make_divisible(in_chs * exp_ratio) if mid_chs is None else mid_chs
        self.has_skip = stride == 1 and in_chs == out_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        self.conv_pw = conv(in_chs, mid_chs, 1, act_layer=act_layer) if mid_chs != in_chs else nn.Identity()  # expand
        self.conv_dw = conv(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, dilation=dilation, act_layer=act_layer)
        self.se = (
            SqueezeExcite(mid_chs, se_ratio, rd_divisor=se_divisor, gate_layer=se_gate, rd_chs=se_chs) if se_ratio > 0
            else nn.Identity()
        )
        self.conv_pwl = conv(mid_chs, out_chs, 1, act_layer=None)  # linear projection
        self.drop_path = StochasticDepth(drop_path_rate, "row") if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        if self.has_skip:
            out = self.drop_path(out)
            out += x  # in place on the branch output (never on x): one allocation less
        return out
