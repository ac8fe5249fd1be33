"""Architecture tables: typed rows that read like the papers' tables.

An architecture is plain data (a dict, or the same thing in YAML)::

    stem:   [{block: conv, out_chs: 16, kernel: 3, stride: 2, act: hard_swish}]
    stages: [[{block: ir, kernel: 3, exp_ratio: 1, out_chs: 16}], ...]   # one list of rows per stage
    final:  [{block: conv, kernel: 1, out_chs: 960, act: hard_swish}]     # convs after the last stage
    head:   {hidden_chs: 1280, act: hard_swish}                           # after global pooling
    act: relu, divisor: 8, se_gate: hard_sigmoid, drop_rate: 0.2, ...    # network-wide settings

``parse_arch`` turns it into frozen dataclasses; a misspelt key is an error, never
ignored. ``apply_overrides`` applies the command-line knobs (width, depths, kernel sizes,
activation, SE on/off, ...) to a parsed table, so every family accepts the same ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = [
    "BlockRow", "HeadSpec", "ArchSpec", "BLOCK_TYPES", "OVERRIDES", "parse_arch", "apply_overrides", "arch_to_dict",
    "to_plain",
]

BLOCK_TYPES = (
    "conv", "maxpool", "ds", "ir", "shufflev1", "shufflev2", "ghost", "basic", "bottleneck", "uib", "fused_ir",
    "repvgg", "mobileone",
)
SE_CHS_BLOCKS = ("ds", "ir", "basic", "bottleneck")  # rows whose squeeze-excite width se_chs can set
SCALE_MODES = ("width", "fixed", "no_shrink")
OUTPUT_STRIDES = (8, 16, 32)


def _check_range(where: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """``value`` must be a number in the interval; the error names ``where`` and the interval."""
    upper = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
    interval = f"{'(' if low_open else '['}{low:g}, {upper}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (value > low if low_open else value >= low)
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        raise ValueError(f"{where} must be a number in {interval}, got {value!r}")


def _check_int(where: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where} must be an integer >= {low}, got {value!r}")


def _as_int(where: str, value: Any, low: int = 1) -> int:
    """An integral override value (``2`` or ``2.0``, never ``2.5``) as an int ``>= low``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    _check_int(where, value, low)
    return value


