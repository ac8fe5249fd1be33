"""``train.py prune.from=<ckpt>``: prune a zoo training checkpoint (:func:`zoo.compress.prune_model`) and
hand the pruned network, built from its table, to the ordinary training pipeline to fine-tune.

The run's checkpoints carry the pruned table in ``zoo_model_config["arch"]`` (``zoo.load_checkpoint``,
eval.py and predict.py rebuild it without Torch-Pruning) and what was pruned in ``zoo_pruned``; a resumed
run rebuilds the pruned network from its own checkpoint instead of pruning again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from zoo.compress.prune import IMPORTANCES, prune_model
from zoo.data import ImageDataModule
from zoo.measure.complexity import count_macs, count_params
from zoo.models.checkpoint import load_checkpoint, read_checkpoint

__all__ = ["prune_settings", "load_prune_source", "prune_for_training", "resumed_pruned_model"]


def prune_settings(prune: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``prune`` config group checked (None when ``prune.from`` is null), ``from`` resolved to a path."""
    prune = dict(prune or {})
    if prune.get("from") is None:
        return None
    ratio = float(prune.get("macs_ratio", 0.5))
    if not 0 < ratio < 1:
        raise ValueError(f"prune.macs_ratio must be in (0, 1) (the fraction of MACs to keep), got {ratio!r}")
    importance = prune.get("importance", "l2")
    if importance not in IMPORTANCES:
        raise ValueError(f"prune.importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")
    return {"from": str(Path(prune["from"]).expanduser().resolve()), "macs_ratio": ratio, "importance": importance,
            "global": bool(prune.get("global", False)), "res": prune.get("res")}


def load_prune_source(settings: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """``zoo.load_checkpoint(settings["from"])``, its EMA weights when it has them.

    Raises:
        ValueError: the file is missing, not a torch file, or not a zoo training checkpoint.
    """
    path = Path(settings["from"])
    if not path.is_file():
        raise ValueError(f"prune.from: {path} does not exist (expected a zoo training checkpoint, e.g. "
                         "<run>/checkpoints/best.ckpt)")
    try:
        return load_checkpoint(path)
    except Exception as err:  # not a zoo checkpoint, or not a torch file at all
        raise ValueError(f"prune.from: {path} is not a usable zoo training checkpoint: {err}") from err


def _check_classes(info: Mapping[str, Any], dm: ImageDataModule) -> None:
    """The checkpoint's classifier must be for the data's classes, in the same order."""
    folders = list(getattr(dm, "class_folders", dm.class_names))
    if info["num_classes"] != dm.num_classes or (info["class_folders"] and info["class_folders"] != folders):
        raise ValueError(f"prune.from: {info['path']} was trained on {info['num_classes']} classes "
                         f"{info['class_folders'][:3]}..., the data has {dm.num_classes} {folders[:3]}...: "
                         "prune a checkpoint trained on this data")


def _training_batch(dm: ImageDataModule, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalized training batch, the same on every process (taylor importance's gradient)."""
    dm.setup("fit")
    loader = DataLoader(dm.train_dataset, batch_size=dm.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    images, targets = next(iter(loader))
    return dm.normalize_batch(images), targets


def prune_for_training(settings: Mapping[str, Any], model: nn.Module, info: Mapping[str, Any],
                       dm: ImageDataModule, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` (from :func:`load_prune_source`) pruned for fine-tuning on ``dm``'s data, and the record
    the run keeps (``zoo_pruned`` in its checkpoints, ``prune`` in summary.json): the source checkpoint,
    the settings and MACs/params before and after at ``res`` (default ``dm.train_res``).

    Raises:
        ValueError: other classes than the data's, or :func:`zoo.compress.prune_model`'s refusals
            (a block type that cannot be pruned, a target out of reach).
    """
    _check_classes(info, dm)
    res = int(settings["res"] or dm.train_res)
    x, y = _training_batch(dm, seed) if settings["importance"] == "taylor" else (None, None)
    pruned = prune_model(model, settings["macs_ratio"], importance=settings["importance"],
                         global_pruning=settings["global"], res=res, example_inputs=x, targets=y)
    record = {**settings, "res": res, "model": info["model_config"]["name"],
              "macs_before": count_macs(model, res), "macs_after": count_macs(pruned, res),
              "params_before": count_params(model), "params_after": count_params(pruned)}
    return pruned, record


def resumed_pruned_model(settings: Mapping[str, Any] | None, ckpt: str | Path
                         ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The ``zoo.create_model`` kwargs (the pruned table, without ``num_classes``) and the ``zoo_pruned``
    record of a pruned fine-tune run's checkpoint ``ckpt``: a resumed run is not pruned again, with or
    without ``prune.from`` on the command line. None for a checkpoint of an ordinary run.

    Raises:
        ValueError: ``settings`` name a ``prune.from`` but ``ckpt`` is not a pruned run, or was pruned
            from another checkpoint.
    """
    checkpoint = read_checkpoint(ckpt)
    record = checkpoint.get("zoo_pruned")
    if not record:
        if settings is None:
            return None
        raise ValueError(f"prune.from is set but {ckpt} is not a pruned fine-tune run (no zoo_pruned record): "
                         "resume it without prune.from")
    if settings is not None and record["from"] != settings["from"]:
        raise ValueError(f"{ckpt} was pruned from {record['from']}, this run names prune.from={settings['from']}: "
                         "resume with the checkpoint's prune settings")
    model = {k: v for k, v in checkpoint["zoo_model_config"].items() if k != "num_classes"}
    return model, dict(record)
