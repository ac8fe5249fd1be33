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
* **Networks** are timed end to end, interleaved over groups of :data:`NETWORK_GROUP` models,
  ``inner`` consecutive calls per timed run, median of ``repeats`` runs; onnxruntime figures are
  the median over :data:`ORT_SESSIONS` fresh sessions. Each timed run follows an untimed run of
  the same network, so that it times the network's steady state (its weights in the caches as far
  as they fit, as when it serves one image after another), the state its layers were timed in. They are what the per-network overhead of
  :mod:`zoo.latency.predict` is fitted on, and what ``python -m zoo.latency report`` measures again.

Entries already in the table are skipped, so an interrupted build resumes where it stopped and
a second build over the same models measures nothing.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from zoo.latency.bracket import BRACKETED_ENGINES, bracketed
from zoo.latency.cache import LatencyCache
from zoo.latency.decompose import Layer, ModelLike, decompose, deployed_network, layer_modules
from zoo.latency.engines import make_runners
from zoo.measure.timing import median_seconds

__all__ = ["NETWORK_GROUP", "ORT_SESSIONS", "network_id", "measure_layers", "measure_networks", "build_table"]

NETWORK_GROUP = 8  # networks timed interleaved at a time
ORT_SESSIONS = 3  # fresh onnxruntime sessions per network

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


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration of a ``with`` block."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


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
    with tempfile.TemporaryDirectory() as tmp, _torch_threads(cache.threads):
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


def measure_networks(engine: str, threads: int, models: Sequence[ModelLike], res: int, num_classes: int = 1000,
                     repeats: int = 20, warmup: int = 3, inner: int = 5) -> list[float]:
    """Batch-1 ms of each model in ``models`` (registered names or tables) at ``res`` px, end to end in the
    deployed form, timed interleaved (module docs; the median over :data:`ORT_SESSIONS` sessions for onnxruntime
    engines)."""
    _check_counts(repeats=(repeats, 1), warmup=(warmup, 0), inner=(inner, 1))
    sessions = 1 if engine == "torch" else ORT_SESSIONS
    with tempfile.TemporaryDirectory() as tmp, _torch_threads(threads):
        runners = []
        for i, model in enumerate(models):
            network = deployed_network(model, num_classes, device="cpu")
            runners.append(make_runners(engine, network, (network.in_chans, res, res), threads, Path(tmp) / str(i),
                                        sessions))
        # each runner twice in a row: the first run brings the network back into the caches after the
        # others ran, the second, timed, is the network's steady state
        ms = _median_ms([r for group in runners for r in group for _ in range(2)], repeats, warmup, inner)[1::2]
    medians, start = [], 0
    for group in runners:
        medians.append(statistics.median(ms[start:start + len(group)]))
        start += len(group)
    return medians


def build_table(models: Sequence[str], resolutions: Sequence[int], engine: str, threads: int,
                num_classes: int = 1000, repeats: int = 30, warmup: int = 5, network_repeats: int = 20,
                inner: int = 5, networks: bool = True, cache_dir: str | Path | None = None,
                log: Log = print_progress) -> LatencyCache:
    """Measure what the table of (``engine``, ``threads``) on this machine lacks for ``models`` at each
    of ``resolutions``: their layers, then (``networks``) the networks end to end; print progress."""
    if not models:
        raise ValueError("no models to measure")
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
        for g in range(0, len(todo), NETWORK_GROUP):
            group = todo[g:g + NETWORK_GROUP]
            ms = measure_networks(engine, threads, group, res, num_classes, network_repeats, warmup, inner)
            for name, t in zip(group, ms):
                layers = decompositions[name]
                cache.networks[network_id(name, res, num_classes)] = {
                    "model": name, "res": res, "num_classes": num_classes, "ms": t,
                    "layers": [layer.key for layer in layers], "macs": sum(layer.macs for layer in layers),
                    "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
            cache.save()
            log(f"[{res} px] networks end to end: " + ", ".join(f"{n} {t:.2f} ms" for n, t in zip(group, ms)))
    log(f"latency table: {cache.describe()}")
    return cache
