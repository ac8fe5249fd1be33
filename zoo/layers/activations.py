"""One activation factory, by name.

The activations the design notes list for deployment (ReLU, ReLU6, leaky ReLU, sigmoid,
swish and their hardware-friendly hard versions, Mish, PReLU, ELU, SELU), all taken from
``torch.nn``. ``hard_swish``/``hard_sigmoid`` also come in an *export-friendly* form built
from primitive ops (add, clamp, mul, div) for runtimes and ONNX opsets without the fused
HardSwish op (opset < 14); both forms have no parameters, so weights load unchanged.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import nn

__all__ = ["HardSigmoidPrimitive", "HardSwishPrimitive", "ActLayer", "get_act_layer", "create_act", "act_names"]


class HardSigmoidPrimitive(nn.Module):
    """``relu6(x + 3) / 6`` from primitive ops (MobileNetV3, Sec. 5.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


class HardSwishPrimitive(nn.Module):
    """``x * relu6(x + 3) / 6`` from primitive ops (MobileNetV3, Sec. 5.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.clamp(x + 3.0, 0.0, 6.0) / 6.0)


_ACTS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "hard_sigmoid": nn.Hardsigmoid,
    "hard_swish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}
_EXPORT_FRIENDLY: dict[str, Callable[..., nn.Module]] = {
    "hard_sigmoid": HardSigmoidPrimitive,
    "hard_swish": HardSwishPrimitive,
}
_INPLACE = {"relu", "relu6", "leaky_relu", "hard_sigmoid", "hard_swish", "swish", "silu", "mish", "elu", "selu"}

ActLayer = Union[str, Callable[..., nn.Module], None]


def act_names() -> list[str]:
    """Names accepted by :func:`get_act_layer`."""
    return sorted(_ACTS)


def get_act_layer(name: ActLayer, export_friendly: bool = False) -> Callable[..., nn.Module]:
    """Activation class for ``name`` (a name, a class, or None for identity)."""
    if name is None:
        return nn.Identity
    if not isinstance(name, str):
        return name
    key = name.lower().replace("-", "_")
    if key not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(act_names())}")
    if export_friendly and key in _EXPORT_FRIENDLY:
        return _EXPORT_FRIENDLY[key]
    return _ACTS[key]


def create_act(name: ActLayer, inplace: bool = True, export_friendly: bool = False) -> nn.Module:
    """Instantiate an activation by name; in-place where the op supports it."""
    layer = get_act_layer(name, export_friendly)
    if inplace and isinstance(name, str) and name.lower().replace("-", "_") in _INPLACE and layer in _ACTS.values():
        return layer(inplace=True)
    return layer()
