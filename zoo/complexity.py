"""Parameter and multiply-add counts in the papers' convention.

MobileNet, ShuffleNet, GhostNet and ResNet papers report "MAdds"/"FLOPs" as the
multiply-adds of convolutions and fully connected layers only (BatchNorm,
activations, pooling and element-wise adds are not counted). ``count_macs`` follows
that convention so the numbers compare with the papers' tables; the profiler
(``zoo.profile``) adds the other ops and memory traffic on top.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import DeformConv2d

__all__ = ["count_params", "count_macs", "module_macs"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not), buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def module_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-adds of one conv / transposed conv / linear call; 0 for any other module."""
    if isinstance(module, (nn.Conv2d, DeformConv2d)):
        # a deformable conv does the multiply-adds of a plain conv (its bilinear sampling is not counted)
        out_elems = output.numel() // output.shape[0]
        kh, kw = module.kernel_size
        return out_elems * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        in_elems = inputs[0].numel() // inputs[0].shape[0]
        kh, kw = module.kernel_size
        return in_elems * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return (output.numel() // output.shape[0]) * module.in_features
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, res: int | tuple[int, int] = 224, in_chans: int | None = None) -> int:
    """Conv + linear multiply-adds for one image of side ``res`` (eval mode, batch 1).

    Counted with forward hooks on the uncompiled model, so every conv that runs is
    counted once per call (a shared module called twice counts twice).
    """
    h, w = (res, res) if isinstance(res, int) else res
    if in_chans is None:
        in_chans = getattr(model, "in_chans", 3)
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += module_macs(module, inputs, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, DeformConv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_chans, h, w))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