@dataclass(frozen=True)
class BlockRow:
    """One row of a paper's table: ``repeats`` blocks of one type; only the first one strides.

    ``scale`` says how the width multiplier acts on ``out_chs``/``mid_chs``: ``width``
    (multiply and round to the network's divisor), ``fixed`` (never scaled) or
    ``no_shrink`` (scaled up, never down: MobileNetV2's last 1280-channel conv).

    ``first_pw_groups`` (``shufflev1`` rows only) sets the groups of the first 1x1 conv
    (``conv_pw``) of the row's first block; the other blocks, and ``None``, use the row's
    ``groups``. ShuffleNetV1 sets 1 on Stage 2: its first unit sees only the 24 stem
    channels, too few to split into groups (Zhang et al. 2018, Sec. 3.3).

    ``branches`` (``mobileone`` rows only) is MobileOne's over-parameterization factor k:
    the number of kxk conv-BN branches of each block at training time (Vasu et al. 2023,
    Sec. 3.1; 4 in MobileOne-S0, 1 elsewhere); re-parameterization fuses them into one conv.

    ``dw_start``/``dw_mid`` (``uib`` rows only; MobileNetV4's "DW K1"/"DW K2", Qin et al.
    2024, Fig. 4) are the kernels of the Universal Inverted Bottleneck's optional depthwise
    convs before and after the 1x1 expansion, 0 for none: (0, k) IB, (k, 0) ConvNext-like,
    (k, k') ExtraDW, (0, 0) FFN. A ``uib`` row leaves ``kernel`` alone. ``fused_ir`` rows
    (FusedIB / edge residual) take ``kernel`` for their full kxk expansion conv.

    ``mid_chs`` also sets the inner width of ``basic``/``bottleneck`` rows (default: ``out_chs``,
    ``out_chs / 4``), and ``se_chs`` the squeeze-excite bottleneck width instead of ``se_ratio``
    (``ds``, ``ir``, ``basic``, ``bottleneck`` rows): the explicit channels of a pruned network's
    table (:mod:`zoo.compress.prune`), never scaled by ``width``.
    """

    block: str
    out_chs: int = 0
    repeats: int = 1
    stride: int = 1
    kernel: int = 3
    exp_ratio: float = 1.0
    mid_chs: int | None = None
    se_ratio: float = 0.0
    se_chs: int | None = None
    act: str | None = None
    groups: int | None = None
    first_pw_groups: int | None = None
    branches: int = 1
    dilation: int = 1
    scale: str = "width"
    dw_start: int = 0
    dw_mid: int = 0

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {self.block!r}; expected one of {', '.join(BLOCK_TYPES)}")
        if self.scale not in SCALE_MODES:
            raise ValueError(f"row {self.block}: scale must be one of {SCALE_MODES}, got {self.scale!r}")
        if self.repeats < 1:
            raise ValueError(f"row {self.block} -> {self.out_chs}: repeats must be >= 1, got {self.repeats}")
        if self.stride not in (1, 2):
            raise ValueError(f"row {self.block} -> {self.out_chs}: stride must be 1 or 2, got {self.stride}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"row {self.block} -> {self.out_chs}: kernel must be a positive odd number, got {self.kernel}")
        if self.block != "maxpool" and self.out_chs <= 0:
            raise ValueError(f"row {self.block}: out_chs must be positive, got {self.out_chs}")
        if self.first_pw_groups is not None and (self.block != "shufflev1" or self.first_pw_groups < 1):
            raise ValueError(
                f"row {self.block} -> {self.out_chs}: first_pw_groups is a positive group count for shufflev1 rows "
                f"only, got {self.first_pw_groups}"
            )
        where = f"row {self.block} -> {self.out_chs}"
        _check_int(f"{where}: dilation", self.dilation, 1)
        _check_range(f"{where}: exp_ratio", self.exp_ratio, 0, low_open=True)
        _check_range(f"{where}: se_ratio", self.se_ratio, 0, 1)
        if self.se_chs is not None and (self.block not in SE_CHS_BLOCKS or not self.se_ratio):
            raise ValueError(f"{where}: se_chs sets the squeeze-excite width of {', '.join(SE_CHS_BLOCKS)} rows "
                             f"with se_ratio > 0, got se_chs={self.se_chs} (se_ratio={self.se_ratio})")
        for name in ("mid_chs", "groups", "se_chs"):
            if getattr(self, name) is not None:
                _check_int(f"{where}: {name}", getattr(self, name), 1)
        if self.branches < 1 or (self.branches != 1 and self.block != "mobileone"):
            raise ValueError(
                f"row {self.block} -> {self.out_chs}: branches (MobileOne's over-parameterization k) is a count >= 1 "
                f"for mobileone rows only, got {self.branches}"
            )
        self._check_uib()

    def _check_uib(self) -> None:
        where = f"row {self.block} -> {self.out_chs}"
        if self.block != "uib":
            if self.dw_start or self.dw_mid:
                raise ValueError(f"{where}: dw_start/dw_mid are the depthwise kernels of uib rows only, "
                                 f"got dw_start={self.dw_start}, dw_mid={self.dw_mid}")
        else:
            for name, k in (("dw_start", self.dw_start), ("dw_mid", self.dw_mid)):
                if k < 0 or (k and k % 2 == 0):
                    raise ValueError(f"{where}: {name} must be 0 (no depthwise conv) or a positive odd number, got {k}")
            if self.kernel != 3:
                raise ValueError(f"{where}: uib rows give their depthwise kernels as dw_start/dw_mid (0 = none), "
                                 f"not kernel (got kernel={self.kernel})")
            if self.stride > 1 and not (self.dw_start or self.dw_mid):
                raise ValueError(f"{where}: a uib row with stride {self.stride} needs dw_start or dw_mid to carry the "
                                 "stride; the FFN form (both 0) cannot downsample")
        if self.block in ("uib", "fused_ir") and self.se_ratio:
            raise ValueError(f"{where}: {self.block} blocks have no squeeze-excite, got se_ratio={self.se_ratio}")


@dataclass(frozen=True)
class HeadSpec:
    """Classifier head after the features: global average pool -> [1x1 conv ``hidden_chs`` [+ BN] + act] -> dropout -> fc.

    ``norm``: a BatchNorm after the hidden 1x1 conv, which then has no bias (MobileNetV4,
    Qin et al. 2024); needs ``hidden_chs``.
    """

    hidden_chs: int | None = None
    act: str | None = None
    norm: bool = False

    def __post_init__(self) -> None:
        if self.norm and not self.hidden_chs:
            raise ValueError("arch.head: norm=True normalizes the hidden 1x1 conv, so it needs hidden_chs")


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem rows, stages of rows, final convs, head, and network-wide settings."""

    stem: tuple[BlockRow, ...]
    stages: tuple[tuple[BlockRow, ...], ...]
    final: tuple[BlockRow, ...] = ()
    head: HeadSpec = field(default_factory=HeadSpec)
    act: str = "relu"
    width: float = 1.0
    divisor: int = 8
    se_ratio: float = 0.25
    se_gate: str = "sigmoid"
    se_divisor: int = 8
    groups: int = 1
    avg_down: bool = False
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    drop_block_rate: float = 0.0  # DropBlock (Ghiasi et al. 2018) in the last two levels, see zoo.layers.drop
    drop_spatial_rate: float = 0.0  # spatial dropout (nn.Dropout2d) at the same places
    pad: str = "symmetric"  # "same": TensorFlow's input-dependent padding, see zoo.layers.padding
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    zero_init_last: bool = True
    export_friendly: bool = False
    mean: tuple[float, float, float] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, float, float] = IMAGENET_DEFAULT_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    res: int = 224  # eval resolution of the model's pretrained_cfg (input_size)
    output_stride: int | None = None  # 8 or 16: dilate the later stages instead of striding (None: no dilation)

    def __post_init__(self) -> None:
        """Network-wide numbers are checked when the table is parsed or overridden, before any layer is built."""
        for name in ("drop_rate", "drop_path_rate", "drop_block_rate", "drop_spatial_rate"):
            _check_range(name, getattr(self, name), 0, 1, high_open=True)
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"width multiplier must be > 0, got {self.width!r}")
        _check_range("se_ratio", self.se_ratio, 0, 1)
        _check_range("bn_eps", self.bn_eps, 0, low_open=True)
        _check_range("bn_momentum", self.bn_momentum, 0, 1)
        _check_range("crop_pct", self.crop_pct, 0, 1, low_open=True)
        for name in ("divisor", "se_divisor", "groups", "res"):
            _check_int(name, getattr(self, name), 1)
        if self.output_stride is not None and self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES} (or None: no dilation), "
                             f"got {self.output_stride!r}")


# Overrides every model accepts (``zoo.create_model(name, **overrides)``, ``model.<key>=...`` in Hydra).
OVERRIDES = (
    "width", "act_layer", "se", "depths", "kernel_sizes", "channels", "stem_chs", "final_chs", "groups", "drop_rate",
    "drop_path_rate", "bn_eps", "bn_momentum", "export_friendly", "zero_init_last",
    "pad", "drop_block_rate", "drop_spatial_rate", "output_stride",
)


def to_plain(data: Any) -> Any:
    """Mappings, sequences (OmegaConf containers, tuples) and paths -> plain dicts, lists and strings,
    ready for YAML or for :func:`parse_arch` (without importing OmegaConf)."""
    if isinstance(data, Mapping):
        return {str(k): to_plain(v) for k, v in data.items()}
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return [to_plain(v) for v in data]
    if isinstance(data, Path):
        return str(data)
    return data


def _strict(cls: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}: {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; {cls.__name__} fields are {sorted(known)}")
    return dict(data)


def _row(data: Any, where: str) -> BlockRow:
    return BlockRow(**_strict(BlockRow, data, where))


def _rows(data: Any, where: str) -> tuple[BlockRow, ...]:
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{where}: expected a list of rows, got {type(data).__name__}")
    return tuple(_row(r, f"{where}[{i}]") for i, r in enumerate(data))


def parse_arch(data: dict[str, Any]) -> ArchSpec:
    """Validate an architecture table (dict or OmegaConf-converted YAML) into an :class:`ArchSpec`."""
    data = _strict(ArchSpec, data, "arch")
    for key in ("stem", "stages"):
        if key not in data:
            raise ValueError(f"arch: missing required field {key!r} (an architecture needs a stem and stages)")
    stages = data["stages"]
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ValueError("arch.stages: expected a non-empty list of stages, each a list of rows")
    data["stem"] = _rows(data["stem"], "arch.stem")
    data["stages"] = tuple(_rows(s, f"arch.stages[{i}]") for i, s in enumerate(stages))
    data["final"] = _rows(data.get("final", ()), "arch.final")
    data["head"] = HeadSpec(**_strict(HeadSpec, data.get("head") or {}, "arch.head"))
    for key in ("mean", "std"):
        if key in data:
            data[key] = tuple(float(v) for v in data[key])
    return ArchSpec(**data)


def arch_to_dict(arch: ArchSpec) -> dict[str, Any]:
    """Inverse of :func:`parse_arch`: plain lists and dicts, ready for YAML or a checkpoint."""
    out = dataclasses.asdict(arch)
    out["stem"] = [dict(r) for r in out["stem"]]
    out["stages"] = [[dict(r) for r in s] for s in out["stages"]]
    out["final"] = [dict(r) for r in out["final"]]
    out["mean"], out["std"] = list(arch.mean), list(arch.std)
    return out


def _per_stage(name: str, values: Sequence[Any], arch: ArchSpec) -> list[Any]:
    values = list(values)
    if len(values) != len(arch.stages):
        raise ValueError(
            f"{name} needs one value per stage: this network has {len(arch.stages)} stages, got {len(values)} ({values})"
        )
    return values


def _set_depth(stage: tuple[BlockRow, ...], depth: int, index: int) -> tuple[BlockRow, ...]:
    fixed = sum(r.repeats for r in stage[:-1])
    if depth - fixed < 1:
        raise ValueError(
            f"depths[{index}]={depth} is too small: stage {index} has {len(stage)} rows, the first ones with "
            f"{fixed} blocks; the depth sets the repeats of its last row, so it must be >= {fixed + 1}"
        )
    return stage[:-1] + (replace(stage[-1], repeats=depth - fixed),)


def _with_kernel(row: BlockRow, k: int) -> BlockRow:
    """``row`` with kernel ``k``; a ``uib`` row gets it on the depthwise convs it has."""
    if row.block == "uib":
        return replace(row, dw_start=k if row.dw_start else 0, dw_mid=k if row.dw_mid else 0)
    return replace(row, kernel=k)


def apply_overrides(arch: ArchSpec, **overrides: Any) -> ArchSpec:
    """Apply the shared model knobs (see ``OVERRIDES``) to a parsed table.

    ``depths[i]``: number of blocks in stage i (sets the repeats of the stage's last row);
    ``kernel_sizes[i]``/``channels[i]``: kernel / out_chs of every row in stage i (a ``uib``
    row's kernels are its non-zero ``dw_start``/``dw_mid``);
    ``stem_chs``: out_chs of the stem's last conv (the width the first stage sees);
    ``final_chs``: out_chs of the final conv; ``se``: True gives every block that supports SE
    the network's ``se_ratio``, False removes SE; ``act_layer``: one activation for every
    row, stem, final conv and head (gates stay as they are).
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"unknown model override(s) {unknown}; accepted: {', '.join(OVERRIDES)}")
    ov = {k: v for k, v in overrides.items() if v is not None}
    stages = [tuple(s) for s in arch.stages]
    if "depths" in ov:
        stages = [_set_depth(s, _as_int(f"depths[{i}]", d), i)
                  for i, (s, d) in enumerate(zip(stages, _per_stage("depths", ov["depths"], arch)))]
    if "kernel_sizes" in ov:
        ks = [_as_int(f"kernel_sizes[{i}]", k)
              for i, k in enumerate(_per_stage("kernel_sizes", ov["kernel_sizes"], arch))]
        stages = [tuple(_with_kernel(r, k) for r in s) for s, k in zip(stages, ks)]
    if "channels" in ov:
        chs = [_as_int(f"channels[{i}]", c) for i, c in enumerate(_per_stage("channels", ov["channels"], arch))]
        stages = [tuple(replace(r, out_chs=c) for r in s) for s, c in zip(stages, chs)]
    final = tuple(arch.final)
    if "final_chs" in ov:
        if not final:
            raise ValueError("final_chs given but this network has no final conv")
        final = final[:-1] + (replace(final[-1], out_chs=_as_int("final_chs", ov["final_chs"])),)
    stem, head = tuple(arch.stem), arch.head
    if "stem_chs" in ov:
        last_conv = max(i for i, r in enumerate(stem) if r.block != "maxpool")
        stem_row = replace(stem[last_conv], out_chs=_as_int("stem_chs", ov["stem_chs"]))
        stem = stem[:last_conv] + (stem_row,) + stem[last_conv + 1:]
    if "act_layer" in ov:
        act = str(ov["act_layer"])

        def with_act(rows: tuple[BlockRow, ...]) -> tuple[BlockRow, ...]:
            return tuple(replace(r, act=act) for r in rows)

        stem, final, stages = with_act(stem), with_act(final), [with_act(s) for s in stages]
        head = replace(head, act=act if head.hidden_chs else head.act)
    if "se" in ov:
        se_blocks = {"ds", "ir", "ghost", "basic", "bottleneck", "repvgg", "mobileone"}

        def with_se(rows: tuple[BlockRow, ...]) -> tuple[BlockRow, ...]:
            return tuple(
                replace(r, se_ratio=arch.se_ratio if ov["se"] else 0.0) if r.block in se_blocks else r for r in rows
            )

        stages = [with_se(s) for s in stages]
    scalars = {
        k: ov[k] for k in ("width", "groups", "drop_rate", "drop_path_rate", "bn_eps", "bn_momentum", "export_friendly",
                           "zero_init_last", "pad", "drop_block_rate", "drop_spatial_rate", "output_stride") if k in ov
    }
    return replace(arch, stem=stem, stages=tuple(stages), final=final, head=head, **scalars)
