"""zoo: lightweight CNN backbones as architecture tables, built by one builder.

    import zoo
    model = zoo.create_model("mobilenetv3_large_100", num_classes=10)
    zoo.list_models("shufflenet*")

Floors, each importing only the ones below it: ``layers`` -> ``blocks`` -> ``models`` ->
``measure`` -> ``data`` -> ``training`` -> ``deploy`` -> ``latency``; the command-line tools live
in ``zoo.tools`` (and ``python -m zoo.deploy``, ``python -m zoo.latency``) above them all.
"""

from zoo.measure.complexity import count_macs, count_params
from zoo.measure.profiler import profile
from zoo.models.arch import ArchSpec, BlockRow, parse_arch
from zoo.models.builder import FeatureNet, ZooNet
from zoo.models.checkpoint import load_checkpoint
from zoo.models.pretrained import load_pretrained, save_pretrained
from zoo.models.registry import build_model, create_model, list_models, model_arch

__version__ = "0.1.0"

__all__ = [
    "ArchSpec", "BlockRow", "FeatureNet", "ZooNet", "build_model", "count_macs", "count_params", "create_model",
    "list_models", "load_checkpoint", "load_pretrained", "model_arch", "parse_arch", "profile", "save_pretrained",
]
