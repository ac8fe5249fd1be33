"""Generic layers: conv-norm-act, activations by name, squeeze-excite, channel shuffle, rounding.

Family blocks built from these live one floor up, in :mod:`zoo.blocks`.
"""

from zoo.layers.activations import HardSigmoidPrimitive, HardSwishPrimitive, act_names, create_act, get_act_layer
from zoo.layers.channel_shuffle import ChannelShuffle, channel_shuffle
from zoo.layers.conv import ConvNormAct, ConvTransposeNormAct, DeformConvNormAct, SpatialSeparableConv
from zoo.layers.helpers import make_divisible
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "act_names", "create_act", "get_act_layer", "HardSigmoidPrimitive", "HardSwishPrimitive",
    "ChannelShuffle", "channel_shuffle", "ConvNormAct", "ConvTransposeNormAct", "DeformConvNormAct",
    "SpatialSeparableConv", "make_divisible", "SqueezeExcite",
]
