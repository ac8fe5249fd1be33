"""``python -m zoo.tools.compress``: what each compression step buys, measured (results/compress.csv).

The design notes' recipe (seeds 001) is: design a network, prune its channels, then quantize. This
tool measures the checkpoints of one network along that path on the same val set and the same machine:

    python -m zoo.tools.compress measure --name mobilenetv3_large_100 \\
        --stage base=logs/.../base/best.ckpt --stage pruned=... --stage pruned_distilled=... \\
        [--stage width_075_scratch=...] [--data ../shared/data/imagenette2-224] [--csv results/compress.csv]
    python -m zoo.tools.compress plot [--csv results/compress.csv] [--out results/compress.png]

For every stage: params and MACs of the deployed network, top-1 of the PyTorch model and of its int8
onnxruntime model (static QDQ, the ``python -m zoo.deploy quantize`` defaults), and batch-1 latency on
three engines (PyTorch eager, onnxruntime fp32, onnxruntime int8), all stages and engines timed
interleaved in one round so that their ratios see the same machine noise. The first stage is the
reference of the ``*_vs_base`` columns: MACs and latency as a fraction of the base's. Torch-Pruning's
own benchmark halved ResNet-50's MACs for a 26% latency cut; these columns say what pruning buys here.

The plot draws each network's path base -> pruned -> pruned_distilled -> int8 (the last stage in int8)
on the accuracy-vs-latency plane (onnxruntime, the deployment engine); other stages (e.g. the
width-multiplier network trained from scratch) are drawn as single points.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from zoo._cli import run_cli
from zoo.deploy.__main__ import _default_data_root, image_loaders
from zoo.deploy.int8 import evaluate_int8, quantize_int8
from zoo.deploy.onnx import example_input, ort_session
from zoo.measure.complexity import count_macs, count_params
from zoo.measure.records import checkpoint_run, machine_info, read_table, save_figure, write_table
from zoo.measure.timing import median_seconds, torch_threads
from zoo.models.fuse import reparameterize
from zoo.models.pretrained import load_model

RESULTS = Path(__file__).resolve().parents[2] / "results"
ENGINES = ("torch", "ort_fp32", "ort_int8")
PATH_STAGES = ("base", "pruned", "pruned_distilled")
COLUMNS = (
    "name", "stage", "model", "checkpoint_run", "res", "params", "macs_m", "top1_fp32", "top1_int8",
    *(f"{e}_bs1_ms" for e in ENGINES), "macs_vs_base", *(f"{e}_vs_base" for e in ENGINES),
    "val_images", "threads", "machine", "command",
)


def parse_stages(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """``["base=PATH", ...]`` -> ``[("base", Path), ...]``, in order; the first is the reference."""
    stages: list[tuple[str, Path]] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"--stage takes LABEL=CHECKPOINT (e.g. base=logs/.../best.ckpt), got {spec!r}")
        if label in (s for s, _ in stages):
            raise ValueError(f"stage {label!r} given twice")
        if not Path(path).exists():
            raise FileNotFoundError(f"stage {label!r}: no checkpoint at {path}")
        stages.append((label, Path(path)))
    if not stages:
        raise ValueError("give at least one --stage LABEL=CHECKPOINT (the first is the base)")
    return stages


def measure(
    name: str, stages: Sequence[tuple[str, Path]], data: str | Path, threads: int = 2, calib: int = 300,
    max_val: int | None = None, repeats: int = 30, command: str = "",
) -> list[dict[str, str]]:
    """One row per stage (module docs): accuracy fp32/int8, params, MACs, interleaved batch-1 latencies.

    PyTorch runs with ``threads`` intra-op threads meanwhile (its previous count is restored after).
    """
    rows: list[dict[str, str]] = []
    runners: list[Callable[[], Any]] = []
    with tempfile.TemporaryDirectory(prefix="zoo-compress-") as tmp, torch_threads(threads):
        for label, ckpt in stages:
            model, _ = load_model(ckpt)
            res = int(model.pretrained_cfg["input_size"][-1])
            calib_loader, val = image_loaders(model, data, res, num_calib=calib, max_val=max_val)
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime's calibrators print their progress
                fp32_path, int8_path = quantize_int8(model, calib_loader, Path(tmp) / label, res, calib)
            report = evaluate_int8(model, int8_path, val, threads=threads, latency_runs=0)
            deployed = reparameterize(model).eval().to(memory_format=torch.channels_last)
            x = example_input(model, res, 1)
            x_cl, x_np = x.contiguous(memory_format=torch.channels_last), x.numpy()
            sessions = [ort_session(p, threads) for p in (fp32_path, int8_path)]
            feeds = [{s.get_inputs()[0].name: x_np} for s in sessions]
            runners += [lambda m=deployed, x=x_cl: m(x)] + [
                lambda s=s, f=f: s.run(None, f) for s, f in zip(sessions, feeds)]
            rows.append({
                "name": name, "stage": label, "model": model.model_config["name"],
                "checkpoint_run": checkpoint_run(ckpt), "res": str(res), "params": str(count_params(deployed)),
                "macs_m": f"{count_macs(deployed, res) / 1e6:.1f}",
                "top1_fp32": f"{100 * report['top1_fp32']:.2f}", "top1_int8": f"{100 * report['top1_int8']:.2f}",
                "val_images": str(int(report["images"])), "threads": str(threads), "command": command,
            })
        with torch.inference_mode():
            seconds = median_seconds(runners, repeats, warmup=5, inner=10)
    info = machine_info(threads)
    machine = f"{info['cpu']}, {info['logical_cpus']} CPUs, torch {info['torch']}, onnxruntime {info['onnxruntime']}"
    for i, row in enumerate(rows):
        row.update({f"{e}_bs1_ms": f"{1e3 * seconds[3 * i + j]:.3f}" for j, e in enumerate(ENGINES)})
        row["machine"] = machine
    base = rows[0]
    for row in rows:
        row["macs_vs_base"] = f"{float(row['macs_m']) / float(base['macs_m']):.3f}"
        for e in ENGINES:
            row[f"{e}_vs_base"] = f"{float(row[f'{e}_bs1_ms']) / float(base[f'{e}_bs1_ms']):.3f}"
    return rows


def record(path: str | Path, new_rows: Sequence[dict[str, str]]) -> None:
    """Replace the rows of the same ``name`` in the CSV at ``path`` by ``new_rows`` (atomic rewrite); a
    CSV with other columns is refused rather than overwritten."""
    path = Path(path)
    rows = read_table(path)
    if rows and tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path} has columns {list(rows[0])}, expected {list(COLUMNS)}; pass another --csv file")
    names = {r["name"] for r in new_rows}
    write_table(path, [r for r in rows if r["name"] not in names] + list(new_rows), COLUMNS)


def plot(rows: Sequence[dict[str, str]], path: str | Path) -> Path:
    """Accuracy against onnxruntime batch-1 latency: each name's path base -> pruned -> pruned_distilled
    -> int8 (of the last path stage), other stages as single points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no rows to plot")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name in dict.fromkeys(r["name"] for r in rows):
        own = {r["stage"]: r for r in rows if r["name"] == name}
        path_rows = [own[s] for s in PATH_STAGES if s in own]
        xs = [float(r["ort_fp32_bs1_ms"]) for r in path_rows]
        ys = [float(r["top1_fp32"]) for r in path_rows]
        labels = [r["stage"] for r in path_rows]
        if path_rows:
            xs.append(float(path_rows[-1]["ort_int8_bs1_ms"]))
            ys.append(float(path_rows[-1]["top1_int8"]))
            labels.append(f"{path_rows[-1]['stage']} int8")
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        for x, y, text in zip(xs, ys, labels):
            ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for stage, r in own.items():
            if stage not in PATH_STAGES:
                ax.scatter([float(r["ort_fp32_bs1_ms"])], [float(r["top1_fp32"])], marker="x", color=line.get_color())
                ax.annotate(stage, (float(r["ort_fp32_bs1_ms"]), float(r["top1_fp32"])), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("onnxruntime batch-1 latency (ms), fp32 or int8")
    ax.set_ylabel("Imagenette val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Prune, distill, quantize: each step measured (128 px, 2-core CPU)")
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point; see the module docs."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.compress", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="measure a network's stages and record them")
    m.add_argument("--name", required=True, help="row group, e.g. the base model's name")
    m.add_argument("--stage", action="append", default=[], help="LABEL=CHECKPOINT, the first is the base")
    m.add_argument("--data", default=str(_default_data_root()), help="ImageFolder root with train/ and val/")
    m.add_argument("--calib", type=int, default=300, help="int8 calibration images from train/")
    m.add_argument("--max-val", type=int, default=None)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--repeats", type=int, default=30, help="interleaved rounds of 10 calls per stage and engine")
    m.add_argument("--csv", default=str(RESULTS / "compress.csv"))
    p = sub.add_parser("plot", help="draw results/compress.csv")
    p.add_argument("--csv", default=str(RESULTS / "compress.csv"))
    p.add_argument("--out", default=str(RESULTS / "compress.png"))
    args = parser.parse_args(argv)
    if args.cmd == "measure":
        command = " ".join(["python -m zoo.tools.compress", *(sys.argv[1:] if argv is None else argv)])
        rows = measure(args.name, parse_stages(args.stage), args.data, args.threads, args.calib, args.max_val,
                       args.repeats, command)
        record(args.csv, rows)
        for r in rows:
            print(", ".join(f"{k}={r[k]}" for k in ("stage", "macs_m", "top1_fp32", "top1_int8", *(
                f"{e}_bs1_ms" for e in ENGINES), "macs_vs_base", *(f"{e}_vs_base" for e in ENGINES))))
        print(f"recorded in {args.csv}")
    else:
        rows = read_table(args.csv)
        if not rows:
            raise FileNotFoundError(f"no rows in {args.csv}: run `python -m zoo.tools.compress measure` first")
        print(f"wrote {plot(rows, args.out)}")


if __name__ == "__main__":
    run_cli(main)
