"""Post-training static int8 quantization with onnxruntime, and its before/after report.

* :func:`quantize_int8`: deployed form (blocks re-parameterized, BN folded), export, calibrate on
  real images, quantize (QDQ).
* :func:`evaluate_int8`: top-1 of the fp32 model and the int8 graph on the same images, and
  batch-1 latencies of both.
* :func:`count_int8_ops`: the op types onnxruntime actually runs after its QDQ fusions.

The engine-neutral parts, also used by the OpenVINO path (:mod:`zoo.deploy.openvino`):
:class:`CalibrationImages` (the calibration images, one at a time) and :func:`evaluate_engine`
(the before/after comparison for any engine that runs a numpy batch).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from zoo.deploy.onnx import example_input, export_onnx, ort_session
from zoo.measure.timing import median_seconds
from zoo.models.fuse import reparameterize, to_primitive_activations, unwrap_model

__all__ = [
    "CalibrationImages", "count_int8_ops", "evaluate_engine", "evaluate_int8", "fold_constant_muls", "quantize_int8"]


class CalibrationImages:
    """The first ``max_images`` images of a DataLoader yielding ``(images, labels)`` or images, as
    1-image float batches; iterable again and again (an int8 calibrator may pass over them twice).

    One image at a time: onnxruntime's histogram calibrators (entropy, percentile) stack the
    collected outputs of all calls, which fails when the loader's last batch is smaller, and NNCF
    counts its ``subset_size`` in items.
    """

    def __init__(self, loader: Iterable[Any], max_images: int) -> None:
        self.loader, self.max_images = loader, max_images

    def _images(self) -> Iterator[torch.Tensor]:
        for batch in self.loader:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            yield from images.float().split(1)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return itertools.islice(self._images(), self.max_images)


class _LoaderReader:
    """onnxruntime ``CalibrationDataReader`` over :class:`CalibrationImages`."""

    def __init__(self, images: CalibrationImages, input_name: str) -> None:
        self.images, self.input_name = images, input_name
        self._iter: Iterator[torch.Tensor] | None = None
        self.seen = 0

    def get_next(self) -> dict[str, Any] | None:
        if self._iter is None:
            self._iter = iter(self.images)
        image = next(self._iter, None)
        if image is None:
            return None
        self.seen += 1
        return {self.input_name: image.contiguous().numpy()}

    def rewind(self) -> None:
        self._iter, self.seen = None, 0


def quantize_int8(
    model: nn.Module,
    calib_loader: Iterable[Any],
    out_dir: str | Path,
    res: int | tuple[int, int] = 224,
    num_calib: int = 300,
    per_channel: bool = True,
    opset: int = 17,
    calibrate_method: str = "percentile",
    reduce_range: bool = False,
    percentile: float = 99.99,
    primitive_activations: bool = True,
) -> tuple[Path, Path]:
    """Post-training static int8 quantization with onnxruntime (QDQ, per-channel weights).

    The deployed form (:func:`zoo.models.fuse.reparameterize`: re-parameterizable blocks fused,
    BN folded) + ONNX export, onnxruntime's ``quant_pre_process`` (shape inference and graph
    optimization), calibration on ``num_calib`` images from ``calib_loader``, then
    ``quantize_static`` in QDQ format with uint8 activations and int8 weights (U8S8), the
    combination whose QDQ groups onnxruntime's CPU provider fuses into int8 kernels.
    ``HardSwish``/``HardSigmoid`` have no int8 kernel and would stay fp32 between a dequantize
    and a quantize, so by default (``primitive_activations``) the deployed copy has them in their
    primitive form (:func:`zoo.models.fuse.to_primitive_activations`: Add/Clip/Mul, the same
    function), which onnxruntime runs as QLinearAdd/QLinearMul with the Clip folded into the
    quantization range: a MobileNetV3 graph is int8 from the input to the logits; the hard-sigmoid's
    ``* 1/6`` is then folded into a scale (:func:`fold_constant_muls`). The returned
    fp32 graph, the baseline, is exported as before (HardSwish/HardSigmoid ops). Calibration
    defaults to the 99.99th percentile of each activation's histogram: with min-max a few outliers
    stretch a tensor's int8 range. docs/deploy.md explains the choices and gives the measured
    effect of each calibration.

    Args:
        model: the fp32 network (eval mode is used; the model is not modified).
        calib_loader: DataLoader of preprocessed training images, ``(images, labels)`` batches.
        out_dir: folder for ``model_fp32.onnx`` (the fp32 graph, activations as exported),
            ``model_int8.onnx`` and the intermediate files (``model_fp32_primitive.onnx``: the
            fp32 graph with primitive activations, which is what gets quantized).
        res: input side the model is exported at (batch is dynamic).
        num_calib: images to calibrate on (a few hundred is typical).
        per_channel: per-output-channel weight scales (recommended for depthwise convs).
        opset: ONNX opset of the export (>= 13 for per-channel QDQ).
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI.
        percentile: for ``calibrate_method="percentile"``, the share (in %) of each activation's
            calibration values the int8 range covers; the rest saturates.
        primitive_activations: export hard-swish/hard-sigmoid modules as Add/Clip/Mul (int8) and
            fold the products with constants into scales; ``False`` keeps them as HardSigmoid ops (fp32 between DequantizeLinear/QuantizeLinear).

    Returns:
        ``(fp32_path, int8_path)``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise ValueError(f"calibrate_method must be one of {sorted(methods)}, got {calibrate_method!r}")
    if num_calib < 1:
        raise ValueError(f"num_calib must be >= 1, got {num_calib}")
    if opset < 13:
        raise ValueError(f"per-channel QDQ quantization needs opset >= 13, got {opset}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    deployed = reparameterize(model)
    fp32_path = export_onnx(deployed, out_dir / "model_fp32.onnx", res=res, opset=opset)
    source_path = fp32_path  # model_fp32.onnx keeps the HardSwish/HardSigmoid ops: the fp32 baseline
    if primitive_activations:
        source_path = export_onnx(to_primitive_activations(deployed), out_dir / "model_fp32_primitive.onnx",
                                  res=res, opset=opset)
    pre_path = out_dir / "model_fp32_pre.onnx"
    try:
        quant_pre_process(str(source_path), str(pre_path), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference rejects some dynamic Reshapes (channel shuffle)
        quant_pre_process(str(source_path), str(pre_path), skip_symbolic_shape=True)
    int8_path = out_dir / "model_int8.onnx"
    reader = _LoaderReader(CalibrationImages(calib_loader, num_calib), "images")
    quantize_static(
        str(pre_path), str(int8_path), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[calibrate_method],
        reduce_range=reduce_range,
        extra_options={"CalibPercentile": percentile},
    )
    if reader.seen == 0:
        raise ValueError("calib_loader yielded no images")
    if primitive_activations:
        fold_constant_muls(int8_path)
    return fp32_path, int8_path


def fold_constant_muls(path: str | Path) -> int:
    """Fold every product of a quantized tensor with a positive scalar constant into the tensor's scale,
    in place; returns how many were folded.

    The primitive hard-sigmoid ends in ``* (1/6)``, which the QDQ quantizer keeps as its own int8
    ``QLinearMul``: ``DQ(q; s, z) * DQ(c) -> Q(s', z') -> DQ``. Multiplying a dequantized tensor by
    ``c > 0`` only changes its scale, so the pattern becomes ``DQ(q; s * c, z)``: one int8 kernel less
    per activation and no second rounding (the same tensor, read with another scale).
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    model = onnx.load(str(path))
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def dequantized_constant(node: Any) -> float | None:
        """The value of a ``DequantizeLinear`` of a scalar initializer, else None."""
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in consts:
            return None
        q = consts[node.input[0]].astype(np.float64)
        zero = consts[node.input[2]].astype(np.float64) if len(node.input) > 2 else 0.0
        value = consts[node.input[1]].astype(np.float64) * (q - zero)
        return float(value.reshape(())) if value.size == 1 else None

    removed: set[int] = set()
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        inputs = [producer.get(name) for name in mul.input]
        values = [dequantized_constant(node) for node in inputs]
        if sorted(v is None for v in values) != [False, True]:
            continue
        c = next(v for v in values if v is not None)
        tensor_dq = inputs[values.index(None)]
        if (c <= 0 or tensor_dq is None or tensor_dq.op_type != "DequantizeLinear"
                or consts.get(tensor_dq.input[1], np.zeros(2)).size != 1):
            continue
        quant = consumers.get(mul.output[0], [])
        if len(quant) != 1 or quant[0].op_type != "QuantizeLinear":
            continue
        readers = consumers.get(quant[0].output[0], [])
        if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            continue
        scale_name = f"{tensor_dq.input[1]}_x_{mul.name or mul.output[0]}"
        scale = consts[tensor_dq.input[1]]
        consts[scale_name] = (scale.astype(np.float64) * c).astype(scale.dtype)
        graph.initializer.append(numpy_helper.from_array(consts[scale_name], scale_name))
        for reader in readers:
            reader.input[:] = [tensor_dq.input[0], scale_name, *tensor_dq.input[2:]]
        removed.update({id(mul), id(quant[0])})
    if not removed:
        return 0
    nodes = [n for n in graph.node if id(n) not in removed]
    while True:  # drop the dequantize nodes nothing reads any more
        read = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
        kept = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
        if len(kept) == len(nodes):
            break
        nodes = kept
    graph.ClearField("node")
    graph.node.extend(nodes)
    read = {name for n in nodes for name in n.input}
    initializers = [i for i in graph.initializer if i.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(removed) // 2


def count_int8_ops(path: str | Path) -> dict[str, int]:
    """Op types of the graph onnxruntime actually runs (after its QDQ fusions), with counts.

    Int8 kernels show up as ``QLinearConv``, ``QLinearAdd``, ``QLinearMul``,
    ``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearSigmoid``, ``QGemm``, ...;
    ops left in fp32 appear under their plain names next to ``DequantizeLinear``.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(optimized)
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@torch.no_grad()
def evaluate_engine(
    model: nn.Module,
    engine: str,
    runs: dict[str, Callable[[np.ndarray], np.ndarray]],
    val_loader: Iterable[Any],
    res: int | tuple[int, int] = 224,
    threads: int | None = None,
    latency_runs: int = 200,
    max_images: int | None = None,
    batch1_runs: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, float]:
    """Top-1 of ``model`` (PyTorch eager fp32) and of an engine's int8 graph on ``val_loader``, and
    batch-1 latencies; the engine-neutral half of :func:`evaluate_int8`.

    ``runs`` maps ``"int8"`` (required) and ``"fp32"`` (optional) to a function: NCHW float32 numpy
    batch -> logits of the engine's graph. Returns ``top1_fp32``, ``top1_int8``, ``argmax_agreement``
    (share of images where both predict the same class), ``images``, and median batch-1 latencies
    in ms: ``latency_ms_torch_fp32`` (eager, channels_last, ``threads`` intra-op threads, default
    torch's setting) and ``latency_ms_{engine}_{int8,fp32}``, the engine's graphs timed interleaved
    in blocks of 10 calls over ``latency_runs`` calls each, so that both see the same machine noise.
    ``batch1_runs`` (same keys) are timed instead of ``runs`` when given: the graphs an engine compiled
    for the batch-1 input alone (:func:`zoo.deploy.openvino.evaluate_openvino`), where ``runs`` take
    the val batches. ``latency_runs=0`` measures top-1 only (no latency keys), for a caller that times
    the models itself.
    """
    timed = runs if batch1_runs is None else batch1_runs
    for name, functions in (("runs", runs), ("batch1_runs", timed)):
        if "int8" not in functions or not set(functions) <= {"int8", "fp32"}:
            raise ValueError(f"{name} must map 'int8' and optionally 'fp32' to a function, got {sorted(functions)}")
    model = unwrap_model(model).eval()
    threads = threads or torch.get_num_threads()
    correct_fp, correct_q, agree, total = 0, 0, 0, 0
    for batch in val_loader:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ValueError("val_loader must yield (images, labels) batches")
        images, labels = batch[0].float(), batch[1]
        pred_fp = model(images).argmax(1)
        pred_q = torch.from_numpy(np.asarray(runs["int8"](images.contiguous().numpy()))).argmax(1)
        correct_fp += int((pred_fp == labels).sum())
        correct_q += int((pred_q == labels).sum())
        agree += int((pred_fp == pred_q).sum())
        total += labels.numel()
        if max_images is not None and total >= max_images:
            break
    if total == 0:
        raise ValueError("val_loader yielded no images")
    result = {"images": float(total), "top1_fp32": correct_fp / total, "top1_int8": correct_q / total,
              "argmax_agreement": agree / total}
    if latency_runs == 0:
        return result
    x = example_input(model, res, 1)
    x_np = x.numpy()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            result["latency_ms_torch_fp32"] = 1e3 * median_seconds([lambda: model_cl(x_cl)], latency_runs, warmup=5)[0]
    finally:
        torch.set_num_threads(old_threads)
    keys = [f"latency_ms_{engine}_{precision}" for precision in timed]
    calls = [lambda run=run: run(x_np) for run in timed.values()]
    seconds = median_seconds(calls, max(latency_runs // 10, 1), warmup=5, inner=10)
    result.update({key: 1e3 * sec for key, sec in zip(keys, seconds)})
    return result


def evaluate_int8(
    model: nn.Module,
    int8_path: str | Path,
    val_loader: Iterable[Any],
    fp32_path: str | Path | None = None,
    res: int | tuple[int, int] = 224,
    threads: int | None = None,
    latency_runs: int = 200,
    max_images: int | None = None,
) -> dict[str, float]:
    """Top-1 before/after quantization on ``val_loader`` and batch-1 latency before/after, with
    onnxruntime (:func:`evaluate_engine`).

    Returns a dict with ``top1_fp32`` (PyTorch eager), ``top1_int8`` (onnxruntime),
    ``argmax_agreement`` (share of images where both predict the same class), ``images``,
    and median batch-1 latencies in ms: ``latency_ms_torch_fp32`` (eager, channels_last),
    ``latency_ms_ort_fp32`` (when ``fp32_path`` is given) and ``latency_ms_ort_int8``.
    Latency is measured with ``threads`` intra-op threads (default: torch's setting); the
    onnxruntime fp32 and int8 sessions are timed interleaved over ``latency_runs`` calls each.
    """
    threads = threads or torch.get_num_threads()
    runs = {}
    for precision, path in (("int8", int8_path), ("fp32", fp32_path)):
        if path is not None:
            session = ort_session(path, threads)
            name = session.get_inputs()[0].name
            runs[precision] = lambda x, session=session, name=name: session.run(None, {name: x})[0]
    return evaluate_engine(model, "ort", runs, val_loader, res, threads, latency_runs, max_images)
