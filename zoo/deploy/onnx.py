"""ONNX export with a dynamic batch axis, onnxruntime sessions and a parity check.

* :func:`export_onnx`: TorchScript-based export, input ``images``, output ``logits``.
* :func:`ort_session`: an onnxruntime CPU session with all graph optimizations.
* :func:`check_onnx`: max abs difference to PyTorch at batch 1 and 3 (which also checks the
  dynamic batch axis), by the engine-neutral :func:`check_parity`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from zoo.measure.complexity import input_shape
from zoo.models.fuse import unwrap_model

__all__ = ["check_onnx", "check_parity", "example_input", "export_onnx", "ort_session"]


def example_input(model: nn.Module, res: int | tuple[int, int], batch: int = 1) -> torch.Tensor:
    """A seeded random batch of the model's input shape (``in_chans`` x ``res``)."""
    c, h, w = input_shape(model, res)
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(0))


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
    model = unwrap_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(model, res)
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


def ort_session(path: str | Path, threads: int | None = None, profile_prefix: str | Path | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` with all graph optimizations enabled.

    ``profile_prefix`` turns on onnxruntime's profiler: ``session.end_profiling()`` then writes its
    JSON trace to a file whose name starts with this prefix and returns the file's path."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no busy-waiting worker threads: they would steal the CPU from whatever runs next
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_parity(
    model: nn.Module,
    run: Callable[[np.ndarray], np.ndarray],
    res: int | tuple[int, int] = 224,
    atol: float = 1e-4,
    batch_sizes: Sequence[int] = (1, 3),
    what: str = "engine",
) -> float:
    """Max absolute difference between ``model`` (eval) and ``run`` (NCHW float32 numpy batch -> logits,
    an engine running the exported graph ``what``) on seeded random inputs at each batch size.

    Raises ``RuntimeError`` on an output of another shape or a difference above ``atol``.
    """
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        for batch in batch_sizes:
            x = example_input(model, res, batch)
            ref = model(x).numpy()
            got = np.asarray(run(x.numpy()))
            if got.shape != ref.shape:
                raise RuntimeError(f"{what}: output shape {got.shape} != PyTorch {ref.shape} at batch {batch}")
            worst = max(worst, float(abs(got - ref).max()))
    finally:
        model.train(was_training)
    if worst > atol:
        raise RuntimeError(f"{what}/PyTorch mismatch: max abs diff {worst:.3g} > atol {atol:g}")
    return worst


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
    sess = ort_session(path)
    input_name = sess.get_inputs()[0].name
    return check_parity(model, lambda x: sess.run(None, {input_name: x})[0], res, atol, batch_sizes,
                        what=f"ONNX ({path})")
