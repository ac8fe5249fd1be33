"""Latency-constrained architecture search with Optuna: sampled tables, short trainings, a latency budget.

MnasNet (Tan et al. 2019, Sec. 3) searches for the most accurate network whose measured latency
meets a target; this search does the same over the tables of :mod:`zoo.design.space`, with the
latency *predicted* from the machine's latency table (:class:`zoo.latency.LatencyPredictor`, the
lookup-table approach of FBNet, Wu et al. 2019, Sec. 3.3) as a hard constraint:

* Optuna's TPE sampler draws a table and an input resolution; the table is predicted at once
  (layers the latency table lacks are measured and added to it). A table over ``budget_ms`` is
  recorded with its constraint value (``trial.set_constraint``, so TPE learns the feasible region)
  and pruned without training.
* A feasible table trains ``epochs`` epochs with the training pipeline (:func:`zoo.training.train`,
  the config's data, recipe and experiment); :class:`ValTop1Reporter` reports each epoch's val
  top-1 to the trial and stops the run when the pruner (median stopping rule, or Hyperband)
  finds it unpromising. The objective is the run's best val top-1.
* Every trial records in its ``user_attrs`` the table (YAML), the resolution, the predicted ms, the
  top-1, params and MACs, the run directory and, with ``measure``, the latency measured end to end
  (:func:`zoo.latency.build.measure_networks`, completed trials only).

The study lives in an RDB storage (SQLite by default) and is resumed by its name: run the same
command again and the search continues until ``n_trials`` tables were trained, in total over
every run. A trial whose process was killed stops sending Optuna's heartbeat; once it has been silent
for :data:`STALE_AFTER_S`, the next trial to start marks it failed and its table is run again
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import torch
import yaml

try:
    import optuna
except ImportError as err:
    raise ImportError("the architecture search needs Optuna: pip install -e '.[search]' (optuna>=5.0)") from err

from zoo.design.space import (MOBILENETV3_SPACE, SearchSpace, check_resolutions, sample_params, smallest_params,
                              table_from_params)
from zoo.latency.build import measure_networks
from zoo.latency.engines import check_engine
from zoo.latency.predict import LatencyPredictor
from zoo.training import NonFiniteLossError, train

__all__ = ["PRUNERS", "SearchSettings", "ValTop1Reporter", "open_study", "run_search", "trained_trials",
           "trial_config", "write_results"]

PRUNERS = ("median", "hyperband", "none")
HEARTBEAT_S = 60  # seconds between a running trial's heartbeats
STALE_AFTER_S = 120  # a running trial silent for this long was killed: the next trial start fails it
SAMPLES_PER_TRAINED_TRIAL = 20  # a run stops after this many samples per table it still has to train
#: The settings a study's trials depend on: resuming with other values is refused.
STUDY_KEYS = ("budget_ms", "engine", "threads", "num_classes", "epochs", "resolutions")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _check_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"search.{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class SearchSettings:
    """The ``search`` group of ``configs/search.yaml``, checked: latency budget (ms, batch 1) on
    ``engine`` with ``threads`` (None: torch's count) and a ``num_classes`` head; ``n_trials`` tables
    to train, ``epochs`` each, at one of ``resolutions``; the Optuna ``study`` in ``storage`` (an RDB
    URL), ``seed``, ``pruner``, TPE's random ``startup_trials``; ``measure``: also measure each completed
    trial end to end; ``results_dir``: where the trials' CSV and the best table are written."""

    budget_ms: float
    study: str
    storage: str
    results_dir: str
    engine: str = "onnxruntime"
    threads: int | None = None
    num_classes: int = 1000
    n_trials: int = 30
    epochs: int = 3
    resolutions: tuple[int, ...] = (96, 128, 160, 192)
    seed: int = 0
    measure: bool = False
    pruner: str = "median"
    startup_trials: int = 10

    def __post_init__(self) -> None:
        budget = self.budget_ms
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
            raise ValueError(f"search.budget_ms must be a positive number of milliseconds (batch-1 latency), "
                             f"got {budget!r}")
        check_engine(self.engine)
        if self.threads is not None:
            _check_int("threads", self.threads)
        for name in ("num_classes", "n_trials", "epochs"):
            _check_int(name, getattr(self, name))
        _check_int("startup_trials", self.startup_trials, 0)
        _check_int("seed", self.seed, 0)
        object.__setattr__(self, "resolutions", check_resolutions(self.resolutions))
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        for name in ("study", "storage", "results_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"search.{name} must be a non-empty string, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, search: Mapping[str, Any]) -> SearchSettings:
        """The settings of a ``search`` config mapping; an unknown key is an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(search) - known)
        if unknown:
            raise ValueError(f"search: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**dict(search))

    def study_key(self, threads: int) -> dict[str, Any]:
        """What the study's trials depend on (:data:`STUDY_KEYS`), with the thread count in use."""
        values = {**asdict(self), "threads": threads, "resolutions": list(self.resolutions)}
        return {k: values[k] for k in STUDY_KEYS}


class ValTop1Reporter(L.Callback):
    """Reports each epoch's val top-1 to an Optuna ``trial`` (``trial.report``, step = epoch) and stops
    training after the epoch when the study's pruner says so; :attr:`pruned_epoch` is then that epoch.
    (What optuna-integration's Lightning pruning callback does; stopping instead of raising lets the run
    write its summary.)"""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/acc1") -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True


def _pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    """Median stopping rule from the 2nd epoch on, after 5 trials (Golovin et al. 2017, Google Vizier), or
    Hyperband over 1..epochs epochs (Li et al. 2018), or none."""
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.epochs)
    return optuna.pruners.NopPruner()


