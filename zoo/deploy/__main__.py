"""``python -m zoo.deploy``: export, int8 quantization and per-op profiling of a trained checkpoint or a named
model, with onnxruntime (the default engine) or OpenVINO (``--engine openvino``, ``pip install 'zoo[openvino]'``).

    python -m zoo.deploy export --model mobilenetv3_small_100 [--ckpt PATH] [--out DIR] [--engine openvino]
    python -m zoo.deploy quantize --ckpt PATH [--data DIR] [--calib 300] [--csv results/int8.csv] [--engine openvino]
    python -m zoo.deploy profile --model mobilenetv2_100 [--ckpt PATH] [--engine openvino] [--int8] [--compare]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from zoo._cli import run_cli
from zoo.data import MINI_ROOT, Preprocessing
from zoo.data.folder import load_rgb
from zoo.deploy.int8 import count_int8_ops, evaluate_int8, quantize_int8
from zoo.deploy.onnx import check_onnx, export_onnx
from zoo.deploy.openvino import (PRESETS, check_openvino, count_openvino_ops, evaluate_openvino, export_openvino,
                                 quantize_openvino)
from zoo.deploy.profile import OpTime, format_comparison, format_profile, profile_model
from zoo.measure.records import checkpoint_run, machine_info, write_table
from zoo.measure.timing import torch_threads
from zoo.models.fuse import reparameterize
from zoo.models.pretrained import load_model
from zoo.models.registry import create_model


ENGINES = ("onnxruntime", "openvino")
#: engine -> the name its latencies have in the reports of evaluate_int8 / evaluate_openvino
LATENCY_KEYS = {"onnxruntime": "ort", "openvino": "openvino"}


def model_from_checkpoint(ckpt: str | Path | None, model_name: str | None, num_classes: int | None = None,
                          res: int | None = None) -> tuple[nn.Module, int]:
    """(model, resolution): rebuilt from a zoo training checkpoint or ``zoo.save_pretrained`` directory
    (its preprocessing in ``model.pretrained_cfg``), or a freshly initialized ``model_name`` when no
    checkpoint is given.
    The resolution is ``res``, else the model's ``pretrained_cfg`` one (a checkpoint's val resolution)."""
    if ckpt is not None:
        model, _ = load_model(ckpt)
    elif model_name is not None:
        model = create_model(model_name, num_classes=num_classes or 1000).eval()
    else:
        raise ValueError("give --model NAME or --ckpt PATH")
    return model, res or Preprocessing.from_pretrained_cfg(model).res


def image_loaders(
    model: nn.Module, root: str | Path, res: int | None = None, batch_size: int = 32, num_calib: int = 300,
    max_val: int | None = None, seed: int = 0,
) -> tuple[Any, Any]:
    """(calibration loader over ``num_calib`` random train images, val loader) with the model's eval
    preprocessing (``model.pretrained_cfg``, at ``res`` when given)."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets

    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise ValueError(f"{root} must hold train/<class>/*.JPEG and val/<class>/*.JPEG")
    tf = Preprocessing.from_pretrained_cfg(model, res).transform()
    train = datasets.ImageFolder(str(root / "train"), tf, loader=load_rgb)
    val = datasets.ImageFolder(str(root / "val"), tf, loader=load_rgb)
    gen = torch.Generator().manual_seed(seed)
    calib_idx = torch.randperm(len(train), generator=gen)[:num_calib].tolist()
    if max_val is not None:
        val = Subset(val, torch.randperm(len(val), generator=gen)[:max_val].tolist())
    calib = DataLoader(Subset(train, calib_idx), batch_size=batch_size, num_workers=0)
    return calib, DataLoader(val, batch_size=batch_size, num_workers=0)


