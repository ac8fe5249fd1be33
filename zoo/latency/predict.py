"""Predicted batch-1 latency: the sum of a network's cached layer latencies plus a fitted overhead.

nn-Meter (Zhang et al. 2021) and the lookup tables of MnasNet, FBNet and ProxylessNAS predict a
network's latency as the sum of its kernels' or blocks' latencies. A layer timed on its own still
differs from the same layer inside a network running image after image: each standalone call
pays the engine's call overhead (a Python call into torch, an onnxruntime ``run``), and a layer
timed in a round of other layers finds fewer of its weights and code in the caches than inside a
network that just ran. How far an entry is from what its layer costs in the network also depends
on what the layer is made of, which is why nn-Meter predicts each kind of kernel with a model of
its own: on onnxruntime, blocks that split, concatenate or shuffle channels change memory layout
at their ends (:mod:`zoo.latency.bracket`); on torch eager, a block of many small ops pays more
Python calls per millisecond. Here a layer's kind is its block class (``InvertedResidual``,
``ShuffleV1Unit``, ``ConvNormAct``..., the first word of its ``desc``), and the prediction is

    predicted_ms = layer_sum + overhead
    overhead = per_network_ms + layer_sum_share * layer_sum + sum_kind kind_share[kind] * layer_sum[kind]
               + per_layer_ms * layers + per_melem_ms * melems

with ``layer_sum`` the sum of the layers' cached ms (a layer that runs twice counts twice),
``layer_sum[kind]`` that sum over the layers of one block kind, ``layers`` their number and
``melems`` the millions of activation elements entering them. The coefficients
(:class:`Overhead`) are fitted on the relative error ``(layer_sum + overhead - measured) /
measured`` over the networks that ``python -m zoo.latency build`` measured end to end on the
same table (same machine, engine, threads and versions):

* the four network-wide terms by least squares, the last ones left out with fewer than two
  networks per term; they may be negative: a cost the entries include and the network does not pay;
* each kind's ``kind_share`` as a departure from ``layer_sum_share``, pulled toward 0 by a ridge
  penalty of :data:`KIND_RIDGE` times its square (about what one network made of that kind alone,
  mispredicted by the departure, costs): a kind the measured networks use little stays near the
  common share, and a kind no measured network has (a searched table's new block) gets exactly it;
* with Huber's loss (Huber 1964) instead of squares beyond :data:`HUBER` relative error,
  by iteratively reweighted least squares: a network measured while the machine was disturbed
  (every network of an interleaved group can come out slow together) bends the fit less.

``python -m zoo.latency report`` checks the predictor out of sample: each model is predicted
with an overhead fitted without any of its own measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from zoo.latency.build import measure_layers
from zoo.latency.cache import LatencyCache
from zoo.latency.decompose import Layer, ModelLike, decompose

__all__ = ["LayerSums", "Overhead", "LatencyPredictor", "fit_overhead", "layer_kind", "predict"]

TERMS = 4
NETWORKS_PER_TERM = 2  # fewer networks: the last network-wide terms are left out
KIND_RIDGE = 1.0  # penalty on a kind's departure from the common share (module docs)
HUBER = 0.05  # relative error beyond which a network's residual counts linearly
HUBER_ITERATIONS = 20


def layer_kind(desc: str) -> str:
    """The block kind of a layer: the class name its description starts with (``InvertedResidual 16x32x32->...``)."""
    return desc.split(" ", 1)[0]


@dataclass(frozen=True)
class LayerSums:
    """What the overhead of a network is a function of, summed over its layers' table entries (a layer that
    runs twice counts twice): ``ms`` (the layer sum), ``layers``, ``melems`` (millions of input activation
    elements) and ``ms_by_kind`` (the layer sum per :func:`layer_kind`)."""

    ms: float
    layers: int
    melems: float
    ms_by_kind: Mapping[str, float]

    @classmethod
    def of(cls, entries: Sequence[Mapping[str, Any]]) -> LayerSums:
        """The sums over table entries (``ms``, ``desc``, ``input_shape``), one per layer run."""
        by_kind: dict[str, float] = {}
        for entry in entries:
            kind = layer_kind(entry["desc"])
            by_kind[kind] = by_kind.get(kind, 0.0) + entry["ms"]
        return cls(sum(e["ms"] for e in entries), len(entries),
                   sum(math.prod(e["input_shape"]) for e in entries) / 1e6, by_kind)


@dataclass(frozen=True)
class Overhead:
    """``per_network_ms + layer_sum_share * layer_sum + sum_kind kind_share[kind] * layer_sum[kind]
    + per_layer_ms * layers + per_melem_ms * melems`` (module docs), fitted on ``networks``; a kind
    missing from ``kind_share`` departs by 0."""

    per_network_ms: float = 0.0
    layer_sum_share: float = 0.0
    per_layer_ms: float = 0.0
    per_melem_ms: float = 0.0
    kind_share: Mapping[str, float] = field(default_factory=dict)
    networks: int = 0

    def __call__(self, sums: LayerSums) -> float:
        return (self.per_network_ms + self.layer_sum_share * sums.ms
                + sum(self.kind_share.get(kind, 0.0) * ms for kind, ms in sums.ms_by_kind.items())
                + self.per_layer_ms * sums.layers + self.per_melem_ms * sums.melems)


def _huber_ridge(a: np.ndarray, b: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    """``x`` minimizing ``sum huber(a @ x - b) + sum ridge * x**2`` (:data:`HUBER` threshold), by iteratively
    reweighted least squares."""
    penalty = np.diag(np.sqrt(ridge))[ridge > 0]
    weights = np.ones(len(b))
    for _ in range(HUBER_ITERATIONS):
        root = np.sqrt(weights)
        x = np.linalg.lstsq(np.vstack([a * root[:, None], penalty]),
                            np.concatenate([b * root, np.zeros(len(penalty))]), rcond=None)[0]
        weights = HUBER / np.maximum(np.abs(a @ x - b), HUBER)
    return x


def fit_overhead(cache: LatencyCache, exclude_model: str | None = None) -> Overhead:
    """Fit :class:`Overhead` on the networks of ``cache`` (all but those of model ``exclude_model``):
    ``(layer_sum + overhead - measured) / measured`` under Huber's loss, each kind's share pulled
    toward the common one (module docs)."""
    rows = [(LayerSums.of([cache.layers[k] for k in net["layers"]]), net["ms"]) for net in cache.networks.values()
            if net["model"] != exclude_model and all(k in cache.layers for k in net["layers"])]
    if not rows:
        excluded = f" other than {exclude_model}'s" if exclude_model else ""
        raise ValueError(f"no network{excluded} measured end to end in the {cache.engine} table ({cache.path}) to fit "
                         f"the per-network overhead on: run `python -m zoo.latency build --engine {cache.engine} "
                         f"--threads {cache.threads}` (it measures the networks after their layers)")
    terms = max(1, min(len(rows) // NETWORKS_PER_TERM, TERMS))
    kinds = sorted({kind for sums, _ in rows for kind in sums.ms_by_kind})
    a = np.array([[1.0, sums.ms, sums.layers, sums.melems][:terms] + [sums.ms_by_kind.get(k, 0.0) for k in kinds]
                  for sums, _ in rows]) / np.array([[ms] for _, ms in rows])
    b = np.array([(ms - sums.ms) / ms for sums, ms in rows])
    coef = [float(c) for c in _huber_ridge(a, b, np.array([0.0] * terms + [KIND_RIDGE] * len(kinds)))]
    network_wide = coef[:terms] + [0.0] * (TERMS - terms)
    return Overhead(*network_wide, kind_share=dict(zip(kinds, coef[terms:])), networks=len(rows))


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

    def _entries(self, layers: Sequence[Layer], name: str | None = None,
                 res: int | None = None) -> list[dict[str, Any]]:
        """The table entries of ``layers``; a ``ValueError`` names the missing ones and the ``build``
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
        return [self.cache.layers[layer.key] for layer in layers]

    def layer_sum(self, layers: Sequence[Layer], name: str | None = None, res: int | None = None) -> float:
        """Sum of the cached ms of ``layers``; a ``ValueError`` names the missing ones and the ``build``
        command that measures them (for registered model ``name`` at ``res`` px when given)."""
        return sum(entry["ms"] for entry in self._entries(layers, name, res))

    def predict_layers(self, layers: Sequence[Layer], overhead: Overhead | None = None, name: str | None = None,
                       res: int | None = None) -> float:
        """Predicted ms of a decomposed network (:func:`zoo.latency.decompose`): the layer sum plus
        ``overhead`` (default: :attr:`overhead`); ``name``/``res`` only word the error of missing layers."""
        sums = LayerSums.of(self._entries(layers, name, res))
        return sums.ms + (self.overhead if overhead is None else overhead)(sums)

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
