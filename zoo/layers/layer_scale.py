"""LayerScale: a learnable per-channel scale on a residual branch (Touvron et al. 2021,
"Going deeper with Image Transformers" (CaiT), Sec. 2), here for NCHW feature maps."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LayerScale2d"]


class LayerScale2d(nn.Module):
    """``x * gamma`` with one learnable ``gamma`` per channel, initialized to ``init_value``.

    A small ``init_value`` (1e-5 in the released MobileNetV4 hybrid models, Qin et al. 2024) starts
    each residual branch close to zero, so a deep stack starts close to the identity.
    """

    def __init__(self, chs: int, init_value: float = 1e-5) -> None:
        super().__init__()
        if chs <= 0:
            raise ValueError(f"LayerScale2d needs a positive channel count, got {chs}")
        self.gamma = nn.Parameter(torch.full((chs,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)
