"""Predicted batch-1 latency: the sum of a network's cached layer latencies plus a fitted overhead.

nn-Meter (Zhang et al. 2021) and the lookup tables of MnasNet, FBNet and ProxylessNAS predict a
network's latency as the sum of its kernels' or blocks' latencies. A layer timed on its own still
differs from the same layer inside a network running image after image: each standalone call
pays the engine's call overhead (a Python call into torch, an onnxruntime ``run``), and a layer
timed in a round of other layers finds fewer of its weights and code in the caches than inside a
network that just ran (on a 2-core machine a network timed back to back ran up to 25% faster than
the same network timed in a round of others). So the prediction is

    predicted_ms = layer_sum + per_network_ms + layer_sum_share * layer_sum + per_layer_ms * layers
                   + per_melem_ms * melems

with ``layer_sum`` the sum of the layers' cached ms (a layer that runs twice counts twice),
``layers`` their number and ``melems`` the millions of activation elements entering them. The four
coefficients (:class:`Overhead`) are fitted by least squares on the *relative* error over the
networks that ``python -m zoo.latency build`` measured end to end on the same table (same machine,
engine, threads and versions); with fewer than two networks per term, the last terms are left
out. They may be negative: a cost the entries include and the network does not pay. ``python -m zoo.latency
report`` checks the predictor out of sample: each model is predicted with an overhead fitted
without any of its own measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zoo.latency.build import measure_layers
from zoo.latency.cache import LatencyCache
from zoo.latency.decompose import Layer, ModelLike, decompose

__all__ = ["Overhead", "LatencyPredictor", "fit_overhead", "predict"]

TERMS = 4
NETWORKS_PER_TERM = 2  # fewer networks: the last terms are left out


@dataclass(frozen=True)
class Overhead:
    """``per_network_ms + layer_sum_share * layer_sum + per_layer_ms * layers + per_melem_ms * melems``
    (module docs), fitted on ``networks``."""

    per_network_ms: float = 0.0
    layer_sum_share: float = 0.0
    per_layer_ms: float = 0.0
    per_melem_ms: float = 0.0
    networks: int = 0

    def __call__(self, layer_sum: float, layers: int, melems: float) -> float:
        return (self.per_network_ms + self.layer_sum_share * layer_sum + self.per_layer_ms * layers
                + self.per_melem_ms * melems)


def _melems(shapes: Sequence[Sequence[int]]) -> float:
    return sum(math.prod(shape) for shape in shapes) / 1e6


def fit_overhead(cache: LatencyCache, exclude_model: str | None = None) -> Overhead:
    """Fit :class:`Overhead` on the networks of ``cache`` (all but those of model ``exclude_model``):
    least squares on ``(layer_sum + overhead - measured) / measured``."""
    rows = []
    for net in cache.networks.values():
        if net["model"] == exclude_model or any(k not in cache.layers for k in net["layers"]):
            continue
        entries = [cache.layers[k] for k in net["layers"]]
        rows.append((sum(e["ms"] for e in entries), len(entries), _melems([e["input_shape"] for e in entries]),
                     net["ms"]))
    if not rows:
        excluded = f" other than {exclude_model}'s" if exclude_model else ""
        raise ValueError(f"no network{excluded} measured end to end in the {cache.engine} table ({cache.path}) to fit "
                         f"the per-network overhead on: run `python -m zoo.latency build --engine {cache.engine} "
                         f"--threads {cache.threads}` (it measures the networks after their layers)")
    terms = max(1, min(len(rows) // NETWORKS_PER_TERM, TERMS))
    a = np.array([[1.0, s, n, melems][:terms] for s, n, melems, _ in rows]) / np.array([[m] for *_, m in rows])
    b = np.array([(m - s) / m for s, _, _, m in rows])
    coef = [float(c) for c in np.linalg.lstsq(a, b, rcond=None)[0]] + [0.0] * (TERMS - terms)
    return Overhead(*coef, networks=len(rows))


class LatencyPredictor:
    """Predicts batch-1 latency (ms) from the latency table of ``engine`` and ``threads`` (default:
    torch's thread count) on this machine. Open it once and call it for many networks: the
    overhead is fitted once, and tables decompose on the meta device (no weights are built)."""

    def __init__(self, engine: str = "onnxruntime", threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.cache = LatencyCache(engine, torch.get_num_threads() if threads is None else threads, cache_dir)
        self._overhead: Overhead | None = None

    @property
    def overhead(self) -> Overhead:
        """The overhead fitted on every network of the table."""
        if self._overhead is None:
            self._overhead = fit_overhead(self.cache)
        return self._overhead

    def layer_sum(self, layers: Sequence[Layer], name: str | None = None, res: int | None = None) -> float:
        """Sum of the cached ms of ``layers``; a ``ValueError`` names the missing ones and the ``build``
        command that measures them (for registered model ``name`` at ``res`` px when given)."""
        missing = [layer for layer in layers if layer.key not in self.cache.layers]
        if missing:
            listed = "; ".join(f"{layer.name}: {layer.desc}" for layer in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            command = (f"python -m zoo.latency build --engine {self.cache.engine} --threads {self.cache.threads} "
                       f"--res {res or 'RES'} --models {name or 'NAME'}")
            raise ValueError(f"{len(missing)} of {len(layers)} layers{f' of {name}' if name else ''} are not in the "
                             f"{self.cache.engine} latency table ({self.cache.path}): {listed}{more}. Measure them "
                             f"with `{command}` (a registered model) or predict(..., measure_missing=True)")
        return sum(self.cache.layers[layer.key]["ms"] for layer in layers)

    def predict_layers(self, layers: Sequence[Layer], overhead: Overhead | None = None, name: str | None = None,
                       res: int | None = None) -> float:
        """Predicted ms of a decomposed network (:func:`zoo.latency.decompose`): the layer sum plus
        ``overhead`` (default: :attr:`overhead`); ``name``/``res`` only word the error of missing layers."""
        layer_sum = self.layer_sum(layers, name, res)
        overhead = self.overhead if overhead is None else overhead
        return layer_sum + overhead(layer_sum, len(layers), _melems([layer.input_shape for layer in layers]))

    def __call__(self, model: ModelLike, res: int, num_classes: int = 1000, measure_missing: bool = False) -> float:
        """Predicted ms of ``model`` (registered name, table as dict or ArchSpec, or a built ZooNet) at
        ``res`` px; ``measure_missing``: measure the layers the table lacks first (and keep them)."""
        layers = decompose(model, res, num_classes)
        if measure_missing:
            measure_layers(self.cache, model, layers, num_classes)
        return self.predict_layers(layers, name=model if isinstance(model, str) else None, res=res)


def predict(model: ModelLike, res: int, engine: str = "onnxruntime", *, threads: int | None = None,
            num_classes: int = 1000, measure_missing: bool = False, cache_dir: str | Path | None = None) -> float:
    """Predicted batch-1 latency in ms of ``model`` at ``res`` px on ``engine`` on this machine
    (:class:`LatencyPredictor`; open one to predict many networks)."""
    return LatencyPredictor(engine, threads, cache_dir)(model, res, num_classes, measure_missing)
