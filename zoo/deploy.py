"""Deployment helpers: BatchNorm folding, ONNX export + parity check, int8 quantization.

* :func:`fold_bn` folds every BatchNorm that directly follows a conv inside a
  ``Sequential`` (zoo's ``ConvNormAct``, torchvision's ``Conv2dNormActivation``) into the
  conv, with ``torch.nn.utils.fusion.fuse_conv_bn_eval``.
* :func:`export_onnx` / :func:`check_onnx`: ONNX export with a dynamic batch axis and an
  onnxruntime parity check at batch 1 and 3.
* :func:`quantize_int8` / :func:`evaluate_int8`: post-training static int8 quantization
  with onnxruntime (QDQ, per-channel weights) calibrated on real images, and a
  before/after report of top-1 and batch-1 latency.

CLI::

    python -m zoo.deploy export --model mobilenetv3_small_100 [--ckpt PATH] [--out model.onnx]
    python -m zoo.deploy quantize --model mobilenetv3_small_100 --ckpt PATH [--data DIR] [--calib 300]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "fold_bn",
    "export_onnx",
    "check_onnx",
    "ort_session",
    "quantize_int8",
    "evaluate_int8",
    "count_int8_ops",
    "load_checkpoint",
    "main",
]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
        model = model._orig_mod
    return model


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with each conv -> BatchNorm pair folded into the conv.

    A BatchNorm is folded when it is the child right after a conv in the same
    ``nn.Sequential`` (or subclass: zoo's ``ConvNormAct``, torchvision's
    ``Conv2dNormActivation``) and has the conv's channel count. The conv gets the folded
    weight and a bias; the BatchNorm becomes ``nn.Identity`` (so module paths and
    ``state_dict`` keys of the convs are kept). BatchNorms elsewhere (e.g. ResNet's
    ``conv1``/``bn1`` attributes called from ``forward``) are left as they are. The result
    is for inference: eval-mode outputs match the original to float rounding.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"fold_bn expects an nn.Module, got {type(model).__name__}")
    folded = copy.deepcopy(_unwrap(model)).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules.keys())
        for prev_name, name in zip(names, names[1:]):
            conv, bn = seq._modules[prev_name], seq._modules[name]
            if not (isinstance(conv, _CONV) and isinstance(bn, _BN)):
                continue
            out_chs = conv.out_channels
            if bn.num_features != out_chs or not bn.track_running_stats or bn.running_mean is None:
                continue
            transpose = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
            seq._modules[prev_name] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
            seq._modules[name] = nn.Identity()
    return folded


# --- ONNX -------------------------------------------------------------------------------

def _example(model: nn.Module, res: int | tuple[int, int], batch: int = 1) -> torch.Tensor:
    h, w = (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution must be positive, got {res!r}")
    in_chans = getattr(model, "in_chans", None)
    if in_chans is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first.in_channels if first is not None else 3
    return torch.randn(batch, in_chans, h, w, generator=torch.Generator().manual_seed(0))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    res: int | tuple[int, int] = 224,
    opset: int = 17,
    dynamic_batch: bool = True,
    dynamo: bool = False,
) -> Path:
    """Export ``model`` (eval mode, fp32) to ONNX with input ``images`` and output ``logits``.

    Uses the TorchScript-based exporter (``dynamo=False``) by default: in torch 2.14 the
    default dynamo exporter goes through ``torch.export`` and onnxscript, converts to
    opset 18 and then down-converts, which fails or warns for opset 13 requests, and it
    needs ``dynamic_shapes`` instead of ``dynamic_axes``. The TorchScript path emits the
    requested opset directly (hard-swish becomes ``HardSigmoid * x`` below opset 14,
    ``HardSwish`` from 14), handles ``unflatten``/``transpose`` channel shuffles with a
    symbolic batch, and is what onnxruntime's quantization tools are tested against.
    ``dynamo=True`` is available for comparison.

    Args:
        model: the network; exported in eval mode (its mode is restored afterwards).
        path: output ``.onnx`` file (parent folders are created).
        res: input side or ``(height, width)``.
        opset: ONNX opset (>= 11).
        dynamic_batch: make the batch axis symbolic (``batch``).
        dynamo: use the dynamo exporter instead of the TorchScript one.

    Returns:
        The path written.
    """
    if opset < 11:
        raise ValueError(f"opset must be >= 11 for these models, got {opset}")
    model = _unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _example(model, res)
    was_training = model.training
    model.eval()
    try:
        if dynamo:
            dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
            torch.onnx.export(
                model, (x,), str(path), input_names=["images"], output_names=["logits"], opset_version=opset,
                dynamo=True, dynamic_shapes=dyn, external_data=False,
            )
        else:
            axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model, (x,), str(path), input_names=["images"], output_names=["logits"], opset_version=opset,
                dynamo=False, dynamic_axes=axes, do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    return path


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` with all graph optimizations enabled."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_onnx(
    model: nn.Module,
    path: str | Path,
    res: int | tuple[int, int] = 224,
    atol: float = 1e-4,
    batch_sizes: Sequence[int] = (1, 3),
) -> float:
    """Max absolute difference between ``model`` (eval) and the ONNX file under onnxruntime.

    Runs random inputs at each batch size (1 and 3 by default, which also checks the
    dynamic batch axis). Raises ``RuntimeError`` when the difference exceeds ``atol``.
    """
    model = _unwrap(model)
    sess = ort_session(path)
    input_name = sess.get_inputs()[0].name
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        for batch in batch_sizes:
            x = _example(model, res, batch)
            ref = model(x).numpy()
            got = sess.run(None, {input_name: x.numpy()})[0]
            if got.shape != ref.shape:
                raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {batch}")
            worst = max(worst, float(abs(got - ref).max()))
    finally:
        model.train(was_training)
    if worst > atol:
        raise RuntimeError(f"ONNX/PyTorch mismatch: max abs diff {worst:.3g} > atol {atol:g} ({path})")
    return worst