def _storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url`` (a SQLite file's folder is created), with heartbeats that let the next run
    find a killed trial and run its table again."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=STALE_AFTER_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))


def open_study(settings: SearchSettings, threads: int) -> optuna.Study:
    """Create the study ``settings.study`` in ``settings.storage``, or load it to resume, refusing one created
    with other :data:`STUDY_KEYS`. The TPE sampler's seed is ``seed`` plus the trials already there, so a
    resumed run does not draw the first run's random start again."""
    study = optuna.create_study(study_name=settings.study, storage=_storage(settings.storage),
                                direction="maximize", pruner=_pruner(settings), load_if_exists=True)
    key = settings.study_key(threads)
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", key)
    elif stored != key:
        changed = ", ".join(f"{k}: {stored.get(k)!r} -> {key[k]!r}" for k in key if stored.get(k) != key[k])
        raise ValueError(f"study {settings.study!r} in {settings.storage} was created with other settings ({changed}); "
                         "resume it with its own settings or start another study (search.study=NAME)")
    study.sampler = optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials,
                                               seed=settings.seed + len(study.trials))
    return study


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials that trained a table (completed, or pruned after some epochs)."""
    return [t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.user_attrs.get("feasible")]


def trial_config(cfg: Mapping[str, Any], table: Mapping[str, Any], res: int, name: str, epochs: int,
                 output_dir: str | Path) -> dict[str, Any]:
    """The training config of one trial: ``cfg`` (the search's composed config, its ``search`` group left
    out) training ``table`` as model ``name`` for ``epochs`` epochs at ``res`` px, into ``output_dir``."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if k != "search"})
    out["model"] = {"name": name, "arch": copy.deepcopy(dict(table))}
    out["data"] = {**out.get("data", {}), "train_res": res, "val_res": res, "res_schedule": None}
    out["trainer"] = {**out.get("trainer", {}), "max_epochs": epochs}
    out["paths"] = {**out.get("paths", {}), "output_dir": str(output_dir)}
    out.update(ckpt_path=None, resume=None)
    return out


Predict = Callable[[Mapping[str, Any], int], float]


def _check_feasible(predict: Predict, settings: SearchSettings, space: SearchSpace) -> float:
    """The predicted ms of the space's cheapest table; a ``ValueError`` when even it is over the budget."""
    table, res = table_from_params(smallest_params(settings.resolutions, space), space)
    fastest = predict(table, res)
    if fastest > settings.budget_ms:
        raise ValueError(f"no table of the search space meets search.budget_ms={settings.budget_ms:g} on "
                         f"{settings.engine}: the cheapest one (every choice at its lowest, no SE, relu, {res} px) "
                         f"is predicted at {fastest:.3f} ms. Raise the budget or add a lower resolution to "
                         "search.resolutions")
    return fastest


def _objective(cfg: Mapping[str, Any], settings: SearchSettings, predict: Predict, threads: int, output_dir: Path,
               space: SearchSpace) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        table, res = table_from_params(sample_params(trial, settings.resolutions, space), space)
        predicted = predict(table, res)
        feasible = predicted <= settings.budget_ms
        for key, value in (("table", yaml.safe_dump(table, sort_keys=False)), ("res", res),
                           ("predicted_ms", predicted), ("feasible", feasible)):
            trial.set_user_attr(key, value)
        trial.set_constraint("predicted_ms_over_budget", predicted - settings.budget_ms)
        print(f"trial {trial.number}: {res} px, predicted {predicted:.3f} ms (budget {settings.budget_ms:g} ms)"
              + ("" if feasible else ": over the budget, not trained"), flush=True)
        if not feasible:
            raise optuna.TrialPruned(f"predicted {predicted:.3f} ms > budget {settings.budget_ms:g} ms")
        run_dir = output_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        reporter = ValTop1Reporter(trial)
        summary = train(trial_config(cfg, table, res, f"{settings.study}_trial{trial.number}", settings.epochs,
                                     run_dir), extra_callbacks=[reporter])
        for key in ("best_top1", "params", "macs", "epochs"):
            trial.set_user_attr(key, summary[key])
        if reporter.pruned_epoch is not None:
            raise optuna.TrialPruned(f"val top-1 {summary['final_top1']:.2f}% after epoch {reporter.pruned_epoch}")
        if settings.measure:
            trial.set_user_attr("measured_ms", measure_networks(settings.engine, threads, [table], res,
                                                                settings.num_classes).ms[0])
        return float(summary["best_top1"])

    return objective


