"""Loading weights: zoo state_dicts, files and ``save_pretrained`` directories, torchvision/timm
layouts, and fine-tuning into another classifier or number of input channels.

A reference implementation of the same architecture registers the same layers in the
same order (stem, blocks in order, each conv before its BatchNorm, head last); only the
names differ. ``convert_state_dict`` therefore pairs the tensors in order and checks
every pair: the parameter kind (weight, bias, running_mean, ...) and the shape must
agree, a fully connected weight may become a 1x1 conv weight (MobileNetV3's head),
and the counts must be equal. The classifier, the last weight/bias pair of both, is
paired explicitly. Any mismatch is an error that names both tensors; there is never a
silent partial load.

Fine-tuning follows timm's rules (:func:`fit_state_dict`): a classifier for another number of
classes is left as the model initialized it, the convs that read the image take the weights'
filters summed (1 input channel) or repeated and rescaled (any other count) by timm's
``adapt_input_conv``; one log line says what was done. Every other difference is an error.

Files are read without running code: ``torch.load(..., weights_only=True)`` (:func:`safe_load`)
or safetensors.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = [
    "CONFIG_FILE", "WEIGHTS_FILE", "UnsafeFileError", "apply_pretrained_cfg", "convert_state_dict", "fit_state_dict",
    "load_weights", "model_state_dict", "pretrained_dir_model_config", "read_pretrained_dir", "reference_state_dict",
    "safe_load",
]

log = logging.getLogger("zoo.models")

#: The files of a ``zoo.save_pretrained`` directory: the weights (safetensors) and their JSON config.
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_PREFIXES = ("net.", "ema.module.")


class UnsafeFileError(ValueError):
    """A file that ``torch.load(..., weights_only=True)`` refuses: unpickling it would run code."""


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only.

    Raises:
        UnsafeFileError: the file holds other Python objects (unpickling them could run any code).
        ValueError: the file is not one ``torch.save`` wrote.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" not in text:
            raise ValueError(f"{path} is not a file written by torch.save ({text})") from None
        reason = re.search(r"WeightsUnpickler error: (.*?)\.(?: |$)", text)
        raise UnsafeFileError(
            f"refused to load {path}: it holds Python objects other than tensors, numbers, strings and "
            f"containers, and unpickling them could run any code ({reason.group(1) if reason else 'not allowed'}). "
            "Checkpoints written by zoo never hold such objects; share weights with zoo.save_pretrained "
            "(safetensors)") from None
    except (KeyError, EOFError) as err:
        raise ValueError(f"{path} is not a file written by torch.save ({type(err).__name__}: {err})") from None


def model_state_dict(checkpoint: Mapping[str, Any], ema: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """The network's state dict with plain keys (``net.``/``ema.module.``/``_orig_mod.`` stripped).

    ``checkpoint``: a zoo training checkpoint (its ``state_dict``) or a state dict. Returns (state dict,
    whether the EMA weights were used); ``ema=True`` picks the EMA weights when there are any.
    """
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    use_ema = ema and any(k.startswith("ema.module.") for k in state)
    prefix = "ema.module." if use_ema else "net."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, use_ema
    return {k: v for k, v in state.items() if not k.startswith(_PREFIXES)}, False


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _classifier_keys(model: nn.Module) -> list[str]:
    """``model``'s state-dict keys of its classifier (``get_classifier()``), empty when it has none."""
    get = getattr(model, "get_classifier", None)
    head = get() if get is not None else None
    if head is None or not list(head.parameters()):
        return []
    name = next(n for n, m in model.named_modules() if m is head)
    return [f"{name}.{k}" for k in head.state_dict()]


def _input_conv_keys(model: nn.Module) -> set[str]:
    """The weights of the convs that read the image: those of ``model.stem`` with ``in_chans`` inputs."""
    in_chans = int(getattr(model, "in_chans", 3))
    in_stem = {id(m) for m in getattr(model, "stem", model).modules()}
    return {f"{n}.weight" for n, m in model.named_modules()
            if id(m) in in_stem and isinstance(m, nn.Conv2d) and m.in_channels == in_chans}


def _mismatch(source: str, src_key: str, src_t: torch.Tensor, dst_key: str, dst_t: torch.Tensor,
              where: str) -> ValueError:
    return ValueError(f"cannot match {source} tensor {src_key!r} {tuple(src_t.shape)} to zoo tensor {dst_key!r} "
                      f"{tuple(dst_t.shape)} ({where}): the architectures differ here")


def _ends_in_linear(items: list[tuple[str, torch.Tensor]]) -> bool:
    """Whether ``items`` end in a fully connected layer's weight (2-D) and bias: a classifier."""
    return (len(items) >= 2 and [_kind(k) for k, _ in items[-2:]] == ["weight", "bias"]
            and items[-2][1].dim() == 2 and items[-1][1].dim() == 1)


def _same_but_inputs(src_t: torch.Tensor, dst_t: torch.Tensor) -> bool:
    """Whether two conv weights differ at most in their input channels (dim 1)."""
    return src_t.dim() == dst_t.dim() == 4 and src_t.shape[:1] + src_t.shape[2:] == dst_t.shape[:1] + dst_t.shape[2:]


