"""``train(cfg) -> dict``: the whole training run from a plain nested config (no Hydra needed).

``cfg`` is the resolved ``configs/train.yaml`` as plain dicts (``train.py`` converts Hydra's
DictConfig); any mapping with the same keys works, e.g. from a notebook.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import yaml
from lightning.pytorch.utilities import rank_zero_only

from zoo.data import ImageDataModule
from zoo.models.arch import to_plain
from zoo.measure.complexity import count_macs, count_params
from zoo.measure.timing import keep_freed_memory
from zoo.training.callbacks import EpochMetricsRecorder, FreezeBackbone, train_images_per_second
from zoo.training.distill import teacher_label
from zoo.training.module import ClassificationModule
from zoo.training.pruning import load_prune_source, prune_for_training, prune_settings, resumed_pruned_model
from zoo.training.optim import scale_lr

__all__ = ["train", "resolution_report", "find_resume_checkpoint", "OUTPUT_MARKERS"]

#: Files whose presence marks a run directory as used (a new run refuses to write there).
OUTPUT_MARKERS = ("checkpoints", "metrics.csv", "summary.json")
#: ``cfg.aug`` keys that go to the data module (the rest, ``mixup``, goes to the LightningModule).
_AUG_TO_DATA = {"policy": "aug", "hflip": "hflip", "scale": "scale", "re_prob": "re_prob"}


def rprint(*args: Any) -> None:
    """Print on global rank 0 only."""
    if rank_zero_only.rank == 0:
        print(*args, flush=True)


def resolution_report(train_res: int, val_res: int, total_stride: int = 32) -> tuple[str, list[str]]:
    """The r = k * 2^n report (n = log2 of the network's total stride) and warnings for sizes off the grid."""
    n = int(round(math.log2(total_stride)))
    lines, warnings = [], []
    for label, r in (("train_res", train_res), ("val_res", val_res)):
        k = r / total_stride
        lines.append(f"{label} {r} = {k:g} x 2^{n} (final feature map {math.ceil(k)}x{math.ceil(k)})")
        if r % total_stride:
            lo = (r // total_stride) * total_stride
            hi = lo + total_stride
            near = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            warnings.append(f"{label}={r} is not a multiple of the total stride {total_stride}: "
                            f"the last stages see padded/cropped maps; nearest valid sizes: {near}")
    return "; ".join(lines), warnings


def find_resume_checkpoint(runs_dir: str | Path) -> Path | None:
    """The newest ``<runs_dir>/*/checkpoints/last.ckpt`` of an unfinished run (no ``summary.json``), or None."""
    runs_dir = Path(runs_dir)
    found = sorted((p for p in runs_dir.glob("*/checkpoints/last.ckpt") if not (p.parents[1] / "summary.json").exists()),
                   key=lambda p: p.stat().st_mtime)
    return found[-1].resolve() if found else None


def _run_dir_of(ckpt: Path) -> Path | None:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; None for a checkpoint elsewhere."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def _resolve_output(cfg: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None), refusing to reuse a run directory."""
    paths = cfg.get("paths", {})
    resume = cfg.get("resume")
    ckpt_path = cfg.get("ckpt_path")
    if resume not in (None, False, "auto", "none"):
        raise ValueError(f"resume must be null or 'auto', got {resume!r}; to resume a given run set ckpt_path=PATH")
    if ckpt_path is None and resume == "auto":
        runs_dir = paths.get("runs_dir")
        if not runs_dir:
            raise ValueError("resume=auto needs paths.runs_dir (where earlier runs of this experiment live)")
        found = find_resume_checkpoint(runs_dir)
        if found is None:
            rprint(f"resume=auto: no unfinished run (last.ckpt without summary.json) under {Path(runs_dir).resolve()}; "
                   "starting a new run")
        else:
            rprint(f"resume=auto: resuming from {found}")
            ckpt_path = found
    if ckpt_path is not None:
        ckpt = Path(ckpt_path).expanduser().resolve()
        if not ckpt.is_file():
            raise ValueError(f"ckpt_path {ckpt} does not exist")
        run_dir = _run_dir_of(ckpt)
        if run_dir is not None:
            return run_dir, ckpt
        out = Path(paths.get("output_dir") or ".").resolve()
        return out, ckpt
    out = paths.get("output_dir")
    if not out:
        raise ValueError("paths.output_dir is not set")
    out = Path(out).expanduser().resolve()
    used = [m for m in OUTPUT_MARKERS if (out / m).exists()]
    if used and rank_zero_only.rank == 0:
        raise ValueError(f"run directory {out} already holds {used} from an earlier run; refusing to overwrite it. "
                         "Use a new paths.output_dir / hydra.run.dir, or resume with ckpt_path=... or resume=auto")
    return out, None


def _data_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in dict(cfg.get("data", {})).items() if k not in ("name",)}
    for src, dst in _AUG_TO_DATA.items():
        if src in cfg.get("aug", {}):
            data[dst] = cfg["aug"][src]
    if data.get("root") is not None:
        root = Path(data["root"]).expanduser()
        if not root.is_dir() and not data.get("download", False):
            raise ValueError(f"data root {root.resolve()} does not exist. Point data.root at an ImageFolder tree "
                             "(<root>/train/<class>/*, <root>/val/<class>/*), set data.download=true, or use data=mini "
                             "(the embedded Imagenette-mini)")
    return {k: v for k, v in data.items() if v is not None}


def _loggers(cfg: Mapping[str, Any], out: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    made = []
    for name, kw in dict(cfg.get("logger") or {}).items():
        kw = dict(kw or {})
        if name == "csv":
            made.append(CSVLogger(save_dir=str(out), name="logs", version="csv", **kw))
        elif name == "tensorboard":
            made.append(TensorBoardLogger(save_dir=str(out), name="logs", version="tensorboard", **kw))
        else:
            raise ValueError(f"unknown logger {name!r}; available: csv, tensorboard")
    return made


def _callbacks(cfg: Mapping[str, Any], out: Path) -> list[L.Callback]:
    from lightning.pytorch.callbacks import (LearningRateMonitor, ModelCheckpoint, ModelSummary, RichProgressBar,
                                             TQDMProgressBar)

    cb = dict(cfg.get("callbacks") or {})
    ck = dict(cb.get("checkpoint") or {})
    every = int(ck.get("every_n_epochs", 1))
    made: list[L.Callback] = [
        EpochMetricsRecorder(out / "metrics.csv", out / "curves.png"),
        ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="best", monitor=ck.get("monitor", "val/acc1"),
                        mode=ck.get("mode", "max"), save_top_k=1, auto_insert_metric_name=False,
                        every_n_epochs=every, enable_version_counter=False),
        # last.ckpt by a callback of its own: since Lightning 2.6 `save_last=True` writes it only when the
        # monitored metric improves, so a run on a plateau would resume from an old epoch.
        ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="last", monitor=None, save_top_k=1,
                        every_n_epochs=every, enable_version_counter=False),
        ModelSummary(max_depth=int(cb.get("model_summary_depth", 1))),
    ]
    bar = cb.get("progress_bar", "tqdm")
    if bar == "rich":
        made.append(RichProgressBar())
    elif bar == "tqdm":
        made.append(TQDMProgressBar(refresh_rate=int(cb.get("refresh_rate", 1))))
    elif bar not in (None, "none", False):
        raise ValueError(f"callbacks.progress_bar must be tqdm, rich or none, got {bar!r}")
    if cb.get("lr_monitor", True) and cfg.get("logger"):
        made.append(LearningRateMonitor(logging_interval="step"))
    if cb.get("freeze_backbone_epochs"):
        made.append(FreezeBackbone(int(cb["freeze_backbone_epochs"])))
    return made


