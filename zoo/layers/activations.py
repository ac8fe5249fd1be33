"""One activation factory, by name.

The activations of the lightweight-CNN literature (ReLU, ReLU6 from MobileNetV2; leaky
ReLU; sigmoid; swish/SiLU, Ramachandran et al. 2017; its hard versions h-swish and
h-sigmoid, MobileNetV3, Howard et al. 2019, Sec. 5.2; Mish, Misra 2019; PReLU; ELU; SELU;
GELU), all taken from ``torch.nn``. ``hard_swish``/``hard_sigmoid`` also come in an
*export-friendly* form built from primitive ops (add, clamp, mul) for runtimes and ONNX
opsets without the fused HardSwish op (opset < 14), and for int8: onnxruntime has int8
kernels for Add and Mul and folds Clip into the quantization range, but none for
HardSigmoid, HardSwish or Div. Both forms have no parameters, so weights load unchanged.

A network resolves its activations once, with :func:`get_act_layer` (which is where the
export-friendly choice is made), and passes classes down; layers and blocks accept a name
or a class and instantiate it with :func:`create_act`.
"""

from __future__ import annotations

import inspect
from typing import Callable, Union

import torch
from torch import nn

__all__ = ["HardSigmoidPrimitive", "HardSwishPrimitive", "ActLayer", "get_act_layer", "create_act", "act_names"]


class HardSigmoidPrimitive(nn.Module):
    """``relu6(x + 3) / 6`` from primitive ops (MobileNetV3, Sec. 5.2), the division written as a
    product with ``1/6`` so that an int8 graph runs it as a quantized Mul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


class HardSwishPrimitive(nn.Module):
    """``x * relu6(x + 3) / 6`` from primitive ops (MobileNetV3, Sec. 5.2): ``x`` times
    :class:`HardSigmoidPrimitive`'s gate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.clamp(x + 3.0, 0.0, 6.0) * (1.0 / 6.0))


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
_INPLACE_LAYERS = frozenset(_ACTS[k] for k in _INPLACE)

ActLayer = Union[str, Callable[..., nn.Module], None]


def act_names() -> list[str]:
    """Names accepted by :func:`get_act_layer`."""
    return sorted(_ACTS)


def get_act_layer(name: ActLayer, export_friendly: bool = False) -> Callable[..., nn.Module]:
    """Activation class for ``name`` (a name, a class, or None for identity).

    ``export_friendly=True`` maps ``hard_swish``/``hard_sigmoid`` to their primitive-op
    forms; a class is returned as it is.
    """
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


def _accepts_inplace(layer: Callable[..., nn.Module]) -> bool:
    if layer in _INPLACE_LAYERS:
        return True
    try:
        return "inplace" in inspect.signature(layer).parameters
    except (TypeError, ValueError):  # no introspectable signature: call it without arguments
        return False


def create_act(act_layer: ActLayer, inplace: bool = True) -> nn.Module:
    """Instantiate an activation from a name or a class (None: identity).

    In place (``inplace=True``) when the class takes an ``inplace`` argument (ReLU, ReLU6,
    hard swish, SiLU, ...); a class without one (sigmoid, GELU, PReLU, the export-friendly
    primitives) is called without arguments.
    """
    layer = get_act_layer(act_layer)
    return layer(inplace=True) if inplace and _accepts_inplace(layer) else layer()
