"""How well the latency table predicts: predicted against measured latency of whole networks.

Every model is measured end to end again (:func:`zoo.latency.build.measure_networks`: deployed
form, batch 1, interleaved medians) and predicted with an overhead fitted on the *other*
models' networks of the table (leave one model out, all its resolutions), so no model's own
measurement enters its prediction. Per resolution it gives nn-Meter's accuracy figure, the
share of networks predicted within +-10% of their measured latency, and the Spearman rank
correlation of the measured latency with the prediction and with MACs (FLOPs do not predict
latency; the table should rank networks better than MACs do).

Two measured figures per row. ``measured_ms`` is the raw one: the report's own end-to-end time,
in milliseconds of this run (each group already scaled to this run's median state by the
reference network, :mod:`zoo.latency.build`); it is the headline, and ``error_pct``,
``within_10pct`` and ``spearman_predicted`` are computed on it. The prediction is fitted on
figures the build measured minutes or hours earlier, in another state of a shared machine, so
``normalized_ms`` also divides out that drift: ``measured_ms * build_reference_ms /
report_reference_ms``, the report's time rescaled by how much slower or faster the same reference
network ran in the report than in the build (its anchor recorded with the network in the table).
It is not a latency anyone measured in one sitting; it says how well the table predicts once the
machine's drift between build and report is taken out. It is left empty where the table has no
anchor for that reference (a table built before references, or with another one or none);
``normalized_error_pct``, ``within_10pct_normalized`` and ``spearman_predicted_normalized`` are
computed on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torchmetrics.functional import spearman_corrcoef

from zoo.latency.build import (PASSES, REFERENCE, Log, check_passes_and_reference, measure_networks,
                               network_id, print_progress)
from zoo.latency.decompose import decompose
from zoo.latency.predict import LatencyPredictor, fit_overhead
from zoo.measure.records import save_figure, write_table

__all__ = ["COLUMNS", "SUMMARY_COLUMNS", "WITHIN", "build_anchor", "run_report", "summarize", "plot_report",
           "write_report"]

COLUMNS = ("model", "res", "macs", "layers", "layer_sum_ms", "overhead_ms", "predicted_ms", "measured_ms", "error_pct",
           "reference", "report_reference_ms", "build_reference_ms", "normalized_ms", "normalized_error_pct")
SUMMARY_COLUMNS = ("res", "networks", "within_10pct", "spearman_predicted", "spearman_macs", "normalized_networks",
                   "within_10pct_normalized", "spearman_predicted_normalized", "table", "command")
WITHIN = 10.0  # percent


def build_anchor(networks: Mapping[str, Mapping[str, Any]], name: str, res: int, num_classes: int,
                 reference: str | None) -> float | None:
    """The anchor ms that the table's figures were scaled to with ``reference``: the one recorded with
    network ``name`` at ``res`` px, else the one every network of the table at ``res`` px shares;
    ``None`` where there is none (no reference, another reference, differing anchors)."""
    if reference is None:
        return None
    own = networks.get(network_id(name, res, num_classes))
    entries = [own] if own is not None else [e for e in networks.values() if e.get("res") == res]
    anchors = {e.get("reference_ms") if e.get("reference") == reference else None for e in entries}
    return anchors.pop() if len(anchors) == 1 else None


def _error_pct(predicted: float, measured: float) -> float:
    return round(100.0 * (predicted - measured) / measured, 2)


def run_report(models: Sequence[str], resolutions: Sequence[int], engine: str, threads: int, num_classes: int = 1000,
               repeats: int = 20, warmup: int = 3, inner: int = 5, cache_dir: str | Path | None = None,
               log: Log = print_progress, passes: int = PASSES, reference: str | None = REFERENCE,
               seed: int = 0) -> list[dict[str, Any]]:
    """One row per model and resolution (:data:`COLUMNS`): MACs, layers, the table's layer sum, the
    leave-one-model-out overhead, predicted and measured ms (:func:`zoo.latency.build.measure_networks`
    with ``passes`` and ``reference``) and the prediction's error in percent, raw and with the drift
    between build and report divided out by the reference (module docs)."""
    check_passes_and_reference(passes, reference)
    predictor = LatencyPredictor(engine, threads, cache_dir)
    log(f"latency table: {predictor.cache.describe()}")
    decompositions = {(name, res): decompose(name, res, num_classes) for res in resolutions for name in models}
    sums = {k: predictor.layer_sum(layers) for k, layers in decompositions.items()}  # fails before measuring
    overheads = {name: fit_overhead(predictor.cache, exclude_model=name) for name in models}
    rows = []
    for res in resolutions:
        times = measure_networks(engine, threads, models, res, num_classes, repeats, warmup, inner, passes, reference,
                                 seed)
        for name, ms in zip(models, times.ms):
            layers = decompositions[name, res]
            predicted = predictor.predict_layers(layers, overheads[name])
            anchor = build_anchor(predictor.cache.networks, name, res, num_classes, reference)
            normalized = None if anchor is None else ms * anchor / times.anchor_ms
            rows.append({"model": name, "res": res, "macs": sum(layer.macs for layer in layers),
                         "layers": len(layers), "layer_sum_ms": round(sums[name, res], 4),
                         "overhead_ms": round(predicted - sums[name, res], 4), "predicted_ms": round(predicted, 4),
                         "measured_ms": round(ms, 4), "error_pct": _error_pct(predicted, ms),
                         "reference": reference or "",
                         "report_reference_ms": None if reference is None else round(times.anchor_ms, 4),
                         "build_reference_ms": None if anchor is None else round(anchor, 4),
                         "normalized_ms": None if normalized is None else round(normalized, 4),
                         "normalized_error_pct": None if normalized is None else _error_pct(predicted, normalized)})
            line = (f"[{res} px] {name}: predicted {predicted:.3f} ms, measured {ms:.3f} ms "
                    f"({rows[-1]['error_pct']:+.1f}%)")
            if normalized is not None:
                line += f", normalized to the build {normalized:.3f} ms ({rows[-1]['normalized_error_pct']:+.1f}%)"
            log(line)
    return rows


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2:
        return float("nan")
    return float(spearman_corrcoef(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))


def _has(row: Mapping[str, Any], column: str) -> bool:
    return row.get(column) not in (None, "")


def _accuracy(rows: Sequence[Mapping[str, Any]], measured: str, error: str) -> tuple[float | None, float | None]:
    """The share of ``rows`` whose ``error`` column is within +-:data:`WITHIN` %, and the Spearman
    correlation of their ``measured`` column with the predicted ms; ``None`` for no rows."""
    if not rows:
        return None, None
    within = sum(abs(float(r[error])) <= WITHIN for r in rows) / len(rows)
    return round(within, 4), round(_spearman([float(r["predicted_ms"]) for r in rows],
                                             [float(r[measured]) for r in rows]), 4)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per resolution and over all rows (``res`` = ``all``): networks, the share predicted within
    +-:data:`WITHIN` % and the Spearman correlation of measured ms with predicted ms and with MACs, on
    the raw measurement; then the same two on the reference-normalized one, over the rows that have it
    (``normalized_networks``; module docs)."""
    groups = {str(res): [r for r in rows if r["res"] == res] for res in dict.fromkeys(r["res"] for r in rows)}
    groups["all"] = list(rows)
    out = []
    for res, group in groups.items():
        within, spearman = _accuracy(group, "measured_ms", "error_pct")
        normalized = [r for r in group if _has(r, "normalized_ms")]
        within_normalized, spearman_normalized = _accuracy(normalized, "normalized_ms", "normalized_error_pct")
        out.append({
            "res": res, "networks": len(group), "within_10pct": within, "spearman_predicted": spearman,
            "spearman_macs": round(_spearman([float(r["macs"]) for r in group],
                                             [float(r["measured_ms"]) for r in group]), 4),
            "normalized_networks": len(normalized), "within_10pct_normalized": within_normalized,
            "spearman_predicted_normalized": spearman_normalized,
        })
    return out


