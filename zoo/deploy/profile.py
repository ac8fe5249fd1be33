"""Where a deployed network's batch-1 time goes, per op type, as the engines themselves measure it.

* :func:`profile_onnxruntime`: onnxruntime's profiler (``SessionOptions.enable_profiling``); the
  ``Node`` events of its JSON trace (``session.end_profiling()``), summed by ``args.op_name``.
* :func:`profile_openvino`: the OpenVINO CPU plugin's per-layer performance counters (``PERF_COUNT``,
  ``InferRequest.profiling_info``), summed by layer type and the kernel that ran it
  (``node_type`` + ``exec_type``, e.g. ``Convolution (jit_avx2_1x1_I8)``).
* :func:`profile_model`: the deployed form (:func:`zoo.models.fuse.reparameterize`), exported or
  quantized for one engine, then profiled.
* :func:`format_profile`, :func:`format_comparison`: markdown tables, one engine by op type or two
  side by side by op category (:func:`op_category`).

Both profilers time the graph the engine runs, after its fusions: onnxruntime's ``FusedConv`` or
``QLinearConv``, OpenVINO's convolutions with their activations folded in. The totals are sums of
the layers' own times, without what the engine spends between them.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from torch import nn

from zoo.deploy.int8 import quantize_int8
from zoo.deploy.onnx import example_input, export_onnx, ort_session
from zoo.deploy.openvino import compile_openvino, export_openvino, quantize_openvino, require_library
from zoo.models.fuse import reparameterize

__all__ = ["OpTime", "format_comparison", "format_profile", "op_category", "profile_model", "profile_onnxruntime",
           "profile_openvino"]


@dataclass(frozen=True)
class OpTime:
    """The time of one op type in one inference: ``ms`` summed over its ``nodes`` layers, ``share`` of the
    profile's total. ``kernel`` is OpenVINO's implementation (``exec_type``), empty for onnxruntime."""

    op_type: str
    kernel: str
    ms: float
    share: float
    nodes: int

    @property
    def name(self) -> str:
        return f"{self.op_type} ({self.kernel})" if self.kernel else self.op_type


#: op category -> the op types of onnxruntime (after its fusions) and of OpenVINO's CPU plugin in it
_CATEGORIES = {
    "convolution": ("Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger", "Convolution",
                    "GroupConvolution"),
    "fully connected": ("Gemm", "FusedGemm", "QGemm", "MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul",
                        "FullyConnected", "FullyConnectedQuantized", "FullyConnectedQuantizedLegacy"),
    "pooling": ("GlobalAveragePool", "QLinearGlobalAveragePool", "AveragePool", "QLinearAveragePool", "MaxPool",
                "GlobalMaxPool", "ReduceMean", "AvgPool", "Pooling"),
    "activation, elementwise": ("Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div",
                                "QLinearAdd", "QLinearMul", "QLinearSigmoid", "Eltwise", "HSwish", "Swish",
                                "Multiply", "Subtract", "Divide", "Clamp"),
    "quantize, dequantize": ("QuantizeLinear", "DequantizeLinear", "FakeQuantize"),
    "layout, copy": ("ReorderInput", "ReorderOutput", "Reorder", "Transpose", "Reshape", "Flatten", "Squeeze",
                     "Unsqueeze", "Concat", "QLinearConcat", "Split", "Slice", "StridedSlice", "Gather",
                     "ShuffleChannels"),
}
_CATEGORY_OF = {op: category for category, ops in _CATEGORIES.items() for op in ops}


def op_category(op_type: str) -> str:
    """The category of an onnxruntime or OpenVINO op type (``"convolution"``, ``"pooling"``, ...; ``"other"``)."""
    return _CATEGORY_OF.get(op_type, "other")


def _check_counts(threads: int, runs: int, warmup: int) -> None:
    if threads < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"threads and runs must be >= 1 and warmup >= 0, got {threads}, {runs}, {warmup}")


def _random_image(channels: int, res: int | tuple[int, int]) -> np.ndarray:
    h, w = (res, res) if isinstance(res, int) else res
    return np.random.default_rng(0).standard_normal((1, channels, h, w), dtype=np.float32)


def _op_times(layers: Iterable[tuple[tuple[str, str], str, float]], runs: int) -> list[OpTime]:
    """OpTimes from ``((op_type, kernel), layer name, ms)`` records of ``runs`` inferences, slowest first."""
    total_ms: dict[tuple[str, str], float] = defaultdict(float)
    names: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, layer, ms in layers:
        total_ms[key] += ms
        names[key].add(layer)
    total = sum(total_ms.values())
    if total <= 0:
        raise RuntimeError("the profiler recorded no layer time")
    ops = [OpTime(op_type, kernel, ms / runs, ms / total, len(names[op_type, kernel]))
           for (op_type, kernel), ms in total_ms.items()]
    return sorted(ops, key=lambda op: op.ms, reverse=True)


def profile_onnxruntime(path: str | Path, res: int | tuple[int, int], threads: int = 2, runs: int = 50,
                        warmup: int = 5) -> list[OpTime]:
    """Time per op type of the ONNX graph ``path`` at batch 1, from onnxruntime's profiler.

    A session (:func:`zoo.deploy.ort_session`, ``threads`` intra-op threads) runs ``warmup`` + ``runs``
    inferences of one random ``res`` image with profiling on; the kernel events (``cat == "Node"``)
    that start after the warm-up runs' ``model_run`` events are summed by ``args.op_name`` and divided
    by ``runs``. Returns the op types slowest first.
    """
    _check_counts(threads, runs, warmup)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads, profile_prefix=Path(tmp) / "onnxruntime_profile")
        graph_input = session.get_inputs()[0]
        feed = {graph_input.name: _random_image(graph_input.shape[1], res)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    if len(starts) != warmup + runs:
        raise RuntimeError(f"onnxruntime's profile has {len(starts)} runs, expected {warmup + runs}")
    kernels = [e for e in events if e.get("cat") == "Node" and "op_name" in e.get("args", {})]
    return _op_times((((e["args"]["op_name"], ""), e["name"], e["dur"] / 1e3)
                      for e in kernels if e["ts"] >= starts[warmup]), runs)


def profile_openvino(path: str | Path, res: int | tuple[int, int], threads: int = 2, runs: int = 50,
                     warmup: int = 5) -> list[OpTime]:
    """Time per layer type and kernel of the OpenVINO IR ``path`` at batch 1, from the CPU plugin's counters.

    The IR is compiled for the static batch-1 input, as zoo times OpenVINO's batch-1 latency, with
    ``PERF_COUNT`` on (:func:`zoo.deploy.compile_openvino`, ``threads`` threads); after ``warmup``
    inferences of one random ``res`` image, the ``real_time`` of every executed layer of
    ``InferRequest.profiling_info`` (which holds the last inference) is read after each of ``runs``
    inferences, summed by ``node_type`` and ``exec_type`` and divided by ``runs``.
    Layers fused into others (status ``NOT_RUN``) are left out. Returns the types slowest first.
    """
    _check_counts(threads, runs, warmup)
    ir = require_library("openvino").Core().read_model(str(path))
    image = _random_image(ir.input().get_partial_shape()[1].get_length(), res)
    request = compile_openvino(ir, threads, profiling=True, static_shape=image.shape).create_infer_request()
    for _ in range(warmup):
        request.infer([image])
    layers = []
    for _ in range(runs):
        request.infer([image])
        layers += [((info.node_type, info.exec_type), info.node_name, info.real_time.total_seconds() * 1e3)
                   for info in request.profiling_info if info.status == info.Status.EXECUTED]
    return _op_times(layers, runs)


_PROFILERS: dict[str, Callable[..., list[OpTime]]] = {"onnxruntime": profile_onnxruntime,
                                                      "openvino": profile_openvino}


def profile_model(model: nn.Module, engine: str, out_dir: str | Path, res: int | tuple[int, int] = 224,
                  threads: int = 2, runs: int = 50, int8: bool = False, num_calib: int = 8,
                  opset: int = 17) -> list[OpTime]:
    """Time per op type of ``model``'s deployed form on ``engine`` (``"onnxruntime"`` or ``"openvino"``).

    fp32: :func:`zoo.models.fuse.reparameterize`, then :func:`zoo.deploy.export_onnx` or
    :func:`zoo.deploy.export_openvino` into ``out_dir``. ``int8``: :func:`zoo.deploy.quantize_int8`
    (min-max ranges) or :func:`zoo.deploy.quantize_openvino`, calibrated on ``num_calib`` random
    images: the ranges change the accuracy, not the graph the engine runs. Then
    :func:`profile_onnxruntime` or :func:`profile_openvino` at batch 1.
    """
    if engine not in _PROFILERS:
        raise ValueError(f"engine must be one of {', '.join(_PROFILERS)}, got {engine!r}")
    if num_calib < 1:
        raise ValueError(f"num_calib must be >= 1, got {num_calib}")
    out_dir = Path(out_dir)
    if int8:
        calibration = [example_input(model, res, num_calib)]
        if engine == "openvino":
            _, path = quantize_openvino(model, calibration, out_dir, res, num_calib, opset=opset)
        else:
            _, path = quantize_int8(model, calibration, out_dir, res, num_calib, opset=opset,
                                    calibrate_method="minmax")
    elif engine == "openvino":
        path = export_openvino(reparameterize(model), out_dir / "model_fp32.xml", res=res, opset=opset)
    else:
        path = export_onnx(reparameterize(model), out_dir / "model_fp32.onnx", res=res, opset=opset)
    return _PROFILERS[engine](path, res, threads, runs)


def format_profile(ops: list[OpTime]) -> str:
    """A markdown table of a profile: op type, ms per inference, share, nodes; then the total."""
    lines = ["| op type | ms / inference | share | nodes |", "|---|---:|---:|---:|"]
    lines += [f"| {op.name} | {op.ms:.3f} | {100 * op.share:.1f}% | {op.nodes} |" for op in ops]
    lines.append(f"| **total** | **{sum(op.ms for op in ops):.3f}** | 100.0% | {sum(op.nodes for op in ops)} |")
    return "\n".join(lines)


def format_comparison(profiles: Mapping[str, list[OpTime]]) -> str:
    """A markdown table of several engines' profiles side by side, ms per inference by :func:`op_category`."""
    by_category = {engine: defaultdict(float) for engine in profiles}
    for engine, ops in profiles.items():
        for op in ops:
            by_category[engine][op_category(op.op_type)] += op.ms
    categories = [c for c in (*_CATEGORIES, "other") if any(c in times for times in by_category.values())]
    lines = ["| op category | " + " | ".join(f"{engine} (ms)" for engine in profiles) + " |",
             "|---|" + "---:|" * len(profiles)]
    lines += [f"| {c} | " + " | ".join(f"{times[c]:.3f}" for times in by_category.values()) + " |" for c in categories]
    lines.append("| **total** | " + " | ".join(f"**{sum(t.values()):.3f}**" for t in by_category.values()) + " |")
    return "\n".join(lines)
