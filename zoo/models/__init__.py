"""Models as data: architecture tables (``arch``), the one builder, the registry of named
models (``archs/*.yaml``), weight conversion, the training-checkpoint format and BN folding."""

from zoo.models.arch import ArchSpec, BlockRow, HeadSpec, parse_arch
from zoo.models.builder import FeatureNet, ZooNet
from zoo.models.checkpoint import load_checkpoint
from zoo.models.fuse import fold_bn, reparameterize, unwrap_model
from zoo.models.pretrained import load_pretrained, save_pretrained
from zoo.models.registry import build_model, create_model, list_models, model_arch

__all__ = [
    "ArchSpec", "BlockRow", "FeatureNet", "HeadSpec", "ZooNet", "build_model", "create_model", "fold_bn",
    "list_models", "load_checkpoint", "load_pretrained", "model_arch", "parse_arch", "reparameterize",
    "save_pretrained", "unwrap_model",
]
