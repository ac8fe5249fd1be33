"""Per-layer profile and labelled totals of a registered model.

    python -m zoo.tools.profile --model mobilenetv3_small_100 [--res 224] [--num-classes 1000] [--no-table]

Prints one row per layer (shape, params, MACs, FLOPs, bytes, receptive field, stride;
:func:`zoo.measure.profiler.profile`) and the whole-model totals with and without BatchNorm
folded, next to fvcore's count (:func:`zoo.measure.profiler.complexity`).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from zoo._cli import run_cli
from zoo.measure.profiler import Complexity, complexity, format_summary, format_table, profile
from zoo.models.registry import create_model

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> Complexity:
    """CLI entry point; see the module docs."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registered model name (zoo.list_models())")
    parser.add_argument("--res", type=int, default=224, help="input side in pixels")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--no-fvcore", action="store_true", help="skip fvcore's count")
    parser.add_argument("--no-table", action="store_true", help="print only the totals")
    args = parser.parse_args(argv)
    model = create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)
    if not args.no_table:
        print(format_table(profile(model, args.res)))
        print()
    result = complexity(model, args.res, with_fvcore=not args.no_fvcore, name=args.model)
    print(format_summary(result))
    return result


if __name__ == "__main__":
    run_cli(main)
