"""Model names -> architecture tables, and ``create_model``.

Each family is one YAML file in ``zoo/archs/``: the paper's table (``arch``), the named
sizes (``variants``: overrides, and optionally ``arch`` patches such as the ResNet-D
stem), and the reference implementations a variant's weights can come from
(``references``: torchvision/timm model names and the config details they differ in).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from torch import nn

from zoo.models.arch import OVERRIDES, ArchSpec, apply_overrides, arch_to_dict, parse_arch, to_plain
from zoo.models.builder import FeatureNet, ZooNet, build_network, check_global_pool
from zoo.models.weights import load_weights, pretrained_dir_model_config

__all__ = ["ModelEntry", "list_models", "get_entry", "create_model", "build_model"]

ARCH_DIR = Path(__file__).parent / "archs"
WEIGHT_SOURCES = ("zoo", "torchvision", "timm")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its family table, its variant overrides and its references."""

    name: str
    family: str
    table: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    references: dict[str, dict[str, Any]] = field(default_factory=dict)


@lru_cache(maxsize=None)
def _registry() -> dict[str, ModelEntry]:
    entries: dict[str, ModelEntry] = {}
    for path in sorted(ARCH_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        unknown = {k for k in doc if not k.startswith("_")} - {"arch", "variants", "references"}
        if unknown:
            raise ValueError(f"{path.name}: unknown top-level keys {sorted(unknown)}")
        for name, variant in (doc.get("variants") or {}).items():
            variant = dict(variant or {})
            table = {**doc["arch"], **variant.pop("arch", {})}
            entries[name] = ModelEntry(name, path.stem, table, variant, (doc.get("references") or {}).get(name, {}))
    return entries


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"mobilenetv3*"``)."""
    return sorted(n for n in _registry() if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name lists the closest ones."""
    reg = _registry()
    if name not in reg:
        close = difflib.get_close_matches(name, list(reg), n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"available: {', '.join(sorted(reg))}"
        raise ValueError(f"unknown model {name!r}; {hint}")
    return reg[name]


def build_model(arch: ArchSpec | Mapping[str, Any], num_classes: int = 1000, in_chans: int = 3, **overrides: Any) -> ZooNet:
    """Build a network from a table (an :class:`ArchSpec` or its dict/YAML form), with overrides."""
    spec = arch if isinstance(arch, ArchSpec) else parse_arch(to_plain(arch))
    spec = apply_overrides(spec, **overrides)
    return build_network(spec, num_classes=num_classes, in_chans=in_chans)


def _from_timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords of ``timm.create_model`` that copy-pasted timm code passes, in zoo terms:
    ``pretrained=False`` is dropped (True is an error that names ``weights=``), ``exportable`` is
    ``export_friendly``, ``scriptable`` is dropped (zoo models always script), ``global_pool``
    must be ``"avg"`` (the zoo head's pooling)."""
    kwargs = dict(kwargs)
    if kwargs.pop("pretrained", False):
        raise ValueError("pretrained=True is timm's switch: zoo loads published weights with weights='imagenet' "
                         "(converted from torchvision or timm, weights_from=...) or weights=<file or state_dict>")
    check_global_pool(kwargs.pop("global_pool", None))
    kwargs.pop("scriptable", None)
    exportable = kwargs.pop("exportable", None)
    if exportable is not None:
        if kwargs.get("export_friendly") not in (None, exportable):
            raise ValueError(f"exportable={exportable} (timm's name of export_friendly) contradicts "
                             f"export_friendly={kwargs['export_friendly']}")
        kwargs["export_friendly"] = exportable
    return kwargs


def create_model(
    name: str,
    num_classes: int = 1000,
    in_chans: int = 3,
    weights: Any = None,
    weights_from: str = "zoo",
    checkpoint_path: str | Path | None = None,
    weights_strict: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    arch: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Create a zoo model by name (``list_models()``), or from a table with ``arch=``.

    ``weights``: a state_dict, a file (``torch.save`` state dict, zoo training checkpoint,
    ``.safetensors``), a ``zoo.save_pretrained`` directory, or ``"imagenet"`` (the reference
    project's published weights, downloaded by torchvision/timm); ``checkpoint_path`` is timm's
    name for a file. ``weights_from``: whose layout
    the weights are in: ``"zoo"``, ``"torchvision"`` or ``"timm"``; a reference layout is
    converted, and the config details the reference differs in (e.g. BatchNorm eps) are
    set first so the outputs match (so are those a ``save_pretrained`` directory records).
    Weights for another ``num_classes`` or ``in_chans`` load for
    fine-tuning (``zoo.models.weights.fit_state_dict``) unless ``weights_strict`` (timm's
    ``pretrained_strict``): then every tensor must fit as it is. ``overrides``: see ``zoo.models.arch.OVERRIDES``;
    timm's ``pretrained=False``, ``exportable``, ``scriptable`` and ``global_pool="avg"`` are accepted too.
    """
    overrides = _from_timm_kwargs(overrides)
    if checkpoint_path is not None:
        if weights is not None:
            raise ValueError("give weights= or checkpoint_path= (timm's name for a weights file), not both")
        weights = checkpoint_path
    if weights_from not in WEIGHT_SOURCES:
        raise ValueError(f"weights_from must be one of {WEIGHT_SOURCES}, got {weights_from!r}")
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"create_model got unknown argument(s) {unknown}; model overrides are: {', '.join(OVERRIDES)}")
    user_overrides = {k: v for k, v in overrides.items() if v is not None}
    if arch is not None:
        table, base, references = to_plain(arch), {}, {}
    else:
        entry = get_entry(name)
        table, base, references = copy.deepcopy(entry.table), dict(entry.overrides), entry.references
    if isinstance(weights, str) and weights == "imagenet" and weights_from == "zoo":
        if not references:
            raise ValueError(f"{name} has no reference implementation with published ImageNet weights")
        weights_from = "torchvision" if "torchvision" in references else "timm"
    reference: dict[str, Any] = {}
    if weights is not None and weights_from != "zoo":
        if weights_from not in references:
            raise ValueError(
                f"{name} has no {weights_from} reference; known references: {sorted(references) or 'none'}"
            )
        reference = references[weights_from]
    # a save_pretrained directory's architecture overrides (width, bn_eps...) apply unless set here
    saved = {k: v for k, v in pretrained_dir_model_config(weights).items() if k in OVERRIDES}
    resolved = {**base, **reference.get("overrides", {}), **saved, **user_overrides}
    model = build_model(table, num_classes=num_classes, in_chans=in_chans, **resolved)
    config: dict[str, Any] = {"name": name, "num_classes": num_classes, "in_chans": in_chans}
    config.update({**reference.get("overrides", {}), **saved, **user_overrides})
    if arch is not None:
        config["arch"] = table
    model.model_config = config
    if weights is not None:
        load_weights(model, weights, weights_from, reference.get("model"), strict=weights_strict)
    if features_only:
        return FeatureNet(model, out_indices)
    return model


def model_arch(name: str, **overrides: Any) -> dict[str, Any]:
    """The resolved table of a registered model, as plain data (e.g. to start a YAML of your own)."""
    entry = get_entry(name)
    spec = apply_overrides(parse_arch(copy.deepcopy(entry.table)), **{**entry.overrides, **overrides})
    return arch_to_dict(spec)
