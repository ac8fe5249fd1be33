"""Generic layers: conv-norm-act, activations by name, squeeze-excite, channel shuffle, rounding.

Family blocks built from these live one floor up, in :mod:`zoo.blocks`.
"""

from zoo.layers.activations import HardSigmoidPrimitive, HardSwishPrimitive, act_names, create_act, get_act_layer
from zoo.layers.channel_shuffle import ChannelShuffle, channel_shuffle
from zoo.layers.conv import ConvNormAct, ConvTransposeNormAct, DeformConvNormAct, SpatialSeparableConv
from zoo.layers.drop import DropBlock2d, add_feature_dropout
from zoo.layers.grad_checkpoint import checkpoint_module
from zoo.layers.helpers import make_divisible
from zoo.layers.layer_scale import LayerScale2d
from zoo.layers.padding import Conv2dSame, MaxPool2dSame, use_padding
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "act_names", "create_act", "get_act_layer", "HardSigmoidPrimitive", "HardSwishPrimitive",
    "ChannelShuffle", "channel_shuffle", "ConvNormAct", "ConvTransposeNormAct", "DeformConvNormAct",
    "SpatialSeparableConv", "make_divisible", "SqueezeExcite", "LayerScale2d",
    "Conv2dSame", "MaxPool2dSame", "use_padding", "DropBlock2d", "add_feature_dropout", "checkpoint_module",
]
