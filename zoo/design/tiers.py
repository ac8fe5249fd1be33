"""The five compute tiers of the lightweight-design guide, as rules that generate architecture tables.

The design notes this project grows from ("轻量级网络设计", Ahuzcl, cnblogs 2020, section 设计方法总结,
quoting the 极市平台 survey "轻量级CNN架构设计") give a design guide by compute budget in five
tiers, 绝对贫穷 (absolutely poor) to 高收入 (high income). Each tier fixes four things, input side,
downsampling, feature blocks and activation:

1. 绝对贫穷 (absolutely poor): a small input (128, 160, 192 or 256); max-pool downsampling;
   depthwise-separable convs; ReLU.
2. 相对贫穷 (relatively poor): still a small input (compute grows with its square); max pooling or
   a stride-2 depthwise-separable conv; depthwise-separable convs, MobileNetV2's inverted residual,
   ShuffleNetV2's unit, or 1x1 group convs where the hardware runs them well (ShuffleNetV1's unit);
   ReLU or ReLU6.
3. 低收入 (low income): a small input, larger if accuracy needs it; max pooling or a stride-2
   depthwise-separable conv; inverted residuals, ShuffleNetV2 units or narrow 3x3 standard convs;
   ReLU, ReLU6 or leaky ReLU.
4. 一般收入 (middle income): a somewhat larger input, 280, 320 or 384; a stride-2 depthwise-separable
   or 3x3 conv; the blocks above or stacks of 3x3 + 1x1 standard convs, with SE where the hardware
   supports it; the activations above, and h-swish (h-sigmoid gates the SE).
5. 高收入 (high income): an input towards 500-600; downsampling as above; ResNet blocks with SE, more
   channels and depth with more resources; h-swish.

and, across tiers, the rules of the same notes' basic concepts: the input side is r = k * 2^n (n
downsamplings, a k x k last map; 分辨率), channel counts are multiples of 8 (宽度), widths grow with
depth so the last layer is the widest (宽度), and a downsampling is a stride-2 pooling or a stride-2
conv (下采样). The notes end with MobileNetV2's inverted residual + SE + h-swish as a strong combination
(MIT HAN Lab's competition entries), which the tier-4 preset is.

A :class:`Tier` holds the options its row allows and one preset choice of each; :meth:`Tier.table`
generates the zoo architecture table (:mod:`zoo.models.arch`) of any allowed choice, on one macro
skeleton: n = 5 downsamplings (the zoo's total stride 32, so r = 32k), the first by the stem's
stride-2 3x3 conv, the other four by the tier's downsampling layer at the start of each stage,
then the stage's feature blocks, a final 1x1 conv to the widest width (none in ResNet, which ends
at its widest stage), global pooling and the classifier. Each preset takes what its tier adds to the
guide (tier 2 the inverted residual, ReLU6 and the stride-2 depthwise-separable downsampling; tier 3
the narrow 3x3 convs and leaky ReLU; tier 4 the notes' closing combination; tier 5 ResNet + SE), at
widths that make each preset cost more multiply-adds than the one below. The presets are registered models
(``zoo/models/archs/tiers.yaml``, the same tables; a test keeps them equal), trainable with
``python train.py model=zoo model.name=tier1_poorest_ds``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from zoo.layers.helpers import make_divisible

__all__ = ["BLOCKS", "DOWNSAMPLINGS", "DIVISOR", "DOWNSAMPLES", "Design", "Tier", "TIERS", "get_tier", "valid_res"]

DOWNSAMPLES = 5  # n of r = k * 2^n: the stem conv and one downsampling per stage (ImageNet's n = 5, 001 分辨率)
DIVISOR = 8  # channel counts in multiples of 8 (001 宽度)
DOWNSAMPLINGS = {
    "maxpool": "3x3 max pool, stride 2",
    "ds": "stride-2 depthwise-separable conv",
    "conv3x3": "stride-2 3x3 conv",
}
BLOCKS = {
    "ds": "depthwise-separable conv (MobileNetV1)",
    "ir": "inverted residual, linear bottleneck (MobileNetV2)",
    "shufflev1": "ShuffleNetV1 unit (1x1 group conv + channel shuffle)",
    "shufflev2": "ShuffleNetV2 unit",
    "conv3x3": "narrow 3x3 standard conv",
    "conv3x3_1x1": "3x3 + 1x1 standard conv stack",
    "basic": "ResNet basic block",
}
SE_BLOCKS = ("ds", "ir", "basic")  # the blocks the builder gives squeeze-excite
SE_RATIO = {"ds": 0.25, "ir": 0.25, "basic": 0.0625}  # MobileNetV3's 1/4; SE-ResNet's 1/16 (Hu et al. 2018)
SHUFFLE_GROUPS = 2  # the groups of ShuffleNetV1's 1x1 group convs
# widths that keep every conv of a block at a multiple of 8: a ShuffleNetV1 unit's bottleneck is a quarter
# of its width, a ShuffleNetV2 unit's branches half of it
BLOCK_DIVISOR = {"shufflev1": 4 * DIVISOR, "shufflev2": 2 * DIVISOR}


def valid_res(low: int, high: int) -> tuple[int, ...]:
    """The input sides r = k * 2^5 (the zoo's five downsamplings) from ``low`` to ``high`` px."""
    step = 2 ** DOWNSAMPLES
    return tuple(range(-(-low // step) * step, high + 1, step))


@dataclass(frozen=True)
class Design:
    """One choice within a tier: input side, downsampling, feature block, activation, squeeze-excite,
    and the shape of the skeleton (stem width, per-stage widths and feature blocks after the
    downsampling layer, final 1x1 conv width or None, inverted-residual expansion)."""

    res: int
    downsampling: str
    block: str
    act: str
    se: bool
    stem_chs: int
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    final_chs: int | None
    exp_ratio: float = 4.0


@dataclass(frozen=True)
class Tier:
    """A tier of the notes' guide (module docs): what its row allows, and its preset ``design``.

    ``res_range`` is the notes' input-side range (px); the allowed sides are its multiples of 32
    (:func:`valid_res`). ``se``: the squeeze-excite settings allowed ((False,) below tier 4).
    ``preset_name`` is the registered model of the preset design (``zoo/models/archs/tiers.yaml``).
    """

    level: int
    name: str
    note: str
    res_range: tuple[int, int]
    downsamplings: tuple[str, ...]
    blocks: tuple[str, ...]
    acts: tuple[str, ...]
    se: tuple[bool, ...]
    design: Design
    preset_name: str
    se_gate: str | None = None

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The input sides this tier allows: multiples of 32 within the notes' range."""
        return valid_res(*self.res_range)

    def rules(self) -> str:
        """The tier's row of the guide in one line."""
        se = {(False,): "no", (True,): "always", (True, False): "optional"}[self.se]
        gate = f" (SE gate {self.se_gate})" if self.se_gate else ""
        return (f"input {self.res_range[0]}-{self.res_range[1]} px (r = 32k: {', '.join(map(str, self.resolutions))}); "
                f"downsampling: {', '.join(DOWNSAMPLINGS[d] for d in self.downsamplings)}; "
                f"feature blocks: {', '.join(BLOCKS[b] for b in self.blocks)}; squeeze-excite: {se}; "
                f"activation: {', '.join(self.acts)}{gate}")

    def choose(self, *, res: int | None = None, downsampling: str | None = None, block: str | None = None,
               act: str | None = None, se: bool | None = None, width: float = 1.0) -> Design:
        """The preset design with the given choices, each checked against the tier's rules (a block without
        squeeze-excite drops the preset's SE unless ``se`` is given); ``width`` scales every channel count,
        rounded to a multiple of 8 (of 32 / 16 for ShuffleNetV1 / V2 units, so their inner convs stay at 8)."""
        choices = {k: v for k, v in dict(res=res, downsampling=downsampling, block=block, act=act, se=se).items()
                   if v is not None}
        design = replace(self.design, **choices)
        if se is None and design.block not in SE_BLOCKS:
            design = replace(design, se=False)
        for key, allowed in (("res", self.resolutions), ("downsampling", self.downsamplings), ("block", self.blocks),
                             ("act", self.acts), ("se", self.se)):
            if getattr(design, key) not in allowed:
                raise ValueError(f"tier {self.level} ({self.note}) allows {key} in {list(allowed)}, "
                                 f"got {getattr(design, key)!r}")
        if design.se and design.block not in SE_BLOCKS:
            raise ValueError(f"squeeze-excite applies to {', '.join(SE_BLOCKS)} blocks, not {design.block}")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
            raise ValueError(f"width must be a positive multiplier, got {width!r}")
        divisor = BLOCK_DIVISOR.get(design.block, DIVISOR)

        def scale(chs: int) -> int:
            return make_divisible(chs * width, divisor)

        return replace(design, stem_chs=scale(design.stem_chs), widths=tuple(scale(c) for c in design.widths),
                       final_chs=None if design.final_chs is None else scale(design.final_chs))

    def table(self, **choices: Any) -> dict[str, Any]:
        """The architecture table (:mod:`zoo.models.arch`, plain data) of :meth:`choose` ``(**choices)``:
        the preset's own with no arguments."""
        design = self.choose(**choices)
        stages = []
        for chs, depth in zip(design.widths, design.depths):
            stages.append([_downsample_row(design.downsampling, chs), *_feature_rows(design, chs, depth)])
        table: dict[str, Any] = {"act": design.act, "divisor": DIVISOR, "res": design.res}
        if design.se and self.se_gate:
            table["se_gate"] = self.se_gate
        table["stem"] = [{"block": "conv", "kernel": 3, "out_chs": design.stem_chs, "stride": 2}]
        table["stages"] = stages
        if design.final_chs is not None:
            table["final"] = [{"block": "conv", "kernel": 1, "out_chs": design.final_chs}]
        return table


def _downsample_row(downsampling: str, chs: int) -> dict[str, Any]:
    """The stride-2 layer that opens a stage: a max pool keeps the width (the first block widens)."""
    if downsampling == "maxpool":
        return {"block": "maxpool", "kernel": 3, "stride": 2}
    if downsampling == "ds":
        return {"block": "ds", "kernel": 3, "out_chs": chs, "stride": 2}
    return {"block": "conv", "kernel": 3, "out_chs": chs, "stride": 2}


def _feature_rows(design: Design, chs: int, depth: int) -> list[dict[str, Any]]:
    """``depth`` feature blocks of ``design.block`` at width ``chs``."""
    se = {"se_ratio": SE_RATIO[design.block]} if design.se else {}
    if design.block == "conv3x3_1x1":  # one block = a 3x3 conv and a 1x1 conv
        pair = [{"block": "conv", "kernel": 3, "out_chs": chs}, {"block": "conv", "kernel": 1, "out_chs": chs}]
        return pair * depth
    row: dict[str, Any] = {"block": "conv" if design.block == "conv3x3" else design.block}
    if design.block in ("ds", "ir", "conv3x3", "shufflev2"):
        row["kernel"] = 3
    if design.block == "ir":
        row["exp_ratio"] = design.exp_ratio
    if design.block == "shufflev1":
        row["groups"] = SHUFFLE_GROUPS
    return [{**row, "out_chs": chs, **se, **({"repeats": depth} if depth > 1 else {})}]


TIERS = (
    Tier(1, "absolutely_poor", "绝对贫穷 absolutely poor", (128, 256), ("maxpool",), ("ds",), ("relu",), (False,),
         Design(128, "maxpool", "ds", "relu", False, stem_chs=16, widths=(32, 64, 128, 256), depths=(1, 2, 2, 1),
                final_chs=512),
         preset_name="tier1_poorest_ds"),
    Tier(2, "relatively_poor", "相对贫穷 relatively poor", (128, 256), ("maxpool", "ds"),
         ("ds", "ir", "shufflev2", "shufflev1"), ("relu", "relu6"), (False,),
         Design(160, "ds", "ir", "relu6", False, stem_chs=16, widths=(24, 40, 80, 160), depths=(2, 2, 3, 1),
                final_chs=640),
         preset_name="tier2_poor_ir"),
    Tier(3, "low_income", "低收入 low income", (128, 256), ("maxpool", "ds"), ("ir", "shufflev2", "conv3x3"),
         ("relu", "relu6", "leaky_relu"), (False,),
         Design(192, "maxpool", "conv3x3", "leaky_relu", False, stem_chs=16, widths=(32, 64, 128, 256),
                depths=(2, 2, 2, 1), final_chs=512),
         preset_name="tier3_low_conv3x3"),
    Tier(4, "middle_income", "一般收入 middle income", (280, 384), ("ds", "conv3x3"),
         ("ds", "ir", "shufflev2", "shufflev1", "conv3x3", "conv3x3_1x1"),
         ("relu", "relu6", "leaky_relu", "hard_swish"), (True, False),
         Design(320, "conv3x3", "ir", "hard_swish", True, stem_chs=16, widths=(24, 48, 96, 192), depths=(2, 3, 4, 2),
                final_chs=768),
         preset_name="tier4_middle_ir_se", se_gate="hard_sigmoid"),
    Tier(5, "high_income", "高收入 high income", (500, 600), ("ds", "conv3x3"), ("basic",), ("hard_swish",), (True,),
         Design(512, "conv3x3", "basic", "hard_swish", True, stem_chs=16, widths=(32, 64, 128, 256),
                depths=(2, 2, 2, 2), final_chs=None),
         preset_name="tier5_high_resnet_se"),
)


def get_tier(level: int) -> Tier:
    """Tier ``level`` (1-5) of :data:`TIERS`."""
    if level not in range(1, len(TIERS) + 1):
        raise ValueError(f"tiers are numbered 1-{len(TIERS)}, got {level!r}")
    return TIERS[level - 1]
