"""Recorded results, and every table of the README and docs generated from them.

    python -m zoo.tools.report add RUN_DIR --command "python train.py experiment=imagenette_mobilenetv3_small"
    python -m zoo.tools.report latency
    python -m zoo.tools.report render [--repo DIR] [--check]

``add`` reads a finished run's ``summary.json`` and ``metrics.csv``, measures the
model's CPU latency at batch 1 at the run's resolution, copies the per-epoch metrics to
``results/runs/<run_name>.csv`` and writes one row (replacing an earlier row of the same
run name) to ``results/imagenette.csv``. ``latency`` re-measures the latency of every row
at once (for a quiet moment on a shared machine), then renders.

``render`` rewrites, in README.md and every ``docs/*.md`` page, each block between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` with what :data:`BLOCKS` generates for
NAME, and redraws ``results/pareto.png``:

* ``models``: the model table (params and MACs counted from the code, the reference
  implementation and its published ImageNet top-1 where torchvision records it, the best
  Imagenette top-1 of ``results/imagenette.csv``);
* ``families``: every registered model by family and architecture table;
* ``results``: the Imagenette runs, ``results/imagenette.csv``;
* ``tuning``: per-epoch loss and top-1 of the 20-epoch MobileNetV3-Large runs and tries,
  ``results/runs/imagenette_mobilenetv3_large_100_20ep*.csv`` and ``results/runs/tuning/*.csv``;
* ``bench``: zoo against torchvision/timm, ``results/bench.csv`` (its machine line from
  ``results/bench.log``, the second run from ``results/bench_rerun_full.csv``);
* ``bench-runs``: every committed benchmark CSV, its conditions and the spread of its ratios;
* ``int8``: post-training quantization, ``results/int8.csv``;
* ``stage-map``: :func:`zoo.tools.stages.stage_map_markdown`.

The output depends on those files, the code and the installed torchvision's weight metadata
only, so rendering twice changes nothing,
and ``--check`` (which writes nothing) fails when a page differs from what render writes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from zoo._cli import run_cli
from zoo.measure.records import machine_info, read_table, save_figure, write_table
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
_BLOCK = re.compile(r"<!-- ([a-z0-9-]+):start -->\n(.*?)<!-- ([a-z0-9-]+):end -->", re.S)
_OPEN = re.compile(r"<!-- ([a-z0-9-]+):(start|end) -->")


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


# ------------------------------------------------------------------ the generated blocks
# Each takes the results folder and returns the markdown between its markers (no trailing newline).


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    """The Imagenette runs of ``results/imagenette.csv`` and the leaderboard anchors."""
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


def results_block(results: Path) -> str:
    rows = read_rows(results / "imagenette.csv")
    if not rows:
        raise SystemExit(f"{results / 'imagenette.csv'} has no runs yet: record one with "
                         "`python -m zoo.tools.report add RUN_DIR --command ...`")
    return markdown_table(rows)


def _config_models(repo: Path) -> list[tuple[str, str]]:
    """(config name, registered model) of every ``configs/model/*.yaml`` that names one model."""
    import yaml

    from zoo.models.registry import list_models

    known = set(list_models())
    out = []
    for path in sorted((repo / "configs" / "model").glob("*.yaml")):
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
        if name in known:
            out.append((path.stem, name))
    return out


def _torchvision_top1(model: str) -> float | None:
    """ImageNet top-1 that torchvision's weight metadata records for its default weights of ``model``."""
    import torchvision

    try:
        meta = torchvision.models.get_model_weights(model).DEFAULT.meta
        return float(meta["_metrics"]["ImageNet-1K"]["acc@1"])
    except (ValueError, KeyError, AttributeError):
        return None


def models_table(results: Path) -> str:
    """One row per ``configs/model`` model: size and cost at 224 px / 1000 classes, reference, Imagenette top-1."""
    from zoo.measure.complexity import count_macs, count_params

    best: dict[tuple[str, str], float] = {}
    for r in read_rows(results / "imagenette.csv"):
        key = (r["model"], r["epochs"])
        best[key] = max(best.get(key, 0.0), float(r["best_top1"]))
    lines = ["| model | `train.py` config | params (M) | MMACs @224 | reference implementation (ImageNet top-1 %) "
             "| Imagenette top-1 (%), 5 / 20 epochs |",
             "|---|---|---:|---:|---|---:|"]
    for config, name in _config_models(REPO):
        with torch.device("meta"):  # sizes and MACs need shapes only
            model = create_model(name)
            params, macs = count_params(model), count_macs(model, 224)
        refs = []
        for source, ref in get_entry(name).references.items():
            top1 = _torchvision_top1(ref["model"]) if source == "torchvision" else None
            refs.append(f"{source} `{ref['model']}`" + (f" ({top1:.2f})" if top1 is not None else ""))
        imagenette = " / ".join(f"{best[(name, e)]:.2f}" if (name, e) in best else "-" for e in ("5", "20"))
        lines.append(f"| {name} | `model={config}` | {params / 1e6:.2f} | {macs / 1e6:.1f} | "
                     f"{', '.join(refs) or '-'} | {imagenette} |")
    return "\n".join(lines)


def tuning_table(results: Path) -> str:
    """Per-epoch train loss and val top-1 of the 20-epoch MobileNetV3-Large runs and of the tries around them."""
    runs = results / "runs"
    pattern = "imagenette_mobilenetv3_large_100_20ep*.csv"
    paths = sorted(runs.glob(pattern)) + sorted((runs / "tuning").glob(pattern))
    if not paths:
        raise SystemExit(f"no per-epoch metrics under {runs}")
    lines = ["| per-epoch metrics | epochs | val top-1 best / final (%) | val top-1 by epoch (%) "
             "| train loss by epoch |",
             "|---|---:|---:|---|---|"]
    for path in paths:
        rows = read_table(path)
        acc = [float(r["val/acc1"]) for r in rows]
        loss = [float(r["train/loss"]) for r in rows]
        lines.append(f"| `{path.relative_to(results.parent).as_posix()}` | {len(rows)} | "
                     f"{max(acc):.2f} / {acc[-1]:.2f} | {' '.join(f'{a:.1f}' for a in acc)} | "
                     f"{' '.join(f'{x:.2f}' for x in loss)} |")
    return "\n".join(lines)


# bench.csv metric -> column title, in table order
BENCH_COLUMNS = {
    "train_img_s": "train img/s @128 bs64", "latency_b1_ms": "bs1 ms @224", "throughput_b32_img_s": "bs32 img/s @224",
    "latency_b1_ms_bn_folded": "bs1 ms, zoo deployed", "ort_latency_b1_ms": "bs1 ms, onnxruntime",
}


def _by_pair(rows: Sequence[dict[str, str]]) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    out: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in rows:
        out.setdefault((r["zoo_model"], r["ref_model"]), {})[r["metric"]] = r
    return out


def _outside(rows: Sequence[dict[str, str]], floor: float = 0.95) -> list[dict[str, str]]:
    return [r for r in rows if float(r["speedup"]) < floor]


def _bench_table(rows: Sequence[dict[str, str]], source: str, command: str, log: Path, results: Path) -> list[str]:
    """The table of one benchmark CSV (``source``, run by ``command``) and what it shows, in numbers."""
    machine = next((line.removeprefix("machine: ").strip() for line in log.read_text().splitlines()
                    if line.startswith("machine: ")), None) if log.is_file() else None
    lines = [f"Command: `{command}`." + (f" Machine, from `{log.relative_to(results.parent).as_posix()}`: {machine}." if machine else ""),
             "Each cell is zoo / reference (zoo/ref); for img/s higher is better, for ms lower is better.", "",
             "| zoo model vs reference | " + " | ".join(BENCH_COLUMNS.values()) + " |",
             "|---|" + "---:|" * len(BENCH_COLUMNS)]
    for (zoo_name, ref_name), metrics in _by_pair(rows).items():
        cells = []
        for metric in BENCH_COLUMNS:
            r = metrics.get(metric)
            cells.append(f"{float(r['zoo']):.1f} / {float(r['ref']):.1f} ({float(r['ratio']):.2f})" if r else "-")
        lines.append(f"| {zoo_name} vs {ref_name} | " + " | ".join(cells) + " |")
    slow = min(rows, key=lambda r: float(r["speedup"]))
    lines += ["", f"Over all {len(rows)} figures of `{source}`, {len(rows) - len(_outside(rows))} have zoo "
              f"within 5% of the reference's speed or faster; the slowest is {slow['zoo_model']} `{slow['metric']}` "
              f"at {float(slow['speedup']):.3f}x the reference's speed."]
    return lines


def _bench_rows(path: Path) -> list[dict[str, str]]:
    rows = read_table(path)
    if not rows:
        raise SystemExit(f"{path} has no rows: run `python -m zoo.tools.bench`")
    return rows


def bench_block(results: Path) -> str:
    """The benchmark table of ``results/bench.csv`` and what it shows, in numbers."""
    rows = _bench_rows(results / "bench.csv")
    repeats = sorted({r["repeats"] for r in rows})
    threads = sorted({r["threads"] for r in rows})
    command = f"python -m zoo.tools.bench --repeats {'/'.join(repeats)} --threads {'/'.join(threads)}"
    lines = _bench_table(rows, "results/bench.csv", command, results / "bench.log", results)
    folded = [r for r in rows if r["metric"] == "latency_b1_ms_bn_folded"]
    groups = {"the ResNets": [r for r in folded if r["zoo_model"].startswith("resnet")],
              "the other models": [r for r in folded if not r["zoo_model"].startswith("resnet")]}
    parts = []
    for label, sel in groups.items():
        if sel:
            less = sorted(100 * (1 - float(r["ratio"])) for r in sel)
            parts.append(f"{less[0]:.0f}-{less[-1]:.0f}% less time for {label}")
    if parts:
        lines.append("With BatchNorm folded, zoo's batch-1 latency against the unfolded reference: "
                     + ", ".join(parts) + ".")
    rerun = read_table(results / "bench_rerun_full.csv")
    if rerun:
        out = _outside(rerun)
        described = "; ".join(f"{r['zoo_model']} `{r['metric']}` {float(r['zoo']):.2f} / {float(r['ref']):.2f} "
                              f"{r['unit']} ({float(r['speedup']):.3f}x)" for r in out)
        lines.append(f"A second run of the same command (`results/bench_rerun_full.csv`): {len(out)} of {len(rerun)} "
                     "figures below 0.95x the reference's speed" + (f": {described}." if out else "."))
    return "\n".join(lines)


def bench_runs_table(results: Path) -> str:
    """Every committed benchmark run (``results/**/bench*.csv``): its conditions and the spread of zoo/ref speeds
    (the engine tables, ``bench_engines.csv``, are not zoo-vs-reference runs)."""
    paths = sorted(p for p in results.rglob("bench*.csv") if p.is_file() and p.name != "bench_engines.csv")
    lines = ["| benchmark run | conditions (`note`) | figures | zoo speed / reference speed, min - max | "
             "figures below 0.95x |", "|---|---|---:|---:|---:|"]
    for path in paths:
        rows = read_table(path)
        if not rows:
            continue
        speed = sorted(float(r["speedup"]) for r in rows)
        notes = "; ".join(sorted({r["note"] for r in rows}))
        lines.append(f"| `{path.relative_to(results.parent).as_posix()}` | {notes} | {len(rows)} | "
                     f"{speed[0]:.2f} - {speed[-1]:.2f} | {len(_outside(rows))} |")
    return "\n".join(lines)


def _checkpoint_label(row: dict[str, str]) -> str:
    m = re.search(r"_(\d+)ep(?=[_/]|$)", row["checkpoint_run"])
    return f"{row['model']} ({m.group(1)} epochs)" if m else f"{row['model']} (`{row['checkpoint_run']}`)"


def int8_table(results: Path) -> str:
    """Post-training int8 quantization of trained checkpoints, ``results/int8.csv``."""
    rows = read_table(results / "int8.csv")
    if not rows:
        raise SystemExit(f"{results / 'int8.csv'} has no rows: run `python -m zoo.deploy quantize ... --csv`")
    tables = []
    for engine in dict.fromkeys(r["engine"] for r in rows):  # one table per engine, in order of appearance
        lines = ["| model (checkpoint) | calibration | val images | top-1 fp32 -> int8 (%) | change "
                 f"| same prediction (%) | {engine} bs1 fp32 -> int8 (ms) | int8 speed-up |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["engine"] == engine):
            fp, q = float(r["engine_fp32_bs1_ms"]), float(r["engine_int8_bs1_ms"])
            lines.append(f"| {_checkpoint_label(r)} | {r['calibration']} | {r['val_images']} | "
                         f"{float(r['top1_fp32']):.2f} -> {float(r['top1_int8']):.2f} | {r['top1_change']} | "
                         f"{float(r['argmax_agreement']):.2f} | {fp:.2f} -> {q:.2f} | {fp / q:.2f}x |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def compress_table(results: Path) -> str:
    """What pruning, distillation and int8 buy, stage by stage, ``results/compress.csv``
    (``python -m zoo.tools.compress measure``): MACs beside measured batch-1 latency, each as a fraction of
    the network's first stage."""
    rows = read_table(results / "compress.csv")
    if not rows:
        raise SystemExit(f"{results / 'compress.csv'} has no rows: run `python -m zoo.tools.compress measure ...`")
    lines = ["| network | stage | MACs (M) | top-1 fp32 / int8 (%) | MACs vs base | torch eager bs1 ms (vs base) "
             "| onnxruntime fp32 bs1 ms (vs base) | onnxruntime int8 bs1 ms (vs base) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['stage']} | {float(r['macs_m']):.1f} | {float(r['top1_fp32']):.2f} / "
                     f"{float(r['top1_int8']):.2f} | {float(r['macs_vs_base']):.2f} | "
                     f"{float(r['torch_bs1_ms']):.2f} ({float(r['torch_vs_base']):.2f}) | "
                     f"{float(r['ort_fp32_bs1_ms']):.2f} ({float(r['ort_fp32_vs_base']):.2f}) | "
                     f"{float(r['ort_int8_bs1_ms']):.2f} ({float(r['ort_int8_vs_base']):.2f}) |")
    return "\n".join(lines)


