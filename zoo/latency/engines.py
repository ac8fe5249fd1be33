"""The inference engines a latency table is measured on, each running a module in its deployed form.

* ``torch``: PyTorch eager, fp32, channels_last, under ``torch.inference_mode`` (what
  ``python -m zoo.tools.bench`` times as "zoo deployed").
* ``onnxruntime``: the module exported by :func:`zoo.deploy.export_onnx` (opset 17, dynamic
  batch) in an onnxruntime CPU session (:func:`zoo.deploy.ort_session`, all graph optimizations).
* ``onnxruntime-int8``: the same export quantized by :func:`zoo.deploy.quantize_int8` (QDQ,
  per-channel int8 weights, uint8 activations), calibrated with min-max ranges on a few random
  inputs: the values of the scales do not change the speed of the int8 kernels (and percentile
  histograms fail on the constant activations random weights can give).
* ``openvino``: the same export converted to OpenVINO IR (:func:`zoo.deploy.openvino.export_openvino`)
  and compiled for the CPU with ``threads`` threads and the static shape of the input it runs
  (:func:`zoo.deploy.openvino.compile_openvino`).
* ``openvino-int8``: that IR quantized by NNCF (:func:`zoo.deploy.openvino.quantize_openvino`, its
  default preset), calibrated on a few random inputs for the same reason.

Modules given here are already deployed (:func:`zoo.models.fuse.reparameterize`); a runner
is a function of no arguments that runs one forward pass (of one image unless asked for a batch).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zoo.deploy.int8 import quantize_int8
from zoo.deploy.onnx import export_onnx, ort_session
from zoo.deploy.openvino import compile_openvino, export_openvino, openvino_runner, quantize_openvino, require_library

__all__ = ["ENGINES", "check_engine", "engine_versions", "make_runners"]

ENGINES = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
OPSET = 17
INT8_CALIBRATION_INPUTS = 4


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else a ``ValueError`` naming them."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    return engine


def engine_versions(engine: str) -> dict[str, str]:
    """Versions of the libraries ``engine`` runs on: torch, plus onnx and onnxruntime for the
    onnxruntime engines (torch exports their graphs), onnx and openvino for the OpenVINO ones (and
    nncf, which quantizes for ``openvino-int8``)."""
    versions = {"torch": torch.__version__}
    if check_engine(engine).startswith("onnxruntime"):
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    elif engine.startswith("openvino"):
        import onnx

        libraries = ("openvino", "nncf") if engine == "openvino-int8" else ("openvino",)
        versions.update(onnx=onnx.__version__, **{name: require_library(name).__version__ for name in libraries})
    return versions


class _WithInputShape(nn.Module):
    """A layer with the ``in_chans`` that :func:`zoo.deploy.export_onnx` reads its input shape from."""

    def __init__(self, layer: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.layer = layer
        self.in_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def make_runners(engine: str, module: nn.Module, input_shape: tuple[int, int, int], threads: int,
                 workdir: str | Path, sessions: int = 1, batch: int = 1) -> list[Callable[[], Any]]:
    """Functions that each run deployed ``module`` once on a random input of ``batch`` images of
    ``input_shape`` (C, H, W) with ``engine``. onnxruntime: ``sessions`` fresh sessions of one export (a session's
    speed is fixed when it is created, docs/benchmark.md), ``threads`` intra-op threads, ONNX files
    in the folder ``workdir``; OpenVINO: ``sessions`` compiled models of one IR, ``threads`` threads;
    torch: one function (its threads are set with ``torch.set_num_threads``)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    c, h, w = input_shape
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(0))
    if check_engine(engine) == "torch":
        module = module.eval().to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        return [lambda: module(x)]
    if sessions < 1:
        raise ValueError(f"sessions must be >= 1, got {sessions}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    exportable = _WithInputShape(module.eval(), c)
    if engine == "onnxruntime":
        path = export_onnx(exportable, workdir / "model.onnx", res=(h, w), opset=OPSET)
    elif engine == "openvino":
        path = export_openvino(exportable, workdir / "model.xml", res=(h, w), opset=OPSET)
    else:
        calibration = [torch.randn(INT8_CALIBRATION_INPUTS, c, h, w, generator=torch.Generator().manual_seed(1))]
        quantize = quantize_int8 if engine == "onnxruntime-int8" else quantize_openvino
        options = {"calibrate_method": "minmax"} if engine == "onnxruntime-int8" else {}
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            _, path = quantize(exportable, calibration, workdir, res=(h, w), num_calib=INT8_CALIBRATION_INPUTS,
                               opset=OPSET, **options)
    runners = []
    for _ in range(sessions):
        if engine.startswith("openvino"):
            run = openvino_runner(compile_openvino(path, threads, static_shape=x.shape))
            runners.append(lambda run=run, x=x.numpy(): [run(x)])  # a list of outputs, as onnxruntime returns
        else:
            session = ort_session(path, threads)
            feed = {session.get_inputs()[0].name: x.numpy()}
            runners.append(lambda session=session, feed=feed: session.run(None, feed))
    return runners
