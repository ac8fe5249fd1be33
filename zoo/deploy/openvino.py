"""OpenVINO as a second CPU engine: IR conversion, compiled CPU models, parity, int8 with NNCF.

* :func:`export_openvino`: :func:`zoo.deploy.export_onnx`, then ``openvino.convert_model`` of that
  file and ``openvino.save_model`` to IR (``.xml`` + ``.bin``, fp32 weights).
* :func:`compile_openvino`: a CPU compiled model with fixed threads and fp32 inference precision, optionally
  for one static input shape (what the batch-1 latencies of zoo are timed on).
* :func:`check_openvino`: max abs difference to PyTorch at batch 1 and 3 (:func:`zoo.deploy.check_parity`).
* :func:`quantize_openvino`: post-training int8 quantization with NNCF (``nncf.quantize``), calibrated
  on the images the onnxruntime path calibrates on (:class:`zoo.deploy.int8.CalibrationImages`).
* :func:`evaluate_openvino`: top-1 before/after and batch-1 latencies, timed on static batch-1 compiles
  (:func:`zoo.deploy.int8.evaluate_engine`).
* :func:`count_openvino_ops`: the layers the CPU plugin runs, by type and precision.

The IR is converted from the ONNX export rather than from the module: it is the same graph, with
the same dynamic batch axis, that onnxruntime runs and :func:`zoo.deploy.check_onnx` checks, and
converting a module directly traces it once more with ``torch.jit.trace`` (deprecated in torch 2.14).
Both routes matched PyTorch to 1e-6 on one model of every family at 64 px; docs/deploy.md has the
commands. ``openvino`` and ``nncf`` are imported when a function needs them; without them the error
names the extra to install (``pip install 'zoo[openvino]'``).
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from zoo.deploy.int8 import CalibrationImages, evaluate_engine
from zoo.deploy.onnx import check_parity, export_onnx
from zoo.measure.complexity import input_shape
from zoo.models.fuse import reparameterize

__all__ = [
    "check_openvino", "compile_openvino", "count_openvino_ops", "evaluate_openvino", "export_openvino", "openvino_runner",
    "quantize_openvino", "require_library",
]

#: NNCF's quantization presets: ``performance`` quantizes activations and weights symmetrically,
#: ``mixed`` activations asymmetrically (a range that need not be centred on zero) and weights symmetrically
PRESETS = ("performance", "mixed")
_LIBRARIES = {"openvino": "OpenVINO", "nncf": "NNCF"}


def require_library(module: str) -> Any:
    """The imported ``module`` (``openvino`` or ``nncf``); an ``ImportError`` naming the extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{_LIBRARIES[module]} is not installed: pip install 'zoo[openvino]'") from None


def export_openvino(model: nn.Module, path: str | Path, res: int | tuple[int, int] = 224, opset: int = 17) -> Path:
    """Export ``model`` (eval mode, fp32) to OpenVINO IR: ``path`` (``.xml``) and its ``.bin`` weights.

    The ONNX file :func:`zoo.deploy.export_onnx` writes beside it (same name, ``.onnx``; dynamic
    batch axis, input ``images``, output ``logits``) is converted with ``openvino.convert_model`` and
    saved with ``openvino.save_model(..., compress_to_fp16=False)``: its default stores the weights in
    fp16, which moves logits by more than 1e-4. Deploy the model first
    (:func:`zoo.models.fuse.reparameterize`) for the graph a CPU should run.

    Returns:
        The ``.xml`` path written.
    """
    ov = require_library("openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path}")
    onnx_path = export_onnx(model, path.with_suffix(".onnx"), res=res, opset=opset)
    ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


