"""Generic layers, plus every family block re-exported so ``from zoo.layers import InvertedResidual`` works."""

from zoo.layers.activations import HardSigmoidPrimitive, HardSwishPrimitive, act_names, create_act, get_act_layer
from zoo.layers.channel_shuffle import ChannelShuffle, channel_shuffle
from zoo.layers.conv import ConvNormAct, ConvTransposeNormAct, DeformConvNormAct, SpatialSeparableConv
from zoo.layers.helpers import make_divisible
from zoo.layers.squeeze_excite import SqueezeExcite

_BLOCKS = (
    "BasicBlock", "Bottleneck", "DepthwiseSeparable", "GhostBottleneck", "GhostModule", "InvertedResidual",
    "ShuffleV1Unit", "ShuffleV2Unit",
)


def __getattr__(name: str) -> object:
    # blocks are built from the layers above, so they are imported on first use (PEP 562)
    if name in _BLOCKS:
        import zoo.blocks

        return getattr(zoo.blocks, name)
    raise AttributeError(f"module 'zoo.layers' has no attribute {name!r}")

__all__ = [
    "act_names", "create_act", "get_act_layer", "HardSigmoidPrimitive", "HardSwishPrimitive",
    "ChannelShuffle", "channel_shuffle", "ConvNormAct", "ConvTransposeNormAct", "DeformConvNormAct",
    "SpatialSeparableConv", "make_divisible", "SqueezeExcite", *_BLOCKS,
]
