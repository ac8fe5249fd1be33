"""ResNet residual blocks (He et al. 2016, Sec. 3-4, Table 1; v1.5 stride on the 3x3 conv),
with optional SE (Hu et al. 2018) and the ResNet-D average-pool shortcut (He et al. 2019, Sec. 4.1)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["BasicBlock", "Bottleneck", "make_shortcut"]


def make_shortcut(in_chs: int, out_chs: int, stride: int, avg_down: bool, norm_layer: NormLayer) -> nn.Module:
    """Identity, a strided 1x1 conv + BN, or (ResNet-D) 2x2 average pool then a 1x1 conv + BN."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    if avg_down:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, ConvNormAct(in_chs, out_chs, 1, act_layer=None, norm_layer=norm_layer))
    return ConvNormAct(in_chs, out_chs, 1, stride, act_layer=None, norm_layer=norm_layer)


def _check_stride(block: object, stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"{type(block).__name__} stride must be 1 or 2, got {stride}")


class _ResidualBlock(nn.Module):
    """Shared shortcut, SE and forward of the two ResNet blocks: ``act(se(convs(x)) + shortcut(x))``."""

    def __init__(
        self, convs: nn.Sequential, in_chs: int, out_chs: int, stride: int, se_ratio: float, avg_down: bool,
        act_layer: ActLayer, drop_path_rate: float, norm_layer: NormLayer, export_friendly: bool,
    ) -> None:
        super().__init__()
        self.convs = convs
        self.se = SqueezeExcite(out_chs, se_ratio, export_friendly=export_friendly) if se_ratio > 0 else nn.Identity()
        self.shortcut = make_shortcut(in_chs, out_chs, stride, avg_down, norm_layer)
        self.drop_path = StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()
        self.act = create_act(act_layer, export_friendly=export_friendly)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.se(self.convs(x)))
        out += self.shortcut(x)  # in place on the branch output (never on x): one allocation less
        return self.act(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (ResNet-18/34, Table 1); the second BN's gamma is the "last" one."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        se_ratio: float = 0.0,
        avg_down: bool = False,
        act_layer: ActLayer = "relu",
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        export_friendly: bool = False,
    ) -> None:
        _check_stride(self, stride)
        kw = dict(norm_layer=norm_layer, export_friendly=export_friendly)
        convs = nn.Sequential(
            ConvNormAct(in_chs, out_chs, 3, stride, act_layer=act_layer, **kw),
            ConvNormAct(out_chs, out_chs, 3, act_layer=None, **kw),
        )
        super().__init__(
            convs, in_chs, out_chs, stride, se_ratio, avg_down, act_layer, drop_path_rate, norm_layer, export_friendly
        )


class Bottleneck(_ResidualBlock):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand to ``out_chs`` (4x the 3x3 width; ResNet-50, Table 1)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        se_ratio: float = 0.0,
        avg_down: bool = False,
        act_layer: ActLayer = "relu",
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        export_friendly: bool = False,
    ) -> None:
        _check_stride(self, stride)
        if out_chs % 4:
            raise ValueError(f"Bottleneck out_chs must be divisible by 4 (expansion 4), got {out_chs}")
        mid_chs = out_chs // 4
        kw = dict(norm_layer=norm_layer, export_friendly=export_friendly)
        convs = nn.Sequential(
            ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer, **kw),
            ConvNormAct(mid_chs, mid_chs, 3, stride, act_layer=act_layer, **kw),
            ConvNormAct(mid_chs, out_chs, 1, act_layer=None, **kw),
        )
        super().__init__(
            convs, in_chs, out_chs, stride, se_ratio, avg_down, act_layer, drop_path_rate, norm_layer, export_friendly
        )
