"""The Imagenette results table: record finished runs, then render the README table and plot.

    python -m zoo.tools.report add RUN_DIR --command "python train.py experiment=imagenette_mobilenetv3_small"
    python -m zoo.tools.report render

``add`` reads a finished run's ``summary.json`` and ``metrics.csv``, measures the
model's CPU latency at batch 1 at the run's resolution (``latency`` re-measures every
row at once, for a quiet moment on a shared machine), copies the per-epoch metrics to
``results/runs/<run_name>.csv`` and writes one row (replacing an earlier row of the same
run name) to ``results/imagenette.csv``. ``render`` regenerates ``results/pareto.png``
and the table between the ``results`` markers of README.md from that CSV alone, so the
table, the plot and the recorded runs never drift apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

import torch

from zoo._cli import run_cli
from zoo.measure.records import machine_info, read_table, write_table
from zoo.measure.timing import benchmark
from zoo.models.checkpoint import load_checkpoint
from zoo.models.registry import create_model, get_entry

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
COLUMNS = [
    "run", "model", "family", "params", "macs_m", "res", "epochs", "batch_size", "recipe", "best_top1", "final_top1",
    "train_minutes", "train_img_per_s", "latency_bs1_ms", "machine", "git_commit", "command",
]
# Imagenette leaderboard (fastai/imagenette README; random init, top-1 on val)
LEADERBOARD = [("128 px, 5 epochs", 85.77), ("128 px, 20 epochs", 91.57), ("192 px, 20 epochs", 92.50)]
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def read_rows(path: Path | None = None) -> list[dict[str, str]]:
    return read_table(RESULTS / "imagenette.csv" if path is None else path)


def write_rows(rows: Sequence[dict[str, Any]], path: Path | None = None) -> None:
    write_table(RESULTS / "imagenette.csv" if path is None else path, rows, COLUMNS)


def add_run(run_dir: str | Path, command: str, recipe: str | None = None, latency_repeats: int = 30) -> dict[str, Any]:
    """Record one finished run (see the module docstring)."""
    run_dir = Path(run_dir).resolve()
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found: expected the directory of a finished train.py run")
    summary = json.loads(summary_path.read_text())
    run_name = run_dir.parent.name
    model, _ = load_checkpoint(summary["best_ckpt"])
    latency = benchmark(model, int(summary["val_res"]), 1, warmup=5, repeats=latency_repeats)
    machine = machine_info(threads=2)
    row = {
        "run": run_name,
        "model": summary["model"],
        "family": get_entry(summary["model"]).family,
        "params": summary["params"],
        "macs_m": round(summary["macs"] / 1e6, 1),
        "res": summary["train_res"],
        "epochs": summary["epochs"],
        "batch_size": summary["global_batch"],
        "recipe": recipe or _experiment_of(command) or run_name,
        "best_top1": round(summary["best_top1"], 2),
        "final_top1": round(summary["final_top1"], 2),
        "train_minutes": round(summary["train_time_s"] / 60, 1),
        "train_img_per_s": round(summary["train_img_per_s"], 1),
        "latency_bs1_ms": round(latency["ms"], 2),
        "machine": f"{machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} CPUs",
        "git_commit": _git_commit(),
        "command": command,
    }
    runs = RESULTS / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "metrics.csv", runs / f"{run_name}.csv")
    rows = [r for r in read_rows() if r["run"] != run_name] + [row]
    write_rows(sorted(rows, key=lambda r: (r["family"], r["model"], int(r["epochs"]))))
    return row


def measure_latency(rows: Sequence[dict[str, Any]], repeats: int = 50) -> list[dict[str, Any]]:
    """Re-measure every row's batch-1 CPU latency at its resolution, all in one quiet moment.

    Latency depends on the architecture and the resolution, not on the trained weights, so
    the model is rebuilt from its name (10 classes, as trained) rather than from a checkpoint.
    """
    torch.set_num_threads(2)
    out = []
    for row in rows:
        model = create_model(row["model"], num_classes=10)
        ms = benchmark(model, int(row["res"]), 1, warmup=10, repeats=repeats)["ms"]
        out.append({**row, "latency_bs1_ms": round(ms, 2)})
    return out


def _experiment_of(command: str) -> str | None:
    """The ``experiment=...`` choice of a train.py command line, if any."""
    for token in command.split():
        if token.startswith("experiment="):
            return token.split("=", 1)[1]
    return None


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    head = ("| model | epochs | top-1 best / final (%) | params (M) | MMACs @128 | CPU latency bs1 (ms) | "
            "train min | train img/s | command |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} | {float(r['best_top1']):.2f} / {float(r['final_top1']):.2f} | "
            f"{int(r['params']) / 1e6:.2f} | {r['macs_m']} | {r['latency_bs1_ms']} | {r['train_minutes']} | "
            f"{r['train_img_per_s']} | `{r['command']}` |"
        )
    lines.append("")
    lines.append("Leaderboard anchors (fast.ai Imagenette, large ResNet-style nets on GPUs): "
                 + "; ".join(f"{name}: {acc:.2f}%" for name, acc in LEADERBOARD) + ".")
    return "\n".join(lines)


_LOG_TICKS = (1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000)


def best_per_model(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """One row per (model, epochs): the run with the highest best top-1 (ties: the first recorded)."""
    best: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        key = (r["model"], r["epochs"])
        if key not in best or float(r["best_top1"]) > float(best[key]["best_top1"]):
            best[key] = r
    return list(best.values())


def plot(rows: Sequence[dict[str, str]], path: Path | None = None) -> Path:
    """Top-1 against MACs and against latency, one point per model and schedule (:func:`best_per_model`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    points = best_per_model(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "macs_m", "MMACs at the run's resolution"),
                           (axes[1], "latency_bs1_ms", "CPU latency, batch 1 (ms)")):
        for epochs, marker in (("5", "o"), ("20", "s")):
            sel = [r for r in points if r["epochs"] == epochs]
            ax.scatter([float(r[key]) for r in sel], [float(r["best_top1"]) for r in sel], marker=marker,
                       label=f"{epochs} epochs")
            for r in sel:
                ax.annotate(r["model"], (float(r[key]), float(r["best_top1"])), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        values = [float(r[key]) for r in points]
        ax.set_xticks([t for t in _LOG_TICKS if 0.8 * min(values) <= t <= 1.25 * max(values)])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("Imagenette val top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("zoo on Imagenette, 128 px, from scratch on a 2-core CPU (best run per model and schedule)")
    fig.tight_layout()
    path = RESULTS / "pareto.png" if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(readme: Path = REPO / "README.md") -> None:
    """Regenerate ``results/pareto.png`` and the README table from ``results/imagenette.csv``."""
    rows = read_rows()
    if not rows:
        raise SystemExit("results/imagenette.csv has no runs yet: record one with `python -m zoo.tools.report add RUN_DIR`")
    plot(rows)
    text = readme.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"README.md lacks the {MARK_START} ... {MARK_END} markers around the results table")
    before, rest = text.split(MARK_START, 1)
    _, after = rest.split(MARK_END, 1)
    readme.write_text(f"{before}{MARK_START}\n{markdown_table(rows)}\n{MARK_END}{after}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.report", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="record a finished run")
    add.add_argument("run_dir")
    add.add_argument("--command", required=True, help="the exact command that produced the run")
    add.add_argument("--recipe", default=None)
    sub.add_parser("render", help="regenerate results/pareto.png and the README table")
    sub.add_parser("latency", help="re-measure the batch-1 latency of every recorded run (on a quiet machine)")
    args = parser.parse_args(argv)
    if args.cmd == "add":
        print(json.dumps(add_run(args.run_dir, args.command, args.recipe), indent=2))
    elif args.cmd == "latency":
        write_rows(measure_latency(read_rows()))
        render()
    else:
        render()


if __name__ == "__main__":
    run_cli(main)
