"""``ClassificationModule``: the one LightningModule of the zoo (image classification).

Built from plain objects (dicts of model / optimizer / schedule / loss / mixup / EMA settings), so
it works the same from Hydra, a script or a notebook. The network itself is a plain ``nn.Module``
made by ``zoo.create_model``; checkpoints carry everything needed to rebuild it without Hydra.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from zoo.data.transforms import normalize_uint8
from zoo.layers.drop import drop_block_layers, set_drop_block_progress
from zoo.models.checkpoint import write_zoo_fields
from zoo.models.registry import create_model
from zoo.training.distill import build_teacher, distill_settings, kd_loss, same_teacher, teacher_label
from zoo.training.optim import build_optimizer, build_scheduler

__all__ = ["ClassificationModule", "NonFiniteLossError"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite; the run stops, earlier checkpoints are kept."""


def _mixup_enabled(mixup: Mapping[str, Any] | None) -> bool:
    return bool(mixup) and (mixup.get("mixup_alpha", 0.0) > 0 or mixup.get("cutmix_alpha", 0.0) > 0
                            or mixup.get("cutmix_minmax") is not None) and mixup.get("prob", 1.0) > 0


class ClassificationModule(L.LightningModule):
    """Image classification with label smoothing, mixup/cutmix, EMA, per-step schedules, WD groups and
    knowledge distillation.

    Args:
        model: ``zoo.create_model`` kwargs: ``name`` plus overrides (``None`` values = model default).
        num_classes: classifier outputs.
        optim: ``name`` (sgd|adamw|adam|rmsproptf|rmsprop), ``lr`` (the lr in use, already scaled
            for the global batch), ``weight_decay``, ``momentum``, ``nesterov``, ``wd_norm_bias``,
            ``wd_depthwise``, ``eps``, ``alpha``, ``betas``; other keys (``base_lr``...) are ignored.
        sched: ``name`` (cosine|step|constant), ``warmup_epochs``, ``warmup_factor``,
            ``min_lr_factor``, ``decay_epochs``, ``decay_rate`` (see :func:`zoo.training.optim.lr_lambda`).
        loss: ``label_smoothing`` and ``bce`` (binary cross-entropy instead of softmax CE).
        mixup: timm ``Mixup`` settings (``mixup_alpha``, ``cutmix_alpha``, ``prob``, ``switch_prob``,
            ``mode``); off when both alphas are 0. Label smoothing is then applied by ``Mixup`` once.
        ema: ``enabled``, ``decay``, ``warmup`` (timm ``ModelEmaV3``), updated after every optimizer step;
            validation then runs on the EMA weights.
        compile: ``torch.compile`` the inner network only (state-dict keys stay plain).
        channels_last: NHWC memory format for the network and the inputs.
        meta: data facts stored in checkpoints: ``class_names``, ``mean``, ``std``, ``train_res``,
            ``val_res``, ``crop_pct``, ``interpolation``.
        distill: ``name`` (none|kd), the teacher (``teacher``: a zoo checkpoint or a list of them, whose
            ensemble teaches; or ``teacher_name`` + ``teacher_weights`` + ``teacher_weights_from``), ``alpha``,
            ``temperature`` (:mod:`zoo.training.distill`). The teacher is a frozen submodule left out of
            checkpoints, which record which teacher(s) it was (``zoo_distill``); resuming needs the same.
        pruned: what the network was pruned from (:func:`zoo.training.pruning.prune_for_training`'s
            record), kept in checkpoints as ``zoo_pruned``; its weights come by :meth:`load_net_state`.
    """

    def __init__(self, model: Mapping[str, Any], num_classes: int, optim: Mapping[str, Any] | None = None,
                 sched: Mapping[str, Any] | None = None, loss: Mapping[str, Any] | None = None,
                 mixup: Mapping[str, Any] | None = None, ema: Mapping[str, Any] | None = None,
                 compile: bool = False, channels_last: bool = False, meta: Mapping[str, Any] | None = None,
                 distill: Mapping[str, Any] | None = None, pruned: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.optim_cfg = dict(optim or {"name": "sgd", "lr": 0.1})
        self.sched_cfg = dict(sched or {"name": "cosine"})
        loss = dict(loss or {})
        self.label_smoothing = float(loss.get("label_smoothing", 0.0))
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        self.use_bce = bool(loss.get("bce", False))
        self.meta = dict(meta or {})
        self.pruned = dict(pruned) if pruned else None
        self.compile_net = compile
        self.channels_last = channels_last

        # null config values mean the model's own default
        self.net = create_model(num_classes=num_classes, **{k: v for k, v in dict(model).items() if v is not None})
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # DropBlock layers (model.drop_block_rate) with their final rates, ramped up from 0 by on_train_batch_start
        self.drop_blocks = drop_block_layers(self.net)

        # Knowledge distillation: frozen teacher(s) on the same (augmented, mixed) batch as the student.
        settings = distill_settings(distill)
        self.teacher = build_teacher(settings, num_classes, self.meta) if settings else None
        self.distill_alpha = settings["alpha"] if settings else 0.0
        self.distill_temperature = settings["temperature"] if settings else 1.0
        if self.teacher is not None and channels_last:
            self.teacher = self.teacher.to(memory_format=torch.channels_last)

        # Mixup / cutmix: soft targets, smoothing folded in once by timm's Mixup.
        self.mixup_fn = None
        if _mixup_enabled(mixup):
            from timm.data import Mixup

            mix = {k: v for k, v in dict(mixup).items() if k != "enabled"}
            self.mixup_fn = Mixup(label_smoothing=self.label_smoothing, num_classes=num_classes, **mix)
        self.soft_targets = self.mixup_fn is not None
        if self.use_bce:
            from timm.loss import BinaryCrossEntropy

            self.train_criterion = BinaryCrossEntropy(smoothing=0.0 if self.soft_targets else self.label_smoothing)
        elif self.soft_targets:
            from timm.loss import SoftTargetCrossEntropy

            self.train_criterion = SoftTargetCrossEntropy()
        else:
            self.train_criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

        # EMA of the weights (kept identical on every rank: the gradients are all-reduced).
        ema = dict(ema or {})
        self.ema = None
        if ema.get("enabled", False):
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.net, decay=float(ema.get("decay", 0.9998)),
                                  use_warmup=bool(ema.get("warmup", False)),
                                  update_after_step=int(ema.get("update_after_step", 0)))
            self.ema.requires_grad_(False)  # not trained; DDP must not wait for its gradients

        # Metrics (one set per split; values reported in percent).
        top5 = min(5, num_classes)
        self.train_loss = MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_loss = MeanMetric()
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.val_count = SumMetric()
        self.best_acc1 = 0.0
        self.last_val: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers
    def describe_loss(self) -> str:
        """One line on the training loss, for the start-up report."""
        kind = "BCE" if self.use_bce else ("soft-target CE" if self.soft_targets else "CE")
        where = "in timm Mixup targets" if self.soft_targets else "in the loss"
        mix = ""
        if self.soft_targets:
            m = self.mixup_fn
            mix = (f"; mixup alpha={m.mixup_alpha} cutmix alpha={m.cutmix_alpha} prob={m.mix_prob} "
                   f"switch_prob={m.switch_prob} mode={m.mode}")
        line = f"loss: {kind}, label smoothing {self.label_smoothing:g} applied once {where}{mix}"
        if self.teacher is not None:
            a, t, n = self.distill_alpha, self.distill_temperature, len(self.teacher.members)
            teacher = "teacher" if n == 1 else f"mean of {n} teachers' probabilities"
            line += f"; distilled: {1 - a:g} x that + {a:g} x {t:g}^2 x KL({teacher} || student) at temperature {t:g}"
        return line

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # uint8 batches: normalise here
            x = normalize_uint8(x, self.meta.get("mean") or IMAGENET_DEFAULT_MEAN,
                                self.meta.get("std") or IMAGENET_DEFAULT_STD)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        if self.compile_net and not getattr(self, "_compiled", False):
            self.net.compile()  # in place: state-dict keys stay plain (no `_orig_mod.`)
            self._compiled = True

    # ------------------------------------------------------------------ train
    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()
        self.train_acc.reset()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.drop_blocks:  # scheduled DropBlock (Ghiasi et al. 2018, Sec. 3): linear from 0 over training
            set_drop_block_progress(self.drop_blocks, self.global_step, int(self.trainer.estimated_stepping_batches))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = self._prep(x)
        if self.mixup_fn is not None:
            if x.shape[0] % 2:  # timm Mixup pairs samples: needs an even batch
                x, y = x[:-1], y[:-1]
            x, target = self.mixup_fn(x, y)
        else:
            target = y
        out = self.training_loss(x, target)
        loss, logits = out["loss"], out["output"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: "
                "stopping. The checkpoints saved before this step are kept (checkpoints/last.ckpt); "
                "lower the lr, enable gradient clipping (trainer.gradient_clip_val) or check the data.")
        self.train_loss.update(loss.detach(), weight=x.shape[0])
        if not self.soft_targets:
            self.train_acc.update(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=x.shape[0])
        if "kd_loss" in out:
            self.log("train/kd_loss", out["kd_loss"].detach(), on_step=True, on_epoch=False, batch_size=x.shape[0])
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False,
                 prog_bar=True, batch_size=x.shape[0])
        return loss

    def training_loss(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training loss of a prepared (normalized, mixed) batch, as timm's training tasks return it:
        ``loss`` and ``output`` (the student's logits); with a teacher also ``task_loss`` and ``kd_loss``,
        ``loss = (1 - alpha) * task_loss + alpha * kd_loss`` (:func:`zoo.training.distill.kd_loss`, against
        the mean probabilities of several teachers)."""
        logits = self(x)
        task_loss = self.train_criterion(logits, target)
        if self.teacher is None:
            return {"loss": task_loss, "output": logits}
        distill = kd_loss(logits, self.teacher(x), self.distill_temperature)
        loss = (1.0 - self.distill_alpha) * task_loss + self.distill_alpha * distill
        return {"loss": loss, "output": logits, "task_loss": task_loss, "kd_loss": distill}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            # global_step counts this step only after the hook returns: pass the number of updates done
            self.ema.update(self.net, step=self.global_step + 1)

    # ------------------------------------------------------------------ val
    def on_validation_epoch_start(self) -> None:
        for m in (self.val_loss, self.val_acc1, self.val_acc5, self.val_count):
            m.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        x = self._prep(x)
        net = self.ema.module if self.ema is not None else self.net
        logits = net(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=x.shape[0])
        self.val_acc1.update(logits, y)
        self.val_acc5.update(logits, y)
        self.val_count.update(torch.tensor(float(x.shape[0]), device=x.device))

    def on_validation_epoch_end(self) -> None:
        stats = {
            "val/loss": float(self.val_loss.compute()),  # torchmetrics syncs across ranks
            "val/acc1": 100.0 * float(self.val_acc1.compute()),
            "val/acc5": 100.0 * float(self.val_acc5.compute()),
            "val/num_samples": float(self.val_count.compute()),
        }
        if self.trainer.sanity_checking:
            return
        self.best_acc1 = max(self.best_acc1, stats["val/acc1"])
        stats["val/acc_best"] = self.best_acc1
        self.last_val = stats
        self.log_dict(stats, prog_bar=False, sync_dist=False, rank_zero_only=False)
        self.log("val/acc1_pb", stats["val/acc1"], prog_bar=True, logger=False)

    def train_epoch_stats(self) -> dict[str, float]:
        """Epoch-level training loss / accuracy so far (synced across ranks); accuracy only for hard targets."""
        out = {"train/loss": float(self.train_loss.compute()) if self.train_loss.update_called else float("nan")}
        if not self.soft_targets and self.train_acc.update_called:
            out["train/acc"] = 100.0 * float(self.train_acc.compute())
        return out

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        optim = {k: v for k, v in self.optim_cfg.items() if k not in ("base_lr", "base_batch_size", "lr_scaling")}
        if "lr" not in optim:
            raise ValueError("optim.lr (the scaled lr in use) is missing; compute it with zoo.training.optim.scale_lr")
        optimizer = build_optimizer(self.net, **optim)
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        steps_per_epoch = max(total // epochs, 1)
        scheduler = build_scheduler(optimizer, total, steps_per_epoch, **self.sched_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ checkpoints
    def load_net_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Start training from these network weights (strict: same shapes), the EMA copy too."""
        self.net.load_state_dict(state, strict=True)
        if self.ema is not None:
            self.ema.set(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        write_zoo_fields(checkpoint, self.net, num_classes=self.hparams.num_classes, meta=self.meta,
                         has_ema=self.ema is not None, best_acc1=self.best_acc1)
        if self.teacher is not None:  # which teacher, not its weights
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
            checkpoint["zoo_distill"] = dict(self.teacher.record)
        if self.pruned is not None:
            checkpoint["zoo_pruned"] = dict(self.pruned)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        recorded = checkpoint.get("zoo_distill")
        current = self.teacher.record if self.teacher is not None else None
        if not same_teacher(recorded, current):
            raise ValueError(f"the checkpoint was trained with teacher {teacher_label(recorded)}, this run has "
                             f"{teacher_label(current)}: resume with the checkpoint's distill settings")
        if self.teacher is not None:  # the teacher's weights are not in the checkpoint: keep the loaded ones
            checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        self.best_acc1 = float(checkpoint.get("zoo_best_acc1", 0.0))
