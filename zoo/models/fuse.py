"""Inference-time model transforms: unwrap ``torch.compile``, fuse re-parameterizable blocks, fold BatchNorm.

* :func:`reparameterize`: THE deploy-time transform for every network: a copy in eval mode
  with each re-parameterizable block (RepVGG, MobileOne: any module with a
  ``reparameterize()`` method) fused into one conv, then the remaining BatchNorms folded.
* :func:`unwrap_model`: the module behind a ``torch.compile`` result.
* :func:`fold_bn`: every BatchNorm that takes a conv's output, and only it, folded into the
  conv with ``torch.nn.utils.fusion.fuse_conv_bn_eval``: the pairs of a ``Sequential`` (zoo's
  ``ConvNormAct``, torchvision's ``Conv2dNormActivation``) and those a ``forward`` calls one
  after the other (MobileNetV4's head conv and its BatchNorm), found with ``torch.fx``.
* :func:`to_primitive_activations`: hard-swish and hard-sigmoid modules swapped for their
  primitive-op forms (Add/Clip/Mul), which an int8 graph runs quantized.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from zoo.layers.activations import get_act_layer

__all__ = ["unwrap_model", "fold_bn", "reparameterize", "to_primitive_activations"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The uncompiled module behind ``torch.compile`` (``_orig_mod``), else the model itself."""
    while hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
        model = model._orig_mod
    return model


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with each conv -> BatchNorm pair folded into the conv.

    A BatchNorm is folded when it has the conv's channel count and either is the child right
    after a conv in the same ``nn.Sequential`` (or subclass: zoo's ``ConvNormAct``, torchvision's
    ``Conv2dNormActivation``), or, in the model's ``torch.fx`` trace, is called on the output of
    a conv that nothing else uses (e.g. MobileNetV4's ``head.conv_hidden`` -> ``head.norm``,
    ResNet's ``conv1`` -> ``bn1``). A model ``torch.fx`` cannot trace gets the ``Sequential``
    pairs only. The conv gets the folded weight and a bias; the BatchNorm becomes ``nn.Identity``
    (so module paths and ``state_dict`` keys of the convs are kept). BatchNorms that do not
    take a conv's output (e.g. the identity branch of RepVGG and MobileOne blocks, which
    :func:`reparameterize` fuses) are left as they are. The result is for inference: eval-mode
    outputs match the original to float rounding.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"fold_bn expects an nn.Module, got {type(model).__name__}")
    return _fold_bn_(copy.deepcopy(unwrap_model(model)).eval())


def _sequential_pairs(model: nn.Module) -> dict[str, str]:
    """conv path -> BatchNorm path for each conv directly followed by a BatchNorm in a ``Sequential``."""
    pairs = {}
    for path, seq in model.named_modules():
        if isinstance(seq, nn.Sequential):
            names = list(seq._modules)
            for conv, bn in zip(names, names[1:]):
                if isinstance(seq._modules[conv], _CONV) and isinstance(seq._modules[bn], _BN):
                    prefix = f"{path}." if path else ""
                    pairs[prefix + conv] = prefix + bn
    return pairs


def _traced_pairs(model: nn.Module) -> dict[str, str]:
    """conv path -> BatchNorm path for each BatchNorm that ``model``'s ``torch.fx`` graph calls on
    the output of a conv used nowhere else, both modules called once; ``{}`` when it does not trace."""
    try:
        graph = torch.fx.Tracer().trace(model)
    except Exception:  # data-dependent control flow, or any other forward torch.fx cannot trace
        return {}
    calls = [node for node in graph.nodes if node.op == "call_module"]
    call_counts = Counter(node.target for node in calls)
    pairs = {}
    for node in calls:
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and call_counts[source.target] == call_counts[node.target] == 1
                and isinstance(model.get_submodule(source.target), _CONV)
                and isinstance(model.get_submodule(node.target), _BN)):
            pairs[source.target] = node.target
    return pairs


def _fold_bn_(folded: nn.Module) -> nn.Module:
    """:func:`fold_bn` in place."""
    pairs = {**_traced_pairs(folded), **_sequential_pairs(folded)}
    for conv_path, bn_path in pairs.items():
        conv, bn = folded.get_submodule(conv_path), folded.get_submodule(bn_path)
        if bn.num_features != conv.out_channels or not bn.track_running_stats or bn.running_mean is None:
            continue
        folded.set_submodule(conv_path, fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, _TRANSPOSED)))
        folded.set_submodule(bn_path, nn.Identity())
    return folded


def reparameterize(model: nn.Module) -> nn.Module:
    """The deployed form of ``model``: a copy in eval mode, for inference.

    Every submodule with a ``reparameterize()`` method (zoo's ``RepVGGBlock`` and
    ``MobileOneBlock``; timm's RepVGG/MobileOne blocks alike) fuses its training-time
    branches into one conv with a bias (Ding et al. 2021, Sec. 3.3), then every BatchNorm
    left after a conv is folded into it (:func:`fold_bn`). The original model is untouched;
    eval-mode outputs match it to float rounding. A model already in deployed form comes back
    unchanged (the fusion is idempotent), and a network without re-parameterizable blocks only
    has its BatchNorm folded, so this is the one deploy-time call for every zoo network.

    The deployed model's state_dict has other keys than the training form's (``reparam_conv``
    instead of the branches): load training weights before calling this, not after.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"reparameterize expects an nn.Module, got {type(model).__name__}")
    deployed = copy.deepcopy(unwrap_model(model)).eval()
    blocks = [m for m in deployed.modules() if callable(getattr(m, "reparameterize", None))]
    for block in blocks:
        block.reparameterize()
    return _fold_bn_(deployed)


_HARD_ACTS = ("hard_swish", "hard_sigmoid")


def to_primitive_activations(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``nn.Hardswish`` / ``nn.Hardsigmoid`` module
    (MobileNetV3, Howard et al. 2019, Sec. 5.2) replaced by its primitive-op form,
    ``HardSwishPrimitive`` / ``HardSigmoidPrimitive`` (what ``export_friendly=True`` builds).

    The forms compute the same function (outputs match to float rounding) and have no parameters,
    so the state_dict is unchanged. Exported to ONNX they are ``Add -> Clip -> Mul (1/6) [-> Mul]``,
    ops that onnxruntime's int8 quantization runs as ``QLinearAdd``/``QLinearMul`` with the Clip
    folded into the quantization range, where ``HardSigmoid``/``HardSwish`` would run in fp32
    between a DequantizeLinear and a QuantizeLinear. Activations called as functions in a
    ``forward`` (``F.hardswish``) are not modules and are left as they are. The original model is
    untouched.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"to_primitive_activations expects an nn.Module, got {type(model).__name__}")
    primitive = {get_act_layer(name): get_act_layer(name, export_friendly=True) for name in _HARD_ACTS}
    converted = copy.deepcopy(unwrap_model(model)).eval()
    for module in list(converted.modules()):
        for name, child in module.named_children():
            for hard, replacement in primitive.items():
                if isinstance(child, hard):
                    setattr(module, name, replacement())
    return converted
