"""``evaluate(cfg) -> dict``: top-1/top-5 on a val split, params, MACs, CPU latency and throughput.

With ``ckpt_path`` the model *and its preprocessing* (resolution, crop, interpolation, mean/std,
class order) come from the checkpoint; otherwise from ``cfg.model`` (+ ``model.weights``) and
``cfg.data``. No Hydra import: ``cfg`` is plain dicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.data import ImageDataModule
from zoo.measure.complexity import count_macs, count_params, fvcore_count
from zoo.measure.timing import benchmark
from zoo.models.checkpoint import load_checkpoint
from zoo.models.registry import create_model

__all__ = ["evaluate", "format_table"]


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


def evaluate(cfg: Mapping[str, Any], explicit_data: Collection[str] = ()) -> dict[str, Any]:
    """Evaluate one model; prints a table, writes ``cfg.output_json`` and returns the numbers.

    ``explicit_data``: ``cfg.data`` keys the user set on purpose (``eval.py`` passes its
    ``data.*`` command-line overrides); these win over a checkpoint's preprocessing.
    """
    cfg = dict(cfg)
    data = {k: v for k, v in dict(cfg.get("data") or {}).items() if k != "name" and v is not None}
    for k in ("res_schedule", "cache"):
        data.pop(k, None)
    if data.get("root") is not None and not Path(data["root"]).expanduser().is_dir():
        raise ValueError(f"data root {Path(data['root']).expanduser().resolve()} does not exist; set data.root=...")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        model, info = load_checkpoint(ckpt_path, ema=bool(cfg.get("ema", True)))
        pre = info["preprocessing"]
        # preprocessing and class order from the checkpoint, never from defaults; an explicit setting wins
        for key, src in (("val_res", "val_res"), ("val_crop_pct", "crop_pct"), ("interpolation", "interpolation"),
                         ("mean", "mean"), ("std", "std")):
            if pre.get(src) is None:
                continue
            if key in explicit_data and data.get(key) is not None:
                if data[key] != pre[src]:
                    print(f"data.{key}={data[key]} as set, not the checkpoint's {src} {pre[src]}", flush=True)
            else:
                data[key] = pre[src]
        data["train_res"] = pre.get("train_res") or data.get("val_res", 128)
        if info["class_folders"]:
            data["classes"] = info["class_folders"]
        name, weights = info["model_config"]["name"], str(Path(ckpt_path).resolve())
    else:
        mcfg = dict(cfg["model"])
        dm0 = ImageDataModule(**data)
        num_classes = mcfg.pop("num_classes", None) or dm0.num_classes
        model = create_model(num_classes=num_classes, **{k: v for k, v in mcfg.items() if v is not None}).eval()
        pcfg = getattr(model, "pretrained_cfg", {}) or {}
        if mcfg.get("weights") is not None:  # pretrained: the weights' own normalisation
            for key, src in (("mean", "mean"), ("std", "std"), ("interpolation", "interpolation"),
                             ("val_crop_pct", "crop_pct")):
                if pcfg.get(src) is not None and dict(cfg.get("data") or {}).get(key) is None:
                    data[key] = pcfg[src]
        name, weights = mcfg["name"], mcfg.get("weights")
    dm = ImageDataModule(**data)
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
    res = int(dm.val_res)
    in_chans = int(getattr(model, "in_chans", 3))
    result = {
        "model": name,
        "weights": weights,
        "data_root": str(dm.root),
        "num_samples": n,
        "num_classes": num_classes,
        "val_res": res,
        "crop_pct": dm.val_crop_pct,
        "interpolation": dm.interpolation,
        "mean": list(dm.mean),
        "std": list(dm.std),
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
