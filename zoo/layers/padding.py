"""TensorFlow "SAME" padding: computed from the input size at run time.

TensorFlow's ``padding="SAME"`` gives an output of ``ceil(in / stride)`` and pads
``max((ceil(in / stride) - 1) * stride + (k - 1) * dilation + 1 - in, 0)`` pixels in total,
the odd one at the right / bottom. With stride 1 and an odd kernel this is the usual
symmetric ``k // 2``; with stride 2 it depends on the input: a 3x3 stride-2 conv pads
(0, 1) on an even side and (1, 1) on an odd one. Networks trained in TensorFlow
(EfficientNet, MnasNet, MobileNetV3's TF release) need it to reproduce their outputs;
PyTorch's symmetric padding shifts every strided layer's sampling grid by one pixel.

The padding is computed with size arithmetic only (no data-dependent branches), so the
layers script, FX-trace and export to ONNX with dynamic height and width. The output
size equals that of symmetric ``k // 2`` padding, so shapes never change with the mode.

* :func:`same_pad_amounts`: (before, after) padding of one side.
* :class:`Conv2dSame`, :class:`MaxPool2dSame`: ``nn.Conv2d`` / ``nn.MaxPool2d`` with SAME
  padding (same parameters and ``state_dict`` keys as the plain layers).
* :func:`with_same_padding`: one layer with SAME padding; :func:`use_padding`: every
  layer of a network whose SAME padding depends on the input, switched in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PAD_MODES", "same_pad_amounts", "needs_dynamic_pad", "Conv2dSame", "MaxPool2dSame", "with_same_padding",
    "use_padding",
]

PAD_MODES = ("symmetric", "same")


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def same_pad_amounts(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one side of length ``size`` under TF "SAME" padding.

    The total is ``(k - 1) * d + 1 - r`` with ``r = (size - 1) % stride + 1`` (the
    remainder, ``stride`` when ``size`` divides): the same number as TF's
    ``(ceil(size / s) - 1) * s + (k - 1) * d + 1 - size``, written without ceil or max so
    that a traced ``size`` stays symbolic. Valid when the effective kernel is at least the
    stride (see :func:`needs_dynamic_pad`).
    """
    total = (kernel - 1) * dilation + 1 - ((size - 1) % stride + 1)
    return total // 2, total - total // 2


def needs_dynamic_pad(kernel: int, stride: int, dilation: int = 1) -> bool:
    """Whether SAME padding differs from a fixed symmetric one: stride > 1 (the total
    depends on the input) or an even effective kernel (the split is uneven).

    Raises ``ValueError`` for a strided layer whose effective kernel is below its stride,
    where the padding would need a clamp at zero (no zoo table has one)."""
    eff = (kernel - 1) * dilation + 1
    if stride > 1 and eff < stride:
        if eff == 1:
            return False  # 1x1 strided (ResNet downsampling): SAME pads nothing, like symmetric
        raise ValueError(f"SAME padding of a kernel {kernel} (dilation {dilation}) smaller than its stride {stride} "
                         "is not supported")
    return stride > 1 or (eff - 1) % 2 == 1


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
              value: float = 0.0) -> torch.Tensor:
    top, bottom = same_pad_amounts(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_pad_amounts(x.shape[-1], kernel[1], stride[1], dilation[1])
    return F.pad(x, [left, right, top, bottom], value=value)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TF "SAME" padding computed from each input (module ``padding`` is 0).

    Parameters and ``state_dict`` keys are those of ``nn.Conv2d``; BatchNorm folding
    (``zoo.models.fuse.fold_bn``) keeps the class.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
        *, dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation=dilation, groups=groups, bias=bias)
        for k, s, d in zip(self.kernel_size, self.stride, self.dilation):
            needs_dynamic_pad(k, s, d)  # raises for unsupported kernel/stride pairs

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "Conv2dSame":
        """The same conv (sharing its parameters) with SAME padding."""
        if conv.padding_mode != "zeros":
            raise ValueError(f"cannot switch a conv with padding_mode={conv.padding_mode!r} to SAME padding")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, dilation=conv.dilation,
                  groups=conv.groups, bias=conv.bias is not None)
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size, self.stride, self.dilation)
        return self._conv_forward(x, self.weight, self.bias)


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TF "SAME" padding: padded with -inf, so the padding never wins."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None, *,
                 dilation: int | tuple[int, int] = 1) -> None:
        super().__init__(kernel_size, stride, 0, dilation)
        self._k, self._s, self._d = _pair(self.kernel_size), _pair(self.stride), _pair(self.dilation)
        for k, s, d in zip(self._k, self._s, self._d):
            needs_dynamic_pad(k, s, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self._k, self._s, self._d, value=float("-inf"))
        return F.max_pool2d(x, self._k, self._s, 0, self._d)


def _dynamic(kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> bool:
    return any(needs_dynamic_pad(k, s, d) for k, s, d in zip(kernel, stride, dilation))


def with_same_padding(layer: nn.Module) -> nn.Module:
    """``layer`` with TF "SAME" padding: a :class:`Conv2dSame` / :class:`MaxPool2dSame`
    (sharing the parameters) for a plain ``nn.Conv2d`` / ``nn.MaxPool2d`` whose SAME padding
    depends on the input, else ``layer`` itself (SAME is then its symmetric padding).

    A layer padded otherwise than symmetrically (``padding != (k - 1) // 2 * dilation``),
    or a ceil-mode max-pool, is an error: SAME padding replaces the symmetric one only.
    """
    if type(layer) is nn.Conv2d:
        k, s, d = layer.kernel_size, layer.stride, layer.dilation
    elif type(layer) is nn.MaxPool2d:
        k, s, d = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.dilation)
        if layer.ceil_mode:
            raise ValueError("cannot switch a ceil-mode max-pool to SAME padding")
    else:
        return layer
    if not _dynamic(k, s, d):
        return layer
    if isinstance(layer.padding, str) or _pair(layer.padding) != tuple((ki - 1) // 2 * di for ki, di in zip(k, d)):
        raise ValueError(f"{layer}: padding {layer.padding!r} is not the symmetric (k - 1) // 2 * dilation; "
                         "SAME padding replaces that one only")
    return Conv2dSame.from_conv(layer) if isinstance(layer, nn.Conv2d) else MaxPool2dSame(k, s, dilation=d)


def use_padding(model: nn.Module, mode: str) -> nn.Module:
    """Give ``model`` (in place) the padding ``mode`` and return it: ``"symmetric"`` leaves it
    as built (PyTorch's ``(k - 1) // 2 * dilation``); ``"same"`` replaces every layer whose TF
    "SAME" padding depends on the input (see :func:`with_same_padding`)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {mode!r}")
    if mode == "symmetric":
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = with_same_padding(child)
            if new is not child:
                setattr(parent, name, new)
    return model