def train(cfg: Mapping[str, Any], extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Train and validate one model; returns the final metrics and output paths.

    ``extra_callbacks``: Lightning callbacks added after the configured ones (e.g. a search's callback
    that reports each epoch's val top-1 and stops unpromising runs).

    Outputs (rank 0, in the run directory): ``config.yaml``, ``checkpoints/{best,last}.ckpt``,
    ``metrics.csv`` (one row per epoch), ``curves.png``, ``summary.json``, ``logs/``.
    """
    t_start = time.perf_counter()
    cfg = dict(cfg)
    # before the data loader workers fork, so they inherit it
    kept_memory = bool(cfg.get("keep_freed_memory", True)) and keep_freed_memory()
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    out, ckpt = _resolve_output(cfg)
    resuming = ckpt is not None
    prune = prune_settings(cfg.get("prune"))
    source = load_prune_source(prune) if prune and not resuming else None  # a bad file stops before any output

    # ---------------------------------------------------------------- data
    dm = ImageDataModule(**_data_kwargs(cfg))
    num_classes = dm.num_classes
    meta = {"class_names": list(dm.class_names), "class_folders": list(getattr(dm, "class_folders", dm.class_names)), "mean": list(dm.mean), "std": list(dm.std),
            "train_res": dm.train_res, "val_res": dm.val_res, "crop_pct": dm.val_crop_pct,
            "interpolation": dm.interpolation}

    # ---------------------------------------------------------------- pruning (prune.from): the model to train
    model_cfg, pruned, pruned_record = dict(cfg["model"]), None, None
    resumed_pruned = resumed_pruned_model(prune, ckpt) if resuming else None
    if resumed_pruned is not None:
        model_cfg, pruned_record = resumed_pruned
    elif prune:
        pruned, pruned_record = prune_for_training(prune, *source, dm, seed=int(cfg.get("seed", 42)))
        model_cfg = {k: v for k, v in pruned.model_config.items() if k != "num_classes"}

    # ---------------------------------------------------------------- trainer
    trainer_kw = dict(cfg.get("trainer") or {})
    if (cfg.get("callbacks") or {}).get("progress_bar", "tqdm") in (None, "none", False):
        trainer_kw.setdefault("enable_progress_bar", False)
    if cfg.get("data", {}).get("res_schedule"):
        trainer_kw.setdefault("reload_dataloaders_every_n_epochs", 1)
    trainer = L.Trainer(
        default_root_dir=str(out), logger=_loggers(cfg, out) or False,
        callbacks=_callbacks(cfg, out) + list(extra_callbacks),
        use_distributed_sampler=False, **trainer_kw)

    # ---------------------------------------------------------------- lr scaling
    optim = dict(cfg.get("optim") or {})
    batch = int(dm.batch_size)
    global_batch = batch * trainer.world_size * int(trainer.accumulate_grad_batches)
    base_lr = float(optim.get("base_lr", optim.get("lr", 0.1)))
    lr = scale_lr(base_lr, global_batch, int(optim.get("base_batch_size", 256)), optim.get("lr_scaling", "linear"))
    optim["lr"] = lr

    # ---------------------------------------------------------------- module
    aug = dict(cfg.get("aug") or {})
    module = ClassificationModule(
        model=model_cfg, num_classes=num_classes, optim=optim, sched=dict(cfg.get("sched") or {}),
        loss=dict(cfg.get("loss") or {}), mixup=dict(aug.get("mixup") or {}), ema=dict(cfg.get("ema") or {}),
        compile=bool(cfg.get("compile", False)), channels_last=bool(cfg.get("channels_last", False)), meta=meta,
        distill=dict(cfg.get("distill") or {}), pruned=pruned_record)
    if pruned is not None:
        module.load_net_state(pruned.state_dict())
    net = module.net
    params = count_params(net)
    macs = count_macs(net, dm.train_res)
    teacher = module.teacher
    distill = None
    if teacher is not None:
        distill = {**teacher.record, "teacher_params": sum(count_params(n) for n in teacher.networks),
                   "teacher_macs": sum(count_macs(n, dm.train_res) for n in teacher.networks)}
    stride = int(getattr(net, "total_stride", 32))
    res_line, res_warn = resolution_report(dm.train_res, dm.val_res, stride)

    # ---------------------------------------------------------------- report
    model_name = model_cfg.get("name")
    rprint("=" * 80)
    rprint(f"model: {model_name}  config: {net.model_config}")
    rprint(f"params: {params / 1e6:.3f} M   MACs @ {dm.train_res}px: {macs / 1e6:.1f} M (conv + linear)")
    rprint(f"resolution: {res_line}")
    if pruned_record is not None:
        p = pruned_record
        rprint(f"pruned from {p['from']} ({p['model']}; the model group is not used){' (resumed)' if resuming else ''}: "
               f"{p['importance']} importance{', global' if p['global'] else ''}, target {p['macs_ratio']:g} of "
               f"the MACs @ {p['res']}px: MACs {p['macs_before'] / 1e6:.1f} M -> {p['macs_after'] / 1e6:.1f} M, "
               f"params {p['params_before'] / 1e6:.3f} M -> {p['params_after'] / 1e6:.3f} M")
    for w in res_warn:
        rprint(f"WARNING: {w}")
    rprint(f"data: {dm.root} ({num_classes} classes), batch {batch} x {trainer.world_size} process(es) x "
           f"{trainer.accumulate_grad_batches} accumulation = global batch {global_batch}")
    rprint(f"lr: base_lr {base_lr:g} @ batch {optim.get('base_batch_size', 256)} -> "
           f"{optim.get('lr_scaling', 'linear')} scaling -> lr {lr:.5g} ({optim.get('name', 'sgd')}, "
           f"wd {optim.get('weight_decay', 0)})")
    if dm.stats_file is not None:
        rprint(f"normalization: the training set's mean {[round(v, 4) for v in dm.mean]} std "
               f"{[round(v, 4) for v in dm.std]} (data.mean=auto, cached in {dm.stats_file})")
    rprint(module.describe_loss())
    if distill is not None:
        models = distill["model"] if isinstance(distill["model"], list) else [distill["model"]]
        rprint(f"teacher: {' + '.join(models)} from {teacher_label(distill)}, frozen, on the student's augmented batch")
        rprint(f"teacher forward: params {distill['teacher_params'] / 1e6:.3f} M   MACs @ {dm.train_res}px: "
               f"{distill['teacher_macs'] / 1e6:.1f} M per image ({distill['teacher_macs'] / macs:.1f}x the student's)")
        for note in teacher.notes:
            rprint(note)
    if module.ema is not None:
        rprint(f"EMA: decay {cfg['ema'].get('decay')}, validation on EMA weights")
    if kept_memory:
        rprint("malloc: freed memory kept for reuse (keep_freed_memory=true; the process holds its peak memory)")
    rprint(f"run directory: {out}" + (f" (resuming from {ckpt})" if resuming else ""))
    rprint("=" * 80)

    if rank_zero_only.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        name = "config.yaml" if not (out / "config.yaml").exists() else f"config.resume-{datetime.now():%Y%m%d-%H%M%S}.yaml"
        (out / name).write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))

    # ---------------------------------------------------------------- fit
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)  # no code runs on resume

    # ---------------------------------------------------------------- summary
    recorder = next(c for c in trainer.callbacks if isinstance(c, EpochMetricsRecorder))
    rows = recorder.rows
    final = rows[-1] if rows else {}
    ck = trainer.checkpoint_callback
    img_per_s = train_images_per_second(rows)
    summary = {
        "model": model_name,
        "model_config": net.model_config,
        "params": params,
        "macs": macs,
        "train_res": dm.train_res,
        "val_res": dm.val_res,
        "epochs": len(rows),
        "max_epochs": trainer.max_epochs,
        "global_batch": global_batch,
        "lr": lr,
        "best_top1": module.best_acc1,
        "final_top1": final.get("val/acc1"),
        "final_top5": final.get("val/acc5"),
        "val_num_samples": final.get("val/num_samples"),
        "wall_time_s": round(time.perf_counter() - t_start, 2),
        # the epochs' wall time, validation included; train_img_per_s is training images over the
        # training part of that time alone (train_images_per_second)
        "train_time_s": round(sum(float(r.get("epoch_time_s") or 0) for r in rows), 2),
        "train_img_per_s": round(img_per_s, 2) if img_per_s is not None else None,
        "run_dir": str(out),
        "best_ckpt": ck.best_model_path if ck else None,
        "last_ckpt": str(out / "checkpoints" / "last.ckpt"),
        "metrics_csv": str(out / "metrics.csv"),
        "curves_png": str(out / "curves.png"),
        "resumed_from": str(ckpt) if ckpt else None,
        "distill": distill,
        "pruned": pruned_record,
    }
    if rank_zero_only.rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        top1 = summary["final_top1"]
        rprint(f"final val top-1: {top1:.2f}% (best {module.best_acc1:.2f}%) after {len(rows)} epochs, "
               f"{summary['wall_time_s']:.0f} s" if top1 is not None else "no validation ran")
        rprint(f"outputs in {out}: checkpoints/best.ckpt, checkpoints/last.ckpt, metrics.csv, curves.png, "
               "summary.json, config.yaml, logs/")
    return summary


