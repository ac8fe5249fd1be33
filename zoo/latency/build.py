"""Measuring a latency table: each distinct layer once, then whole networks end to end, incrementally.

The protocol (batch 1, the deployed form, ``torch.set_num_threads(threads)`` and onnxruntime's
intra-op threads fixed and recorded in the table's key):

* **Layers** of one network whose keys are not in the table yet are timed together, interleaved
  in network order, one call each per round: after ``warmup`` rounds, the median of ``repeats``
  rounds. Running a network's layers one after the other, as the network does, gives each the
  cache state it has in the network (its weights fetched again after the other layers ran),
  which timing one layer over and over would not. On the onnxruntime engines each layer is timed
  in context and the context subtracted (:mod:`zoo.latency.bracket`). The entries are written as
  soon as the network's layers are measured, so a killed build loses at most one network's worth.
* **Networks** are timed end to end in groups of :data:`NETWORK_GROUP`, interleaved, ``inner``
  consecutive calls per timed run, median of ``repeats`` runs; onnxruntime figures are the median
  over :data:`ORT_SESSIONS` fresh sessions. Each timed run follows an untimed run of the same
  network, so that it times the network's steady state (its weights in the caches as far as they
  fit, as when it serves one image after another), the state its layers were timed in.
* **Machine-state drift.** A shared machine runs faster or slower from one minute to the next, and
  all the networks of a group share the state they were timed in: two timings of the same networks
  minutes apart disagreed by group, not by network. So the networks are timed in ``passes``, each
  in another order (shuffled with ``random.Random(seed + pass)``), split into groups of
  :data:`NETWORK_GROUP` - 1 to which a *reference* network (``mobilenetv2_100`` by default) is
  added. A network's time in a group is multiplied by ``anchor / the reference's time in that
  group``, where the anchor is the median of all the reference's times over every group and pass:
  the group's machine state is divided out and the figure expressed in the run's median state, still
  in milliseconds of this run. A network's figure is the median of its scaled times over the passes
  (the reference's own figure is the anchor). Without a reference, the figure is the median over the
  passes of the network's own times. The figures are what the per-network overhead of
  :mod:`zoo.latency.predict` is fitted on, and what ``python -m zoo.latency report`` measures again;
  the table records the reference and the anchor with every network, so that the report can divide
  out the drift between the build and the report too (:mod:`zoo.latency.report`).

Entries already in the table are skipped, so an interrupted build resumes where it stopped and
a second build over the same models measures nothing. The networks of one resolution are measured
together (every pass spans them all) and written when their passes are done, so a build killed
meanwhile loses that resolution's network measurements, not its layers.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from zoo.latency.bracket import BRACKETED_ENGINES, bracketed
from zoo.latency.cache import LatencyCache
from zoo.latency.decompose import Layer, ModelLike, decompose, deployed_network, layer_modules
from zoo.latency.engines import make_runners
from zoo.measure.timing import median_seconds, torch_threads
from zoo.models.registry import list_models

__all__ = ["NETWORK_GROUP", "ORT_SESSIONS", "PASSES", "REFERENCE", "NetworkTimes", "network_id",
           "check_passes_and_reference", "measure_layers", "measure_networks", "build_table"]

NETWORK_GROUP = 8  # networks timed interleaved at a time, the reference included
ORT_SESSIONS = 3  # fresh onnxruntime sessions per network
PASSES = 3  # shuffled passes over the networks
REFERENCE = "mobilenetv2_100"  # the network timed in every group (module docs)

Log = Callable[[str], None]


def print_progress(line: str) -> None:
    """Print ``line`` at once (also when the output goes to a file)."""
    print(line, flush=True)


def network_id(name: str, res: int, num_classes: int) -> str:
    """The table's name for network ``name`` at ``res`` px with ``num_classes`` outputs."""
    return f"{name}@{res}/{num_classes}"


def _check_counts(**counts: int) -> None:
    for name, (value, low) in counts.items():
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_passes_and_reference(passes: int, reference: ModelLike | None) -> None:
    """A ``ValueError`` unless ``passes`` is an integer >= 1 and ``reference`` is ``None``, a table, a
    network or a registered model name: checked before anything is measured."""
    _check_counts(passes=(passes, 1))
    if isinstance(reference, str) and reference not in list_models():
        raise ValueError(f"unknown reference model {reference!r}: expected a registered model name "
                         "(zoo.list_models()) or none")