def _after_trial(settings: SearchSettings) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Write the results after every trial; stop the run once ``n_trials`` tables are trained."""
    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_results(study, settings.results_dir)
        if len(trained_trials(study)) >= settings.n_trials:
            study.stop()

    return after


CSV_FIELDS = ("number", "state", "feasible", "best_top1", "epochs", "res", "predicted_ms", "measured_ms", "params",
              "macs", "run_dir", "choices")


def write_results(study: optuna.Study, results_dir: str | Path) -> list[Path]:
    """``<study>.csv`` (one row per trial: state, top-1, epochs, resolution, predicted and measured ms,
    params, MACs, run directory, the choices as JSON) and, when a trial completed within the budget,
    ``<study>_best.yaml`` (its table as ``arch:``, ready for ``zoo/models/archs/``) in ``results_dir``."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{study.study_name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for t in study.get_trials(deepcopy=False):
            writer.writerow({"number": t.number, "state": t.state.name, "choices": json.dumps(t.params),
                             **{k: t.user_attrs.get(k) for k in CSV_FIELDS[2:-1]}})
    written = [path]
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        best = study.best_trial  # completed trials within the budget only (their constraint <= 0)
        measured = best.user_attrs.get("measured_ms")
        header = (f"# study {study.study_name}, trial {best.number}: val top-1 {best.value:.2f}% after "
                  f"{best.user_attrs['epochs']} epochs at {best.user_attrs['res']} px; predicted "
                  f"{best.user_attrs['predicted_ms']:.3f} ms" + (f", measured {measured:.3f} ms" if measured else "")
                  + f" (budget {study.user_attrs['settings']['budget_ms']:g} ms)\n")
        best_path = results_dir / f"{study.study_name}_best.yaml"
        best_path.write_text(header + yaml.safe_dump({"arch": yaml.safe_load(best.user_attrs["table"])},
                                                     sort_keys=False))
        written.append(best_path)
    return written


def run_search(cfg: Mapping[str, Any], space: SearchSpace = MOBILENETV3_SPACE) -> optuna.Study:
    """Run (or resume) the search of ``cfg`` (``configs/search.yaml`` as plain dicts: the training config
    plus its ``search`` group) until ``search.n_trials`` tables are trained; write the trials' CSV and
    the best table (:func:`write_results`) and return the study."""
    settings = SearchSettings.from_config(cfg.get("search") or {})
    if (cfg.get("prune") or {}).get("from"):
        raise ValueError("the search trains the tables it samples: prune.from must be null")
    threads = settings.threads or torch.get_num_threads()
    predictor = LatencyPredictor(settings.engine, threads)

    def predict(table: Mapping[str, Any], res: int) -> float:  # layers the table lacks are measured first
        return predictor(table, res, settings.num_classes, measure_missing=True)

    fastest = _check_feasible(predict, settings, space)
    study = open_study(settings, threads)
    output_dir = Path(cfg["paths"]["output_dir"]).expanduser().resolve()
    remaining = settings.n_trials - len(trained_trials(study))
    print(f"study {settings.study} ({settings.storage}): {len(study.trials)} trials so far, "
          f"{settings.n_trials - remaining} trained; budget {settings.budget_ms:g} ms on {settings.engine} "
          f"({threads} threads), the space's cheapest table {fastest:.3f} ms", flush=True)
    if remaining > 0:
        study.optimize(_objective(cfg, settings, predict, threads, output_dir, space),
                       n_trials=remaining * SAMPLES_PER_TRAINED_TRIAL, catch=(NonFiniteLossError,),
                       callbacks=[_after_trial(settings)], gc_after_trial=True)
    trained = trained_trials(study)
    if len(trained) < settings.n_trials:
        print(f"stopped after {remaining * SAMPLES_PER_TRAINED_TRIAL} samples: {len(trained)} of {settings.n_trials} "
              "tables trained (the others were over the budget, or their training diverged); run again to continue, "
              "or raise the budget", flush=True)
    written = write_results(study, settings.results_dir)
    print(f"{len(trained)} tables trained of {len(study.trials)} sampled; wrote {', '.join(map(str, written))}",
          flush=True)
    return study
