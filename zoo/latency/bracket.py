"""Timing a layer as it runs inside a network on onnxruntime: between two cheap convs, minus the convs alone.

A layer exported as a graph of its own pays at the graph's ends what it does not pay inside a
network: the session's run call with its input and output binding, and the conversion of its
input and output between NCHW and the blocked layout (NCHWc) that onnxruntime's CPU convs run
in, which a network does once, at its own ends. Summed over a network's layers these costs made
the plain sum 4-50% more than the network's own latency (onnxruntime fp32, 128 and 160 px, nine
networks of nine families on a shared 2-core machine, minimum of 150 interleaved runs), the most
for networks of many small layers.

So on the onnxruntime engines a layer is timed in context, the differential way: the graph
``pre -> layer -> post`` minus the graph ``pre -> post_in``, where ``pre`` and ``post`` are
depthwise 1x1 convs on the layer's input and output (``post_in`` on its input; no ``post`` after
a layer whose output is not a feature map, the head). The layer's input then comes from a conv
and its output goes to one, as in a network, and the costs at the graph's ends cancel: for the
same networks the bracketed sums came out -1% to +19% from the networks' latency (the most for
ShuffleNet and GhostNet, whose blocks split, concatenate and shuffle channels at their ends).
torch eager converts nothing at a layer's ends (channels_last in and out) and pays one Python
call per layer, as in the network, so its layers are timed on their own (bracketed, the eager
depthwise 1x1 convs cost more than the layers they surround, and the sums came out 50-100% high).
"""

from __future__ import annotations

from torch import nn

__all__ = ["BRACKETED_ENGINES", "bracketed"]

BRACKETED_ENGINES = ("onnxruntime", "onnxruntime-int8")


def _pointwise_depthwise(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 1, groups=channels)


def bracketed(layer: nn.Module, input_shape: tuple[int, ...],
              output_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``(pre -> layer -> post, pre -> post_in)`` for a layer with these (C, H, W) input and output
    shapes (module docs); the difference of their latencies is the layer's in-network latency."""
    pre = _pointwise_depthwise(input_shape[0])
    if len(output_shape) != 3:  # the head: its output is a vector
        return nn.Sequential(pre, layer).eval(), nn.Sequential(pre).eval()
    return (nn.Sequential(pre, layer, _pointwise_depthwise(output_shape[0])).eval(),
            nn.Sequential(pre, _pointwise_depthwise(input_shape[0])).eval())