def _pair(src_items: list[tuple[str, torch.Tensor]], dst_items: list[tuple[str, torch.Tensor]], source: str,
          input_convs: set[str]) -> OrderedDict:
    """Pair tensors in order; an input conv's weight may differ in its input channels (dim 1)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i, (dst_key, dst_t) in enumerate(dst_items):
        if i >= len(src_items):
            raise ValueError(
                f"{source} state_dict has {len(src_items)} tensors but the zoo model has {len(dst_items)}: "
                f"nothing to load into {dst_key!r} {tuple(dst_t.shape)} and the {len(dst_items) - i - 1} after it"
            )
        src_key, src_t = src_items[i]
        as_1x1 = src_t.dim() == 2 and dst_t.dim() == 4 and dst_t.shape[2:] == (1, 1) and src_t.shape == dst_t.shape[:2]
        other_chans = dst_key in input_convs and _same_but_inputs(src_t, dst_t)
        if _kind(src_key) != _kind(dst_key) or not (src_t.shape == dst_t.shape or as_1x1 or other_chans):
            raise _mismatch(source, src_key, src_t, dst_key, dst_t, f"position {i}")
        out[dst_key] = src_t.reshape(dst_t.shape) if as_1x1 else src_t
    if len(src_items) > len(dst_items):
        extra = [k for k, _ in src_items[len(dst_items):]]
        raise ValueError(f"{source} state_dict has {len(extra)} tensors the zoo model lacks, from {extra[0]!r}")
    return out


def convert_state_dict(src: Mapping[str, torch.Tensor], model: nn.Module, source: str = "reference") -> OrderedDict:
    """Rename a reference state_dict to ``model``'s keys, pairing tensors in order.

    The classifier is paired explicitly: ``model``'s classifier weight and bias take the source's last
    weight/bias pair, whose number of classes may differ (its input features may not). For a model
    without a classifier (``num_classes=0``) that pair keeps its own keys. The weights of the convs
    that read the image may differ in their input channels. :func:`fit_state_dict` then resolves
    these differences.
    """
    dst_items, src_items = list(model.state_dict().items()), list(src.items())
    head = _classifier_keys(model)
    src_head: list[tuple[str, torch.Tensor]] = []
    if _ends_in_linear(src_items) and (head or len(src_items) == len(dst_items) + 2):
        src_items, src_head = src_items[:-2], src_items[-2:]
    out = _pair(src_items, [(k, t) for k, t in dst_items if k not in head], source, _input_conv_keys(model))
    if not head:
        out.update(src_head)
        return out
    dst_head = [(k, t) for k, t in dst_items if k in head]
    if len(src_head) != len(dst_head):
        raise ValueError(f"{source} state_dict does not end in a classifier (a fully connected weight and bias) "
                         f"to load into {head}")
    for (src_key, src_t), (dst_key, dst_t) in zip(src_head, dst_head):
        if _kind(src_key) != _kind(dst_key) or src_t.shape[1:] != dst_t.shape[1:]:
            raise _mismatch(source, src_key, src_t, dst_key, dst_t, "the classifier")
        out[dst_key] = src_t
    return out


def fit_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[OrderedDict, str | None]:
    """``state`` (in ``model``'s keys) made to fit ``model`` for fine-tuning, and one line on what was
    changed (None: nothing, every tensor loads as it is).

    A classifier whose number of classes differs keeps ``model``'s freshly initialized tensors, and a
    model without one (``num_classes=0``) drops the weights' trailing classifier; a weight of a conv
    that reads the image with other input channels is adapted by timm's ``adapt_input_conv`` (summed
    for 1 channel, repeated and rescaled otherwise). A missing, unexpected or otherwise differing
    tensor is an error that names it.
    """
    from timm.models import adapt_input_conv

    dst = model.state_dict()
    head, input_convs = _classifier_keys(model), _input_conv_keys(model)
    unexpected = [k for k in state if k not in dst]
    dropped = unexpected if not head and unexpected == list(state)[-2:] and _ends_in_linear(list(state.items())) else []
    missing, unexpected = [k for k in dst if k not in state], [k for k in unexpected if k not in dropped]
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    reinit, adapted = [], []
    for key, dst_t in dst.items():
        src_t = state[key]
        if src_t.shape == dst_t.shape:
            out[key] = src_t
        elif key in head and src_t.dim() == dst_t.dim() and src_t.shape[1:] == dst_t.shape[1:]:
            out[key] = dst_t
            reinit.append(key)
        elif key in input_convs and _same_but_inputs(src_t, dst_t):
            try:
                out[key] = adapt_input_conv(dst_t.shape[1], src_t)
            except NotImplementedError:
                raise ValueError(f"cannot adapt {key!r} {tuple(src_t.shape)} to {dst_t.shape[1]} input channels: "
                                 "timm's adapt_input_conv takes 3-channel weights (or a multiple of 3 for 1 channel)"
                                 ) from None
            adapted.append(key)
        else:
            raise ValueError(f"tensor {key!r} is {tuple(src_t.shape)} in the weights but {tuple(dst_t.shape)} in the "
                             "model: only the classifier's classes and the first convs' input channels may differ")
    notes = []
    if reinit:
        notes.append(f"classifier {reinit[0].rsplit('.', 1)[0]} re-initialized for {dst[reinit[0]].shape[0]} "
                     f"classes (the weights have {state[reinit[0]].shape[0]})")
    if dropped:
        notes.append(f"the weights' classifier {dropped[0].rsplit('.', 1)[0]} dropped (the model has none)")
    if adapted:
        notes.append(f"{', '.join(adapted)} adapted from {state[adapted[0]].shape[1]} to {dst[adapted[0]].shape[1]} "
                     "input channels (timm's adapt_input_conv)")
    if not notes:
        return out, None
    return out, f"{len(dst) - len(reinit)} of {len(dst)} tensors loaded; {'; '.join(notes)}"


def reference_state_dict(source: str, model_name: str) -> dict[str, torch.Tensor]:
    """The published ImageNet-1k weights of a torchvision/timm model, via their own download code."""
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(model_name, weights="DEFAULT").state_dict()
    import timm

    return timm.create_model(model_name, pretrained=True).state_dict()


def read_pretrained_dir(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, config) of a ``zoo.save_pretrained`` directory: ``model.safetensors`` + ``config.json``."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    weights, config = path / WEIGHTS_FILE, path / CONFIG_FILE
    for file in (weights, config):
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a zoo.save_pretrained directory: {file.name} is missing "
                                    f"(expected {WEIGHTS_FILE} and {CONFIG_FILE})")
    return load_file(str(weights)), json.loads(config.read_text())


def pretrained_dir_model_config(weights: Any) -> dict[str, Any]:
    """The ``model_config`` a ``zoo.save_pretrained`` directory records (the ``zoo.create_model`` kwargs
    it was saved with); ``{}`` when ``weights`` is not such a directory."""
    if not isinstance(weights, (str, Path)) or not (Path(weights).expanduser() / CONFIG_FILE).is_file():
        return {}
    return dict(json.loads((Path(weights).expanduser() / CONFIG_FILE).read_text()).get("model_config") or {})


def _read(weights: Any) -> tuple[Mapping[str, torch.Tensor], dict[str, Any]]:
    """(state dict, pretrained_cfg the weights carry or {}) from a mapping, a file or a directory."""
    if isinstance(weights, Mapping):
        return weights, {}
    path = Path(weights).expanduser()
    if path.is_dir():
        state, config = read_pretrained_dir(path)
        return state, dict(config.get("pretrained_cfg") or {})
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path} (expected a state_dict saved with torch.save, a zoo "
                                "training checkpoint or a zoo.save_pretrained directory)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), {}
    data = safe_load(path)
    if isinstance(data, Mapping) and "state_dict" in data:
        data = model_state_dict(data)[0]
    return data, {}


def apply_pretrained_cfg(model: nn.Module, cfg: Mapping[str, Any]) -> None:
    """Set the preprocessing of a stored ``pretrained_cfg`` (``input_size``, ``crop_pct``, ``interpolation``,
    ``mean``, ``std``; JSON lists back as tuples) on ``model.pretrained_cfg``; its other keys stay."""
    out = {k: cfg[k] for k in ("crop_pct", "interpolation") if cfg.get(k) is not None}
    out.update({k: tuple(float(v) for v in cfg[k]) for k in ("mean", "std") if cfg.get(k) is not None})
    if cfg.get("input_size") is not None:
        out["input_size"] = (int(getattr(model, "in_chans", 3)), *(int(v) for v in cfg["input_size"][1:]))
    model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **out}


def load_weights(model: nn.Module, weights: Any, weights_from: str = "zoo", reference: str | None = None,
                 strict: bool = False) -> None:
    """Load ``weights`` into ``model``, strictly but for fine-tuning (:func:`fit_state_dict`); with
    ``strict=True`` (timm's ``pretrained_strict``) every tensor must fit as it is, the classifier too.

    ``weights``: a state_dict, a file (``torch.save`` state dict, zoo training checkpoint, ``.safetensors``),
    a ``zoo.save_pretrained`` directory (its preprocessing becomes ``model.pretrained_cfg``'s), or
    ``"imagenet"`` (the ``reference`` model's published weights). ``weights_from``: their layout,
    ``"zoo"``, ``"torchvision"`` or ``"timm"``.
    """
    carried: dict[str, Any] = {}
    if isinstance(weights, str) and weights == "imagenet":
        if reference is None:
            raise ValueError("weights='imagenet' needs a torchvision or timm reference model")
        state = reference_state_dict(weights_from, reference)
    else:
        state, carried = _read(weights)
    if weights_from != "zoo":
        state = convert_state_dict(state, model, weights_from)
    state, note = fit_state_dict(state, model)
    if note and strict:
        raise ValueError(f"weights do not fit the model as they are (strict): {note}")
    model.load_state_dict(state)
    if carried:
        apply_pretrained_cfg(model, carried)
    if note:
        source = weights if isinstance(weights, (str, Path)) else f"a {weights_from} state_dict"
        log.warning("fine-tuning from %s: %s", source, note)
