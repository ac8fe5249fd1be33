"""Family blocks, each a small module citing the paper section it implements."""

from zoo.blocks.depthwise_separable import DepthwiseSeparable
from zoo.blocks.fused_inverted_residual import FusedInvertedResidual
from zoo.blocks.ghost import GhostBottleneck, GhostModule
from zoo.blocks.inverted_residual import InvertedResidual
from zoo.blocks.reparam import MobileOneBlock, RepVGGBlock
from zoo.blocks.resnet import BasicBlock, Bottleneck
from zoo.blocks.shufflenet import ShuffleV1Unit, ShuffleV2Unit
from zoo.blocks.universal_inverted_residual import UniversalInvertedResidual

__all__ = [
    "BasicBlock", "Bottleneck", "DepthwiseSeparable", "GhostBottleneck", "GhostModule", "InvertedResidual",
    "ShuffleV1Unit", "ShuffleV2Unit",
    "MobileOneBlock", "RepVGGBlock",
    "FusedInvertedResidual", "UniversalInvertedResidual",
]
