"""Parameter and multiply-add counts in the papers' convention.

MobileNet, ShuffleNet, GhostNet and ResNet papers report "MAdds"/"FLOPs" as the
multiply-adds of convolutions and fully connected layers only (BatchNorm,
activations, pooling and element-wise adds are not counted). ``count_macs`` follows
that convention so the numbers compare with the papers' tables; the profiler
(:mod:`zoo.measure.profiler`) adds the other ops and memory traffic on top.
:func:`fvcore_count` is the one wrapper around fvcore's counter, for comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.ops import DeformConv2d

__all__ = ["count_params", "count_macs", "module_macs", "input_shape", "FvcoreCount", "fvcore_count"]


def input_shape(model: nn.Module, res: int | tuple[int, int], in_chans: int | None = None) -> tuple[int, int, int]:
    """(channels, height, width) of one input image: ``in_chans``, else ``model.in_chans``, else
    the first conv's input channels, else 3; ``res`` is a side or ``(height, width)``."""
    h, w = (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution must be positive, got {res!r}")
    if in_chans is None:
        in_chans = getattr(model, "in_chans", None)
    if in_chans is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first.in_channels if first is not None else 3
    return int(in_chans), h, w


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not), buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def module_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-adds of one conv / transposed conv / linear call; 0 for any other module."""
    if isinstance(module, (nn.Conv2d, DeformConv2d)):
        # a deformable conv does the multiply-adds of a plain conv (its bilinear sampling is not counted)
        out_elems = output.numel() // output.shape[0]
        kh, kw = module.kernel_size
        return out_elems * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        in_elems = inputs[0].numel() // inputs[0].shape[0]
        kh, kw = module.kernel_size
        return in_elems * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return (output.numel() // output.shape[0]) * module.in_features
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, res: int | tuple[int, int] = 224, in_chans: int | None = None) -> int:
    """Conv + linear multiply-adds for one image of side ``res`` (eval mode, batch 1).

    Counted with forward hooks on the uncompiled model, so every conv that runs is
    counted once per call (a shared module called twice counts twice).
    """
    in_chans, h, w = input_shape(model, res, in_chans)
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += module_macs(module, inputs, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, DeformConv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_chans, h, w))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


@dataclass
class FvcoreCount:
    """fvcore's count: ``total`` (one "flop" per multiply-add, plus BN, pooling, ...), its conv + linear
    part (comparable to :func:`count_macs`), the ops it skipped, or the ``error`` that stopped it."""

    total: int | None = None
    conv_linear: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def fvcore_count(model: nn.Module, res: int | tuple[int, int] = 224, in_chans: int | None = None) -> FvcoreCount:
    """Count with ``fvcore.nn.FlopCountAnalysis`` (eval mode, batch 1); a tracing failure is returned
    in ``error``, never raised (fvcore traces with ``torch.jit``, which some models defeat)."""
    from fvcore.nn import FlopCountAnalysis

    c, h, w = input_shape(model, res, in_chans)
    was_training = model.training
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, c, h, w))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            total = int(analysis.total())
            by_op = analysis.by_operator()
            skipped = {k.replace("aten::", ""): int(v) for k, v in analysis.unsupported_ops().items()}
    except Exception as exc:
        return FvcoreCount(error=f"fvcore failed: {type(exc).__name__}: {exc}")
    finally:
        model.train(was_training)
    conv_linear = sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul", "bmm", "einsum"))
    return FvcoreCount(total, int(conv_linear), skipped)