def compile_openvino(model: Any, threads: int | None = None, profiling: bool = False,
                     static_shape: Sequence[int] | None = None) -> Any:
    """An OpenVINO ``CompiledModel`` on the CPU for ``model`` (an IR ``.xml`` path or an ``openvino.Model``).

    ``threads`` fixes ``INFERENCE_NUM_THREADS`` (as :func:`zoo.deploy.ort_session` fixes onnxruntime's
    intra-op threads); ``INFERENCE_PRECISION_HINT`` is ``f32``, so that a CPU with bf16 units does
    not run the fp32 layers in bf16 (the int8 layers of a quantized model stay int8). ``profiling``
    turns on the plugin's per-layer performance counters (``PERF_COUNT``), which an infer request
    then reports for its last inference in ``InferRequest.profiling_info``.

    ``static_shape`` (N, C, H, W) compiles a copy of the model reshaped to that input shape
    (``Model.reshape``), as ``benchmark_app -shape`` does: with the dynamic batch axis of
    :func:`export_openvino` the plugin infers shapes at every call, an overhead a batch-1 latency
    should not carry. The shape must fit the IR's input (only a dynamic dimension may be chosen).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if static_shape is not None:
        static_shape = _check_static_shape(static_shape)
    ov = require_library("openvino")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profiling}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    source = str(model) if isinstance(model, (str, Path)) else model
    if static_shape is not None:
        source = core.read_model(source) if isinstance(source, str) else source.clone()
        declared = source.input().get_partial_shape()
        if not declared.compatible(ov.PartialShape(static_shape)):
            raise ValueError(f"static_shape {list(static_shape)} does not fit the model's input shape {declared}")
        source.reshape(static_shape)
    return core.compile_model(source, "CPU", config)


def _check_static_shape(shape: Sequence[int]) -> list[int]:
    """``shape`` as a list of 4 positive ints (N, C, H, W); a ``ValueError`` otherwise."""
    try:
        dims = list(shape)
    except TypeError:
        dims = []
    if len(dims) != 4 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"static_shape must be 4 positive ints (N, C, H, W), got {shape!r}")
    return [int(d) for d in dims]


def openvino_runner(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function: NCHW float32 numpy batch -> logits (a copy), on one infer request of ``compiled``.

    The request reads the input array in place and writes into its own output tensor
    (``share_inputs``/``share_outputs``); only the logits are copied out. ``infer([x])``, which
    copies the input into a new tensor on every call, was measurably slower at batch 1 (the re-timed
    OpenVINO rows of docs/deploy.md).
    """
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        out = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)}, share_inputs=True, share_outputs=True)
        return np.array(out[0], copy=True)

    return run


def check_openvino(
    model: nn.Module,
    path: str | Path,
    res: int | tuple[int, int] = 224,
    atol: float = 1e-4,
    batch_sizes: Sequence[int] = (1, 3),
) -> float:
    """Max absolute difference between ``model`` (eval) and the IR ``path`` on the OpenVINO CPU plugin.

    Random inputs at each batch size (1 and 3 by default, which also checks the dynamic batch axis);
    a ``RuntimeError`` when the difference exceeds ``atol``.
    """
    run = openvino_runner(compile_openvino(path))
    return check_parity(model, run, res, atol, batch_sizes, what=f"OpenVINO ({path})")