def _brace(names: Sequence[str]) -> str:
    """``a_050, a_100, b_100`` -> ``a_{050,100}``, ``b_100``: names that differ only in their last part, braced."""
    groups: dict[str, list[str]] = {}
    for name in names:
        stem, _, tail = name.rpartition("_")
        groups.setdefault(stem if stem else name, []).append(tail if stem else "")
    out = []
    for stem, tails in groups.items():
        if tails == [""]:
            out.append(f"`{stem}`")
        else:
            out.append(f"`{stem}_{tails[0]}`" if len(tails) == 1 else f"`{stem}_{{{','.join(tails)}}}`")
    return ", ".join(out)


def families_table(results: Path) -> str:
    """Every registered model, by family, with the architecture table it comes from."""
    from zoo.models.registry import list_models

    by_family: dict[str, list[str]] = {}
    for name in list_models():
        by_family.setdefault(get_entry(name).family, []).append(name)
    lines = ["| architecture table | models |", "|---|---|"]
    for family, names in sorted(by_family.items()):
        lines.append(f"| `zoo/models/archs/{family}.yaml` | {_brace(names)} |")
    return "\n".join(lines)


def stage_map_block(results: Path) -> str:
    from zoo.tools.stages import stage_map_markdown

    with torch.device("meta"):  # module paths and channels need no weights
        return stage_map_markdown()


