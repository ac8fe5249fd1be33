"""zoo: lightweight CNN backbones as architecture tables, built by one builder.

    import zoo
    model = zoo.create_model("mobilenetv3_large_100", num_classes=10)
    zoo.list_models("shufflenet*")
"""

from zoo.arch import ArchSpec, BlockRow, parse_arch
from zoo.builder import FeatureNet, ZooNet
from zoo.complexity import count_macs, count_params
from zoo.registry import build_model, create_model, list_models, model_arch

__version__ = "0.1.0"

__all__ = [
    "ArchSpec", "BlockRow", "FeatureNet", "ZooNet", "build_model", "count_macs", "count_params", "create_model",
    "list_models", "model_arch", "parse_arch",
]
