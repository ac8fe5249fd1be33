"""Recording measurements: the machine they ran on, the training run they measured, and CSV tables written
atomically."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["machine_info", "checkpoint_run", "write_table", "read_table"]


def machine_info(threads: int) -> dict[str, str]:
    """CPU model (from /proc/cpuinfo), logical CPUs, threads used, torch and onnxruntime versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "n/a"
    return {"cpu": cpu, "logical_cpus": str(os.cpu_count()), "threads": str(threads), "torch": torch.__version__,
            "onnxruntime": ort_version, "python": platform.python_version()}


def checkpoint_run(ckpt: str | Path | None) -> str:
    """The training run a checkpoint comes from, as results tables name it: ``<experiment>/<run>`` for a
    training checkpoint ``<experiment>/<run>/checkpoints/<file>.ckpt``, else the path as given (``"None"``
    for no checkpoint, e.g. a freshly initialized model)."""
    if ckpt is None:
        return str(ckpt)
    ckpt = Path(ckpt)
    return f"{ckpt.parents[2].name}/{ckpt.parents[1].name}" if ckpt.parent.name == "checkpoints" else str(ckpt)


def read_table(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts; ``[]`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_table(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` as a CSV with header ``columns``, atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure to ``path`` (folders created) and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