@dataclass(frozen=True)
class NetworkTimes:
    """What :func:`measure_networks` measured: ``ms``, the figure of each model in the order given, and
    ``anchor_ms``, the reference's median time over every group and pass, the machine state every
    figure is scaled to (``None`` without a reference)."""

    ms: tuple[float, ...]
    anchor_ms: float | None


def _median_ms(runners: Sequence[Callable[[], Any]], repeats: int, warmup: int, inner: int = 1) -> list[float]:
    with torch.inference_mode():
        return [1e3 * s for s in median_seconds(runners, repeats, warmup=warmup, inner=inner)]


def measure_layers(cache: LatencyCache, model: ModelLike, layers: Sequence[Layer], num_classes: int = 1000,
                   repeats: int = 30, warmup: int = 5) -> list[Layer]:
    """Measure the layers of ``layers`` (a decomposition of ``model``) that ``cache`` lacks, interleaved
    in network order (module docs; on onnxruntime engines bracketed, :mod:`zoo.latency.bracket`), add
    them to ``cache`` and save it. Returns the layers measured."""
    _check_counts(repeats=(repeats, 1), warmup=(warmup, 0))
    missing = list({layer.key: layer for layer in layers if layer.key not in cache.layers}.values())
    if not missing:
        return []
    modules = dict(layer_modules(deployed_network(model, num_classes, device="cpu")))
    bracket = cache.engine in BRACKETED_ENGINES
    with tempfile.TemporaryDirectory() as tmp, torch_threads(cache.threads):
        def runner(module: torch.nn.Module, shape: tuple[int, int, int], name: str) -> Callable[[], Any]:
            return make_runners(cache.engine, module, shape, cache.threads, Path(tmp) / name)[0]

        calls = []
        for layer in missing:
            if bracket:  # the layer in context, then the context alone
                with_layer, without = bracketed(modules[layer.name], layer.input_shape, layer.output_shape)
                calls += [runner(with_layer, layer.input_shape, layer.key),
                          runner(without, layer.input_shape, f"{layer.key}-context")]
            else:
                calls.append(runner(modules[layer.name], layer.input_shape, layer.key))
        ms = _median_ms(calls, repeats, warmup)
    if bracket:  # floored at 0: a tiny layer can be within the noise of its context
        ms = [max(in_context - context, 0.0) for in_context, context in zip(ms[::2], ms[1::2])]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    for layer, t in zip(missing, ms):
        cache.layers[layer.key] = {"ms": t, "desc": layer.desc, "input_shape": list(layer.input_shape),
                                   "macs": layer.macs, "repeats": repeats, "measured": stamp}
    cache.save()
    return missing


def _time_group(runners: Sequence[Sequence[Callable[[], Any]]], repeats: int, warmup: int,
                inner: int) -> list[float]:
    """The ms of each network of a group (its runners: one per session), timed interleaved (module docs)."""
    # each runner twice in a row: the first run brings the network back into the caches after the
    # others ran, the second, timed, is the network's steady state
    ms = _median_ms([r for network in runners for r in network for _ in range(2)], repeats, warmup, inner)[1::2]
    medians, start = [], 0
    for network in runners:
        medians.append(statistics.median(ms[start:start + len(network)]))
        start += len(network)
    return medians


