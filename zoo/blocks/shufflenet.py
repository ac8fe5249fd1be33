"""ShuffleNet units: V1 (Zhang et al. 2018, Sec. 3.2, Fig. 2) and V2 (Ma et al. 2018, Sec. 4, Fig. 3)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
import torch.nn.functional as F

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.channel_shuffle import ChannelShuffle
from zoo.layers.conv import ConvNormAct, NormLayer

__all__ = ["ShuffleV1Unit", "ShuffleV2Unit"]


class ShuffleV1Unit(nn.Module):
    """Grouped 1x1 -> channel shuffle -> 3x3 depthwise -> grouped 1x1, plus a shortcut.

    Stride 1 adds the identity (Fig. 2b); stride 2 concatenates a 3x3 average-pooled
    shortcut, so the residual branch produces only ``out_chs - in_chs`` channels (Fig. 2c).
    The bottleneck is ``out_chs / 4`` wide. ``pw_groups`` sets the groups of the first 1x1
    (``conv_pw``; default ``groups``): the paper makes it an ordinary conv (``pw_groups=1``)
    in the first unit of Stage 2, whose input has only 24 channels (Sec. 3.3).
    ``act_layer`` is a name or a class.

    ``dilation`` dilates the depthwise conv. A unit that widens (``in_chs < out_chs``) at stride 1
    is the Fig. 2c unit without its stride, the first unit of a dilated stage (``output_stride``):
    its pool then runs at stride 1, exact only undilated (PyTorch has no dilated average pool),
    so that unit refuses ``dilation > 1``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        *,
        groups: int = 3,
        pw_groups: int | None = None,
        dilation: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit stride must be 1 or 2, got {stride}")
        self.concat = stride == 2 or in_chs != out_chs  # Fig. 2c: average-pooled shortcut, concatenated
        if self.concat and stride == 1 and dilation > 1:
            raise ValueError(
                f"ShuffleV1Unit({in_chs} -> {out_chs}) at stride 1 with dilation {dilation} (the first unit of a stage "
                "dilated twice, e.g. output_stride=8): its 3x3 average-pooled shortcut would need a dilated average "
                "pool, which PyTorch lacks; output_stride=16 dilates only the last stage and works"
            )
        branch_chs = out_chs - in_chs if self.concat else out_chs
        mid_chs = out_chs // 4
        if pw_groups is not None and pw_groups < 1:
            raise ValueError(f"ShuffleV1Unit pw_groups must be >= 1 (or None: groups), got {pw_groups}")
        in_groups = groups if pw_groups is None else pw_groups
        problems = [
            f"{name}={value}" for name, value, div in (
                ("in_chs", in_chs, in_groups), ("out_chs/4", mid_chs, groups), ("branch out_chs", branch_chs, groups)
            ) if value <= 0 or value % div
        ]
        if out_chs % 4 or problems:
            raise ValueError(
                f"ShuffleV1Unit({in_chs} -> {out_chs}, groups={groups}, stride={stride}): channels must split into "
                f"groups: out_chs divisible by 4, out_chs/4 and the residual branch width (out_chs"
                f"{' - in_chs' if self.concat else ''}) divisible by groups; violated: {', '.join(problems) or 'out_chs % 4'}"
            )
        self.stride = stride
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        self.conv_pw = conv(in_chs, mid_chs, 1, groups=in_groups, act_layer=act_layer)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.conv_dw = conv(mid_chs, mid_chs, 3, stride, groups=mid_chs, dilation=dilation, act_layer=None)
        self.conv_pwl = conv(mid_chs, branch_chs, 1, groups=groups, act_layer=None)
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv_dw(self.shuffle(self.conv_pw(x))))
        if self.concat:
            out = torch.cat([F.avg_pool2d(x, 3, self.stride, 1), out], dim=1)
        else:
            out = out + x
        return self.act(out)


class ShuffleV2Unit(nn.Module):
    """Channel split -> (identity | 1x1 -> 3x3 depthwise -> 1x1) -> concat -> shuffle(2).

    Stride 1 (Fig. 3c) splits the input in halves and transforms one; stride 2 (Fig. 3d)
    feeds the whole input to two branches (the left one a 3x3 depthwise + 1x1), doubling
    the channels. Equal branch widths and no grouped convs follow guidelines G1-G4.
    ``dilation`` dilates the depthwise convs; a unit that widens (``in_chs != out_chs``) at
    stride 1 is the Fig. 3d unit without its stride (the first unit of a dilated stage,
    ``output_stride``). ``act_layer`` is a name or a class.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        dilation: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Unit stride must be 1 or 2, got {stride}")
        if out_chs % 2:
            raise ValueError(f"ShuffleV2Unit needs an even out_chs (two equal branches), got {out_chs}")
        self.split = stride == 1 and in_chs == out_chs  # Fig. 3c; else Fig. 3d: both branches see all of x
        branch_chs = out_chs // 2
        branch_in = in_chs // 2 if self.split else in_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        if not self.split:
            self.branch_proj = nn.Sequential(
                conv(in_chs, in_chs, kernel_size, stride, groups=in_chs, dilation=dilation, act_layer=None),  # dw
                conv(in_chs, branch_chs, 1, act_layer=act_layer),  # pw
            )
        else:
            self.branch_proj = nn.Identity()
        self.branch_main = nn.Sequential(
            conv(branch_in, branch_chs, 1, act_layer=act_layer),  # pw
            conv(branch_chs, branch_chs, kernel_size, stride, groups=branch_chs, dilation=dilation, act_layer=None),  # dw
            conv(branch_chs, branch_chs, 1, act_layer=act_layer),  # pw
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x_proj, x_main = x.chunk(2, dim=1)
            out = torch.cat([x_proj, self.branch_main(x_main)], dim=1)
        else:
            out = torch.cat([self.branch_proj(x), self.branch_main(x)], dim=1)
        return self.shuffle(out)
