"""A latency budget -> the design notes' tier and the registered networks that fit it, on this machine.

**Tier ranges.** The notes' guide (:mod:`zoo.design.tiers`) names its five tiers by wealth, not
by milliseconds, and what a tier costs depends on the engine and the CPU. So each tier's range is
measured on the user's own machine: the latency table of the chosen engine
(:class:`zoo.latency.LatencyPredictor`, ``python -m zoo.latency build``) predicts each tier's
preset network at the tier's own input side, and tier i covers the budgets from its preset's
predicted latency up to that of preset i + 1 (tier 1 from 0, tier 5 without a bound). The tier of
a budget is the richest one whose preset runs within it; a budget below the tier-1 preset is still
tier 1 (the notes' poorest rules, at a smaller side or width).

**Fitting networks.** Every registered model is a candidate at every side r = 32k of the given
range (:data:`RESOLUTIONS`, the zoo's networks take any multiple of their total stride 32); a model
fits at the largest side whose predicted latency is within the budget (a larger input never runs
faster, so the sides are scanned upwards until the first one over the budget, after trying the
largest). The fits are ranked by their recorded Imagenette top-1 (``results/imagenette.csv``, the
best run of the 5-epoch schedule at 128 px, the one every recorded model has, so like is compared
with like) where one is recorded, then by their multiply-adds at the fitting side (the layers' MACs
of :func:`zoo.latency.decompose`, counted by :mod:`zoo.measure.complexity`), more first. A
prediction is a model; :func:`measure_fits` times the best candidates end to end
(:func:`zoo.latency.measure_networks`) and keeps those whose measured latency fits too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

from zoo.design.tiers import DOWNSAMPLES, TIERS, Tier
from zoo.latency.build import measure_layers, measure_networks
from zoo.latency.decompose import Layer, decompose
from zoo.latency.predict import LatencyPredictor
from zoo.models.registry import list_models

__all__ = [
    "ACCURACY_EPOCHS", "ACCURACY_RES", "RESOLUTIONS", "Advice", "Fit", "TierRange", "advise_budget", "check_budget",
    "check_resolutions", "fitting_models", "measure_fits", "pick_tier", "rank_fits", "recorded_top1", "tier_ranges",
]

RESOLUTIONS = (96, 128, 160, 192, 224, 256)
ACCURACY_RES = 128  # the Imagenette recipes' side (configs/experiment/imagenette_base.yaml)
ACCURACY_EPOCHS = 5  # the schedule every recorded model has


@dataclass(frozen=True)
class TierRange:
    """A tier, its preset's predicted ms at the tier's side, and the budgets it covers: ``[low_ms, high_ms)``."""

    tier: Tier
    preset_ms: float
    low_ms: float
    high_ms: float


@dataclass(frozen=True)
class Fit:
    """A registered model at the largest side that fits: predicted ms, MACs there, recorded Imagenette
    top-1 (None: not recorded) and, after :func:`measure_fits`, its measured ms."""

    model: str
    res: int
    predicted_ms: float
    macs: int
    top1: float | None = None
    measured_ms: float | None = None


@dataclass(frozen=True)
class Advice:
    """What :func:`advise_budget` found: the tier ranges on this engine, the budget's tier, the ranked fits,
    and the (model, side) pairs left out because the latency table lacks their layers."""

    budget_ms: float
    engine: str
    ranges: tuple[TierRange, ...]
    tier: TierRange
    fits: tuple[Fit, ...]
    skipped: tuple[tuple[str, int], ...]


def check_budget(budget_ms: float) -> float:
    """``budget_ms`` as a float if it is a positive, finite number of milliseconds."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not 0 < budget_ms < math.inf:
        raise ValueError(f"the latency budget must be a positive number of milliseconds, got {budget_ms!r}")
    return float(budget_ms)


def check_resolutions(resolutions: Iterable[int]) -> tuple[int, ...]:
    """The input sides, sorted, if each is a positive multiple of 32 (r = k * 2^5)."""
    step = 2 ** DOWNSAMPLES
    sides = tuple(sorted(set(resolutions)))
    bad = [r for r in sides if isinstance(r, bool) or not isinstance(r, int) or r < step or r % step]
    if bad or not sides:
        raise ValueError(f"input sides must be positive multiples of {step} (r = k * 2^{DOWNSAMPLES}: the zoo's "
                         f"networks downsample {DOWNSAMPLES} times), got {list(resolutions)}")
    return sides


def _decompose(predictor: LatencyPredictor, name: str, res: int, measure_missing: bool) -> list[Layer]:
    """The layers of ``name`` at ``res``; ``measure_missing``: the table's missing ones measured first."""
    layers = decompose(name, res)
    if measure_missing:
        measure_layers(predictor.cache, name, layers)
    return layers


def _in_table(predictor: LatencyPredictor, layers: Sequence[Layer]) -> bool:
    return all(layer.key in predictor.cache.layers for layer in layers)


def tier_ranges(predictor: LatencyPredictor, measure_missing: bool = False) -> tuple[TierRange, ...]:
    """Each tier's preset predicted at its own side, and the budget range it spans (module docs).
    A preset the table lacks is an error naming the commands that measure it."""
    layers = {tier.level: _decompose(predictor, tier.preset_name, tier.design.res, measure_missing) for tier in TIERS}
    missing = [tier for tier in TIERS if not _in_table(predictor, layers[tier.level])]
    if missing:
        commands = " && ".join(f"python -m zoo.latency build --engine {predictor.cache.engine} --threads "
                               f"{predictor.cache.threads} --models {t.preset_name} --res {t.design.res}"
                               for t in missing)
        presets = ", ".join(f"{t.preset_name} @ {t.design.res} px" for t in missing)
        raise ValueError(f"the {predictor.cache.engine} latency table ({predictor.cache.path}) lacks layers of the "
                         f"tier presets {presets}: measure them "
                         f"with `{commands}`, or let zoo.advise measure them (--measure-missing)")
    ms = [predictor.predict_layers(layers[t.level], name=t.preset_name, res=t.design.res) for t in TIERS]
    bounds = [0.0, *ms[1:], math.inf]
    return tuple(TierRange(tier, ms[i], bounds[i], bounds[i + 1]) for i, tier in enumerate(TIERS))


