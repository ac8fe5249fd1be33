"""``python -m zoo.latency {build,report,predict}``: latency tables on this machine, their accuracy, predictions.

* ``build --engine ENGINE [--res 128 160 224] [--models PATTERN ...] [--passes 3] [--reference NAME|none]``:
  measure every distinct layer of the matching registered models at each resolution, then the
  networks end to end (what the overhead is fitted on) in ``--passes`` shuffled passes, each group
  timed with the ``--reference`` network and scaled by it (:mod:`zoo.latency.build`); incremental:
  what the table has is skipped.
* ``report --engine ENGINE [--res ...] [--models ...] [--passes 3] [--reference NAME|none] [--out results/latency]``:
  measure the networks again (same protocol), compare with the prediction, raw and with the drift of
  the reference between build and report divided out (:mod:`zoo.latency.report`; the raw figure is
  the headline), write ``<engine>.csv``, ``<engine>_summary.csv`` and ``<engine>.png``.
* ``predict --engine ENGINE [--res ...] [--models ...]``: the predicted ms of each model, from the table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

import torch

from zoo._cli import run_cli
from zoo.latency.build import PASSES, REFERENCE, build_table
from zoo.latency.cache import LatencyCache
from zoo.latency.engines import ENGINES
from zoo.latency.predict import LatencyPredictor
from zoo.latency.report import run_report, summarize, write_report
from zoo.models.registry import list_models

RESOLUTIONS = (128, 160, 224)


def _models(patterns: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(name for pattern in patterns for name in list_models(pattern)))
    if not names:
        raise ValueError(f"no registered model matches {' '.join(patterns)} (zoo.list_models() lists them)")
    return names


def _reference(name: str) -> str | None:
    return None if name.lower() == "none" else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo.latency", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--engine", required=True, choices=ENGINES)
    common.add_argument("--res", type=int, nargs="+", default=list(RESOLUTIONS), help="input sides in pixels")
    common.add_argument("--models", nargs="+", default=["*"], help="registered model names or shell patterns")
    common.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads (default: torch's default, the physical cores); part of the table's key")
    common.add_argument("--num-classes", type=int, default=1000)
    common.add_argument("--cache-dir", default=None, help="folder of the tables (default: $ZOO_CACHE_DIR/latency "
                                                          "or ~/.cache/zoo/latency)")
    networks = argparse.ArgumentParser(add_help=False)
    networks.add_argument("--passes", type=int, default=PASSES,
                          help="shuffled passes over the networks timed end to end (median)")
    networks.add_argument("--reference", type=_reference, default=REFERENCE,
                          help="registered model timed in every group of networks, their times scaled by it; "
                               "'none': no scaling")
    build = commands.add_parser("build", parents=[common, networks],
                                help="measure the layers and networks the table lacks")
    build.add_argument("--repeats", type=int, default=30, help="timed rounds per layer (median)")
    build.add_argument("--warmup", type=int, default=5)
    build.add_argument("--network-repeats", type=int, default=20, help="timed runs per network (median)")
    build.add_argument("--inner", type=int, default=5, help="consecutive network calls per timed run")
    build.add_argument("--layers-only", action="store_true", help="skip the end-to-end network measurements")
    report = commands.add_parser("report", parents=[common, networks], help="measured vs predicted, CSV and plot")
    report.add_argument("--repeats", type=int, default=20, help="timed runs per network (median)")
    report.add_argument("--warmup", type=int, default=3)
    report.add_argument("--inner", type=int, default=5, help="consecutive network calls per timed run")
    report.add_argument("--out", default="results/latency", help="folder for <engine>.csv, _summary.csv and .png")
    commands.add_parser("predict", parents=[common], help="predicted ms of each model from the table")
    return parser


def _figure(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point; see the module docs."""
    args = _parser().parse_args(argv)
    models = _models(args.models)
    if args.command == "build":
        build_table(models, args.res, args.engine, args.threads, args.num_classes, args.repeats, args.warmup,
                    args.network_repeats, args.inner, networks=not args.layers_only, cache_dir=args.cache_dir,
                    passes=args.passes, reference=args.reference)
    elif args.command == "report":
        rows = run_report(models, args.res, args.engine, args.threads, args.num_classes, args.repeats, args.warmup,
                          args.inner, args.cache_dir, passes=args.passes, reference=args.reference)
        command = shlex.join(["python", "-m", "zoo.latency", *(sys.argv[1:] if argv is None else argv)])
        table = LatencyCache(args.engine, args.threads, args.cache_dir).label()
        paths = write_report(rows, args.out, args.engine, table, command)
        print(f"\n{'res':>5} {'networks':>8} {'within +-10%':>12} {'Spearman: predicted':>20} {'MACs':>6}"
              f"   {'normalized: networks':>20} {'within +-10%':>12} {'Spearman':>8}")
        for s in summarize(rows):
            print(f"{s['res']:>5} {s['networks']:>8} {s['within_10pct']:>12.1%} {s['spearman_predicted']:>20.3f} "
                  f"{s['spearman_macs']:>6.3f}   {s['normalized_networks']:>20} "
                  f"{_figure(s['within_10pct_normalized'], '.1%'):>12} "
                  f"{_figure(s['spearman_predicted_normalized']):>8}")
        print("wrote " + ", ".join(str(p) for p in paths))
    else:
        predictor = LatencyPredictor(args.engine, args.threads, args.cache_dir)
        print(f"latency table: {predictor.cache.describe()}\noverhead: {predictor.overhead}")
        for res in args.res:
            for name in models:
                print(f"{name} @ {res} px: {predictor(name, res, args.num_classes):.3f} ms")


if __name__ == "__main__":
    run_cli(main)
