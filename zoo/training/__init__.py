"""Training: the Lightning module, optimizers/schedules, callbacks and ``train(cfg)`` (no Hydra import)."""

from zoo.training.module import ClassificationModule, NonFiniteLossError
from zoo.training.optim import build_optimizer, build_scheduler, lr_lambda, param_groups, scale_lr
from zoo.training.train import train

__all__ = ["ClassificationModule", "NonFiniteLossError", "build_optimizer", "build_scheduler", "lr_lambda",
           "param_groups", "scale_lr", "train"]
