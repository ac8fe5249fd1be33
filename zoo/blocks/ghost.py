"""Ghost module and Ghost bottleneck (GhostNet, Han et al. 2020, Sec. 3.1-3.2, Fig. 2-3)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["GhostModule", "GhostBottleneck"]


class GhostModule(nn.Module):
    """A primary conv makes ``ceil(out/ratio)`` intrinsic maps; a cheap depthwise conv
    makes the "ghost" maps from them; both are concatenated and cut to ``out_chs``.

    The cut drops the surplus ghost maps before the concatenation, so the output keeps the
    input's memory format (channels_last in, channels_last out); a slice of the concatenation
    would not.

    With ``ratio=2`` the module costs about half of a plain 1x1 conv (Eq. 4).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 1,
        *,
        ratio: int = 2,
        dw_size: int = 3,
        dilation: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"GhostModule ratio must be >= 2, got {ratio}")
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        self.ghost_chs = out_chs - init_chs
        conv = partial(ConvNormAct, act_layer=act_layer, norm_layer=norm_layer)
        self.primary_conv = conv(in_chs, init_chs, kernel_size, stride)
        self.cheap_operation = conv(init_chs, init_chs * (ratio - 1), dw_size, groups=init_chs, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary_conv(x)
        return torch.cat([primary, self.cheap_operation(primary)[:, : self.ghost_chs]], dim=1)


class GhostBottleneck(nn.Module):
    """Ghost module (with act) -> [stride-2 depthwise] -> (SE) -> Ghost module (linear), plus shortcut.

    The shortcut is the identity when stride is 1 and channels match, otherwise a
    depthwise kxk (stride) + 1x1 conv, each followed by BN (the GhostNet release).
    ``mid_chs`` is the expanded width of the first Ghost module (Table 1, "#exp");
    ``act_layer``/``se_gate`` are names or classes.

    Dilation (a dilated backbone, ``output_stride``; timm's byobnet convention): the layers up to
    the stride (first Ghost module, depthwise conv, shortcut) have ``first_dilation`` (default
    ``dilation``), the second Ghost module ``dilation``. A block whose ``first_dilation`` differs
    from ``dilation`` is the first of a dilated stage: it keeps the strided block's layers
    (depthwise conv, projection shortcut) at stride 1.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        mid_chs: int,
        act_layer: ActLayer = "relu",
        se_ratio: float = 0.0,
        se_gate: ActLayer = "hard_sigmoid",
        se_divisor: int = 4,
        dilation: int = 1,
        first_dilation: int | None = None,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneck stride must be 1 or 2, got {stride}")
        first_dilation = dilation if first_dilation is None else first_dilation
        downsample = stride > 1 or first_dilation != dilation  # strided, or the stride became a dilation
        self.has_skip = not downsample and in_chs == out_chs
        linear = partial(ConvNormAct, act_layer=None, norm_layer=norm_layer)
        self.ghost1 = GhostModule(in_chs, mid_chs, dilation=first_dilation, act_layer=act_layer, norm_layer=norm_layer)
        self.conv_dw = (
            linear(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, dilation=first_dilation) if downsample
            else nn.Identity()
        )
        self.se = (
            SqueezeExcite(mid_chs, se_ratio, rd_divisor=se_divisor, gate_layer=se_gate) if se_ratio > 0
            else nn.Identity()
        )
        self.ghost2 = GhostModule(mid_chs, out_chs, dilation=dilation, act_layer=None, norm_layer=norm_layer)
        self.shortcut = (
            nn.Identity() if self.has_skip else nn.Sequential(
                linear(in_chs, in_chs, kernel_size, stride, groups=in_chs, dilation=first_dilation),
                linear(in_chs, out_chs, 1),
            )
        )
        self.drop_path = StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.ghost2(self.se(self.conv_dw(self.ghost1(x)))))
        out += self.shortcut(x)  # in place on the branch output (never on x): one allocation less
        return out
