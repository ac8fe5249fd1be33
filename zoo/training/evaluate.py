"""``evaluate(cfg) -> dict``: top-1/top-5 on a val split, params, MACs, CPU latency and throughput.

With ``ckpt_path`` (a training checkpoint or a ``zoo.save_pretrained`` directory) the model *and its
preprocessing* (resolution, crop, interpolation, mean/std, class order) come from it; otherwise from
``cfg.model`` (+ ``model.weights``, which carry their preprocessing too) and ``cfg.data``. The preprocessing is the model's ``pretrained_cfg``
(``zoo.data.Preprocessing``); ``data.*`` keys set on the command line win. No Hydra import: ``cfg``
is plain dicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping, NamedTuple

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.data import ImageDataModule, Preprocessing
from zoo.data.preprocess import DATAMODULE_NAMES
from zoo.measure.complexity import count_macs, count_params, fvcore_count
from zoo.measure.timing import benchmark
from zoo.models.pretrained import load_model
from zoo.models.registry import create_model

__all__ = ["EvalSetup", "eval_setup", "evaluate", "format_table"]


def format_table(r: Mapping[str, Any]) -> str:
    """The evaluation result as a small text table."""
    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    rows = [
        ("model", str(r["model"])),
        ("weights", str(r.get("weights") or "-")),
        ("val split", f"{r['data_root']} ({r['num_samples']} images, {r['num_classes']} classes)"),
        ("resolution / crop_pct", f"{r['val_res']} / {r['crop_pct']} ({r['interpolation']})"),
        ("top-1 (%)", f(r["top1"], ".2f")),
        ("top-5 (%)", f(r["top5"], ".2f")),
        ("params (M)", f(r["params"] / 1e6, ".3f")),
        ("MACs conv+linear (M)", f(r["macs"] / 1e6, ".1f")),
        ("fvcore total (M)", f(r["fvcore_flops"] / 1e6 if r.get("fvcore_flops") else None, ".1f")),
        (f"CPU latency bs{r['latency']['batch']} (ms, median)", f(r["latency"]["ms"], ".2f")),
        (f"CPU throughput bs{r['throughput']['batch']} (img/s, median)", f(r["throughput"]["img_per_s"], ".1f")),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b


class EvalSetup(NamedTuple):
    """What :func:`evaluate` runs: the model, its val data, the model name and the weights (path or name)."""

    model: nn.Module
    datamodule: ImageDataModule
    name: str
    weights: str | None


def eval_setup(cfg: Mapping[str, Any], explicit_data: Collection[str] = ()) -> EvalSetup:
    """The model and the val ``ImageDataModule`` that :func:`evaluate` uses.

    The eval preprocessing is the model's ``pretrained_cfg`` (:class:`zoo.data.Preprocessing`), put
    into the data module's arguments; the ``cfg.data`` keys in ``explicit_data`` win over it
    (``data.train_res`` counts as the resolution when ``data.val_res`` is null). A checkpoint
    carries its own preprocessing and class order, and so do ``model.weights``; a randomly
    initialized model carries none, so there the whole ``cfg.data`` wins.
    """
    data = {k: v for k, v in dict(cfg.get("data") or {}).items() if k != "name" and v is not None}
    for k in ("res_schedule", "cache"):
        data.pop(k, None)
    if data.get("root") is not None and not Path(data["root"]).expanduser().is_dir():
        raise ValueError(f"data root {Path(data['root']).expanduser().resolve()} does not exist; set data.root=...")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        model, info = load_model(ckpt_path, ema=bool(cfg.get("ema", True)))
        if info["class_folders"]:
            data["classes"] = info["class_folders"]
        name, weights = info["model_config"]["name"], str(Path(ckpt_path).resolve())
        source, wins = "checkpoint's", set(explicit_data)
    else:
        mcfg = dict(cfg["model"])
        num_classes = mcfg.pop("num_classes", None) or ImageDataModule(**data).num_classes
        model = create_model(num_classes=num_classes, **{k: v for k, v in mcfg.items() if v is not None}).eval()
        name, weights = mcfg["name"], mcfg.get("weights")
        source, wins = ("weights'", set(explicit_data)) if weights is not None else (None, set(data))
    if "train_res" in wins and data.get("val_res") is None and data.get("train_res") is not None:
        data["val_res"], wins = data["train_res"], wins | {"val_res"}  # val_res null = train_res
    pre = Preprocessing.from_pretrained_cfg(model)
    for key, value in pre.datamodule_kwargs().items():
        if key in wins and data.get(key) is not None:
            if source and not _same(data[key], value):
                print(f"data.{key}={data[key]} as set, not the {source} {DATAMODULE_NAMES[key]} {value}", flush=True)
        else:
            data[key] = value
    return EvalSetup(model, ImageDataModule(**data), name, weights)


def evaluate(cfg: Mapping[str, Any], explicit_data: Collection[str] = ()) -> dict[str, Any]:
    """Evaluate one model; prints a table, writes ``cfg.output_json`` and returns the numbers.

    ``explicit_data``: ``cfg.data`` keys the user set on purpose (``eval.py`` passes its
    ``data.*`` command-line overrides); these win over the preprocessing a checkpoint or
    ``model.weights`` carries (see :func:`eval_setup`).
    """
    cfg = dict(cfg)
    model, dm, name, weights = eval_setup(cfg, explicit_data)
    dm.setup("validate")
    loader = dm.val_dataloader()
    num_classes = int(getattr(model, "num_classes", dm.num_classes))
    if num_classes != dm.num_classes:
        raise ValueError(f"the model has {num_classes} outputs but the val split has {dm.num_classes} classes")

    device = torch.device(cfg.get("device", "cpu"))
    model = model.to(device).eval()
    acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro").to(device)
    acc5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro").to(device)
    n = 0
    with torch.inference_mode():
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            logits = model(dm.normalize_batch(images) if hasattr(dm, "normalize_batch") else images)
            acc1.update(logits, targets)
            acc5.update(logits, targets)
            n += int(targets.numel())
    model = model.cpu()
    bench = dict(cfg.get("bench") or {})
    pre = dm.preprocessing
    res = pre.res
    in_chans = int(getattr(model, "in_chans", 3))
    result = {
        "model": name,
        "weights": weights,
        "data_root": str(dm.root),
        "num_samples": n,
        "num_classes": num_classes,
        "val_res": res,
        "crop_pct": pre.crop_pct,
        "interpolation": pre.interpolation,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "top1": 100.0 * float(acc1.compute()),
        "top5": 100.0 * float(acc5.compute()),
        "params": count_params(model),
        "macs": count_macs(model, res, in_chans=in_chans),
        "fvcore_flops": fvcore_count(model, res, in_chans).total,
        "latency": benchmark(model, res, int(bench.get("latency_batch", 1)), int(bench.get("warmup", 3)),
                             int(bench.get("repeats", 10)), in_chans),
        "throughput": benchmark(model, res, int(bench.get("throughput_batch", 32)), int(bench.get("warmup", 3)),
                                int(bench.get("repeats", 10)), in_chans),
    }
    print(format_table(result), flush=True)
    out = cfg.get("output_json")
    if out:
        out = Path(out).expanduser().resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        result["output_json"] = str(out)
        print(f"wrote {out}", flush=True)
    return result
