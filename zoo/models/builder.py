"""The one builder: architecture table -> stem -> stages -> final convs -> head.

This is the only place where blocks are assembled into networks. It does, in one
place: width scaling and channel rounding, "only the first block of a row strides",
the dilation that replaces the strides beyond ``output_stride``, the linear drop-path
schedule, weight initialization, the feature taps (``feature_info``) used by
``features_only`` and the ``pretrained_cfg``. It also resolves the activation names of
the table to classes, once (honouring ``export_friendly``), and calls every block by
keyword with those classes. The model classes carry timm's conventions (layer-decay
groups, gradient checkpointing, ``FeatureInfo``), see :class:`_StemStagesNet`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import torch
from timm.models import FeatureInfo
from torch import nn

from zoo.models.arch import ArchSpec, BlockRow
from zoo.blocks import MobileOneBlock, RepVGGBlock
from zoo.blocks import (
    BasicBlock, Bottleneck, DepthwiseSeparable, GhostBottleneck, InvertedResidual, ShuffleV1Unit, ShuffleV2Unit,
)
from zoo.blocks import FusedInvertedResidual, UniversalInvertedResidual
from zoo.layers.activations import ActLayer, create_act, get_act_layer
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.drop import add_feature_dropout
from zoo.layers.grad_checkpoint import checkpoint_module
from zoo.layers.padding import use_padding
from zoo.layers.helpers import make_divisible

__all__ = ["ClassifierHead", "ZooNet", "FeatureNet", "build_network", "check_global_pool"]


def _check_input(x: torch.Tensor, in_chans: int, min_size: int) -> None:
    if torch.jit.is_tracing():  # shapes are symbolic in an export trace; the check is for eager callers
        return
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            f"expected an input of shape (N, {in_chans}, H, W) with H, W >= {min_size}, got {list(x.shape)}"
        )
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f"input {x.shape[2]}x{x.shape[3]} is too small: this network downsamples by {min_size}, "
            f"so H and W must be at least {min_size} (r = k * 2^n with k >= 1)"
        )


torch.fx.wrap("_check_input")


class ClassifierHead(nn.Module):
    """Global average pool -> [1x1 conv [+ norm] + act (MobileNetV3's efficient last stage, Howard
    et al. 2019, Sec. 5.1; MobileNetV4 adds BatchNorm)] -> dropout -> fc. ``act_layer`` is a
    name or a class; with ``norm_layer`` the hidden conv has no bias."""

    def __init__(
        self, in_chs: int, num_classes: int, *, hidden_chs: int | None = None, act_layer: ActLayer = None,
        drop_rate: float = 0.0, norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.hidden_size = hidden_chs or in_chs
        self.conv_hidden = nn.Conv2d(in_chs, hidden_chs, 1, bias=norm_layer is None) if hidden_chs else nn.Identity()
        self.norm = norm_layer(hidden_chs) if hidden_chs and norm_layer is not None else nn.Identity()
        self.act = create_act(act_layer) if hidden_chs else nn.Identity()
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.norm(self.conv_hidden(nn.functional.adaptive_avg_pool2d(x, 1)))).flatten(1)
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)


# timm's MATCH_PREV_GROUP: a group_matcher ordinal ending in it joins the group before it
_MATCH_PREV_GROUP = (99999,)


class _StemStagesNet(nn.Module):
    """What a classifier and its ``features_only`` backbone share: the ``stem`` and ``stages``
    modules (same names, so state_dicts transfer) and timm's model conventions on them:

    * ``group_matcher(coarse=False)``: parameter groups stem -> blocks (or stages) -> rest, the
      form timm's ``param_groups_layer_decay`` / ``create_optimizer_v2(..., layer_decay=...)`` reads;
    * ``set_grad_checkpointing(enable=True)``: in training, each block of the stages is
      checkpointed (:func:`zoo.layers.grad_checkpoint.checkpoint_module`: recomputed in the
      backward pass, BatchNorm statistics updated once);
    * ``pretrained_cfg`` (timm's keys) and its alias ``default_cfg``;
    * ``feature_info``: a ``timm.models.FeatureInfo`` (``.channels()``, ``.reduction()``, ``.module_name()``).
    """

    __jit_unused_properties__ = ["default_cfg"]

    def __init__(self, stem: nn.Sequential, stages: nn.Sequential, in_chans: int, total_stride: int,
                 feature_info: FeatureInfo) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.total_stride = total_stride
        self.feature_info = feature_info
        self.grad_checkpointing = False
        self.stem = stem
        self.stages = stages
        self.model_config: dict[str, Any] = {}
        self.pretrained_cfg: dict[str, Any] = {}

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name of ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:
        self.pretrained_cfg = cfg

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in timm's dict form (as timm's ResNet/EfficientNet): the stem first, then
        one group per block (``coarse``: per stage), the final convs with the last block; the head,
        unmatched, comes last."""
        return dict(
            stem=r"^stem\.",
            blocks=[(r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)", None),
                    (r"^final\.", _MATCH_PREV_GROUP)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint every block of the stages in training (timm's API): activations are recomputed
        in the backward pass instead of stored; outputs, gradients and BatchNorm buffers are unchanged."""
        self.grad_checkpointing = enable


class ZooNet(_StemStagesNet):
    """A network built from an :class:`~zoo.models.arch.ArchSpec`: ``stem -> stages -> final -> head``.

    The timm interface: ``forward_features`` (stem, stages and final convs),
    ``forward_head(x, pre_logits=False)``, ``reset_classifier``, ``get_classifier``, ``num_features``
    (channels ``forward_features`` returns), ``feature_info`` (one entry per downsampling
    level: channels, reduction, module name), ``total_stride``, and the conventions of
    :class:`_StemStagesNet` (``group_matcher``, ``set_grad_checkpointing``, ``pretrained_cfg``).
    """

    def __init__(
        self, stem: nn.Sequential, stages: nn.Sequential, final: nn.Sequential, head: ClassifierHead,
        in_chans: int, total_stride: int, feature_info: FeatureInfo,
    ) -> None:
        super().__init__(stem, stages, in_chans, total_stride, feature_info)
        self.num_features = head.in_chs
        self.head_hidden_size = head.hidden_size
        self.num_classes = head.fc.out_features if isinstance(head.fc, nn.Linear) else 0
        self.final = final
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_chans, self.total_stride)
        x = self.stem(x)
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            for stage in self.stages:
                for block in stage:
                    x = checkpoint_module(block, x)
        else:
            x = self.stages(x)
        return self.final(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final fc (``num_classes=0`` removes it: the model returns pooled features).
        ``global_pool``: timm's argument; the head pools by global average only (``"avg"``)."""
        check_global_pool(global_pool)
        self.head.reset(num_classes)
        self.num_classes = num_classes
        if self.model_config:
            self.model_config["num_classes"] = num_classes
        if self.pretrained_cfg:
            self.pretrained_cfg["num_classes"] = num_classes


class FeatureNet(_StemStagesNet):
    """``features_only`` backbone: runs the stem and stages and returns the maps at ``out_indices``.

    It holds the network's own ``stem`` and ``stages`` modules under the same names (weights shared),
    cut after the last requested map, so a classifier's state_dict loads into it with
    ``strict=False`` (only the dropped layers, the final convs and the head are unexpected).
    ``feature_info`` lists the returned levels only.
    """

    def __init__(self, model: ZooNet, out_indices: Sequence[int] | None = None) -> None:
        info = model.feature_info
        out_indices = tuple(range(len(info))) if out_indices is None else tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -len(info) <= i < len(info)]
        if bad or not out_indices:
            raise ValueError(f"out_indices {list(out_indices)} out of range: this network has {len(info)} feature levels "
                             f"(0..{len(info) - 1}, reductions {info.reduction()})")
        out_indices = tuple(sorted({i % len(info) for i in out_indices}))
        taps = [info[i]["layer"] for i in out_indices]
        last, n_stem = taps[-1], len(model.stem)
        stages, start = [], n_stem
        for stage in model.stages:
            if start <= last:
                stages.append(stage[:last + 1 - start])  # a slice keeps the children's names
            start += len(stage)
        super().__init__(model.stem[:last + 1], nn.Sequential(*stages), model.in_chans, model.total_stride,
                         FeatureInfo([dict(info[i]) for i in out_indices], tuple(range(len(out_indices)))))
        self.taps = taps
        self.out_indices = out_indices
        self.grad_checkpointing = model.grad_checkpointing
        self.pretrained_cfg = model.pretrained_cfg
        self.model_config = dict(model.model_config, features_only=True, out_indices=list(out_indices))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, self.in_chans, self.total_stride)
        features: list[torch.Tensor] = []
        layer = 0
        for module in self.stem:
            x = module(x)
            if layer in self.taps:
                features.append(x)
            layer += 1
        for stage in self.stages:
            for block in stage:
                if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                    x = checkpoint_module(block, x)
                else:
                    x = block(x)
                if layer in self.taps:
                    features.append(x)
                layer += 1
        return features


def check_global_pool(global_pool: str | None) -> None:
    """timm's ``global_pool`` argument: zoo heads pool by global average, so only ``"avg"`` (or None) is valid."""
    if global_pool not in (None, "avg"):
        raise ValueError(f"global_pool={global_pool!r} is not supported: zoo heads use global average pooling "
                         "(global_pool='avg')")


@dataclass
class _Ctx:
    """What every block gets from the network-wide settings: the activation and SE gate are
    classes, resolved once (export-friendly forms when ``arch.export_friendly``)."""

    arch: ArchSpec
    norm_layer: NormLayer
    act_layer: Callable[..., nn.Module]
    se_gate: Callable[..., nn.Module]
    drop_path_rates: list[float]
    block_idx: int = 0

    def act(self, name: str | None) -> Callable[..., nn.Module]:
        """The class of a row's ``act`` (None: the network's)."""
        return get_act_layer(name, self.arch.export_friendly) if name else self.act_layer


def _scale(chs: int, row: BlockRow, arch: ArchSpec) -> int:
    if row.scale == "fixed":
        return chs
    width = max(1.0, arch.width) if row.scale == "no_shrink" else arch.width
    return make_divisible(chs * width, arch.divisor)


def _make_block(
    row: BlockRow, in_chs: int, stride: int, first: bool, ctx: _Ctx, dilation: int = 1, first_dilation: int = 1,
) -> tuple[nn.Module, int]:
    """One block of ``row`` with its input width and stride (``first``: the row's first
    block); returns it and its output width.

    ``first_dilation`` is the dilation of the layers up to the one that carries the block's
    stride, ``dilation`` that of the layers after it; they differ only in the first block of
    a dilated stage, whose stride became the dilation (timm's EfficientNet and ResNet builders).
    Blocks with one spatial conv, which carries the stride, take ``first_dilation``; blocks whose
    layers depend on the stride beyond the channels (Ghost, RepVGG, MobileOne) take both.
    """
    arch = ctx.arch
    if row.block == "maxpool":
        return nn.MaxPool2d(row.kernel, stride, row.kernel // 2 * first_dilation, dilation=first_dilation), in_chs
    out_chs = _scale(row.out_chs, row, arch)
    act_layer, norm_layer = ctx.act(row.act), ctx.norm_layer
    if row.block == "conv":
        block = ConvNormAct(
            in_chs=in_chs, out_chs=out_chs, kernel_size=row.kernel, stride=stride, dilation=first_dilation,
            act_layer=act_layer, norm_layer=norm_layer,
        )
        return block, out_chs
    drop_path = ctx.drop_path_rates[ctx.block_idx]
    ctx.block_idx += 1
    mid_chs = _scale(row.mid_chs, row, arch) if row.mid_chs else make_divisible(in_chs * row.exp_ratio, arch.divisor)
    if row.block == "ds":
        block = DepthwiseSeparable(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, act_layer=act_layer,
            se_ratio=row.se_ratio, se_gate=ctx.se_gate, se_chs=row.se_chs, dilation=first_dilation,
            norm_layer=norm_layer,
        )
    elif row.block == "ir":
        block = InvertedResidual(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, mid_chs=mid_chs, act_layer=act_layer,
            se_ratio=row.se_ratio, se_gate=ctx.se_gate, se_divisor=arch.se_divisor, se_chs=row.se_chs,
            dilation=first_dilation, drop_path_rate=drop_path, norm_layer=norm_layer,
        )
    elif row.block == "shufflev1":
        block = ShuffleV1Unit(
            in_chs=in_chs, out_chs=out_chs, stride=stride, groups=row.groups or arch.groups,
            pw_groups=row.first_pw_groups if first else None, dilation=first_dilation, act_layer=act_layer,
            norm_layer=norm_layer,
        )
    elif row.block == "shufflev2":
        block = ShuffleV2Unit(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, dilation=first_dilation,
            act_layer=act_layer, norm_layer=norm_layer,
        )
    elif row.block == "ghost":
        block = GhostBottleneck(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, mid_chs=mid_chs, act_layer=act_layer,
            se_ratio=row.se_ratio, se_gate=ctx.se_gate, se_divisor=arch.se_divisor, dilation=dilation,
            first_dilation=first_dilation, drop_path_rate=drop_path, norm_layer=norm_layer,
        )
    elif row.block == "uib":
        block = UniversalInvertedResidual(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.dw_mid, start_kernel_size=row.dw_start,
            mid_chs=mid_chs, act_layer=act_layer, dilation=first_dilation, drop_path_rate=drop_path, norm_layer=norm_layer,
        )
    elif row.block == "fused_ir":
        block = FusedInvertedResidual(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, mid_chs=mid_chs, act_layer=act_layer,
            dilation=first_dilation, drop_path_rate=drop_path, norm_layer=norm_layer,
        )
    elif row.block == "repvgg":
        block = RepVGGBlock(
            in_chs=in_chs, out_chs=out_chs, stride=stride, kernel_size=row.kernel, dilation=dilation,
            first_dilation=first_dilation, act_layer=act_layer, se_ratio=row.se_ratio, se_gate=ctx.se_gate, se_divisor=arch.se_divisor,
            drop_path_rate=drop_path, norm_layer=norm_layer,
        )
    elif row.block == "mobileone":
        # the paper's MobileOne block (Vasu et al. 2023, Fig. 3): a depthwise kxk block that strides,
        # then a pointwise block to out_chs, each with `branches` over-parameterized conv branches
        common = dict(
            num_branches=row.branches, dilation=dilation, act_layer=act_layer, se_ratio=row.se_ratio,
            se_gate=ctx.se_gate, se_divisor=arch.se_divisor, drop_path_rate=drop_path, norm_layer=norm_layer,
        )
        block = nn.Sequential()
        block.dw = MobileOneBlock(in_chs=in_chs, out_chs=in_chs, stride=stride, kernel_size=row.kernel, groups=in_chs,
                                  first_dilation=first_dilation, **common)
        block.pw = MobileOneBlock(in_chs=in_chs, out_chs=out_chs, stride=1, kernel_size=1, **common)
    else:
        block_cls = BasicBlock if row.block == "basic" else Bottleneck
        block = block_cls(
            in_chs=in_chs, out_chs=out_chs, stride=stride, se_ratio=row.se_ratio, se_chs=row.se_chs,
            mid_chs=mid_chs if row.mid_chs else None, avg_down=arch.avg_down,
            act_layer=act_layer, dilation=dilation, first_dilation=first_dilation, drop_path_rate=drop_path,
            norm_layer=norm_layer,
        )
    return block, out_chs


def _init_weights(model: nn.Module, zero_init_last: bool) -> None:
    """He init for convs, N(0, 0.01) for fc, BN at identity (the n summed branches of a
    RepVGG/MobileOne block at gamma 1/sqrt(n)); optionally zero the last BN of each residual
    branch (Goyal et al. 2017) so residual blocks start as identities, and likewise start each
    RepVGG/MobileOne block that has an identity branch as that branch alone."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, (RepVGGBlock, MobileOneBlock)):
            m.init_branch_norms(start_as_identity=zero_init_last)
    if zero_init_last:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                last_bn = getattr(m.convs[-1], "bn", None)
                if isinstance(last_bn, nn.BatchNorm2d):
                    nn.init.zeros_(last_bn.weight)


def _add_feature_dropout(model: ZooNet, arch: ArchSpec) -> None:
    """DropBlock / spatial dropout in the blocks of the last two feature levels (stride 16 with
    blocks of 5, stride 32 with blocks of 3; placement and sizes in :mod:`zoo.layers.drop`)."""
    if not (arch.drop_block_rate or arch.drop_spatial_rate):
        return
    layers = [*model.stem, *(block for stage in model.stages for block in stage)]
    ends = [info["layer"] for info in model.feature_info]  # last flat layer of each level
    for level, block_size in ((len(ends) - 2, 5), (len(ends) - 1, 3)):
        if level < 0:
            continue
        start = ends[level - 1] + 1 if level > 0 else 0
        add_feature_dropout(layers[start:ends[level] + 1], drop_block_rate=arch.drop_block_rate,
                            drop_spatial_rate=arch.drop_spatial_rate, block_size=block_size)


def build_network(arch: ArchSpec, num_classes: int = 1000, in_chans: int = 3) -> ZooNet:
    """Build the network an architecture table describes."""
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
    all_rows = [*arch.stem, *(r for s in arch.stages for r in s), *arch.final]
    n_blocks = sum(r.repeats for r in all_rows if r.block not in ("conv", "maxpool"))
    ctx = _Ctx(
        arch=arch,
        norm_layer=partial(nn.BatchNorm2d, eps=arch.bn_eps, momentum=arch.bn_momentum),
        act_layer=get_act_layer(arch.act, arch.export_friendly),
        se_gate=get_act_layer(arch.se_gate, arch.export_friendly),
        drop_path_rates=[arch.drop_path_rate * i / max(n_blocks, 1) for i in range(n_blocks)],
    )
    # reduction: the stride reached; nominal: the stride without dilation (it names the feature level);
    # dilation: what replaces the strides beyond output_stride (timm's EfficientNet/ResNet builders)
    chs, reduction, nominal, dilation = in_chans, 1, 1, 1
    levels: list[dict[str, Any]] = []  # last layer at each nominal reduction, in flat layer order
    level_strides: list[int] = []

    def add(rows: Sequence[BlockRow], prefix: str, flat_start: int, tap: bool = True) -> list[nn.Module]:
        nonlocal chs, reduction, nominal, dilation
        layers: list[nn.Module] = []
        for row in rows:
            for rep in range(row.repeats):
                stride = row.stride if rep == 0 else 1
                first_dilation = dilation
                nominal *= stride
                if arch.output_stride and reduction * stride > arch.output_stride:
                    dilation, stride = dilation * stride, 1
                layer, chs = _make_block(row, chs, stride, rep == 0, ctx, dilation=row.dilation * dilation,
                                         first_dilation=row.dilation * first_dilation)
                reduction *= stride
                info = dict(num_chs=chs, reduction=reduction, module=f"{prefix}.{len(layers)}",
                            layer=flat_start + len(layers))
                if tap and level_strides and level_strides[-1] == nominal:
                    levels[-1] = info
                elif tap:
                    levels.append(info)
                    level_strides.append(nominal)
                layers.append(layer)
        return layers

    stem = nn.Sequential(*add(arch.stem, "stem", 0))
    stages, flat = [], len(stem)
    for i, rows in enumerate(arch.stages):
        layers = add(rows, f"stages.{i}", flat)
        stages.append(nn.Sequential(*layers))
        flat += len(layers)
    # feature taps stay at stem/stage layers: the final convs widen the last map for the head
    final = nn.Sequential(*add(arch.final, "final", flat, tap=False))
    head = ClassifierHead(
        chs, num_classes, hidden_chs=arch.head.hidden_chs, act_layer=get_act_layer(arch.head.act, arch.export_friendly),
        drop_rate=arch.drop_rate, norm_layer=ctx.norm_layer if arch.head.norm else None,
    )
    feature_info = FeatureInfo(levels, tuple(range(len(levels))))
    model = ZooNet(stem, nn.Sequential(*stages), final, head, in_chans, reduction, feature_info)
    _init_weights(model, arch.zero_init_last)
    use_padding(model, arch.pad)
    _add_feature_dropout(model, arch)
    model.pretrained_cfg = _pretrained_cfg(model, arch)
    return model


def _pretrained_cfg(model: ZooNet, arch: ArchSpec) -> dict[str, Any]:
    """timm's ``pretrained_cfg``: the table's eval preprocessing (``input_size``, ``mean``, ``std``,
    ``interpolation``, ``crop_pct``, ``crop_mode``) and what timm's helpers read from a model:
    ``classifier`` (the module its head-aware helpers treat as the classifier), ``first_conv``
    (the conv whose input channels ``in_chans`` adapts), ``num_classes``, ``pool_size`` (the last
    feature map at ``input_size``) and ``fixed_input_size``."""
    pool = math.ceil(arch.res / model.total_stride)
    first_conv = next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    return dict(
        input_size=(model.in_chans, arch.res, arch.res), mean=arch.mean, std=arch.std,
        interpolation=arch.interpolation, crop_pct=arch.crop_pct, crop_mode="center", fixed_input_size=False,
        pool_size=(pool, pool), num_classes=model.num_classes, first_conv=first_conv, classifier="head.fc",
    )