def measure_networks(engine: str, threads: int, models: Sequence[ModelLike], res: int, num_classes: int = 1000,
                     repeats: int = 20, warmup: int = 3, inner: int = 5, passes: int = PASSES,
                     reference: ModelLike | None = REFERENCE, seed: int = 0) -> NetworkTimes:
    """Batch-1 ms of each model in ``models`` (registered names or tables) at ``res`` px, end to end in the
    deployed form: ``passes`` shuffled passes in groups timed interleaved, each group with ``reference``,
    every time scaled to the reference's median (module docs; the median over :data:`ORT_SESSIONS`
    sessions for onnxruntime engines). ``reference`` may be one of ``models``; ``None``: no scaling."""
    _check_counts(repeats=(repeats, 1), warmup=(warmup, 0), inner=(inner, 1))
    check_passes_and_reference(passes, reference)
    if not models:
        raise ValueError("no models to measure")
    ref = len(models)  # the reference's index among the networks
    timed = [i for i, model in enumerate(models) if reference is None or model != reference]
    networks = {i: models[i] for i in timed} | ({} if reference is None else {ref: reference})
    size = NETWORK_GROUP if reference is None else NETWORK_GROUP - 1
    groups: list[dict[int, float]] = []  # ms by network index, one dict per group
    with tempfile.TemporaryDirectory() as tmp, torch_threads(threads):
        runners = {}
        for i, model in networks.items():  # deployed once, timed in every pass
            network = deployed_network(model, num_classes, device="cpu")
            runners[i] = make_runners(engine, network, (network.in_chans, res, res), threads, Path(tmp) / str(i),
                                      1 if engine == "torch" else ORT_SESSIONS)
        for p in range(passes):
            order = list(timed)
            random.Random(seed + p).shuffle(order)
            for members in [order[g:g + size] for g in range(0, len(order), size)] or [[]]:
                members = members + ([] if reference is None else [ref])
                groups.append(dict(zip(members, _time_group([runners[i] for i in members], repeats, warmup, inner))))
    anchor = None if reference is None else statistics.median(group[ref] for group in groups)
    scale = [1.0 if anchor is None else anchor / group[ref] for group in groups]
    figures = {i: statistics.median(group[i] * k for group, k in zip(groups, scale) if i in group) for i in timed}
    return NetworkTimes(tuple(figures.get(i, anchor) for i in range(len(models))), anchor)


def build_table(models: Sequence[str], resolutions: Sequence[int], engine: str, threads: int,
                num_classes: int = 1000, repeats: int = 30, warmup: int = 5, network_repeats: int = 20,
                inner: int = 5, networks: bool = True, cache_dir: str | Path | None = None,
                log: Log = print_progress, passes: int = PASSES, reference: str | None = REFERENCE,
                seed: int = 0) -> LatencyCache:
    """Measure what the table of (``engine``, ``threads``) on this machine lacks for ``models`` at each
    of ``resolutions``: their layers, then (``networks``) the networks end to end in ``passes`` passes
    scaled by ``reference`` (:func:`measure_networks`), recorded with the reference's name and anchor
    ms; print progress."""
    if not models:
        raise ValueError("no models to measure")
    check_passes_and_reference(passes, reference)
    cache = LatencyCache(engine, threads, cache_dir)
    log(f"latency table: {cache.describe()}")
    for res in resolutions:
        decompositions = {name: decompose(name, res, num_classes) for name in models}
        for i, (name, layers) in enumerate(decompositions.items(), 1):
            start = time.perf_counter()
            measured = measure_layers(cache, name, layers, num_classes, repeats, warmup)
            done = f"measured {len(measured)} new in {time.perf_counter() - start:.1f} s" if measured else "all cached"
            distinct = len({layer.key for layer in layers})
            log(f"[{res} px, {i}/{len(models)}] {name}: {len(layers)} layers, {distinct} distinct, {done}")
        todo = [name for name in models if network_id(name, res, num_classes) not in cache.networks] if networks else []
        if not todo:
            continue
        times = measure_networks(engine, threads, todo, res, num_classes, network_repeats, warmup, inner, passes,
                                 reference, seed)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for name, ms in zip(todo, times.ms):
            layers = decompositions[name]
            cache.networks[network_id(name, res, num_classes)] = {
                "model": name, "res": res, "num_classes": num_classes, "ms": ms,
                "layers": [layer.key for layer in layers], "macs": sum(layer.macs for layer in layers),
                "passes": passes, "reference": reference, "reference_ms": times.anchor_ms, "measured": stamp,
            }
        cache.save()
        anchor = f" (reference {reference}: {times.anchor_ms:.2f} ms)" if reference is not None else ""
        log(f"[{res} px] networks end to end{anchor}: " + ", ".join(f"{n} {t:.2f} ms" for n, t in zip(todo, times.ms)))
    log(f"latency table: {cache.describe()}")
    return cache
