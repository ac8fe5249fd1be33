"""Speed of zoo models against their torchvision/timm counterparts, side by side.

``python -m zoo.tools.bench [--models NAME ...] [--repeats N] [--threads 2] [--quick] [--out results]
[--engines [ENGINE ...]] [--only-engines]``

Every zoo model is measured against the reference implementation of the same
architecture in ONE process, interleaved (zoo, ref, zoo, ref, ...) so that load from
other processes on a shared machine hits both alike; each figure is the median of the
timed runs after warm-up, with ``torch.set_num_threads`` fixed. Measured per pair:

* ``train_img_s``: training images/s, forward + backward + SGD step, batch 64 at 128 px,
  channels_last;
* ``latency_b1_ms``: inference latency at batch 1, 224 px (eager fp32, channels_last,
  ``torch.inference_mode``), each timed run the mean of ``--inner`` calls;
* ``throughput_b32_img_s``: inference images/s at batch 32, 224 px;
* the same two (``*_bn_folded``) with the zoo model in its deployed form
  (:func:`zoo.models.fuse.reparameterize`: RepVGG/MobileOne branches fused into one conv,
  BatchNorm folded), against the reference's own deployed form where it has one
  (``REF_DEPLOY``: timm's ``reparameterize_model`` for RepVGG/MobileOne: fused vs fused), else
  the unfolded reference; the log also prints each model's train-form vs deployed latency;
* ``ort_latency_b1_ms``: batch-1 latency through onnxruntime (both models exported with
  :func:`zoo.deploy.export_onnx`, each in the deployed form just described), the median over
  three fresh sessions of each model.

Writes ``<out>/bench.csv`` (one row per pair and metric, with ``ratio`` = zoo / ref and
``speedup`` = how many times faster zoo is) and ``<out>/bench.png``, and prints a
markdown table and the machine description. Numbers are for comparing the two columns
of a row on the same machine, not absolute figures.

Unless ``--default-malloc`` is given, the process first tells glibc to keep freed memory
(:func:`zoo.measure.timing.keep_freed_memory`): with glibc's defaults every pass page-faults its
large activations afresh, a cost that varies between processes (docs/benchmark.md shows the
committed runs of both modes).

``--engines`` adds the engine table (``--only-engines``: only it): every model in its deployed form at
``--res`` on each engine of :data:`zoo.latency.engines.ENGINES` (torch eager, onnxruntime fp32 and int8,
OpenVINO fp32 and int8; the runners of :func:`zoo.latency.engines.make_runners`, int8 calibrated on a few
random inputs, for speed only), batch-1 latency (ms) and batch ``--batch`` throughput (img/s), all
engines of a model timed interleaved in one process, the onnxruntime and OpenVINO figures the median
over three fresh sessions each (OpenVINO's compiled for the static input shape of each batch size, as
``benchmark_app -shape`` runs it). It writes ``<out>/bench_engines.csv`` (:class:`EngineRow`) and prints
a markdown table, one row per model, naming the fastest engine at each batch. Engines whose library is
not installed are skipped with one line naming the extra to install.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from zoo._cli import run_cli
from zoo.deploy.onnx import export_onnx, ort_session
from zoo.latency.engines import ENGINES, check_engine, engine_versions, make_runners
from zoo.measure.records import machine_info, save_figure, write_table
from zoo.measure.timing import keep_freed_memory, median_seconds
from zoo.models.fuse import reparameterize
from zoo.models.registry import create_model, get_entry

__all__ = ["PAIRS", "REF_DEPLOY", "BenchRow", "EngineRow", "run_bench", "run_engines", "available_engines",
           "fastest_engine", "write_csv", "plot", "markdown", "engines_markdown", "main"]


def _tv(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return make


def _timm(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    return make


#: zoo model -> (reference label, factory of the reference model)
PAIRS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "mobilenetv2_100": ("torchvision mobilenet_v2", _tv("mobilenet_v2")),
    "mobilenetv3_large_100": ("torchvision mobilenet_v3_large", _tv("mobilenet_v3_large")),
    "mobilenetv3_small_100": ("torchvision mobilenet_v3_small", _tv("mobilenet_v3_small")),
    "shufflenetv2_100": ("torchvision shufflenet_v2_x1_0", _tv("shufflenet_v2_x1_0")),
    "resnet18": ("torchvision resnet18", _tv("resnet18")),
    "resnet50": ("torchvision resnet50", _tv("resnet50")),
    "mobilenetv1_100": ("timm mobilenetv1_100", _timm("mobilenetv1_100")),
    "ghostnet_100": ("timm ghostnet_100", _timm("ghostnet_100")),
    "efficientnet_lite0": ("timm efficientnet_lite0", _timm("efficientnet_lite0")),
    "mobilenetv4_conv_small": ("timm mobilenetv4_conv_small", _timm("mobilenetv4_conv_small")),
    "mobileone_s0": ("timm mobileone_s0", _timm("mobileone_s0")),
    "repvgg_a0": ("timm repvgg_a0", _timm("repvgg_a0")),
}


def _timm_reparameterize(model: nn.Module) -> nn.Module:
    import timm.utils

    return timm.utils.reparameterize_model(model, inplace=False).eval()


#: zoo model -> the reference's own deploy-time transform (references not listed are timed as they are)
REF_DEPLOY: dict[str, Callable[[nn.Module], nn.Module]] = {
    "mobileone_s0": _timm_reparameterize,
    "repvgg_a0": _timm_reparameterize,
}
#: references whose training step crashes in channels_last memory: timm's MobileOne/RepVGG stems have a
#: strided 1x1 conv on the 3 input channels, whose weight gradient corrupts the heap in torch 2.14's CPU
#: build; both models of these pairs train in NCHW (the row's note says so)
NCHW_TRAIN = frozenset({"mobileone_s0", "repvgg_a0"})
QUICK_MODELS = ("mobilenetv3_small_100",)
HIGHER_IS_BETTER = {"train_img_s": True, "latency_b1_ms": False, "throughput_b32_img_s": True,
                    "latency_b1_ms_bn_folded": False, "throughput_b32_img_s_bn_folded": True,
                    "ort_latency_b1_ms": False}
NOTE = "interleaved zoo/ref runs, medians"
ORT_SESSIONS = 3  # onnxruntime sessions per model, see run_bench


@dataclass
class BenchRow:
    """One measured figure for a zoo model and its reference."""

    zoo_model: str
    ref_model: str
    metric: str
    unit: str
    zoo: float
    ref: float
    ratio: float  # zoo / ref
    speedup: float  # > 1: zoo is faster
    res: int
    batch: int
    repeats: int
    threads: int
    cpu: str
    torch: str
    note: str = NOTE


@dataclass
class EngineRow:
    """One figure of the engine table: a deployed zoo model on one engine at one batch size."""

    model: str
    family: str  # the model's architecture file, zoo/models/archs/<family>.yaml
    engine: str
    batch: int
    res: int
    value: float
    unit: str  # "ms" per batch-1 call, else "img/s"
    repeats: int
    threads: int
    cpu: str
    torch: str
    onnxruntime: str
    openvino: str  # "n/a" where OpenVINO is not installed


def _train_step(model: nn.Module, batch: int, res: int, num_classes: int,
                channels_last: bool = True) -> Callable[[], None]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, res, res, generator=g).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def _infer(model: nn.Module, batch: int, res: int) -> Callable[[], Any]:
    model = model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, res, res).contiguous(memory_format=torch.channels_last)

    def call() -> Any:
        with torch.inference_mode():
            return model(x)

    return call


def _keep_memory(keep: bool, log: Callable[[str], None]) -> bool:
    """Call :func:`zoo.measure.timing.keep_freed_memory` when ``keep``, log the malloc mode; True if memory is kept."""
    kept = keep and keep_freed_memory()
    if keep and not kept:
        log("no glibc mallopt here: freed memory is handled by the C library's defaults")
    log(f"malloc: {'freed memory kept' if kept else 'C library defaults'}")
    return kept


def _ort_call(path: Path, res: int, threads: int) -> Callable[[], Any]:
    import numpy as np

    sess = ort_session(path, threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, res, res), dtype=np.float32)
    return lambda: sess.run(None, {name: x})


def run_bench(
    models: Sequence[str],
    repeats: int = 5,
    threads: int = 2,
    res: int = 224,
    batch: int = 32,
    train_res: int = 128,
    train_batch: int = 64,
    inner: int = 10,
    onnx: bool = True,
    keep_memory: bool = True,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Measure every ``models`` entry against its reference (see the module docs).

    ``keep_memory`` calls :func:`zoo.measure.timing.keep_freed_memory` first (process-wide).
    """
    unknown = [m for m in models if m not in PAIRS]
    if unknown:
        raise ValueError(f"no reference pairing for {unknown}; choose from {sorted(PAIRS)}")
    torch.set_num_threads(threads)
    kept = _keep_memory(keep_memory, log)
    note = NOTE + ("; freed memory kept (mallopt)" if kept else "; default malloc")
    info = machine_info(threads)
    rows: list[BenchRow] = []

    def add(zoo_name: str, ref_name: str, metric: str, unit: str, z: float, r: float, res_: int, batch_: int,
            extra_note: str = "") -> None:
        higher = HIGHER_IS_BETTER[metric]
        rows.append(BenchRow(zoo_name, ref_name, metric, unit, round(z, 4), round(r, 4), round(z / r, 4),
                             round(z / r if higher else r / z, 4), res_, batch_, repeats, threads, info["cpu"],
                             info["torch"], note + extra_note))
        log(f"  {metric:<32} zoo {z:10.2f}  ref {r:10.2f}  {unit:<6} zoo/ref {z / r:.3f}")

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name in models:
            ref_name, make_ref = PAIRS[name]
            log(f"{name} vs {ref_name}")
            torch.manual_seed(0)
            zoo_model, ref_model = create_model(name), make_ref()
            num_classes = 1000
            # training: fresh copies, weights change
            cl = name not in NCHW_TRAIN
            t_zoo, t_ref = median_seconds(
                [_train_step(copy.deepcopy(zoo_model), train_batch, train_res, num_classes, cl),
                 _train_step(copy.deepcopy(ref_model), train_batch, train_res, num_classes, cl)],
                repeats, warmup=1,
            )
            add(name, ref_name, "train_img_s", "img/s", train_batch / t_zoo, train_batch / t_ref, train_res, train_batch,
                "" if cl else "; training step in NCHW (NCHW_TRAIN)")
            zoo_eval, ref_eval = zoo_model.eval(), ref_model.eval()
            folded = reparameterize(zoo_eval)
            ref_deploy = REF_DEPLOY.get(name)
            ref_folded = ref_deploy(ref_eval) if ref_deploy else ref_eval
            forms = [zoo_eval, folded, ref_eval] + ([ref_folded] if ref_deploy else [])
            lat = median_seconds([_infer(m, 1, res) for m in forms], repeats, warmup=3, inner=inner)
            l_zoo, l_fold, l_ref = lat[:3]
            l_ref_fold = lat[3] if ref_deploy else l_ref
            add(name, ref_name, "latency_b1_ms", "ms", l_zoo * 1e3, l_ref * 1e3, res, 1)
            thr = median_seconds([_infer(m, batch, res) for m in forms], repeats, warmup=1)
            b_zoo, b_fold, b_ref = thr[:3]
            b_ref_fold = thr[3] if ref_deploy else b_ref
            add(name, ref_name, "throughput_b32_img_s", "img/s", batch / b_zoo, batch / b_ref, res, batch)
            add(name, ref_name, "latency_b1_ms_bn_folded", "ms", l_fold * 1e3, l_ref_fold * 1e3, res, 1)
            add(name, ref_name, "throughput_b32_img_s_bn_folded", "img/s", batch / b_fold, batch / b_ref_fold, res,
                batch)
            ref_line = f"; ref {l_ref * 1e3:.2f} -> {l_ref_fold * 1e3:.2f} ms" if ref_deploy else ""
            log(f"  bs1 latency, train form -> deployed: zoo {l_zoo * 1e3:.2f} -> {l_fold * 1e3:.2f} ms "
                f"({l_zoo / l_fold:.2f}x){ref_line}")
            if onnx:
                try:
                    # a session's speed is set when it is created: the median over ORT_SESSIONS fresh
                    # session pairs, timed interleaved, does not hang on one session (docs/benchmark.md)
                    zoo_path = export_onnx(folded, tmp / f"{name}.onnx", res=res, opset=17)
                    ref_path = export_onnx(ref_folded, tmp / "ref.onnx", res=res, opset=17)
                    calls = [_ort_call(p, res, threads) for _ in range(ORT_SESSIONS) for p in (zoo_path, ref_path)]
                    times = median_seconds(calls, repeats, warmup=3, inner=inner)
                    o_zoo, o_ref = statistics.median(times[0::2]), statistics.median(times[1::2])
                    add(name, ref_name, "ort_latency_b1_ms", "ms", o_zoo * 1e3, o_ref * 1e3, res, 1)
                except Exception as exc:  # an export failure must not lose the other figures
                    log(f"  onnxruntime skipped: {type(exc).__name__}: {exc}")
    return rows


