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
import csv
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from zoo.timing import median_seconds

__all__ = [
    "fold_bn",
    "export_onnx",
    "check_onnx",
    "ort_session",
    "quantize_int8",
    "evaluate_int8",
    "count_int8_ops",
    "model_from_checkpoint",
    "record_int8",
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
    # no busy-waiting worker threads: they would steal the CPU from whatever runs next
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
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


# --- int8 post-training static quantization (onnxruntime) -------------------------------

class _LoaderReader:
    """onnxruntime ``CalibrationDataReader`` over a DataLoader yielding ``(images, labels)`` or images.

    Feeds one image per call: onnxruntime's histogram calibrators (entropy, percentile) stack
    the collected outputs of all calls, which fails when the loader's last batch is smaller.
    """

    def __init__(self, loader: Iterable[Any], input_name: str, max_images: int) -> None:
        self.loader, self.input_name, self.max_images = loader, input_name, max_images
        self._iter: Any = None
        self.seen = 0

    def _images(self) -> Iterator[torch.Tensor]:
        for batch in self.loader:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            yield from images.float().split(1)

    def get_next(self) -> dict[str, Any] | None:
        if self._iter is None:
            self._iter = self._images()
        if self.seen >= self.max_images:
            return None
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
) -> tuple[Path, Path]:
    """Post-training static int8 quantization with onnxruntime (QDQ, per-channel weights).

    Why onnxruntime and not PyTorch's PT2E X86 quantizer: PT2E lives in ``torchao`` from
    torch 2.10 on (``torch.ao.quantization.quantizer`` is gone from this torch 2.14 build)
    and its int8 speed only appears after ``torch.compile`` with Inductor; its eager
    "reference" model runs dequantize -> fp32 op -> quantize and is slower than fp32.
    onnxruntime runs a QDQ graph with real int8 kernels on any x86 CPU without a compile
    step, and its QDQ quantizer covers the ops these backbones are made of: Conv (folded
    BN, per-channel int8 weights), Gemm, Relu/Clip (ReLU6), Add (residuals), Mul (SE gating,
    hard-swish's product), Sigmoid, GlobalAveragePool (SE squeeze), Concat, Split, Slice,
    Transpose and Reshape (channel split and shuffle stay int8, so the shuffle moves a
    quarter of the bytes), MaxPool/AveragePool. ``HardSwish``/``HardSigmoid`` have no int8
    kernel in either toolkit; onnxruntime keeps them in fp32 between a DequantizeLinear and
    a QuantizeLinear, which is exact but costs a round trip (build the model with
    ``export_friendly=True`` to express them as Add/Clip/Mul, which do quantize).

    Steps: BN folding + ONNX export (TorchScript exporter, dynamic batch), onnxruntime's
    ``quant_pre_process`` (shape inference + graph optimization), calibration on ``num_calib``
    images from ``calib_loader``, then ``quantize_static`` in QDQ format with uint8
    activations and int8 weights (U8S8):
    with onnxruntime 1.32's CPU provider this is the combination whose QDQ groups all fuse
    into int8 kernels (with S8S8 about half the convs, the adds and the multiplies stayed
    fp32). On CPUs without VNNI pass ``reduce_range=True`` (7-bit weights) to avoid the
    u8 x s8 saturation of the AVX2 ``vpmaddubsw`` path.

    Calibration defaults to the 99.99th percentile of each activation's histogram: with
    min-max, a handful of outlier values stretch a tensor's int8 range and leave few levels
    for the rest, which MobileNetV3 (hard-swish inputs quantized before the activation, SE
    products) does not survive; see results/int8.csv for the measured effect.

    Args:
        model: the fp32 network (eval mode is used; the model is not modified).
        calib_loader: DataLoader of preprocessed training images, ``(images, labels)`` batches.
        out_dir: folder for ``model_fp32.onnx`` and ``model_int8.onnx``.
        res: input side the model is exported at (batch is dynamic).
        num_calib: images to calibrate on (a few hundred is typical).
        per_channel: per-output-channel weight scales (recommended for depthwise convs).
        opset: ONNX opset of the export (>= 13 for per-channel QDQ).
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI.
        percentile: for ``calibrate_method="percentile"``, the share (in %) of each activation's
            calibration values the int8 range covers; the rest saturates.

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
    fp32_path = export_onnx(fold_bn(model), out_dir / "model_fp32.onnx", res=res, opset=opset)
    pre_path = out_dir / "model_fp32_pre.onnx"
    try:
        quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference rejects some dynamic Reshapes (channel shuffle)
        quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
    int8_path = out_dir / "model_int8.onnx"
    reader = _LoaderReader(calib_loader, "images", num_calib)
    quantize_static(
        str(pre_path), str(int8_path), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[calibrate_method],
        reduce_range=reduce_range,
        extra_options={"CalibPercentile": percentile},
    )
    if reader.seen == 0:
        raise ValueError("calib_loader yielded no images")
    return fp32_path, int8_path


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
    """Top-1 before/after quantization on ``val_loader`` and batch-1 latency before/after.

    Returns a dict with ``top1_fp32`` (PyTorch eager), ``top1_int8`` (onnxruntime),
    ``argmax_agreement`` (share of images where both predict the same class), ``images``,
    and median batch-1 latencies in ms: ``latency_ms_torch_fp32`` (eager, channels_last),
    ``latency_ms_ort_fp32`` (when ``fp32_path`` is given) and ``latency_ms_ort_int8``.
    Latency is measured with ``threads`` intra-op threads (default: torch's setting); the
    onnxruntime fp32 and int8 sessions are timed interleaved over ``latency_runs`` calls each.
    """
    model = _unwrap(model).eval()
    threads = threads or torch.get_num_threads()
    sess = ort_session(int8_path, threads)
    name = sess.get_inputs()[0].name
    correct_fp, correct_q, agree, total = 0, 0, 0, 0
    for batch in val_loader:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ValueError("val_loader must yield (images, labels) batches")
        images, labels = batch[0].float(), batch[1]
        pred_fp = model(images).argmax(1)
        pred_q = torch.from_numpy(sess.run(None, {name: images.contiguous().numpy()})[0]).argmax(1)
        correct_fp += int((pred_fp == labels).sum())
        correct_q += int((pred_q == labels).sum())
        agree += int((pred_fp == pred_q).sum())
        total += labels.numel()
        if max_images is not None and total >= max_images:
            break
    if total == 0:
        raise ValueError("val_loader yielded no images")
    x = _example(model, res, 1)
    x_np = x.numpy()
    result = {"images": float(total), "top1_fp32": correct_fp / total, "top1_int8": correct_q / total,
              "argmax_agreement": agree / total}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            result["latency_ms_torch_fp32"] = 1e3 * median_seconds([lambda: model_cl(x_cl)], latency_runs, warmup=5)[0]
    finally:
        torch.set_num_threads(old_threads)
    calls = {"latency_ms_ort_int8": lambda: sess.run(None, {name: x_np})}
    if fp32_path is not None:
        sess_fp = ort_session(fp32_path, threads)
        calls["latency_ms_ort_fp32"] = lambda: sess_fp.run(None, {name: x_np})
    # fp32 and int8 sessions timed interleaved, in blocks of 10 calls: both see the same machine noise
    seconds = median_seconds(list(calls.values()), max(latency_runs // 10, 1), warmup=5, inner=10)
    result.update({key: 1e3 * sec for key, sec in zip(calls, seconds)})
    return result


# --- checkpoints, data and the CLI ------------------------------------------------------

def model_from_checkpoint(ckpt: str | Path | None, model_name: str | None, num_classes: int | None = None,
                          res: int | None = None) -> tuple[nn.Module, int]:
    """(model, resolution): rebuilt from a zoo training checkpoint with its own preprocessing, or a
    freshly initialized ``model_name`` when no checkpoint is given."""
    import zoo
    from zoo.checkpoint import load_checkpoint

    if ckpt is None:
        if model_name is None:
            raise ValueError("give --model NAME or --ckpt PATH")
        return zoo.create_model(model_name, num_classes=num_classes or 1000).eval(), res or 224
    model, info = load_checkpoint(ckpt)
    pre = info["preprocessing"]
    model.pretrained_cfg = dict(model.pretrained_cfg, mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                                crop_pct=float(pre["crop_pct"]), interpolation=pre["interpolation"])
    return model, res or int(pre["val_res"])


def image_loaders(
    model: nn.Module, root: str | Path, res: int = 224, batch_size: int = 32, num_calib: int = 300,
    max_val: int | None = None, seed: int = 0,
) -> tuple[Any, Any]:
    """(calibration loader over ``num_calib`` random train images, val loader) with the model's eval preprocessing."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision.transforms import v2

    from zoo.data import eval_transform, normalize_transform

    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise ValueError(f"{root} must hold train/<class>/*.JPEG and val/<class>/*.JPEG")
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    tf = v2.Compose([
        eval_transform(res, float(cfg.get("crop_pct", 0.875)), cfg.get("interpolation", "bilinear")),
        normalize_transform(cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))),
    ])
    train = datasets.ImageFolder(str(root / "train"), tf)
    val = datasets.ImageFolder(str(root / "val"), tf)
    gen = torch.Generator().manual_seed(seed)
    calib_idx = torch.randperm(len(train), generator=gen)[:num_calib].tolist()
    if max_val is not None:
        val = Subset(val, torch.randperm(len(val), generator=gen)[:max_val].tolist())
    calib = DataLoader(Subset(train, calib_idx), batch_size=batch_size, num_workers=0)
    return calib, DataLoader(val, batch_size=batch_size, num_workers=0)