def bench_families_block(results: Path) -> str:
    """The benchmark of the families added after ``results/bench.csv`` (``results/bench_families/``)."""
    folder = results / "bench_families"
    rows = _bench_rows(folder / "bench.csv")
    models = " ".join(dict.fromkeys(r["zoo_model"] for r in rows))
    command = (f"python -m zoo.tools.bench --models {models} --repeats {rows[0]['repeats']} "
               f"--threads {rows[0]['threads']} --out results/bench_families")
    return "\n".join(_bench_table(rows, "results/bench_families/bench.csv", command, folder / "bench.log", results))


#: marker name -> generator of the block's markdown, from the results folder
BLOCKS: dict[str, Callable[[Path], str]] = {
    "models": models_table, "families": families_table, "results": results_block, "tuning": tuning_table,
    "bench": bench_block, "bench-families": bench_families_block, "bench-runs": bench_runs_table,
    "int8": int8_table, "compress": compress_table, "stage-map": stage_map_block,
}


# ------------------------------------------------------------------ rendering pages


def doc_pages(repo: Path = REPO) -> list[Path]:
    """README.md and every docs/*.md page: the files render keeps."""
    return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.is_file()]


def render_text(text: str, results: Path | None = None, cache: dict[str, str] | None = None,
                source: str = "page") -> str:
    """``text`` with every marked block regenerated from ``results`` (see the module docs).

    An unknown block name, a start marker without its end or a stray end marker is an error.
    """
    results = RESULTS if results is None else results
    cache = {} if cache is None else cache
    out, pos = [], 0
    for m in _BLOCK.finditer(text):
        name, end_name = m.group(1), m.group(3)
        if name != end_name:
            raise SystemExit(f"{source}: <!-- {name}:start --> is closed by <!-- {end_name}:end -->")
        if name not in BLOCKS:
            raise SystemExit(f"{source}: unknown block <!-- {name}:start -->; known: {', '.join(BLOCKS)}")
        if _OPEN.search(text, pos, m.start()) or _OPEN.search(m.group(2)):
            raise SystemExit(f"{source}: a marker before or inside <!-- {name}:start --> has no partner")
        if name not in cache:
            cache[name] = BLOCKS[name](results)
        out += [text[pos:m.start()], f"<!-- {name}:start -->\n{cache[name]}\n<!-- {name}:end -->"]
        pos = m.end()
    if _OPEN.search(text, pos):
        raise SystemExit(f"{source}: a marker after the last complete block has no partner")
    return "".join(out) + text[pos:]


