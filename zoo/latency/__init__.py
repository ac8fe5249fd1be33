"""Latency lookup tables on the user's own machine and a latency predictor (nn-Meter, MnasNet/FBNet/ProxylessNAS).

    from zoo.latency import LatencyPredictor, decompose, predict

    predict("mobilenetv3_small_100", 160, engine="onnxruntime")      # ms, batch 1, from the table
    predictor = LatencyPredictor("torch")                           # open once, predict many tables
    predictor(table_dict, 192)

* :mod:`zoo.latency.decompose`: a network as its layers (stem layers, blocks, final convs, head),
  each keyed by its deployed structure and input shape;
* :mod:`zoo.latency.engines`: torch eager, onnxruntime fp32 and int8 runners of a deployed module;
* :mod:`zoo.latency.bracket`: onnxruntime layers timed in context, the context subtracted;
* :mod:`zoo.latency.cache`: the table of one machine, engine, thread count and library versions;
* :mod:`zoo.latency.build`: measuring layers and networks into it, incrementally, the networks
  in shuffled passes scaled by a reference network timed in every group;
* :mod:`zoo.latency.predict`: layer sum + fitted overhead;
* :mod:`zoo.latency.report`: predicted vs measured (raw, and with the build-to-report drift of
  the reference divided out), within +-10%, rank correlation vs MACs.

The command line is ``python -m zoo.latency {build,report,predict}`` (docs/benchmark.md).
"""

from zoo.latency.build import NetworkTimes, build_table, measure_layers, measure_networks
from zoo.latency.cache import LatencyCache, table_key
from zoo.latency.decompose import Layer, decompose, deployed_network, layer_modules
from zoo.latency.engines import ENGINES
from zoo.latency.predict import LatencyPredictor, LayerSums, Overhead, fit_overhead, predict

__all__ = [
    "ENGINES", "LatencyCache", "LatencyPredictor", "Layer", "LayerSums", "NetworkTimes", "Overhead", "build_table",
    "decompose", "deployed_network", "fit_overhead", "layer_modules", "measure_layers", "measure_networks", "predict",
    "table_key",
]