def quantize_openvino(
    model: nn.Module,
    calib_loader: Iterable[Any],
    out_dir: str | Path,
    res: int | tuple[int, int] = 224,
    num_calib: int = 300,
    preset: str = "performance",
    opset: int = 17,
) -> tuple[Path, Path]:
    """Post-training static int8 quantization with NNCF for OpenVINO.

    The deployed form (:func:`zoo.models.fuse.reparameterize`), :func:`export_openvino`, then
    ``nncf.quantize`` on ``num_calib`` images of ``calib_loader`` (one at a time,
    :class:`zoo.deploy.int8.CalibrationImages`, as onnxruntime calibrates), with NNCF's defaults
    for a CNN (no ``model_type``; ``TRANSFORMER`` is for attention models): per-channel int8
    weights, activations at the inputs of the ops the CPU plugin has int8 kernels for, fast bias
    correction. ``preset="performance"`` (NNCF's default) quantizes activations symmetrically,
    ``"mixed"`` asymmetrically, which keeps more levels for activations that are mostly positive
    (after ReLU, hard-swish).

    Args:
        model: the fp32 network (eval mode is used; the model is not modified).
        calib_loader: DataLoader of preprocessed training images, ``(images, labels)`` batches.
        out_dir: folder for ``model_fp32.xml`` and ``model_int8.xml`` (with ``.bin`` weights).
        res: input side the model is exported at (batch is dynamic).
        num_calib: images to calibrate on (NNCF's ``subset_size``).
        preset: ``"performance"`` or ``"mixed"`` (:data:`PRESETS`).
        opset: ONNX opset of the export the IR is converted from.

    Returns:
        ``(fp32_path, int8_path)``.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if num_calib < 1:
        raise ValueError(f"num_calib must be >= 1, got {num_calib}")
    ov, nncf = require_library("openvino"), require_library("nncf")
    images = CalibrationImages(calib_loader, num_calib)
    if next(iter(images), None) is None:
        raise ValueError("calib_loader yielded no images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = export_openvino(reparameterize(model), out_dir / "model_fp32.xml", res=res, opset=opset)
    quantized = nncf.quantize(
        ov.Core().read_model(str(fp32_path)), nncf.Dataset(images, lambda image: image.numpy()),
        preset=nncf.QuantizationPreset(preset), subset_size=num_calib,
    )
    int8_path = out_dir / "model_int8.xml"
    ov.save_model(quantized, str(int8_path), compress_to_fp16=False)
    return fp32_path, int8_path


def evaluate_openvino(
    model: nn.Module,
    int8_path: str | Path,
    val_loader: Iterable[Any],
    fp32_path: str | Path | None = None,
    res: int | tuple[int, int] = 224,
    threads: int | None = None,
    latency_runs: int = 200,
    max_images: int | None = None,
) -> dict[str, float]:
    """Top-1 before/after quantization on ``val_loader`` and batch-1 latency before/after, with OpenVINO
    (:func:`zoo.deploy.int8.evaluate_engine`).

    Returns ``top1_fp32`` (PyTorch eager), ``top1_int8`` (OpenVINO), ``argmax_agreement``, ``images``
    and median batch-1 latencies in ms: ``latency_ms_torch_fp32``, ``latency_ms_openvino_int8`` and,
    when ``fp32_path`` is given, ``latency_ms_openvino_fp32`` (compiled with ``threads`` threads,
    default torch's setting). The val batches run on the IR as exported (dynamic batch); the latencies
    are timed on the IRs compiled for the static batch-1 input (:func:`compile_openvino`'s ``static_shape``).
    """
    threads = threads or torch.get_num_threads()
    batch1 = (1, *input_shape(model, res))
    batch1_runs = {precision: openvino_runner(compile_openvino(path, threads, static_shape=batch1))
                   for precision, path in (("int8", int8_path), ("fp32", fp32_path))
                   if path is not None and latency_runs > 0} or None  # latency_runs=0: top-1 only
    runs = {"int8": openvino_runner(compile_openvino(int8_path, threads))}
    return evaluate_engine(model, "openvino", runs, val_loader, res, threads, latency_runs, max_images,
                           batch1_runs=batch1_runs)


def count_openvino_ops(path: str | Path) -> dict[str, int]:
    """Layers the OpenVINO CPU plugin runs for the IR ``path``, as ``"<type> <precision>"`` with counts.

    Read from the compiled model's runtime graph, after the plugin's fusions; a quantized model's
    int8 convolutions show up as ``Convolution u8`` (or ``i8``), layers left in fp32 as ``... f32``.
    Constants, inputs and outputs are left out.
    """
    counts: Counter[str] = Counter()
    for op in compile_openvino(path, threads=1).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in ("Const", "Input", "Output"):
            counts[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
    return dict(sorted(counts.items()))
