"""Structured channel pruning with Torch-Pruning (Fang et al. 2023, "DepGraph"), written back as a table.

:func:`prune_model` removes whole channels to a multiply-add target with Torch-Pruning's dependency
graph, importance criteria and ``round_to`` (channel counts stay multiples of 8); the classifier's
outputs are never pruned. :func:`pruned_arch` reads the channels the pruned modules actually have
into an architecture table (one row per block, explicit ``out_chs``/``mid_chs``/``se_chs``,
``scale: fixed``), so the zoo builder rebuilds the same shapes and :func:`save_pruned_checkpoint`
writes a checkpoint that ``zoo.load_checkpoint`` opens without Torch-Pruning installed.

Only the block types in :data:`PRUNABLE_BLOCKS` are pruned; the others (channel shuffle and split,
Ghost's concatenation, multi-branch RepVGG/MobileOne, UIB, fused IR) raise a ``ValueError`` naming them.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zoo.measure.complexity import count_macs
from zoo.models.arch import OVERRIDES, ArchSpec, BlockRow, apply_overrides, arch_to_dict, parse_arch, to_plain
from zoo.models.checkpoint import write_zoo_fields
from zoo.models.registry import create_model, model_arch

__all__ = ["PRUNABLE_BLOCKS", "IMPORTANCES", "prune_model", "pruned_arch", "save_pruned_checkpoint"]

#: Row types whose channels are pruned and written back; ``conv``/``maxpool`` are stem and final layers.
PRUNABLE_BLOCKS = ("conv", "maxpool", "ds", "ir", "basic", "bottleneck")
IMPORTANCES = ("l2", "taylor", "bn_scale")
MACS_TOLERANCE = 0.05  # relative distance of the pruned MACs to the target


def _import_torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError as err:
        raise ImportError("pruning needs Torch-Pruning: pip install -e '.[prune]' (torch-pruning>=1.6)") from err
    return torch_pruning


def _table(model: nn.Module) -> ArchSpec:
    """The resolved architecture table of a model made by ``zoo.create_model``."""
    config = dict(getattr(model, "model_config", None) or {})
    if "name" not in config:
        raise ValueError(f"{type(model).__name__} has no `model_config`: prune a model made by zoo.create_model")
    if config.get("features_only"):
        raise ValueError("prune the classifier, not its features_only backbone")
    overrides = {k: v for k, v in config.items() if k in OVERRIDES}
    if config.get("arch") is not None:
        return apply_overrides(parse_arch(to_plain(config["arch"])), **overrides)
    return parse_arch(model_arch(config["name"], **overrides))


def _check_prunable(arch: ArchSpec) -> None:
    rows = [*arch.stem, *(r for s in arch.stages for r in s), *arch.final]
    bad = sorted({r.block for r in rows if r.block not in PRUNABLE_BLOCKS})
    if bad:
        raise ValueError(
            f"cannot prune blocks of type {', '.join(bad)}: channel pruning is supported for "
            f"{', '.join(PRUNABLE_BLOCKS)} rows only (channel split/shuffle, Ghost's concatenation, multi-branch "
            "and UIB blocks would not rebuild from a table)"
        )


def _importance(tp: Any, importance: str) -> Any:
    if importance == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if importance == "taylor":
        return tp.importance.GroupTaylorImportance()
    if importance == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")


def _prune_copy(model: nn.Module, tp: Any, ratio: float, importance: str, global_pruning: bool, round_to: int,
                example_inputs: torch.Tensor, targets: torch.Tensor | None) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of every group (or globally) removed."""
    pruned = copy.deepcopy(model).eval()
    classifier = pruned.get_classifier()
    if importance == "taylor":
        pruned.zero_grad()
        nn.functional.cross_entropy(pruned(example_inputs), targets).backward()
    pruner = tp.pruner.BasePruner(
        pruned, example_inputs, importance=_importance(tp, importance), pruning_ratio=ratio,
        global_pruning=global_pruning, round_to=round_to, ignored_layers=[classifier] if classifier else [],
        max_pruning_ratio=0.95,
    )
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    return pruned


