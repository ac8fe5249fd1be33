"""zoo: lightweight CNN backbones as architecture tables, built by one builder.

    import zoo
    model = zoo.create_model("mobilenetv3_large_100", num_classes=10)
    zoo.list_models("shufflenet*")
"""

from zoo.arch import ArchSpec, BlockRow, parse_arch
from zoo.builder import FeatureNet, ZooNet
from zoo.checkpoint import load_checkpoint
from zoo.complexity import count_macs, count_params
from zoo.registry import build_model, create_model, list_models, model_arch

__version__ = "0.1.0"

__all__ = [
    "ArchSpec", "BlockRow", "FeatureNet", "ZooNet", "build_model", "count_macs", "count_params", "create_model",
    "list_models", "load_checkpoint", "model_arch", "parse_arch", "profile",
]


def __getattr__(name: str) -> object:
    # ``zoo.profile`` (a callable module: ``zoo.profile(model, res)`` -> per-layer rows) is imported
    # on first use, so that ``python -m zoo.profile`` does not find it half-imported
    if name == "profile":
        import importlib

        return importlib.import_module("zoo.profile")
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