def _default_data_root() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette2-224"
    return shared if shared.is_dir() else Path(__file__).resolve().parent / "data" / "imagenette_mini"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point (``python -m zoo.deploy {export,quantize} ...``)."""
    parser = argparse.ArgumentParser(prog="python -m zoo.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("export", "quantize"):
        p = sub.add_parser(cmd)
        p.add_argument("--model", default=None, help="zoo model name (random init) when no --ckpt is given")
        p.add_argument("--ckpt", default=None, help="zoo training checkpoint: model and preprocessing come from it")
        p.add_argument("--num-classes", type=int, default=None)
        p.add_argument("--res", type=int, default=None, help="default: the checkpoint's val resolution, else 224")
        p.add_argument("--opset", type=int, default=17)
        p.add_argument("--out", default="outputs/deploy", help="output folder")
    q = sub.choices["quantize"]
    q.add_argument("--data", default=str(_default_data_root()), help="ImageFolder root with train/ and val/")
    q.add_argument("--calib", type=int, default=300, help="calibration images from train/")
    q.add_argument("--max-val", type=int, default=None, help="evaluate on at most this many val images")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"],
                   help="activation range calibration")
    q.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    q.add_argument("--csv", default=None, help="record the result as a row of this CSV (e.g. results/int8.csv)")
    args = parser.parse_args(argv)
    model, args.res = model_from_checkpoint(args.ckpt, args.model, args.num_classes, args.res)
    out = Path(args.out) / model.model_config["name"]
    if args.cmd == "export":
        path = export_onnx(fold_bn(model), out / "model_fp32.onnx", res=args.res, opset=args.opset)
        diff = check_onnx(model, path, args.res)
        print(f"wrote {path}; max abs diff vs PyTorch {diff:.2e} (batch 1 and 3)")
        return {"path": str(path), "max_abs_diff": diff}
    torch.set_num_threads(args.threads)
    calib, val = image_loaders(model, args.data, args.res, num_calib=args.calib, max_val=args.max_val)
    fp32_path, int8_path = quantize_int8(model, calib, out, args.res, args.calib, opset=args.opset,
                                         calibrate_method=args.method, percentile=args.percentile)
    report = evaluate_int8(model, int8_path, val, fp32_path, args.res, threads=args.threads)
    ops = count_int8_ops(int8_path)
    print(f"int8 model: {int8_path}")
    print("ops run by onnxruntime:", ", ".join(f"{k} x{v}" for k, v in ops.items()))
    for key, value in report.items():
        print(f"{key:>24}: {value:.4f}")
    if args.csv is not None:
        command = " ".join(["python -m zoo.deploy", *(sys.argv[1:] if argv is None else argv)])
        record_int8(args.csv, _int8_row(model, args, report, command))
        print(f"recorded in {args.csv}")
    return {"int8_path": str(int8_path), **report, "ops": ops}


INT8_COLUMNS = (
    "model", "checkpoint_run", "val_images", "top1_fp32", "top1_int8", "top1_change", "argmax_agreement",
    "ort_fp32_bs1_ms", "ort_int8_bs1_ms", "torch_fp32_bs1_ms", "res", "calibration", "calibration_images",
    "threads", "machine", "command",
)


def _int8_row(model: nn.Module, args: argparse.Namespace, report: dict[str, float], command: str) -> dict[str, str]:
    from zoo.bench import machine_info

    ckpt = Path(args.ckpt) if args.ckpt else None
    run = f"{ckpt.parents[2].name}/{ckpt.parents[1].name}" if ckpt and ckpt.parent.name == "checkpoints" else str(ckpt)
    machine = machine_info(args.threads)
    calibration = f"percentile {args.percentile:g}" if args.method == "percentile" else args.method
    return {
        "model": model.model_config["name"], "checkpoint_run": run, "val_images": str(int(report["images"])),
        "top1_fp32": f"{100 * report['top1_fp32']:.2f}", "top1_int8": f"{100 * report['top1_int8']:.2f}",
        "top1_change": f"{100 * (report['top1_int8'] - report['top1_fp32']):+.2f}",
        "argmax_agreement": f"{100 * report['argmax_agreement']:.2f}",
        "ort_fp32_bs1_ms": f"{report['latency_ms_ort_fp32']:.3f}",
        "ort_int8_bs1_ms": f"{report['latency_ms_ort_int8']:.3f}",
        "torch_fp32_bs1_ms": f"{report['latency_ms_torch_fp32']:.3f}", "res": str(args.res),
        "calibration": calibration, "calibration_images": str(args.calib), "threads": str(args.threads),
        "machine": f"{machine['cpu']}, {machine['logical_cpus']} CPUs, onnxruntime {machine['onnxruntime']}",
        "command": command,
    }


def record_int8(path: str | Path, row: dict[str, str]) -> None:
    """Add ``row`` to the int8 results CSV, replacing an earlier row of the same model, run and calibration.

    The file is rewritten atomically; a CSV with other columns is refused rather than overwritten.
    """
    path = Path(path)
    rows: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != INT8_COLUMNS:
                raise ValueError(f"{path} has columns {reader.fieldnames}, expected {list(INT8_COLUMNS)}; "
                                 "pass another --csv file")
            rows = list(reader)
    from zoo.report import write_table

    key = ("model", "checkpoint_run", "calibration")
    rows = [r for r in rows if tuple(r[k] for k in key) != tuple(row[k] for k in key)] + [row]
    write_table(path, rows, INT8_COLUMNS)


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