def prune_model(
    model: nn.Module,
    macs_ratio: float,
    importance: str = "l2",
    global_pruning: bool = False,
    res: int = 224,
    round_to: int = 8,
    example_inputs: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
) -> nn.Module:
    """Prune ``model``'s channels until its MACs (``zoo.count_macs`` at ``res``) are within 5% of
    ``macs_ratio`` times the original, and return it as a zoo model rebuilt from its pruned table
    (:func:`pruned_arch`), with the pruned weights; ``model`` is left unchanged.

    The channel ratio is found by bisection, each try one Torch-Pruning ``BasePruner`` step (uniform per
    group, or ``global_pruning`` by the importance ranking across layers). ``importance``: ``l2``
    (``GroupMagnitudeImportance(p=2)``), ``taylor`` (``GroupTaylorImportance``; needs ``example_inputs``
    and class ``targets``: one cross-entropy gradient) or ``bn_scale`` (``BNScaleImportance``, the
    network-slimming criterion). ``example_inputs`` default to one random image at ``res``.

    Raises:
        ValueError: a block type outside :data:`PRUNABLE_BLOCKS`, a ratio outside (0, 1), an unknown
            importance, a target out of reach, or a pruned network whose forward pass is broken.
        ImportError: Torch-Pruning is not installed (the ``prune`` extra).
    """
    if not 0 < macs_ratio < 1:
        raise ValueError(f"macs_ratio must be in (0, 1) (the fraction of MACs to keep), got {macs_ratio!r}")
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    if importance == "taylor" and (example_inputs is None or targets is None):
        raise ValueError("importance='taylor' needs a batch: example_inputs and their class targets")
    arch = _table(model)
    _check_prunable(arch)
    tp = _import_torch_pruning()
    if example_inputs is None:
        example_inputs = torch.randn(1, model.in_chans, res, res)
    base_macs = count_macs(model, res)
    target = macs_ratio * base_macs
    low, high, best = 0.0, 0.95, None
    for _ in range(16):
        ratio = (low + high) / 2
        pruned = _prune_copy(model, tp, ratio, importance, global_pruning, round_to, example_inputs, targets)
        macs = count_macs(pruned, res)
        if best is None or abs(macs - target) < abs(best[1] - target):
            best = (pruned, macs)
        if abs(macs - target) <= MACS_TOLERANCE * target:
            break
        low, high = (ratio, high) if macs > target else (low, ratio)
    pruned, macs = best
    if abs(macs - target) > MACS_TOLERANCE * target:
        raise ValueError(f"could not reach {macs_ratio:.0%} of {base_macs / 1e6:.1f} MMACs within 5% "
                         f"(closest: {macs / base_macs:.1%}) with round_to={round_to}")
    rebuilt = _rebuild(pruned, model)
    with torch.no_grad():
        out = rebuilt.eval()(example_inputs)
    if out.shape[-1] != model.num_classes or not torch.isfinite(out).all():
        raise ValueError(f"the pruned network is broken: output {tuple(out.shape)}, finite: {bool(torch.isfinite(out).all())}")
    return rebuilt.train(model.training)


def _row_channels(row: BlockRow, block: nn.Module) -> BlockRow:
    """``row`` (one block) with the channels ``block`` has."""
    if row.block == "maxpool":
        return row
    if row.block == "conv":
        return replace(row, out_chs=block.conv.out_channels, scale="fixed")
    se = getattr(block, "se", None)
    se_chs = se.conv_reduce.out_channels if hasattr(se, "conv_reduce") else None
    if row.block == "ds":
        return replace(row, out_chs=block.conv_pw.conv.out_channels, se_chs=se_chs, scale="fixed")
    if row.block == "ir":
        return replace(row, out_chs=block.conv_pwl.conv.out_channels, mid_chs=block.conv_dw.conv.out_channels,
                       se_chs=se_chs, scale="fixed")
    convs = block.convs
    return replace(row, out_chs=convs[-1].conv.out_channels, mid_chs=convs[0].conv.out_channels, se_chs=se_chs,
                   scale="fixed")


def _rows(rows: tuple[BlockRow, ...], modules: nn.Sequential) -> list[BlockRow]:
    """One row per block (``repeats`` expanded: pruned blocks of a row differ), only the first strides."""
    blocks = iter(modules)
    return [_row_channels(replace(r, repeats=1, stride=r.stride if i == 0 else 1), next(blocks))
            for r in rows for i in range(r.repeats)]


def pruned_arch(model: nn.Module, source: nn.Module | None = None) -> dict[str, Any]:
    """The architecture table of a pruned zoo network: its stem, stage and final rows with the
    channels its modules have now. ``source``: the unpruned model whose ``model_config`` names the
    table (default: ``model``, whose ``model_config`` Torch-Pruning leaves as it was)."""
    arch = _table(source if source is not None else model)
    _check_prunable(arch)
    head = model.head
    hidden = head.conv_hidden.out_channels if isinstance(head.conv_hidden, nn.Conv2d) else None
    table = replace(
        arch, width=1.0, stem=tuple(_rows(arch.stem, model.stem)),
        stages=tuple(tuple(_rows(rows, stage)) for rows, stage in zip(arch.stages, model.stages)),
        final=tuple(_rows(arch.final, model.final)), head=replace(arch.head, hidden_chs=hidden),
    )
    return arch_to_dict(table)


def _rebuild(pruned: nn.Module, source: nn.Module) -> nn.Module:
    """A zoo model built from the pruned table, with the pruned weights (strict load: same shapes)."""
    config = source.model_config
    rebuilt = create_model(config["name"], arch=pruned_arch(pruned, source), num_classes=source.num_classes,
                           in_chans=source.in_chans)
    try:
        rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    except RuntimeError as err:
        raise ValueError(f"the pruned {config['name']} does not rebuild from its table: {err}") from err
    rebuilt.pretrained_cfg = dict(source.pretrained_cfg, **{k: v for k, v in rebuilt.pretrained_cfg.items()
                                                            if k in ("num_classes", "pool_size")})
    return rebuilt


def save_pruned_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any] | None = None,
                           source: str | Path | None = None) -> Path:
    """Write a pruned zoo model (from :func:`prune_model`) as a zoo checkpoint that
    ``zoo.load_checkpoint`` rebuilds from its table, without Torch-Pruning. ``meta``: class names and
    preprocessing as in :func:`zoo.models.checkpoint.write_zoo_fields`; ``source``: the checkpoint it
    was pruned from (recorded as ``zoo_pruned_from``)."""
    if "arch" not in getattr(model, "model_config", {}):
        raise ValueError("save_pruned_checkpoint takes the model prune_model returns (built from its table)")
    checkpoint: dict[str, Any] = {"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}
    write_zoo_fields(checkpoint, model, model.num_classes, meta or {}, has_ema=False, best_acc1=0.0)
    checkpoint["zoo_pruned_from"] = str(source) if source is not None else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
