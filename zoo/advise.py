"""``python -m zoo.advise --budget-ms 2 --engine onnxruntime``: the design tier and the networks for a latency budget.

Prints the five tiers of the design notes' guide with the latency range each covers on this
machine's ``--engine`` (predicted from the latency table, ``python -m zoo.latency build``), the tier
of the budget and its rules, and the registered networks that fit the budget at the largest side of
``--res`` (multiples of 32), ranked by recorded Imagenette top-1, then MACs (:mod:`zoo.design.advise`).

* ``--measure``: time the ``--top`` best candidates end to end and keep those that fit when measured;
* ``--measure-missing``: measure the layers the latency table lacks (slow the first time, as ``build``);
* ``--out tier.yaml``: write the tier's preset table in the form of ``configs/model/custom.yaml``
  (save it as ``configs/model/NAME.yaml`` and train it with ``python train.py model=NAME``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

import torch
import yaml

from zoo._cli import run_cli
from zoo.design.advise import RESOLUTIONS, Advice, Fit, advise_budget, check_budget, check_resolutions, measure_fits
from zoo.design.tiers import Tier
from zoo.latency.engines import check_engine
from zoo.latency.predict import LatencyPredictor
from zoo.measure.records import read_table
from zoo.models.registry import list_models

RECORDS = Path(__file__).resolve().parents[1] / "results" / "imagenette.csv"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo.advise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-ms", type=float, required=True, help="batch-1 latency budget in milliseconds")
    parser.add_argument("--engine", required=True, help="torch, onnxruntime or onnxruntime-int8")
    parser.add_argument("--res", type=int, nargs="+", default=list(RESOLUTIONS),
                        help="candidate input sides, multiples of 32")
    parser.add_argument("--models", nargs="+", default=["*"], help="registered model names or shell patterns")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of the latency table (default: torch's default)")
    parser.add_argument("--cache-dir", default=None, help="folder of the latency tables (default: "
                                                          "$ZOO_CACHE_DIR/latency or ~/.cache/zoo/latency)")
    parser.add_argument("--records", default=str(RECORDS), help="Imagenette runs CSV (results/imagenette.csv)")
    parser.add_argument("--measure", action="store_true", help="time the --top candidates end to end")
    parser.add_argument("--top", type=int, default=5, help="candidates to measure with --measure")
    parser.add_argument("--measure-missing", action="store_true",
                        help="measure the layers the latency table lacks instead of skipping those networks")
    parser.add_argument("--out", default=None, help="write the tier's preset table as a model config YAML")
    return parser


def _models(patterns: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(name for pattern in patterns for name in list_models(pattern)))
    if not names:
        raise ValueError(f"no registered model matches {' '.join(patterns)} (zoo.list_models() lists them)")
    return names


def _fit_line(rank: int, fit: Fit) -> str:
    top1 = f"{fit.top1:.2f}" if fit.top1 is not None else "-"
    measured = f"{fit.measured_ms:.3f}" if fit.measured_ms is not None else "-"
    return (f"{rank:>4} {fit.model:<26} {fit.res:>4} {fit.predicted_ms:>10.3f} {measured:>10} {top1:>6} "
            f"{fit.macs / 1e6:>8.1f}")


def report(advice: Advice) -> str:
    """The tiers, the budget's tier and rules, and the ranked fits, as printed."""
    lines = [f"tiers on {advice.engine} (each from its preset's predicted latency at its own side):"]
    for r in advice.ranges:
        budgets = f"{r.low_ms:.3g}-{r.high_ms:.3g} ms" if r.high_ms != float("inf") else f"{r.low_ms:.3g} ms and more"
        lines.append(f"  {r.tier.level} {r.tier.preset_name:<22} {r.tier.design.res:>4} px {r.preset_ms:>9.3f} ms   "
                     f"budgets {budgets:<18} {r.tier.note}")
    tier = advice.tier.tier
    lines += [f"budget {advice.budget_ms:g} ms -> tier {tier.level}, {tier.note}: {tier.rules()}", "",
              f"registered networks within {advice.budget_ms:g} ms, ranked by Imagenette top-1 (5 epochs, 128 px), "
              f"then MMACs:",
              f"{'rank':>4} {'model':<26} {'res':>4} {'predicted':>10} {'measured':>10} {'top-1':>6} {'MMACs':>8}"]
    lines += [_fit_line(i, fit) for i, fit in enumerate(advice.fits, 1)]
    if advice.skipped:
        lines.append(f"skipped {len(advice.skipped)} (model, side) pairs whose layers the latency table lacks "
                     f"(--measure-missing measures them)")
    return "\n".join(lines)


def config_yaml(tier: Tier, command: str) -> str:
    """The tier's preset table in the form of ``configs/model/custom.yaml``, with a header naming its rules."""
    res = tier.design.res
    header = (f"# Tier {tier.level} ({tier.note}) of the design notes' guide: {tier.rules()}\n"
              f"# Its preset table, by zoo.design.tiers; written by `{command}`.\n"
              f"# Save as configs/model/NAME.yaml, then: python train.py model=NAME data.train_res={res} "
              f"data.val_res={res}\n")
    config = {"defaults": ["zoo"], "name": f"custom_{tier.preset_name}", "arch": tier.table()}
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)


def main(argv: Sequence[str] | None = None) -> Advice:
    """CLI entry point; see the module docs."""
    args = _parser().parse_args(argv)
    budget = check_budget(args.budget_ms)
    engine = check_engine(args.engine)
    resolutions = check_resolutions(args.res)
    models = _models(args.models)
    predictor = LatencyPredictor(engine, args.threads, args.cache_dir)
    print(f"latency table: {predictor.cache.describe()}", flush=True)
    advice = advise_budget(budget, predictor, models, resolutions, read_table(args.records), args.measure_missing)
    print(report(advice))
    if args.measure:
        measured = measure_fits(advice.fits, engine, args.threads, args.top)
        print(f"\nmeasured end to end ({len(measured)} best), those within {budget:g} ms:")
        print("\n".join(_fit_line(i, fit) for i, fit in enumerate(measured, 1) if fit.measured_ms <= budget)
              or "  none: the predictions were optimistic here (`python -m zoo.latency report` shows by how much)")
    if args.out:
        command = shlex.join(["python", "-m", "zoo.advise", *(sys.argv[1:] if argv is None else argv)])
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_yaml(advice.tier.tier, command))
        print(f"wrote {path}")
    return advice


if __name__ == "__main__":
    run_cli(main)