def _default_data_root() -> Path:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenette2-224"
    return shared if shared.is_dir() else MINI_ROOT


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point (``python -m zoo.deploy {export,quantize,profile} ...``)."""
    parser = argparse.ArgumentParser(prog="python -m zoo.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("export", "quantize", "profile"):
        p = sub.add_parser(cmd)
        p.add_argument("--model", default=None, help="zoo model name (random init) when no --ckpt is given")
        p.add_argument("--ckpt", default=None, help="zoo training checkpoint or zoo.save_pretrained directory: "
                       "model and preprocessing come from it")
        p.add_argument("--num-classes", type=int, default=None)
        p.add_argument("--res", type=int, default=None, help="default: the checkpoint's val resolution, else 224")
        p.add_argument("--opset", type=int, default=17)
        p.add_argument("--out", default=None if cmd == "profile" else "outputs/deploy",
                       help="output folder (profile: default a temporary one)")
        p.add_argument("--engine", default="onnxruntime", choices=ENGINES,
                       help="openvino needs pip install 'zoo[openvino]'")
    q = sub.choices["quantize"]
    q.add_argument("--data", default=str(_default_data_root()), help="ImageFolder root with train/ and val/")
    q.add_argument("--calib", type=int, default=300, help="calibration images from train/")
    q.add_argument("--max-val", type=int, default=None, help="evaluate on at most this many val images")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"],
                   help="onnxruntime: activation range calibration")
    q.add_argument("--percentile", type=float, default=99.99, help="onnxruntime: for --method percentile")
    q.add_argument("--preset", default="performance", choices=PRESETS,
                   help="openvino: NNCF's preset, symmetric (performance) or asymmetric (mixed) activations")
    q.add_argument("--csv", default=None, help="record the result as a row of this CSV (e.g. results/int8.csv)")
    pr = sub.choices["profile"]
    pr.add_argument("--threads", type=int, default=2)
    pr.add_argument("--runs", type=int, default=50, help="profiled batch-1 inferences, after 5 warm-up ones")
    pr.add_argument("--int8", action="store_true", help="profile the int8 model (calibrated on random images)")
    pr.add_argument("--calib", type=int, default=8, help="random calibration images for --int8")
    pr.add_argument("--compare", action="store_true", help="profile both engines, then compare them by op category")
    args = parser.parse_args(argv)
    model, args.res = model_from_checkpoint(args.ckpt, args.model, args.num_classes, args.res)
    if args.cmd == "profile":
        return profile_command(model, args)
    out = Path(args.out) / model.model_config["name"]
    use_openvino = args.engine == "openvino"
    if args.cmd == "export":
        if use_openvino:
            path = export_openvino(reparameterize(model), out / "model_fp32.xml", res=args.res, opset=args.opset)
            diff = check_openvino(model, path, args.res)
        else:
            path = export_onnx(reparameterize(model), out / "model_fp32.onnx", res=args.res, opset=args.opset)
            diff = check_onnx(model, path, args.res)
        print(f"wrote {path}; max abs diff vs PyTorch on {args.engine} {diff:.2e} (batch 1 and 3)")
        return {"path": str(path), "max_abs_diff": diff}
    calib, val = image_loaders(model, args.data, args.res, num_calib=args.calib, max_val=args.max_val)
    with torch_threads(args.threads):
        if use_openvino:
            fp32_path, int8_path = quantize_openvino(model, calib, out, args.res, args.calib, preset=args.preset,
                                                     opset=args.opset)
            report = evaluate_openvino(model, int8_path, val, fp32_path, args.res, threads=args.threads)
            ops = count_openvino_ops(int8_path)
        else:
            fp32_path, int8_path = quantize_int8(model, calib, out, args.res, args.calib, opset=args.opset,
                                                 calibrate_method=args.method, percentile=args.percentile)
            report = evaluate_int8(model, int8_path, val, fp32_path, args.res, threads=args.threads)
            ops = count_int8_ops(int8_path)
    print(f"int8 model: {int8_path}")
    print(f"ops run by {args.engine}:", ", ".join(f"{k} x{v}" for k, v in ops.items()))
    for key, value in report.items():
        print(f"{key:>24}: {value:.4f}")
    if args.csv is not None:
        command = " ".join(["python -m zoo.deploy", *(sys.argv[1:] if argv is None else argv)])
        record_int8(args.csv, _int8_row(model, args, report, command))
        print(f"recorded in {args.csv}")
    return {"int8_path": str(int8_path), **report, "ops": ops}


#: the int8 results CSV; ``engine_*_bs1_ms`` are the batch-1 latencies on the row's ``engine``
INT8_COLUMNS = (
    "model", "checkpoint_run", "engine", "val_images", "top1_fp32", "top1_int8", "top1_change", "argmax_agreement",
    "engine_fp32_bs1_ms", "engine_int8_bs1_ms", "torch_fp32_bs1_ms", "res", "calibration", "calibration_images",
    "threads", "machine", "command",
)


def profile_command(model: nn.Module, args: argparse.Namespace) -> dict[str, list[OpTime]]:
    """``profile``: the deployed model's time per op type on ``args.engine`` (both engines with ``--compare``),
    printed as markdown tables; the model files go to ``<out>/<engine>`` (``zoo.deploy.profile.profile_model``)."""
    engines = ENGINES if args.compare else (args.engine,)
    out = tempfile.TemporaryDirectory() if args.out is None else contextlib.nullcontext(args.out)
    with out as root:
        profiles = {engine: profile_model(model, engine, Path(root) / engine, args.res, args.threads, args.runs,
                                          int8=args.int8, num_calib=args.calib, opset=args.opset)
                    for engine in engines}
    for engine, ops in profiles.items():
        print(f"\n{engine} {'int8' if args.int8 else 'fp32'}: {model.model_config['name']} at {args.res} px, "
              f"batch 1, {args.threads} threads, mean of {args.runs} runs\n")
        print(format_profile(ops))
    if args.compare:
        print("\nby op category, ms per inference\n")
        print(format_comparison(profiles))
    return profiles


def _int8_row(model: nn.Module, args: argparse.Namespace, report: dict[str, float], command: str) -> dict[str, str]:
    machine = machine_info(args.threads)
    if args.engine == "openvino":
        calibration, version = f"nncf {args.preset}", importlib.metadata.version("openvino")
    else:
        calibration = f"percentile {args.percentile:g}" if args.method == "percentile" else args.method
        version = machine["onnxruntime"]
    latency = f"latency_ms_{LATENCY_KEYS[args.engine]}"
    return {
        "model": model.model_config["name"], "checkpoint_run": checkpoint_run(args.ckpt or None),
        "engine": args.engine,
        "val_images": str(int(report["images"])),
        "top1_fp32": f"{100 * report['top1_fp32']:.2f}", "top1_int8": f"{100 * report['top1_int8']:.2f}",
        "top1_change": f"{100 * (report['top1_int8'] - report['top1_fp32']):+.2f}",
        "argmax_agreement": f"{100 * report['argmax_agreement']:.2f}",
        "engine_fp32_bs1_ms": f"{report[f'{latency}_fp32']:.3f}",
        "engine_int8_bs1_ms": f"{report[f'{latency}_int8']:.3f}",
        "torch_fp32_bs1_ms": f"{report['latency_ms_torch_fp32']:.3f}", "res": str(args.res),
        "calibration": calibration, "calibration_images": str(args.calib), "threads": str(args.threads),
        "machine": f"{machine['cpu']}, {machine['logical_cpus']} CPUs, {args.engine} {version}",
        "command": command,
    }


def record_int8(path: str | Path, row: dict[str, str]) -> None:
    """Add ``row`` to the int8 results CSV, replacing an earlier row of the same model, run, engine and calibration.

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
    key = ("model", "checkpoint_run", "engine", "calibration")
    rows = [r for r in rows if tuple(r[k] for k in key) != tuple(row[k] for k in key)] + [row]
    write_table(path, rows, INT8_COLUMNS)


if __name__ == "__main__":
    run_cli(main)