def render(*pages: Path, results: Path | None = None, check: bool = False, draw: bool = True) -> list[Path]:
    """Regenerate the marked blocks of ``pages`` (default: :func:`doc_pages`) and ``results/pareto.png``.

    Returns the pages whose text changed (with ``check``: that would change; nothing is written). A page
    passed explicitly must hold at least one marked block (so that a lost marker is not skipped silently).
    """
    results = RESULTS if results is None else results
    explicit = bool(pages)
    pages = pages or tuple(doc_pages(results.parent))
    texts = {page: page.read_text() for page in pages}
    bare = [page for page, text in texts.items() if not _BLOCK.search(text)]
    if (explicit and bare) or len(bare) == len(texts):
        raise SystemExit(f"{', '.join(map(str, bare)) or 'no page'}: no <!-- NAME:start --> ... <!-- NAME:end --> "
                         f"markers; known blocks: {', '.join(BLOCKS)}")
    cache: dict[str, str] = {}
    changed = []
    for page, text in texts.items():
        new = render_text(text, results, cache, source=str(page))
        if new != text:
            changed.append(page)
            if not check:
                page.write_text(new)
    if draw and not check:
        rows = read_rows(results / "imagenette.csv")
        if rows:
            plot(rows, results / "pareto.png")
    return changed


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
    return save_figure(fig, RESULTS / "pareto.png" if path is None else path)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point; see the module docs."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.report", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="record a finished run")
    add.add_argument("run_dir")
    add.add_argument("--command", required=True, help="the exact command that produced the run")
    add.add_argument("--recipe", default=None)
    ren = sub.add_parser("render", help="regenerate every marked table of README.md and docs/*.md, and the plot")
    ren.add_argument("--repo", default=str(REPO), help="repository root holding README.md, docs/ and results/")
    ren.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is not what render writes")
    sub.add_parser("latency", help="re-measure the batch-1 latency of every recorded run (on a quiet machine)")
    args = parser.parse_args(argv)
    if args.cmd == "add":
        print(json.dumps(add_run(args.run_dir, args.command, args.recipe), indent=2))
    elif args.cmd == "latency":
        write_rows(measure_latency(read_rows()))
        render()
    else:
        repo = Path(args.repo).resolve()
        changed = render(results=repo / "results", check=args.check)
        for page in changed:
            print(f"{'differs' if args.check else 'rewrote'}: {page}")
        if args.check and changed:
            raise SystemExit(1)


if __name__ == "__main__":
    run_cli(main)
