"""Callbacks: the per-epoch metrics CSV and the curves PNG, and a frozen backbone for fine-tuning."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import nn

from zoo.measure.records import save_figure

__all__ = ["EpochMetricsRecorder", "CSV_FIELDS", "FreezeBackbone", "plot_curves", "train_images_per_second"]

CSV_FIELDS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc1", "val/acc5", "val/num_samples",
              "lr", "epoch_time_s", "train_img_per_s")


def train_images_per_second(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """A run's training images / training time, from its per-epoch rows (``metrics.csv`` or in memory).

    A row's ``train_img_per_s`` is that epoch's training images over its training time, from the
    epoch's start to the start of its validation (``epoch_time_s`` includes the validation; this
    rate does not). Every epoch trains the same number of images n (the same dataset, the loader
    drops the last partial batch), so E epochs take sum(n / r_i) seconds for E * n images: the
    run's rate is the harmonic mean E / sum(1 / r_i) of the epoch rates, not their arithmetic
    mean, which weights a slow epoch like a fast one. Rows without a positive rate are left out;
    None if none has one.
    """
    rates = []
    for row in rows:
        value = row.get("train_img_per_s")
        rate = float(value) if value not in ("", None) else math.nan
        if rate > 0:  # False for nan
            rates.append(rate)
    return len(rates) / sum(1.0 / r for r in rates) if rates else None


class EpochMetricsRecorder(L.Callback):
    """One CSV row per epoch (and a PNG of the curves), written by rank 0 before the epoch's checkpoint.

    The rows also live in this callback's checkpoint state, so a resumed run rewrites the CSV from
    the checkpoint it resumes from: every epoch appears exactly once in the finished file, even if
    the previous process died between writing a row and saving its checkpoint.
    """

    def __init__(self, csv_path: str | Path, plot_path: str | Path | None = None) -> None:
        self.csv_path = Path(csv_path)
        self.plot_path = Path(plot_path) if plot_path else None
        self.rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._train_time = 0.0
        self._samples = 0

    # state travels in checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the loops are restored: keep the rows of the epochs the checkpoint completed
        self.rows = [r for r in self.rows if int(r["epoch"]) < trainer.current_epoch]
        self._write()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._train_time, self._samples = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += int(batch[0].shape[0]) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._train_time = time.perf_counter() - self._t0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.rows or int(self.rows[-1]["epoch"]) != trainer.current_epoch:  # epoch without validation
            self._train_time = self._train_time or time.perf_counter() - self._t0
            self._record(trainer, pl_module)

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.rows and int(self.rows[-1]["epoch"]) == epoch:  # mid-epoch validation: keep the latest
            self.rows.pop()
        train_time = self._train_time or (time.perf_counter() - self._t0)
        row: dict[str, Any] = {"epoch": epoch}
        stats = pl_module.train_epoch_stats() if hasattr(pl_module, "train_epoch_stats") else {}
        row.update(stats)
        row.update({k: v for k, v in getattr(pl_module, "last_val", {}).items() if k in CSV_FIELDS})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        row["epoch_time_s"] = round(time.perf_counter() - self._t0, 3)
        row["train_img_per_s"] = round(self._samples / train_time, 2) if train_time > 0 else float("nan")
        self.rows.append(row)
        self._write()

    @rank_zero_only
    def _write(self) -> None:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: r.get(k, "") for k in CSV_FIELDS})
        tmp.replace(self.csv_path)  # atomic: a killed run never leaves a half-written CSV
        if self.plot_path and self.rows:
            plot_curves(self.rows, self.plot_path)


class FreezeBackbone(L.Callback):
    """Fine-tuning: train only the classifier (``net.get_classifier()``) for the first ``epochs`` epochs.

    While frozen, the backbone's gradients are dropped before every optimizer step (after DDP has
    averaged them), so its weights, optimizer state and weight decay stay as they are, and its
    BatchNorm layers run in eval mode (running statistics kept). From epoch ``epochs`` on the whole
    network trains in the optimizer groups it had from the start (weight-decay and layer-decay
    groups, lr schedule). Lightning's ``BackboneFinetuning`` instead turns ``requires_grad`` off and
    adds the backbone to the optimizer when it unfreezes: under DDP the unfrozen parameters are not
    synchronized (Lightning issue 20340), and the added group would bypass those groups.
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 0:
            raise ValueError(f"callbacks.freeze_backbone_epochs must be >= 0, got {epochs}")
        self.epochs = int(epochs)

    @staticmethod
    def _backbone(pl_module: L.LightningModule) -> tuple[list[nn.Parameter], list[nn.Module]]:
        """(backbone parameters, BatchNorm layers) of ``pl_module.net``."""
        net = pl_module.net
        head = {id(p) for p in net.get_classifier().parameters()}
        params = [p for p in net.parameters() if id(p) not in head]
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return params, norms

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = trainer.current_epoch < self.epochs
        for norm in self._backbone(pl_module)[1]:
            norm.train(not frozen)
        if frozen and trainer.current_epoch == 0:
            rank_zero_info(f"backbone frozen for {self.epochs} epoch(s): only the classifier trains")
        elif trainer.current_epoch == self.epochs > 0:
            rank_zero_info(f"epoch {self.epochs}: backbone unfrozen, the whole network trains")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if trainer.current_epoch < self.epochs:
            for p in self._backbone(pl_module)[0]:
                p.grad = None


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Save loss, top-1 and lr per epoch as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(key: str) -> list[float]:
        out = []
        for r in rows:
            v = r.get(key, "")
            out.append(float(v) if v not in ("", None) else math.nan)
        return out

    ep = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, col("train/loss"), "o-", label="train")
    axes[0].plot(ep, col("val/loss"), "o-", label="val")
    axes[0].set_title("loss")
    axes[1].plot(ep, col("train/acc"), "o-", label="train")
    axes[1].plot(ep, col("val/acc1"), "o-", label="val top-1")
    axes[1].plot(ep, col("val/acc5"), "o--", label="val top-5")
    axes[1].set_title("accuracy (%)")
    axes[2].plot(ep, col("lr"), "o-")
    axes[2].set_title("lr (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
