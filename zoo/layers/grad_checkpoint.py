"""Activation (gradient) checkpointing of one module, with BatchNorm statistics updated once.

Checkpointing (Chen et al. 2016, "Training deep nets with sublinear memory cost") keeps only a
module's input during the forward pass and runs the module again in the backward pass to
rebuild the activations its gradients need: less memory for one more forward. timm's
``set_grad_checkpointing`` wraps each block in ``torch.utils.checkpoint.checkpoint``; in train
mode that runs every BatchNorm twice, so its running statistics take two momentum steps per
batch instead of one. Here the BatchNorm buffers are restored after the recomputation (which
normalizes with the batch statistics, as the first pass did), so a checkpointed network ends a
training step with exactly the outputs, gradients and BatchNorm buffers of a plain one.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_module", "running_stats_restored"]


@contextlib.contextmanager
def running_stats_restored(module: nn.Module) -> Iterator[None]:
    """On leaving the block, ``module``'s BatchNorm buffers (running statistics and batch counter)
    are what they were on entering it. The layers run unchanged inside (the same ops, so the
    recomputation saves the same tensors for backward as the first pass)."""
    buffers = [
        b for m in module.modules() if isinstance(m, _BatchNorm)
        for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None
    ]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in zip(buffers, saved):
                b.copy_(value)


def checkpoint_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, checkpointed: non-reentrant ``torch.utils.checkpoint.checkpoint`` (RNG state
    restored for dropout and drop-path), the recomputation under :func:`running_stats_restored`."""
    return checkpoint(
        module, x, use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), running_stats_restored(module)),
    )