def pick_tier(ranges: Sequence[TierRange], budget_ms: float) -> TierRange:
    """The richest tier whose preset's predicted latency is within ``budget_ms`` (tier 1 if none is)."""
    budget_ms = check_budget(budget_ms)
    return max((r for r in ranges if r.preset_ms <= budget_ms), key=lambda r: r.tier.level, default=ranges[0])


def fitting_models(predictor: LatencyPredictor, budget_ms: float, models: Sequence[str] | None = None,
                   resolutions: Sequence[int] = RESOLUTIONS, measure_missing: bool = False,
                   ) -> tuple[list[Fit], list[tuple[str, int]]]:
    """Each of ``models`` (default: every registered one) at the largest of ``resolutions`` whose
    predicted latency is within ``budget_ms`` (module docs), unranked; and the (model, side) pairs
    skipped because the table lacks their layers (``measure_missing``: measured instead). None
    fitting is an error naming the fastest network."""
    budget_ms = check_budget(budget_ms)
    sides = check_resolutions(resolutions)
    models = list_models() if models is None else list(models)
    fits, skipped, fastest = [], [], None
    for name in models:
        best = None
        for res in (sides[-1], *sides[:-1]):
            layers = _decompose(predictor, name, res, measure_missing)
            if not _in_table(predictor, layers):
                skipped.append((name, res))
                continue
            ms = predictor.predict_layers(layers, name=name, res=res)
            if fastest is None or ms < fastest[2]:
                fastest = (name, res, ms)
            if ms > budget_ms:
                if res != sides[-1]:
                    break  # sides above this one run slower still
                continue
            best = Fit(name, res, ms, sum(layer.macs for layer in layers))
            if res == sides[-1]:
                break
        if best is not None:
            fits.append(best)
    if not fits:
        where = f"on {predictor.cache.engine} at {sides[0]}-{sides[-1]} px"
        if fastest is None:
            raise ValueError(f"none of the {len(models)} networks {where} is in the latency table "
                             f"({predictor.cache.path}): build it with `python -m zoo.latency build --engine "
                             f"{predictor.cache.engine} --threads {predictor.cache.threads} --res "
                             f"{' '.join(map(str, sides))}`, or let zoo.advise measure them (--measure-missing)")
        raise ValueError(f"no registered network fits {budget_ms:g} ms {where}; the fastest is {fastest[0]} at "
                         f"{fastest[1]} px, {fastest[2]:.3g} ms (predicted)")
    return fits, skipped


def recorded_top1(rows: Iterable[Mapping[str, str]], res: int = ACCURACY_RES,
                  epochs: int = ACCURACY_EPOCHS) -> dict[str, float]:
    """The best recorded top-1 of each model over the Imagenette runs (``results/imagenette.csv`` rows,
    :func:`zoo.measure.records.read_table`) trained ``epochs`` epochs at ``res`` px."""
    best: dict[str, float] = {}
    for row in rows:
        if row.get("res") != str(res) or row.get("epochs") != str(epochs) or not row.get("best_top1"):
            continue
        top1 = float(row["best_top1"])
        best[row["model"]] = max(top1, best.get(row["model"], top1))
    return best


def rank_fits(fits: Iterable[Fit], top1: Mapping[str, float]) -> list[Fit]:
    """``fits`` with their recorded top-1, ranked: recorded top-1 first (highest first), then by MACs (most first)."""
    ranked = [replace(fit, top1=top1.get(fit.model)) for fit in fits]
    return sorted(ranked, key=lambda f: (f.top1 is None, -(f.top1 or 0.0), -f.macs, f.model))


def advise_budget(budget_ms: float, predictor: LatencyPredictor, models: Sequence[str] | None = None,
           resolutions: Sequence[int] = RESOLUTIONS, records: Iterable[Mapping[str, str]] = (),
           measure_missing: bool = False) -> Advice:
    """The tier ranges on ``predictor``'s engine, the tier of ``budget_ms``, and the models that fit it,
    ranked by the top-1 of ``records`` (``results/imagenette.csv`` rows) then MACs (module docs)."""
    budget_ms = check_budget(budget_ms)
    resolutions = check_resolutions(resolutions)
    ranges = tier_ranges(predictor, measure_missing)
    fits, skipped = fitting_models(predictor, budget_ms, models, resolutions, measure_missing)
    ranked = rank_fits(fits, recorded_top1(records))
    return Advice(budget_ms, predictor.cache.engine, ranges, pick_tier(ranges, budget_ms), tuple(ranked),
                  tuple(skipped))


def measure_fits(fits: Sequence[Fit], engine: str, threads: int, top: int) -> list[Fit]:
    """The first ``top`` of ``fits`` with their latency measured end to end on ``engine``
    (:func:`zoo.latency.measure_networks`, grouped by side), in the same order."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"the number of networks to measure must be a positive integer, got {top!r}")
    chosen = list(fits[:top])
    measured: dict[tuple[str, int], float] = {}
    for res in sorted({fit.res for fit in chosen}):
        names = [fit.model for fit in chosen if fit.res == res]
        measured.update(zip(((name, res) for name in names), measure_networks(engine, threads, names, res).ms))
    return [replace(fit, measured_ms=measured[fit.model, fit.res]) for fit in chosen]