def plot_report(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Two scatter plots, one colour per resolution: predicted vs measured ms (with y = x and the
    +-10% band) and MACs vs measured ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pred, ax_macs) = plt.subplots(1, 2, figsize=(11, 5))
    for res in dict.fromkeys(r["res"] for r in rows):
        group = [r for r in rows if r["res"] == res]
        measured = [float(r["measured_ms"]) for r in group]
        ax_pred.scatter(measured, [float(r["predicted_ms"]) for r in group], s=14, label=f"{res} px")
        ax_macs.scatter([float(r["macs"]) / 1e6 for r in group], measured, s=14, label=f"{res} px")
    values = [float(r[k]) for r in rows for k in ("measured_ms", "predicted_ms")]
    line = torch.logspace(torch.log10(torch.tensor(min(values))), torch.log10(torch.tensor(max(values))), 50).tolist()
    ax_pred.plot(line, line, "k-", lw=1, label="predicted = measured")
    for factor in (1 - WITHIN / 100, 1 + WITHIN / 100):
        ax_pred.plot(line, [v * factor for v in line], "k:", lw=1)
    ax_pred.set(xscale="log", yscale="log", xlabel="measured ms (batch 1)", ylabel="predicted ms",
                title=f"latency table prediction (dotted: +-{WITHIN:g}%)")
    ax_macs.set(xscale="log", yscale="log", xlabel="MMACs", ylabel="measured ms (batch 1)", title="MACs")
    for ax in (ax_pred, ax_macs):
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(rows: Sequence[dict[str, Any]], out_dir: str | Path, engine: str, table: str,
                 command: str) -> list[Path]:
    """``<engine>.csv`` (rows), ``<engine>_summary.csv`` (:func:`summarize`, with the ``table`` it
    predicted from and the ``command`` that ran) and ``<engine>.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    csv_path, summary_path = out_dir / f"{engine}.csv", out_dir / f"{engine}_summary.csv"
    write_table(csv_path, rows, COLUMNS)
    write_table(summary_path, [dict(row, table=table, command=command) for row in summarize(rows)], SUMMARY_COLUMNS)
    return [csv_path, summary_path, plot_report(rows, out_dir / f"{engine}.png", f"{command}\n{table}")]