def available_engines(engines: Sequence[str], log: Callable[[str], None] = print) -> tuple[list[str], dict[str, str]]:
    """The engines of ``engines`` whose libraries are installed, and those libraries' versions.

    Each missing library costs one logged line naming the engines skipped and the extra to install
    (``openvino, openvino-int8 skipped: OpenVINO is not installed: pip install 'zoo[openvino]'``).
    """
    usable: list[str] = []
    versions: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    for engine in engines:
        try:
            versions.update(engine_versions(engine))
        except ImportError as exc:
            missing.setdefault(str(exc), []).append(engine)
        else:
            usable.append(engine)
    for message, skipped in missing.items():
        log(f"{', '.join(skipped)} skipped: {message}")
    return usable, versions


def fastest_engine(values: Mapping[str, float], higher_is_better: bool) -> str:
    """The engine of ``values`` (engine -> figure) with the highest figure (img/s) or the lowest (ms)."""
    if not values:
        raise ValueError("no engine figures to choose from")
    pick = max if higher_is_better else min
    return pick(values, key=values.__getitem__)


def run_engines(
    models: Sequence[str],
    engines: Sequence[str] = ENGINES,
    repeats: int = 5,
    threads: int = 2,
    res: int = 224,
    batch: int = 32,
    inner: int = 10,
    sessions: int = ORT_SESSIONS,
    keep_memory: bool = True,
    log: Callable[[str], None] = print,
) -> list[EngineRow]:
    """Time each model of ``models`` (registered names) in its deployed form on each installed engine of
    ``engines``, at batch 1 (ms) and ``batch`` (img/s), ``res`` px (see the module docs).

    Per model and batch size, the runners of all engines (:func:`zoo.latency.engines.make_runners`; ``sessions``
    sessions for the onnxruntime and OpenVINO engines) are timed interleaved by
    :func:`zoo.measure.timing.median_seconds` under ``torch.inference_mode``; an engine's figure is the median
    over its sessions. An engine that fails to export or quantize a model loses only that model's figures.
    """
    for engine in engines:
        check_engine(engine)
    families = {name: get_entry(name).family for name in models}
    if batch < 1 or sessions < 1:
        raise ValueError(f"need batch >= 1 and sessions >= 1, got {batch} and {sessions}")
    torch.set_num_threads(threads)
    _keep_memory(keep_memory, log)
    usable, versions = available_engines(engines, log)
    cpu = machine_info(threads)["cpu"]
    rows: list[EngineRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            torch.manual_seed(0)
            deployed = reparameterize(create_model(name).eval())
            log(f"{name} ({families[name]}) on {', '.join(usable)}")
            for batch_ in sorted({1, batch}):
                runners: dict[str, list[Callable[[], Any]]] = {}
                for engine in usable:
                    try:
                        runners[engine] = make_runners(
                            engine, deployed, (deployed.in_chans, res, res), threads,
                            Path(tmp) / f"{name}-{engine}-{batch_}", 1 if engine == "torch" else sessions, batch_)
                    except Exception as exc:  # one engine's export failure must not lose the others' figures
                        log(f"  {engine} at batch {batch_} skipped: {type(exc).__name__}: {exc}")
                with torch.inference_mode():
                    seconds = median_seconds([run for group in runners.values() for run in group], repeats,
                                             warmup=3 if batch_ == 1 else 1, inner=inner if batch_ == 1 else 1)
                start = 0
                for engine, group in runners.items():
                    sec = statistics.median(seconds[start:start + len(group)])
                    start += len(group)
                    value, unit = (sec * 1e3, "ms") if batch_ == 1 else (batch_ / sec, "img/s")
                    rows.append(EngineRow(name, families[name], engine, batch_, res, round(value, 4), unit, repeats,
                                          threads, cpu, versions["torch"], versions.get("onnxruntime", "n/a"),
                                          versions.get("openvino", "n/a")))
                    log(f"  {engine:<18} batch {batch_:<3} {value:10.2f} {unit}")
    return rows


def write_csv(rows: Sequence[BenchRow] | Sequence[EngineRow], path: str | Path) -> Path:
    """Write the rows as CSV (header = the fields of :class:`BenchRow` or :class:`EngineRow`), atomically."""
    if not rows:
        raise ValueError("no benchmark rows to write")
    path = Path(path)
    table = [asdict(row) for row in rows]
    write_table(path, table, list(table[0]))
    return path


def plot(rows: Sequence[BenchRow], path: str | Path) -> Path:
    """Grouped horizontal bars of zoo's speedup over the reference, per model and metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.zoo_model for r in rows))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.55 * len(models) * max(1, len(metrics)) / 2))
    height = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        values = {r.zoo_model: r.speedup for r in rows if r.metric == metric}
        ys = [i + j * height for i in range(len(models))]
        ax.barh(ys, [values.get(m, float("nan")) for m in models], height=height, label=metric)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], models)
    ax.invert_yaxis()
    ax.set_xlabel("speed of zoo relative to reference (> 1: zoo faster)")
    r0 = rows[0]
    ax.set_title(f"zoo vs torchvision/timm, {r0.threads} threads, {r0.cpu}\n{r0.note}", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def markdown(rows: Sequence[BenchRow]) -> str:
    """The rows as a markdown table."""
    lines = ["| zoo model | reference | metric | zoo | ref | zoo/ref | zoo speedup |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.zoo_model} | {r.ref_model} | {r.metric} ({r.unit}) | {r.zoo:.2f} | {r.ref:.2f} | "
                     f"{r.ratio:.3f} | {r.speedup:.2f} |")
    return "\n".join(lines)


def engines_markdown(rows: Sequence[EngineRow]) -> str:
    """The engine table as markdown: one row per model, a column per engine and batch size, and the fastest
    engine at each batch size (:func:`fastest_engine`)."""
    engines = list(dict.fromkeys(r.engine for r in rows))
    batches = sorted({r.batch for r in rows})
    units = {r.batch: r.unit for r in rows}
    header = ["model", "family"] + [f"bs{b} {units[b]} {e}" for b in batches for e in engines]
    header += [f"fastest bs{b}" for b in batches]
    rule = "|---|---|" + "---:|" * (len(batches) * len(engines)) + "---|" * len(batches)
    lines = ["| " + " | ".join(header) + " |", rule]
    for model in dict.fromkeys(r.model for r in rows):
        figures = {(r.batch, r.engine): r.value for r in rows if r.model == model}
        family = next(r.family for r in rows if r.model == model)
        cells = [model, family]
        cells += [f"{figures[b, e]:.2f}" if (b, e) in figures else "-" for b in batches for e in engines]
        for b in batches:
            at_batch = {e: v for (b_, e), v in figures.items() if b_ == b}
            cells.append(fastest_engine(at_batch, units[b] == "img/s") if at_batch else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[BenchRow | EngineRow]:
    """CLI entry point; see the module docs. Returns the zoo-vs-reference rows, then the engine table's."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help=f"zoo models to measure (default: all of {list(PAIRS)})")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inner", type=int, default=10, help="calls per timed run for batch-1 latency")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-res", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime figures")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc at its defaults (freed activations go back to the OS)")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {list(QUICK_MODELS)}, 2 repeats, 3 inner")
    parser.add_argument("--engines", nargs="*", choices=ENGINES, default=None, metavar="ENGINE",
                        help=f"also time the deployed models on these engines (none named: all of {list(ENGINES)}) "
                             "and write bench_engines.csv")
    parser.add_argument("--only-engines", action="store_true",
                        help="only the engine table (--engines), not the zoo-vs-reference figures")
    parser.add_argument("--out", default="results", help="folder for bench.csv, bench.png and bench_engines.csv")
    args = parser.parse_args(argv)
    models = args.models or (list(QUICK_MODELS) if args.quick else list(PAIRS))
    repeats, inner = (min(args.repeats, 2), min(args.inner, 3)) if args.quick else (args.repeats, args.inner)
    info = machine_info(args.threads)
    load = f"; load average {os.getloadavg()[0]:.2f} at start" if hasattr(os, "getloadavg") else ""
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + f"{load}; {NOTE}")
    out = Path(args.out)
    rows: list[BenchRow | EngineRow] = []
    if not args.only_engines:
        bench_rows = run_bench(models, repeats, args.threads, args.res, args.batch, args.train_res, args.train_batch,
                               inner, onnx=not args.no_onnx, keep_memory=not args.default_malloc)
        csv_path = write_csv(bench_rows, out / "bench.csv")
        png_path = plot(bench_rows, out / "bench.png")
        print()
        print(markdown(bench_rows))
        print(f"\nwrote {csv_path} and {png_path}")
        rows += bench_rows
    if args.only_engines or args.engines is not None:
        engine_rows = run_engines(models, args.engines or ENGINES, repeats, args.threads, args.res, args.batch, inner,
                                  keep_memory=not args.default_malloc)
        csv_path = write_csv(engine_rows, out / "bench_engines.csv")
        print()
        print(engines_markdown(engine_rows))
        print(f"\nwrote {csv_path}")
        rows += engine_rows
    return rows


if __name__ == "__main__":
    run_cli(main)
