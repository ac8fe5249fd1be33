"""How well the latency table predicts: predicted against measured latency of whole networks.

Every model is measured end to end again (:func:`zoo.latency.build.measure_networks`: deployed
form, batch 1, interleaved medians) and predicted with an overhead fitted on the *other*
models' networks of the table (leave one model out, all its resolutions), so no model's own
measurement enters its prediction. Per resolution it gives nn-Meter's accuracy figure, the
share of networks predicted within +-10% of their measured latency, and the Spearman rank
correlation of the measured latency with the prediction and with MACs (FLOPs do not predict
latency; the table should rank networks better than MACs do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torchmetrics.functional import spearman_corrcoef

from zoo.latency.build import NETWORK_GROUP, Log, measure_networks, print_progress
from zoo.latency.decompose import decompose
from zoo.latency.predict import LatencyPredictor, fit_overhead
from zoo.measure.records import save_figure, write_table

__all__ = ["COLUMNS", "SUMMARY_COLUMNS", "WITHIN", "run_report", "summarize", "plot_report", "write_report"]

COLUMNS = ("model", "res", "macs", "layers", "layer_sum_ms", "overhead_ms", "predicted_ms", "measured_ms", "error_pct")
SUMMARY_COLUMNS = ("res", "networks", "within_10pct", "spearman_predicted", "spearman_macs", "table", "command")
WITHIN = 10.0  # percent


def run_report(models: Sequence[str], resolutions: Sequence[int], engine: str, threads: int, num_classes: int = 1000,
               repeats: int = 20, warmup: int = 3, inner: int = 5, cache_dir: str | Path | None = None,
               log: Log = print_progress) -> list[dict[str, Any]]:
    """One row per model and resolution (:data:`COLUMNS`): MACs, layers, the table's layer sum, the
    leave-one-model-out overhead, predicted and measured ms, and the prediction's error in percent."""
    predictor = LatencyPredictor(engine, threads, cache_dir)
    log(f"latency table: {predictor.cache.describe()}")
    decompositions = {(name, res): decompose(name, res, num_classes) for res in resolutions for name in models}
    sums = {k: predictor.layer_sum(layers) for k, layers in decompositions.items()}  # fails before measuring
    overheads = {name: fit_overhead(predictor.cache, exclude_model=name) for name in models}
    rows = []
    for res in resolutions:
        for g in range(0, len(models), NETWORK_GROUP):
            group = models[g:g + NETWORK_GROUP]
            measured = measure_networks(engine, threads, group, res, num_classes, repeats, warmup, inner)
            for name, ms in zip(group, measured):
                layers = decompositions[name, res]
                predicted = predictor.predict_layers(layers, overheads[name])
                rows.append({"model": name, "res": res, "macs": sum(layer.macs for layer in layers),
                             "layers": len(layers), "layer_sum_ms": round(sums[name, res], 4),
                             "overhead_ms": round(predicted - sums[name, res], 4), "predicted_ms": round(predicted, 4),
                             "measured_ms": round(ms, 4), "error_pct": round(100.0 * (predicted - ms) / ms, 2)})
                log(f"[{res} px] {name}: predicted {predicted:.3f} ms, measured {ms:.3f} ms "
                    f"({rows[-1]['error_pct']:+.1f}%)")
    return rows


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2:
        return float("nan")
    return float(spearman_corrcoef(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per resolution and over all rows (``res`` = ``all``): networks, the share predicted within
    +-:data:`WITHIN` %, and the Spearman correlation of measured ms with predicted ms and with MACs."""
    groups = {str(res): [r for r in rows if r["res"] == res] for res in dict.fromkeys(r["res"] for r in rows)}
    groups["all"] = list(rows)
    out = []
    for res, group in groups.items():
        measured = [float(r["measured_ms"]) for r in group]
        out.append({
            "res": res, "networks": len(group),
            "within_10pct": round(sum(abs(float(r["error_pct"])) <= WITHIN for r in group) / max(len(group), 1), 4),
            "spearman_predicted": round(_spearman([float(r["predicted_ms"]) for r in group], measured), 4),
            "spearman_macs": round(_spearman([float(r["macs"]) for r in group], measured), 4),
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
