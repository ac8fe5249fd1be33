"""A network as the sequence of layers a latency table is keyed by: stem layers, blocks, final convs, head.

nn-Meter (Zhang et al. 2021) predicts a model's latency as the sum of its kernels' latencies;
MnasNet, FBNet and ProxylessNAS look up one measured latency per block configuration. Here the
unit is what the zoo's builder assembles (:mod:`zoo.models.builder`): each layer of the stem,
each block of the stages, each final conv, and the classifier head (global pool, hidden conv,
fc), each in its deployed form (:func:`zoo.models.fuse.reparameterize`: branches fused,
BatchNorm folded) and with the input shape it sees in the network.

A layer's ``key`` is a hash of its deployed module's structure (:func:`module_signature`: every
module's class, ``extra_repr`` and scalar attributes, recursively; channels, kernels, strides,
groups, dilation, padding, SE, activations, residual flags) and its input shape. Two layers with
the same key run the same computation, so every row field that affects compute is covered
without listing fields, and a layer shared by many networks (a MobileNetV2 block in every width
multiplier that rounds to the same channels) is measured once. Eval-time identities (dropout,
stochastic depth, DropBlock) key as ``Identity``.

Decomposition builds the network on the ``meta`` device (shapes only, no weights), so a table
can be decomposed and predicted in milliseconds, as a search needs; :func:`deployed_network`
with ``device="cpu"`` gives the modules to measure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Union

import torch
from timm.layers import DropBlock2d, DropPath
from torch import nn
from torchvision.ops import StochasticDepth

from zoo.layers.squeeze_excite import SqueezeExcite
from zoo.measure.complexity import module_macs
from zoo.models.arch import ArchSpec, apply_overrides, parse_arch, to_plain
from zoo.models.builder import ZooNet, build_network
from zoo.models.fuse import reparameterize
from zoo.models.registry import model_arch

__all__ = ["Layer", "ModelLike", "decompose", "deployed_network", "layer_modules", "module_signature"]

ModelLike = Union[str, Mapping[str, Any], ArchSpec, nn.Module]

# training-time settings that leave the eval-mode computation unchanged
_EVAL_FORM = dict(drop_rate=0.0, drop_path_rate=0.0, drop_block_rate=0.0, drop_spatial_rate=0.0,
                  zero_init_last=False)
_EVAL_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  StochasticDepth, DropPath, DropBlock2d)
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Layer:
    """One layer of a network: its module path (``stem.0``, ``stages.2.1``, ``final.0``, ``head``),
    table ``key``, a readable description, input shape (C, H, W), output shape (without the batch
    axis) and multiply-adds."""

    name: str
    key: str
    desc: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, ...]
    macs: int


def module_signature(module: nn.Module) -> str:
    """The structure of ``module`` as a string: class, ``extra_repr`` and scalar attributes of it
    and of its children, recursively (weights excluded; eval-time identities as ``Identity``)."""
    if isinstance(module, _EVAL_IDENTITY):
        return "Identity"
    attrs = sorted((k, v) for k, v in vars(module).items()
                   if not k.startswith("_") and k != "training" and (
                       isinstance(v, _SCALARS) or (isinstance(v, tuple) and all(isinstance(i, _SCALARS) for i in v))))
    children = ",".join(f"{name}={module_signature(child)}" for name, child in module.named_children())
    return f"{type(module).__qualname__}({module.extra_repr()};{attrs})[{children}]"


def _arch_spec(model: str | Mapping[str, Any] | ArchSpec) -> ArchSpec:
    if isinstance(model, ArchSpec):
        return model
    if isinstance(model, str):
        return parse_arch(model_arch(model))
    if isinstance(model, Mapping):
        return parse_arch(to_plain(model))
    raise ValueError(f"expected a registered model name, an architecture table (dict or ArchSpec) or a zoo "
                     f"network (ZooNet), got {type(model).__name__}")


def deployed_network(model: ModelLike, num_classes: int = 1000, device: str = "meta") -> ZooNet:
    """The deployed form of ``model``: a registered name, a table (dict or :class:`ArchSpec`), built
    with ``num_classes`` on ``device`` (``meta``: shapes only) in its eval form (no dropout or
    stochastic depth), or a built :class:`~zoo.models.builder.ZooNet` (a deployed copy on the CPU;
    ``num_classes`` is then its own)."""
    if isinstance(model, nn.Module):
        if not isinstance(model, ZooNet):
            raise ValueError(f"expected a zoo classifier (ZooNet, from zoo.create_model), got {type(model).__name__}")
        return reparameterize(model).cpu()
    spec = apply_overrides(_arch_spec(model), **_EVAL_FORM)
    with torch.device(device):
        return reparameterize(build_network(spec, num_classes=num_classes))


def layer_modules(network: ZooNet) -> list[tuple[str, nn.Module]]:
    """The layers of ``network`` in execution order, with their module paths: stem layers, the blocks
    of every stage, final convs, head."""
    layers = [(f"stem.{i}", m) for i, m in enumerate(network.stem)]
    layers += [(f"stages.{i}.{j}", block) for i, stage in enumerate(network.stages) for j, block in enumerate(stage)]
    layers += [(f"final.{i}", m) for i, m in enumerate(network.final)]
    return layers + [("head", network.head)]


def _describe(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    """``Class CxHxW->CxHxW [convs] [+SE]``, e.g. ``InvertedResidual 16x32x32->24x16x16 [1x1, 3x3 dw s2, 1x1]``."""
    convs = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            groups = " dw" if m.groups == m.in_channels > 1 else (f" g{m.groups}" if m.groups > 1 else "")
            stride = f" s{m.stride[0]}" if m.stride[0] > 1 else ""
            dilation = f" d{m.dilation[0]}" if m.dilation[0] > 1 else ""
            convs.append(f"{m.kernel_size[0]}x{m.kernel_size[1]}{groups}{stride}{dilation}")
        elif isinstance(m, nn.Linear):
            convs.append(f"fc {m.in_features}->{m.out_features}")
    shape = "->".join("x".join(str(d) for d in s) for s in (in_shape, out_shape))
    se = " +SE" if any(isinstance(m, SqueezeExcite) for m in module.modules()) else ""
    return f"{type(module).__name__} {shape} [{', '.join(convs)}]{se}"


def _check_res(res: int) -> int:
    if isinstance(res, bool) or not isinstance(res, int) or res < 1:
        raise ValueError(f"res must be a positive integer (the input side in pixels), got {res!r}")
    return res


@torch.no_grad()
def decompose(model: ModelLike, res: int, num_classes: int = 1000) -> list[Layer]:
    """The layers of ``model`` (a registered name, a table, or a built ZooNet) at input side ``res``,
    in execution order, with their table keys, shapes and MACs (which sum to :func:`zoo.measure.count_macs`
    of the deployed network). Tables are built on the meta device."""
    res = _check_res(res)
    network = deployed_network(model, num_classes)
    device = next(network.parameters()).device
    layers = layer_modules(network)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    macs = {name: 0 for name, _ in layers}
    handles = []
    for name, layer in layers:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, name: str = name) -> None:
            shapes[name] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))

        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, name: str = name) -> None:
            macs[name] += module_macs(module, inputs, output)

        handles.append(layer.register_forward_hook(record))
        handles += [m.register_forward_hook(count) for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        network(torch.zeros(1, network.in_chans, res, res, device=device))
    finally:
        for handle in handles:
            handle.remove()
    out = []
    for name, layer in layers:
        in_shape, out_shape = shapes[name]
        signature = f"{module_signature(layer)}@{in_shape}"
        key = hashlib.sha256(signature.encode()).hexdigest()[:16]
        out.append(Layer(name, key, _describe(layer, in_shape, out_shape), in_shape, out_shape, macs[name]))
    return out
