"""Universal Inverted Bottleneck (UIB) of MobileNetV4 (Qin et al. 2024, Sec. 3.1, Fig. 4)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.helpers import make_divisible
from zoo.layers.layer_scale import LayerScale2d

__all__ = ["UniversalInvertedResidual"]


def _check_kernel(name: str, k: int) -> None:
    if k < 0 or (k and k % 2 == 0):
        raise ValueError(f"UniversalInvertedResidual {name} must be 0 (no depthwise conv) or a positive odd number, got {k}")


class UniversalInvertedResidual(nn.Module):
    """[kxk depthwise] -> 1x1 expand -> [kxk depthwise] -> linear 1x1 project -> [layer scale], identity shortcut.

    The two depthwise convs are optional: ``start_kernel_size`` (before the expansion, on
    ``in_chs``; BN without activation) and ``kernel_size`` (the middle one, on ``mid_chs``;
    BN and activation); 0 leaves one out. The two kernels choose among the four blocks of
    the paper's Fig. 4 (start, middle):

    * ``(0, k)``: Inverted Bottleneck (IB, MobileNetV2), spatial mixing on the expanded features;
    * ``(k, 0)``: ConvNext-like, spatial mixing before the expansion (cheap, on ``in_chs``);
    * ``(k, k')``: ExtraDW, the paper's new variant with both, for a larger receptive field;
    * ``(0, 0)``: FFN, two 1x1 convs (the transformer's feed-forward network).

    The stride goes to the middle depthwise conv when there is one, else to the start one;
    an FFN cannot stride. The shortcut exists only when stride is 1 and ``in_chs ==
    out_chs``; drop-path applies to the residual branch only. ``layer_scale_init`` adds a
    per-channel scale on the branch (1e-5 in the released MobileNetV4 hybrid models). ``mid_chs``
    defaults to ``make_divisible(in_chs * exp_ratio)``; the expansion conv is always there.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        start_kernel_size: int = 0,
        exp_ratio: float = 4.0,
        mid_chs: int | None = None,
        act_layer: ActLayer = "relu",
        dilation: int = 1,
        layer_scale_init: float | None = None,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"UniversalInvertedResidual stride must be 1 or 2, got {stride}")
        _check_kernel("start_kernel_size", start_kernel_size)
        _check_kernel("kernel_size", kernel_size)
        if stride > 1 and not (start_kernel_size or kernel_size):
            raise ValueError("UniversalInvertedResidual with stride 2 needs a depthwise conv to carry it; "
                             "the FFN form (start_kernel_size=0, kernel_size=0) cannot downsample")
        mid_chs = make_divisible(in_chs * exp_ratio) if mid_chs is None else mid_chs
        self.has_skip = stride == 1 and in_chs == out_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        start_stride = 1 if kernel_size else stride
        self.conv_dw_start = (
            conv(in_chs, in_chs, start_kernel_size, start_stride, groups=in_chs, dilation=dilation, act_layer=None)
            if start_kernel_size else nn.Identity()
        )  # extra dw, linear
        self.conv_pw = conv(in_chs, mid_chs, 1, act_layer=act_layer)  # expand
        self.conv_dw = (
            conv(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, dilation=dilation, act_layer=act_layer)
            if kernel_size else nn.Identity()
        )  # middle dw
        self.conv_pwl = conv(mid_chs, out_chs, 1, act_layer=None)  # linear projection
        self.layer_scale = LayerScale2d(out_chs, layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path = StochasticDepth(drop_path_rate, "row") if self.has_skip and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv_dw(self.conv_pw(self.conv_dw_start(x))))
        out = self.layer_scale(out)
        if self.has_skip:
            out = self.drop_path(out)
            out += x  # in place on the branch output (never on x): one allocation less
        return out
