"""Convolution + normalization + activation building blocks.

The common convolution types: standard, grouped (``groups=g``: 1/g of the cost;
Krizhevsky et al. 2012, ShuffleNet), depthwise (``groups=in_chs``; MobileNet), dilated
(``dilation=d``; Yu & Koltun 2016), spatially separable (k x 1 then 1 x k; Szegedy et al.
2016), transposed and deformable (Dai et al. 2017) convolution. All of them are a conv
followed by BatchNorm and an activation. ``act_layer`` is a name or a class (see
:mod:`zoo.layers.activations`); ``norm_layer`` a class or factory taking the channel count.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.ops import DeformConv2d

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.padding import PAD_MODES, with_same_padding

__all__ = ["NormLayer", "ConvNormAct", "SpatialSeparableConv", "ConvTransposeNormAct", "DeformConvNormAct"]

NormLayer = Callable[[int], nn.Module]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _check_chs(in_chs: int, out_chs: int, groups: int) -> None:
    if in_chs <= 0 or out_chs <= 0:
        raise ValueError(f"channel counts must be positive, got in_chs={in_chs}, out_chs={out_chs}")
    if in_chs % groups or out_chs % groups:
        raise ValueError(
            f"grouped conv needs in_chs and out_chs divisible by groups: in_chs={in_chs}, out_chs={out_chs}, groups={groups}"
        )


def _check_odd_kernel(cls: str, kernel: tuple[int, int]) -> None:
    """Symmetric padding keeps the size only for odd kernels: an even one (a 9x9 map through a 4x4 conv
    at stride 1 becomes 8x8) would break every residual add after it."""
    if any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(
            f"{cls} kernel_size {kernel if kernel[0] != kernel[1] else kernel[0]} is not odd: symmetric padding "
            "keeps the spatial size only for odd kernels (use padding='same' for TensorFlow's asymmetric padding)"
        )


def _add_norm_act(seq: nn.Sequential, chs: int, norm_layer: NormLayer | None, act_layer: ActLayer) -> None:
    """Append ``bn`` and ``act`` children when present: no Identity modules to call in the forward."""
    if norm_layer is not None:
        seq.bn = norm_layer(chs)
    if act_layer is not None:
        seq.act = create_act(act_layer)


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> act`` with "same" padding (torchvision's Conv2dNormActivation idea).

    ``groups=1`` is a standard conv, ``groups=g`` a grouped conv, ``groups=in_chs`` a
    depthwise conv, ``dilation>1`` a dilated (atrous) conv. The conv has a bias only when
    there is no norm layer. Children are ``conv``, then ``bn`` and ``act`` when present (no
    Identity placeholders: each one is a module call at inference time).

    ``padding``: ``"symmetric"`` (PyTorch's ``(k - 1) // 2 * dilation`` on every side; odd kernels
    only, an even one is refused) or ``"same"`` (TensorFlow's, computed from the input size: a
    :class:`~zoo.layers.padding.Conv2dSame` where it differs from the symmetric one, see
    :mod:`zoo.layers.padding`; an even kernel gets the extra pixel at the right / bottom).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        bias: bool | None = None,
        padding: str = "symmetric",
    ) -> None:
        _check_chs(in_chs, out_chs, groups)
        kh, kw = _pair(kernel_size)
        if padding not in PAD_MODES:
            raise ValueError(f"padding must be one of {PAD_MODES}, got {padding!r}")
        if padding == "symmetric":
            _check_odd_kernel(type(self).__name__, (kh, kw))
        pad = ((kh - 1) // 2 * dilation, (kw - 1) // 2 * dilation)
        conv = nn.Conv2d(
            in_chs, out_chs, (kh, kw), stride, pad, dilation=dilation, groups=groups,
            bias=norm_layer is None if bias is None else bias,
        )
        if padding == "same":
            conv = with_same_padding(conv)
        super().__init__()
        self.conv = conv
        _add_norm_act(self, out_chs, norm_layer, act_layer)


class SpatialSeparableConv(nn.Sequential):
    """A k x k conv factored into k x 1 then 1 x k (Szegedy et al. 2016, "Rethinking the
    Inception architecture", Sec. 3.2: asymmetric convolutions).

    Costs 2k instead of k^2 weights per channel pair; the intermediate width is ``out_chs``
    and only the second conv is followed by the activation.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv_kx1 = ConvNormAct(in_chs, out_chs, (kernel_size, 1), (stride, 1), act_layer=None, norm_layer=norm_layer)
        self.conv_1xk = ConvNormAct(
            out_chs, out_chs, (1, kernel_size), (1, stride), act_layer=act_layer, norm_layer=norm_layer
        )


class ConvTransposeNormAct(nn.Sequential):
    """Transposed conv (learned upsampling by ``stride``) -> norm -> act.

    Padding is chosen so that the output side is exactly ``stride`` times the input side
    for even kernels ``2 * stride`` and odd kernels alike.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 4,
        stride: int = 2,
        *,
        groups: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer | None = nn.BatchNorm2d,
    ) -> None:
        _check_chs(in_chs, out_chs, groups)
        if kernel_size < stride:
            raise ValueError(f"transposed conv needs kernel_size >= stride, got kernel_size={kernel_size}, stride={stride}")
        padding = (kernel_size - stride + 1) // 2
        output_padding = (kernel_size - stride) % 2
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_chs, out_chs, kernel_size, stride, padding, output_padding=output_padding, groups=groups,
            bias=norm_layer is None,
        )
        _add_norm_act(self, out_chs, norm_layer, act_layer)


class DeformConvNormAct(nn.Module):
    """Deformable conv v1 (Dai et al. 2017) -> norm -> act, on ``torchvision.ops.DeformConv2d``.

    A plain conv predicts the 2 * k * k sampling offsets per output pixel; it starts at
    zero, so at initialization the layer equals an ordinary conv.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        dilation: int = 1,
        act_layer: ActLayer = "relu",
        norm_layer: NormLayer | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        _check_odd_kernel(type(self).__name__, (kernel_size, kernel_size))
        padding = (kernel_size - 1) // 2 * dilation
        self.offset = nn.Conv2d(in_chs, 2 * kernel_size * kernel_size, kernel_size, stride, padding, dilation=dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(
            in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, bias=norm_layer is None
        )
        self.bn = norm_layer(out_chs) if norm_layer is not None else nn.Identity()
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, self.offset(x))))
