"""Channel shuffle (ShuffleNet, Zhang et al. 2018, Sec. 3.1 and Fig. 1)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["channel_shuffle", "ChannelShuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups.

    Reshape (N, C, H, W) -> (N, g, C/g, H, W), swap the two channel axes, flatten back:
    channel ``i * C/g + j`` moves to ``j * g + i``. Eager mode runs PyTorch's native
    ``channel_shuffle`` kernel because it keeps a channels_last input channels_last; the
    reshape form copies it to NCHW and every following conv then runs NCHW
    (docs/benchmark.md gives the measured effect). While exporting, the reshape form is
    traced instead (ONNX has no channel shuffle op); ``unflatten``/``flatten`` keep the
    batch and spatial sizes symbolic, so the op exports with a dynamic batch axis.
    """
    if torch.jit.is_scripting():
        return nn.functional.channel_shuffle(x, groups)
    else:  # TorchScript compiles only the branch above
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)
        return nn.functional.channel_shuffle(x, groups)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle`."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"ChannelShuffle groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
