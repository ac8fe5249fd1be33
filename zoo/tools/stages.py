"""The stage map: which layers form C1-C5 of each family.

    python -m zoo.tools.stages [MODEL ...]

Prints, for one model per family, the module path and channels of the feature map that
``features_only=True`` returns at each stride (``out_indices`` 0-4), and the channels of
``forward_features``. docs/models.md's stage map is this output; a test keeps them equal.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from zoo._cli import run_cli
from zoo.models.registry import create_model

__all__ = ["STAGE_MAP_MODELS", "stage_map_markdown", "main"]

STAGE_MAP_MODELS = (
    "mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100", "shufflenetv1_g3_100",
    "shufflenetv2_100", "ghostnet_100", "resnet18", "resnet50", "resnet50d", "efficientnet_lite0",
    "mobilenetv4_conv_small", "mobileone_s0", "repvgg_a0",
)


def stage_map_markdown(names: Sequence[str] = STAGE_MAP_MODELS) -> str:
    """Markdown table: model, C1..C5 module path and channels, forward_features channels."""
    lines = [
        "| model | " + " | ".join(f"C{i + 1} (stride {2 ** (i + 1)})" for i in range(5)) + " | forward_features |",
        "|---|" + "---|" * 6,
    ]
    for name in names:
        model = create_model(name)
        cells = [f"`{f['module']}` {f['num_chs']}" for f in model.feature_info]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {model.num_features} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """CLI entry point; see the module docs."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(STAGE_MAP_MODELS), help="registered model names")
    table = stage_map_markdown(parser.parse_args(argv).models)
    print(table)
    return table


if __name__ == "__main__":
    run_cli(main)
