"""Depthwise-separable convolution block (MobileNetV1, Howard et al. 2017, Sec. 3.1, Fig. 3)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["DepthwiseSeparable"]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv -> BN -> act -> (SE) -> 1x1 pointwise conv -> BN -> act.

    Costs ``1/out_chs + 1/k^2`` of a standard conv (Sec. 3.1, Eq. 5; e.g. a 3x3 conv from 3
    to 4 channels has 108 weights, its separable form 27 + 12 = 39). ``pw_act=False`` gives
    the linear pointwise variant; a residual is added only with ``skip=True`` when stride
    is 1 and channels match. ``dilation`` dilates the depthwise conv (a dilated backbone,
    ``output_stride``). ``act_layer``/``se_gate`` are names or classes.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        act_layer: ActLayer = "relu",
        pw_act: bool = True,
        se_ratio: float = 0.0,
        se_gate: ActLayer = "sigmoid",
        se_chs: int | None = None,
        skip: bool = False,
        dilation: int = 1,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.has_skip = skip and stride == 1 and in_chs == out_chs
        self.conv_dw = ConvNormAct(
            in_chs, in_chs, kernel_size, stride, groups=in_chs, dilation=dilation, act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.se = SqueezeExcite(in_chs, se_ratio, gate_layer=se_gate, rd_chs=se_chs) if se_ratio > 0 else nn.Identity()
        self.conv_pw = ConvNormAct(in_chs, out_chs, 1, act_layer=act_layer if pw_act else None, norm_layer=norm_layer)
        self.drop_path = StochasticDepth(drop_path_rate, "row") if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pw(self.se(self.conv_dw(x)))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out
