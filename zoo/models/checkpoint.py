"""The zoo training-checkpoint format: its writer (:func:`write_zoo_fields`) and its reader
(:func:`load_checkpoint`, which rebuilds the trained model without Hydra).

Training checkpoints (``checkpoints/{best,last}.ckpt``) are Lightning checkpoints plus
``zoo_model_config`` (the ``zoo.create_model`` kwargs), ``zoo_meta`` (class names/folders
and the preprocessing: mean, std, train/val resolution, crop_pct, interpolation) and
``zoo_best_acc1``, so a checkpoint is all you need::

    model, info = zoo.models.checkpoint.load_checkpoint("logs/train/runs/.../checkpoints/best.ckpt")
    info["preprocessing"]["val_res"], info["class_names"]
    model.pretrained_cfg  # the eval preprocessing in timm's names: zoo.data.Preprocessing.from_pretrained_cfg(model)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from zoo.models.registry import create_model
from zoo.models.weights import model_state_dict, safe_load

__all__ = [
    "PREPROCESSING_KEYS", "write_zoo_fields", "load_checkpoint", "read_checkpoint", "model_state_dict",
    "pretrained_cfg_from",
]

#: The preprocessing a checkpoint records (``zoo_meta["preprocessing"]``).
PREPROCESSING_KEYS = ("mean", "std", "train_res", "val_res", "crop_pct", "interpolation")


def write_zoo_fields(checkpoint: dict[str, Any], model: nn.Module, num_classes: int, meta: Mapping[str, Any],
                     has_ema: bool, best_acc1: float) -> None:
    """Add the zoo fields to a Lightning checkpoint dict (in place), and strip ``_orig_mod.``
    (left by ``torch.compile``) from its state-dict keys.

    ``meta``: ``class_names``, ``class_folders`` and the :data:`PREPROCESSING_KEYS`.
    """
    config = getattr(model, "model_config", None)
    if not config:
        raise ValueError(f"{type(model).__name__} has no `model_config`: it was not made by zoo.create_model")
    checkpoint["zoo_model_config"] = copy.deepcopy(dict(config))
    checkpoint["zoo_meta"] = {
        "num_classes": num_classes,
        "class_names": list(meta.get("class_names") or []),
        "class_folders": list(meta.get("class_folders") or []),
        "preprocessing": {k: meta.get(k) for k in PREPROCESSING_KEYS},
        "has_ema": has_ema,
    }
    checkpoint["zoo_best_acc1"] = best_acc1
    checkpoint["state_dict"] = {k.replace("_orig_mod.", ""): v for k, v in checkpoint["state_dict"].items()}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file without running code (:func:`zoo.models.weights.safe_load`).

    A zoo (Lightning) checkpoint holds only tensors, numbers, strings and containers: hyper-parameters,
    callback and loop state, optimizer and scheduler state, the EMA weights and the zoo fields.

    Raises:
        FileNotFoundError: no file at ``path``.
        zoo.models.weights.UnsafeFileError: the file holds other Python objects (it is refused unread).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a directory: a zoo.save_pretrained directory loads with "
                                "zoo.load_pretrained")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return safe_load(path, map_location)


def pretrained_cfg_from(preprocessing: Mapping[str, Any], base: Mapping[str, Any], in_chans: int = 3) -> dict[str, Any]:
    """``base`` (a ``pretrained_cfg``) updated with a checkpoint's ``preprocessing``: ``input_size`` =
    ``(in_chans, val_res, val_res)``, ``crop_pct``, ``interpolation``, ``mean``, ``std``. Keys the checkpoint
    lacks (or holds as None) keep ``base``'s value; a checkpoint without ``val_res`` uses ``train_res``."""
    out = dict(base)
    res = preprocessing.get("val_res") or preprocessing.get("train_res")
    if res is not None:
        out["input_size"] = (int(in_chans), int(res), int(res))
    for key in ("crop_pct", "interpolation"):
        if preprocessing.get(key) is not None:
            out[key] = preprocessing[key]
    for key in ("mean", "std"):
        if preprocessing.get(key) is not None:
            out[key] = tuple(float(v) for v in preprocessing[key])
    return out


def load_checkpoint(path: str | Path, ema: bool = True, map_location: str | torch.device = "cpu",
                    strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a zoo training checkpoint, in eval mode, with its preprocessing
    in ``model.pretrained_cfg`` (see :func:`pretrained_cfg_from`).

    Args:
        path: ``.ckpt`` written by ``zoo.training`` (``best.ckpt``/``last.ckpt``).
        ema: use the EMA weights when the checkpoint has them.
        map_location: device for the loaded tensors.
        strict: passed to ``load_state_dict``.

    Returns:
        ``(model, info)``; ``info`` has ``model_config``, ``num_classes``, ``class_names``,
        ``class_folders``, ``preprocessing`` (mean, std, train_res, val_res, crop_pct,
        interpolation), ``ema`` (EMA weights used), ``epoch``, ``global_step``, ``best_acc1``, ``path``.

    Raises:
        ValueError: if the file is not a zoo training checkpoint.
    """
    ckpt = read_checkpoint(path, map_location)
    cfg = ckpt.get("zoo_model_config")
    if not cfg or "name" not in cfg:
        raise ValueError(f"{path} has no `zoo_model_config`: not a checkpoint written by zoo.training")
    meta = dict(ckpt.get("zoo_meta") or {})
    model = create_model(**cfg)
    state, used_ema = model_state_dict(ckpt, ema=ema)
    model.load_state_dict(state, strict=strict)
    model.eval()
    preprocessing = dict(meta.get("preprocessing") or {})
    model.pretrained_cfg = pretrained_cfg_from(preprocessing, getattr(model, "pretrained_cfg", None) or {},
                                               int(cfg.get("in_chans", 3)))
    info = {
        "path": str(Path(path).expanduser().resolve()),
        "model_config": dict(cfg),
        "num_classes": meta.get("num_classes", cfg.get("num_classes")),
        "class_names": list(meta.get("class_names") or []),
        "class_folders": list(meta.get("class_folders") or []),
        "preprocessing": preprocessing,
        "ema": used_ema,
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "best_acc1": ckpt.get("zoo_best_acc1"),
    }
    return model, info
