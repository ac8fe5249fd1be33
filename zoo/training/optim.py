"""Optimizer, weight-decay groups, learning-rate scaling and per-step schedules."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["LR_SCALINGS", "scale_lr", "param_groups", "build_optimizer", "lr_lambda", "build_scheduler"]

LR_SCALINGS = ("linear", "sqrt", "none")
OPTIMIZERS = ("sgd", "adamw", "rmsproptf", "rmsprop", "adam")
SCHEDULES = ("cosine", "step", "constant")


def scale_lr(base_lr: float, global_batch: int, base_batch_size: int = 256, lr_scaling: str = "linear") -> float:
    """Learning rate for ``global_batch`` when the recipe states ``base_lr`` at ``base_batch_size``.

    ``linear``: base_lr * global/base (Goyal et al., 2017); ``sqrt``: base_lr * sqrt(global/base); ``none``: base_lr.
    """
    if lr_scaling not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
    if global_batch < 1 or base_batch_size < 1:
        raise ValueError(f"batch sizes must be positive, got global={global_batch}, base={base_batch_size}")
    ratio = global_batch / base_batch_size
    if lr_scaling == "linear":
        return base_lr * ratio
    if lr_scaling == "sqrt":
        return base_lr * math.sqrt(ratio)
    return base_lr


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _decay_category(model: nn.Module, wd_norm_bias: bool, wd_depthwise: float | None) -> dict[int, str]:
    """``id(parameter)`` -> ``decay``, ``no_decay`` or ``depthwise`` for the trainable parameters."""
    category: dict[int, str] = {}
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in category:
                continue
            if p.ndim <= 1:
                category[id(p)] = "decay" if wd_norm_bias else "no_decay"
            elif wd_depthwise is not None and pname == "weight" and _is_depthwise(module):
                category[id(p)] = "depthwise"
            else:
                category[id(p)] = "decay"
    return category


def param_groups(model: nn.Module, weight_decay: float, wd_norm_bias: bool = False,
                 wd_depthwise: float | None = None, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into weight-decay (and layer-wise lr) groups.

    * 1-D parameters (biases, norm scales/shifts) get no decay unless ``wd_norm_bias``;
    * depthwise conv weights get ``wd_depthwise`` when it is set (MobileNet, Sec. 4: little or
      no decay on depthwise filters), else ``weight_decay``;
    * everything else gets ``weight_decay``.

    Each group carries a ``name`` (``decay``, ``no_decay``, ``depthwise``); empty groups are dropped.

    ``layer_decay`` (layer-wise lr decay, BEiT; timm's ``param_groups_layer_decay`` over
    ``model.group_matcher()``): the parameters of layer i of n, stem first and classifier last, get
    the lr times ``layer_decay ** (n - 1 - i)``, the group's ``lr_scale`` (applied by
    :func:`build_optimizer`); each layer is split by the rules above, its groups named
    ``<rule>_x<lr_scale>``. Groups come with the largest ``lr_scale`` first.
    """
    category = _decay_category(model, wd_norm_bias, wd_depthwise)
    decay_of = {"decay": weight_decay, "no_decay": 0.0,
                "depthwise": wd_depthwise if wd_depthwise is not None else weight_decay}
    if layer_decay is None:
        layers = [(None, [p for p in model.parameters() if id(p) in category])]
    else:
        from timm.optim import param_groups_layer_decay

        if not callable(getattr(model, "group_matcher", None)):
            raise ValueError(f"optim.layer_decay needs model.group_matcher() (timm's layer grouping); "
                             f"{type(model).__name__} has none")
        timm_groups = param_groups_layer_decay(model, weight_decay=0.0, layer_decay=layer_decay,
                                               weight_decay_exclude_1d=False)
        layers = sorted(((g["lr_scale"], g["params"]) for g in timm_groups), key=lambda g: -g[0])
    groups = []
    for scale, params in layers:
        for name, wd in decay_of.items():
            members = [p for p in params if category.get(id(p)) == name]
            if not members:
                continue
            group = {"name": name, "params": members, "weight_decay": wd}
            if scale is not None:
                group.update(name=f"{name}_x{scale:.3g}", lr_scale=scale)
            groups.append(group)
    return groups


def build_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.1, weight_decay: float = 0.0,
                    momentum: float = 0.9, nesterov: bool = True, wd_norm_bias: bool = False,
                    wd_depthwise: float | None = None, layer_decay: float | None = None,
                    **kwargs: Any) -> torch.optim.Optimizer:
    """An optimizer over :func:`param_groups` built with ``timm.optim.create_optimizer_v2``.

    ``name``: ``sgd`` (``nesterov`` selects timm's ``sgd``/``momentum``), ``adamw``, ``adam``,
    ``rmsproptf`` (TensorFlow-style RMSprop used for MobileNets/EfficientNets; pass ``eps``,
    ``alpha``) or ``rmsprop``. ``layer_decay``: layer-wise lr decay; each group starts at
    ``lr x lr_scale``, so any scheduler that scales the groups' initial lr (``LambdaLR``) keeps the
    ratios. Extra ``kwargs`` (``eps``, ``alpha``, ``betas``) go to the optimizer.
    """
    from timm.optim import create_optimizer_v2

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"optim.layer_decay must be in (0, 1] (or null: off), got {layer_decay}")
    opt = ("sgd" if nesterov else "momentum") if name == "sgd" else name
    groups = param_groups(model, weight_decay, wd_norm_bias=wd_norm_bias, wd_depthwise=wd_depthwise,
                          layer_decay=layer_decay)
    extra = {k: v for k, v in kwargs.items() if v is not None}
    if name in ("sgd", "rmsproptf", "rmsprop"):
        extra["momentum"] = momentum
    optimizer = create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, **extra)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return optimizer


def lr_lambda(total_steps: int, steps_per_epoch: int, name: str = "cosine", warmup_epochs: float = 0.0,
              warmup_factor: float = 0.01, min_lr_factor: float = 0.0, decay_epochs: float = 30.0,
              decay_rate: float = 0.1) -> Callable[[int], float]:
    """Multiplier of the peak lr at optimizer step ``s`` (for ``torch.optim.lr_scheduler.LambdaLR``).

    Linear warmup from ``warmup_factor`` to 1 over ``warmup_epochs``, then ``cosine`` decay to
    ``min_lr_factor`` at ``total_steps``, ``step`` decay by ``decay_rate`` every ``decay_epochs``,
    or ``constant``. Stepped once per optimizer step.
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
    if total_steps < 1 or steps_per_epoch < 1:
        raise ValueError(f"need at least one step, got total_steps={total_steps}, steps_per_epoch={steps_per_epoch}")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))

    def fn(step: int) -> float:
        if step < warmup:
            return warmup_factor + (1.0 - warmup_factor) * step / warmup
        if name == "cosine":
            t = min(step - warmup, total_steps - warmup) / max(total_steps - warmup, 1)
            return min_lr_factor + (1.0 - min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        if name == "step":
            return decay_rate ** int(step / (decay_epochs * steps_per_epoch))
        return 1.0

    return fn


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int,
                    **sched: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` with :func:`lr_lambda`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, steps_per_epoch, **sched))
