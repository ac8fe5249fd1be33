"""The shareable model format: a directory with ``model.safetensors`` (the weights, no pickle, so
loading it cannot run code) and ``config.json`` (how to rebuild the model, its resolved architecture
table, its classes and its preprocessing), as timm and the Hugging Face hub share models::

    zoo.save_pretrained("logs/train/runs/.../checkpoints/best.ckpt", "my_model")   # or a model
    model, info = zoo.load_pretrained("my_model")                                  # the same model, eval mode
    model = zoo.create_model("mobilenetv3_large_100", num_classes=5, weights="my_model")  # fine-tune from it

``eval.py``, ``predict.py`` and ``python -m zoo.deploy`` take such a directory wherever they take a
training checkpoint (:func:`load_model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from zoo.models.arch import OVERRIDES, apply_overrides, arch_to_dict, parse_arch, to_plain
from zoo.models.checkpoint import load_checkpoint
from zoo.models.registry import create_model, model_arch
from zoo.models.weights import CONFIG_FILE, WEIGHTS_FILE, apply_pretrained_cfg, read_pretrained_dir

__all__ = ["save_pretrained", "load_pretrained", "load_model", "resolved_architecture"]


def resolved_architecture(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture table a ``model_config`` (``zoo.create_model`` kwargs) builds, overrides applied."""
    overrides = {k: v for k, v in model_config.items() if k in OVERRIDES and v is not None}
    if model_config.get("arch") is not None:
        return arch_to_dict(apply_overrides(parse_arch(to_plain(model_config["arch"])), **overrides))
    return model_arch(model_config["name"], **overrides)


def _provenance(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``checkpoint`` entry of config.json: the training checkpoint the weights came from, if any."""
    if "checkpoint" in info:  # a save_pretrained directory saved again keeps its origin
        return info["checkpoint"]
    if not info:
        return None
    return {k: info.get(k) for k in ("path", "epoch", "global_step", "best_acc1", "ema", "preprocessing")}


def save_pretrained(model_or_ckpt: nn.Module | str | Path, directory: str | Path,
                    class_names: Sequence[str] | None = None, class_folders: Sequence[str] | None = None,
                    ema: bool = True) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json``; returns the directory.

    Args:
        model_or_ckpt: a model made by ``zoo.create_model``, or the path of a zoo training checkpoint
            (its EMA weights when ``ema`` and it has them) or of another such directory.
        directory: created if needed; the two files are replaced if there, nothing else is touched.
        class_names, class_folders: the classes of a model (a checkpoint's own are kept otherwise).

    ``config.json`` holds ``model_config`` (the ``zoo.create_model`` kwargs), ``architecture`` (the
    resolved table), ``num_classes``, ``class_names``, ``class_folders``, ``pretrained_cfg`` (the eval
    preprocessing: input_size, crop_pct, interpolation, mean, std) and ``checkpoint`` (where the weights
    came from: path, epoch, global_step, best_acc1, ema, training preprocessing; null for a model).
    """
    from safetensors.torch import save_file

    info: dict[str, Any] = {}
    if isinstance(model_or_ckpt, nn.Module):
        model = model_or_ckpt
    else:
        model, info = load_model(model_or_ckpt, ema=ema)
    model_config = dict(getattr(model, "model_config", None) or {})
    if "name" not in model_config:
        raise ValueError(f"{type(model).__name__} has no `model_config`: save_pretrained takes models made by "
                         "zoo.create_model or zoo checkpoints")
    config = {
        "model_config": to_plain(model_config),
        "architecture": resolved_architecture(model_config),
        "num_classes": int(getattr(model, "num_classes", model_config.get("num_classes", 0))),
        "class_names": list(class_names if class_names is not None else info.get("class_names") or []),
        "class_folders": list(class_folders if class_folders is not None else info.get("class_folders") or []),
        "pretrained_cfg": to_plain(getattr(model, "pretrained_cfg", None) or {}),
        "checkpoint": _provenance(info),
    }
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_weights, tmp_config = directory / f".{WEIGHTS_FILE}.tmp", directory / f".{CONFIG_FILE}.tmp"
    save_file(state, str(tmp_weights), metadata={"format": "pt"})
    tmp_config.write_text(json.dumps(config, indent=2) + "\n")
    tmp_weights.replace(directory / WEIGHTS_FILE)  # each file whole or not at all
    tmp_config.replace(directory / CONFIG_FILE)
    return directory


def load_pretrained(directory: str | Path,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a :func:`save_pretrained` directory holds, in eval mode, with its preprocessing in
    ``model.pretrained_cfg``. Reads no pickle.

    Returns:
        ``(model, info)`` with the keys of :func:`zoo.load_checkpoint`'s ``info``: ``path``, ``model_config``,
        ``num_classes``, ``class_names``, ``class_folders``, ``preprocessing``, ``ema``, ``epoch``,
        ``global_step``, ``best_acc1`` (the last five from the checkpoint it was saved from, else None/{}),
        and ``checkpoint`` (that checkpoint's record in ``config.json``, None for a model).
    """
    state, config = read_pretrained_dir(directory)
    model_config = dict(config.get("model_config") or {})
    if "name" not in model_config:
        raise ValueError(f"{Path(directory) / CONFIG_FILE} has no model_config.name: not written by "
                         "zoo.save_pretrained")
    model = create_model(**model_config)
    model.load_state_dict(state)
    model.to(map_location).eval()
    apply_pretrained_cfg(model, config.get("pretrained_cfg") or {})
    source = dict(config.get("checkpoint") or {})
    info = {
        "path": str(Path(directory).expanduser().resolve()),
        "model_config": model_config,
        "num_classes": config.get("num_classes", model_config.get("num_classes")),
        "class_names": list(config.get("class_names") or []),
        "class_folders": list(config.get("class_folders") or []),
        "preprocessing": dict(source.get("preprocessing") or {}),
        "checkpoint": source or None,
        **{k: source.get(k) for k in ("ema", "epoch", "global_step", "best_acc1")},
    }
    return model, info


def load_model(path: str | Path, ema: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, info)`` from a :func:`save_pretrained` directory (:func:`load_pretrained`) or a zoo
    training checkpoint (:func:`zoo.load_checkpoint`, EMA weights when ``ema`` and present)."""
    path = Path(path).expanduser()
    return load_pretrained(path) if path.is_dir() else load_checkpoint(path, ema=ema)
