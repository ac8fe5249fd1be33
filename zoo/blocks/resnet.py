"""ResNet residual blocks (He et al. 2016, Sec. 3-4, Table 1; v1.5 stride on the 3x3 conv),
with optional SE (Hu et al. 2018) and the ResNet-D average-pool shortcut (He et al. 2019, Sec. 4.1)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["BasicBlock", "Bottleneck", "make_shortcut"]


def make_shortcut(
    in_chs: int, out_chs: int, stride: int, avg_down: bool, norm_layer: NormLayer, dilation: int = 1,
) -> nn.Module:
    """Identity, a strided 1x1 conv + BN, or (ResNet-D) 2x2 average pool then a 1x1 conv + BN.

    In a dilated stage (``dilation > 1``, stride 1) the ResNet-D pool keeps its 2x2 window at
    stride 1, zero-padded at the right and bottom: timm's ``downsample_avg`` (``AvgPool2dSame(2, 1)``),
    here as fixed-size layers that script, trace and export."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    if avg_down:
        if stride > 1:
            pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        elif dilation > 1:
            pool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, 1))
        else:
            pool = nn.Identity()
        return nn.Sequential(pool, ConvNormAct(in_chs, out_chs, 1, act_layer=None, norm_layer=norm_layer))
    return ConvNormAct(in_chs, out_chs, 1, stride, act_layer=None, norm_layer=norm_layer)


class _ResidualBlock(nn.Module):
    """Shared constructor, shortcut, SE and forward of the two ResNet blocks:
    ``act(se(convs(x)) + shortcut(x))``; a subclass says only how its ``convs`` are built.
    ``act_layer`` is a name or a class; the SE gate is a sigmoid (Hu et al. 2018).

    Dilation (a dilated backbone, ``output_stride``; timm's ResNet convention): the 3x3 conv that
    carries the block's stride has ``first_dilation`` (default ``dilation``), a 3x3 conv after
    it ``dilation``."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        *,
        se_ratio: float = 0.0,
        se_chs: int | None = None,
        mid_chs: int | None = None,
        avg_down: bool = False,
        act_layer: ActLayer = "relu",
        dilation: int = 1,
        first_dilation: int | None = None,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"{type(self).__name__} stride must be 1 or 2, got {stride}")
        first_dilation = dilation if first_dilation is None else first_dilation
        self.convs = self.make_convs(in_chs, out_chs, stride, act_layer, norm_layer, dilation, first_dilation, mid_chs)
        self.se = SqueezeExcite(out_chs, se_ratio, rd_chs=se_chs) if se_ratio > 0 else nn.Identity()
        self.shortcut = make_shortcut(in_chs, out_chs, stride, avg_down, norm_layer, dilation)
        self.drop_path = StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()
        self.act = create_act(act_layer)

    @staticmethod
    def make_convs(
        in_chs: int, out_chs: int, stride: int, act_layer: ActLayer, norm_layer: NormLayer, dilation: int,
        first_dilation: int, mid_chs: int | None = None,
    ) -> nn.Sequential:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.se(self.convs(x)))
        out += self.shortcut(x)  # in place on the branch output (never on x): one allocation less
        return self.act(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (ResNet-18/34, Table 1); the second BN's gamma is the "last" one."""

    @staticmethod
    def make_convs(
        in_chs: int, out_chs: int, stride: int, act_layer: ActLayer, norm_layer: NormLayer, dilation: int,
        first_dilation: int, mid_chs: int | None = None,
    ) -> nn.Sequential:
        mid_chs = out_chs if mid_chs is None else mid_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        return nn.Sequential(
            conv(in_chs, mid_chs, 3, stride, dilation=first_dilation, act_layer=act_layer),
            conv(mid_chs, out_chs, 3, dilation=dilation, act_layer=None),
        )


class Bottleneck(_ResidualBlock):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand to ``out_chs`` (4x the 3x3 width; ResNet-50, Table 1)."""

    @staticmethod
    def make_convs(
        in_chs: int, out_chs: int, stride: int, act_layer: ActLayer, norm_layer: NormLayer, dilation: int,
        first_dilation: int, mid_chs: int | None = None,
    ) -> nn.Sequential:
        if mid_chs is None:
            if out_chs % 4:
                raise ValueError(f"Bottleneck out_chs must be divisible by 4 (expansion 4), got {out_chs}")
            mid_chs = out_chs // 4
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        return nn.Sequential(
            conv(in_chs, mid_chs, 1, act_layer=act_layer),
            conv(mid_chs, mid_chs, 3, stride, dilation=first_dilation, act_layer=act_layer),
            conv(mid_chs, out_chs, 1, act_layer=None),
        )
