"""The on-disk latency table of one machine, engine and library versions.

A table holds what :mod:`zoo.latency.build` measured (MnasNet's and ProxylessNAS's latency
lookup table, nn-Meter's kernel table):

* ``layers``: one entry per distinct layer configuration (:class:`zoo.latency.decompose.Layer`
  ``key``): batch-1 milliseconds, a readable description, the input shape and MACs;
* ``networks``: whole networks measured end to end on the same machine, with the keys of
  their layers in order; the per-network overhead of :mod:`zoo.latency.predict` is fitted on them.

The file name is a hash of the table's key (:func:`table_key`): the CPU model and logical CPU
count, the threads, the engine and the versions of the libraries that engine runs on, and the
format version. A changed machine, thread count, engine or library version therefore opens
another file, and entries measured under one key are never read under another. The files
live outside the repository, like the data module's decode cache
(``$ZOO_CACHE_DIR/latency`` or ``~/.cache/zoo/latency``). Every write replaces the file
atomically, so a killed build keeps every entry written before the kill.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from zoo.data.cache import default_cache_dir
from zoo.latency.engines import check_engine, engine_versions
from zoo.measure.records import machine_info

__all__ = ["FORMAT_VERSION", "LatencyCache", "table_key", "latency_cache_dir"]

FORMAT_VERSION = 1  # bump when what an entry means changes (timing protocol, deployed form)


def latency_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``latency/`` under the zoo cache (``$ZOO_CACHE_DIR`` or ``~/.cache/zoo``)."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "latency"


def table_key(engine: str, threads: int) -> dict[str, Any]:
    """What a latency table is valid for: machine (CPU model, logical CPUs), threads, engine, and
    the versions of the libraries the engine runs (``torch``; for onnxruntime also ``onnx`` and
    ``onnxruntime``, the exporter being torch's)."""
    engine = check_engine(engine)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    info = machine_info(threads)
    return {"format": FORMAT_VERSION, "engine": engine, "cpu": info["cpu"], "logical_cpus": info["logical_cpus"],
            "threads": threads, "batch": 1, **engine_versions(engine)}


class LatencyCache:
    """The latency table for ``(engine, threads)`` on this machine: ``layers`` and ``networks`` dicts,
    read from its file when it exists; :meth:`save` writes it back atomically."""

    def __init__(self, engine: str, threads: int, cache_dir: str | Path | None = None) -> None:
        self.key = table_key(engine, threads)
        self.engine, self.threads = self.key["engine"], threads
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = latency_cache_dir(cache_dir) / f"{self.engine}-{digest}.json"
        self.layers: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if data.get("key") != self.key:
                raise ValueError(f"{self.path} holds a table for {data.get('key')}, not {self.key}: "
                                 "remove the file (its name is a hash of its key, so it was written by other code)")
            self.layers, self.networks = data["layers"], data["networks"]

    def save(self) -> Path:
        """Write the table (a temporary file, then a rename) and return its path."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": self.key, "layers": self.layers, "networks": self.networks}, indent=1))
        tmp.replace(self.path)
        return self.path

    def label(self) -> str:
        """What the table is valid for, in words: engine, threads, CPU, library versions."""
        versions = ", ".join(f"{k} {self.key[k]}" for k in ("torch", "onnx", "onnxruntime") if k in self.key)
        cpu = f"{self.key['cpu']} ({self.key['logical_cpus']} logical CPUs)"
        return f"{self.engine}, {self.threads} threads, {cpu}, {versions}"

    def describe(self) -> str:
        """:meth:`label`, the entry counts and the file."""
        return f"{self.label()}: {len(self.layers)} layers, {len(self.networks)} networks in {self.path}"
