"""The search space: MobileNetV3-style inverted-residual tables, one sampled choice per stage.

MnasNet's factorized hierarchical search space (Tan et al. 2019, Sec. 4.1, Fig. 4) fixes the
network's skeleton (stages and their strides) and searches, per stage, the block's operations and
the number of blocks, every block of a stage alike; FBNet (Wu et al. 2019, Sec. 3.1, Table 2)
searches the same kind of layer-wise choices of the inverted residual (kernel 3/5, expansion 1/3/6).
Here the skeleton is MobileNetV3-Large's (Howard et al. 2019, Table 1: strides 1, 2, 2, 2, 1, 2
after a stride-2 stem, total stride 32) and each stage is one ``ir`` row of the zoo's table format
(:mod:`zoo.models.arch`) with a sampled

* width ``out_chs`` (a multiple of 8) and depth ``repeats``,
* depthwise kernel and expansion ratio,
* squeeze-excite on/off (MobileNetV3's 0.25, hard-sigmoid gate) and activation (relu or hard-swish);

then the width of the final 1x1 conv and of the head's hidden conv, and the input resolution (a
multiple of 32, the total stride). The ranges bracket MobileNetV3-Small's and -Large's widths
and depths, so both sizes of network are in the space.

:func:`sample_params` draws the choices from an Optuna trial (``trial.suggest_*``);
:func:`table_from_params` turns them into a table for ``zoo.create_model(arch=...)`` and the
latency predictor; :func:`smallest_params` are the cheapest choices of the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import optuna

__all__ = ["MOBILENETV3_SPACE", "SearchSpace", "StageChoices", "check_resolutions", "sample_params",
           "smallest_params", "table_from_params"]

CHANNEL_STEP = 8  # widths are multiples of 8 (the tables' divisor)
RES_STEP = 32  # input sides are multiples of the total stride
ACTS = ("relu", "hard_swish")  # MobileNetV3's RE and HS, cheapest first
SE_RATIO = 0.25
HEAD_ACT = "hard_swish"


@dataclass(frozen=True)
class StageChoices:
    """The choices of one stage: ``out_chs`` and ``depth`` as (low, high) ranges (widths in steps of 8),
    the kernels and expansion ratios to pick from (cheapest first); the stride is fixed."""

    stride: int
    out_chs: tuple[int, int]
    depth: tuple[int, int]
    kernels: tuple[int, ...] = (3, 5)
    exp_ratios: tuple[float, ...] = (3, 4, 6)


@dataclass(frozen=True)
class SearchSpace:
    """A skeleton of stages with their choices, the stem width, and the (low, high) range of the final
    1x1 conv's width, in steps of ``final_step``; the head widths to pick from."""

    stages: tuple[StageChoices, ...]
    stem_chs: int = 16
    final_chs: tuple[int, int] = (384, 960)
    final_step: int = 64
    head_chs: tuple[int, ...] = (1024, 1280)
    drop_rate: float = 0.2


# MobileNetV3-Large's skeleton (Table 1); in comments Small's and Large's widths x depths at each stride.
MOBILENETV3_SPACE = SearchSpace(stages=(
    StageChoices(stride=1, out_chs=(16, 16), depth=(1, 1), kernels=(3,), exp_ratios=(1,)),  # 1/2:  L 16x1
    StageChoices(stride=2, out_chs=(16, 40), depth=(1, 3)),     # 1/4:  S 16x1, L 24x2
    StageChoices(stride=2, out_chs=(24, 64), depth=(1, 4)),     # 1/8:  S 24x2, L 40x3
    StageChoices(stride=2, out_chs=(40, 112), depth=(1, 4)),    # 1/16: S 40x3, L 80x4
    StageChoices(stride=1, out_chs=(48, 144), depth=(1, 3)),    # 1/16: S 48x2, L 112x2
    StageChoices(stride=2, out_chs=(96, 192), depth=(1, 4)),    # 1/32: S 96x3, L 160x3
))


def check_resolutions(resolutions: Sequence[int]) -> tuple[int, ...]:
    """``resolutions`` as a sorted tuple of distinct input sides, each a positive multiple of 32."""
    values = list(resolutions) if isinstance(resolutions, Sequence) and not isinstance(resolutions, str) else []
    bad = [r for r in values if isinstance(r, bool) or not isinstance(r, int) or r < RES_STEP or r % RES_STEP]
    if not values or bad:
        raise ValueError(f"resolutions must be a non-empty list of input sides that are positive multiples of "
                         f"{RES_STEP} (the total stride), e.g. [96, 128, 160]; got {resolutions!r}")
    return tuple(sorted(set(values)))


def _choose(trial: optuna.Trial, name: str, choices: Sequence[Any]) -> Any:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))


def _int_range(trial: optuna.Trial, name: str, bounds: tuple[int, int], step: int = 1) -> int:
    low, high = bounds
    return low if low == high else trial.suggest_int(name, low, high, step=step)


def sample_params(trial: optuna.Trial, resolutions: Sequence[int],
                  space: SearchSpace = MOBILENETV3_SPACE) -> dict[str, Any]:
    """Draw every choice of ``space`` and the resolution from ``trial``; a choice with a single option
    is not a parameter of the trial but still a key of the result."""
    params: dict[str, Any] = {}
    for i, stage in enumerate(space.stages):
        params[f"stage{i}_out_chs"] = _int_range(trial, f"stage{i}_out_chs", stage.out_chs, CHANNEL_STEP)
        params[f"stage{i}_depth"] = _int_range(trial, f"stage{i}_depth", stage.depth)
        params[f"stage{i}_kernel"] = _choose(trial, f"stage{i}_kernel", stage.kernels)
        params[f"stage{i}_exp_ratio"] = _choose(trial, f"stage{i}_exp_ratio", stage.exp_ratios)
        params[f"stage{i}_se"] = _choose(trial, f"stage{i}_se", (False, True))
        params[f"stage{i}_act"] = _choose(trial, f"stage{i}_act", ACTS)
    params["final_chs"] = _int_range(trial, "final_chs", space.final_chs, space.final_step)
    params["head_chs"] = _choose(trial, "head_chs", space.head_chs)
    params["res"] = _choose(trial, "res", check_resolutions(resolutions))
    return params


def smallest_params(resolutions: Sequence[int], space: SearchSpace = MOBILENETV3_SPACE) -> dict[str, Any]:
    """The cheapest choices of ``space``: every width, depth, kernel, expansion and resolution at its
    lowest, no squeeze-excite, relu. Every other table of the space has at least its work."""
    params: dict[str, Any] = {}
    for i, stage in enumerate(space.stages):
        params.update({f"stage{i}_out_chs": stage.out_chs[0], f"stage{i}_depth": stage.depth[0],
                       f"stage{i}_kernel": min(stage.kernels), f"stage{i}_exp_ratio": min(stage.exp_ratios),
                       f"stage{i}_se": False, f"stage{i}_act": ACTS[0]})
    params.update(final_chs=space.final_chs[0], head_chs=min(space.head_chs), res=check_resolutions(resolutions)[0])
    return params


def table_from_params(params: Mapping[str, Any], space: SearchSpace = MOBILENETV3_SPACE) -> tuple[dict[str, Any], int]:
    """(architecture table, input side) of the choices ``params`` (:func:`sample_params`): the stem, one
    ``ir`` row per stage, the final conv and head, as the YAML tables of ``zoo/models/archs/`` write them."""
    stages = []
    for i, stage in enumerate(space.stages):
        row: dict[str, Any] = {"block": "ir", "kernel": params[f"stage{i}_kernel"],
                               "exp_ratio": params[f"stage{i}_exp_ratio"], "out_chs": params[f"stage{i}_out_chs"]}
        if params[f"stage{i}_se"]:
            row["se_ratio"] = SE_RATIO
        row["act"] = params[f"stage{i}_act"]
        if stage.stride > 1:
            row["stride"] = stage.stride
        if params[f"stage{i}_depth"] > 1:
            row["repeats"] = params[f"stage{i}_depth"]
        stages.append([row])
    table = {
        "act": ACTS[0],
        "se_gate": "hard_sigmoid",
        "drop_rate": space.drop_rate,
        "stem": [{"block": "conv", "kernel": 3, "out_chs": space.stem_chs, "stride": 2, "act": HEAD_ACT}],
        "stages": stages,
        "final": [{"block": "conv", "kernel": 1, "out_chs": params["final_chs"], "act": HEAD_ACT}],
        "head": {"hidden_chs": params["head_chs"], "act": HEAD_ACT},
    }
    return table, int(params["res"])
