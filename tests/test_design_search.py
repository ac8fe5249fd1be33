"""zoo.design: the search space's tables, the pruning callback, and ``search.py`` end to end on the embedded
Imagenette-mini: two tiny trials, then a second run that resumes the study from its SQLite storage.

No latency is measured here: the predictor is replaced by a stand-in that returns a table's MMACs as its
"milliseconds" (so larger tables are slower and a budget splits the space), and the end-to-end measurement by
a constant.
"""

from __future__ import annotations

import csv
import runpy
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

import zoo
from conftest import REPO_ROOT
from zoo.design import search as search_module
from zoo.design.space import (MOBILENETV3_SPACE, check_resolutions, sample_params, smallest_params,
                              table_from_params)
from zoo.design.search import ValTop1Reporter
from zoo.latency import build as build_module
from zoo.latency import NetworkTimes, decompose, deployed_network, measure_networks
from zoo.training import train

MEASURED_MS = 1.25
# one tiny epoch of the embedded mini set per trial, at 32 px
TINY_SEARCH = [
    "experiment=imagenette_mobilenetv3_small", "data=mini", "data.batch_size=8", "data.num_workers=0",
    "data.cache=none", "trainer=cpu", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "callbacks.progress_bar=none", "logger=none", "sched.warmup_epochs=0",
    "search.epochs=1", "search.resolutions=[32]", "search.study=tiny", "search.startup_trials=2", "search.seed=0",
    "search.measure=true",
    "hydra/job_logging=none", "hydra/hydra_logging=none",  # "disabled" disables every existing logger
]


def mmacs(table, res: int, num_classes: int = 1000) -> float:
    return sum(layer.macs for layer in decompose(table, res, num_classes)) / 1e6


class MacsPredictor:
    """Stands in for zoo.latency.LatencyPredictor: a table's MMACs as its predicted ms; records its calls."""

    calls: list[tuple[int, bool]] = []

    def __init__(self, engine: str, threads: int | None = None, cache_dir=None) -> None:
        self.engine = engine

    def __call__(self, table, res: int, num_classes: int = 1000, measure_missing: bool = False) -> float:
        MacsPredictor.calls.append((res, measure_missing))
        return mmacs(table, res, num_classes)


@pytest.fixture
def fake_latency(monkeypatch):
    MacsPredictor.calls = []
    monkeypatch.setattr(search_module, "LatencyPredictor", MacsPredictor)
    measured = []
    monkeypatch.setattr(search_module, "measure_networks",
                        lambda engine, threads, models, res, num_classes: measured.append(res)
                        or NetworkTimes((MEASURED_MS,), None))
    return measured


def run_search_py(monkeypatch, tmp_path: Path, *overrides: str, run: str) -> None:
    """``python search.py TINY_SEARCH... overrides`` in this process, outputs under ``tmp_path``."""
    from hydra.core.global_hydra import GlobalHydra

    argv = ["search.py", *TINY_SEARCH, f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={tmp_path / run}",
            f"search.results_dir={tmp_path / 'results'}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    try:
        runpy.run_path(str(REPO_ROOT / "search.py"), run_name="__main__")
    finally:
        GlobalHydra.instance().clear()


def load_tiny_study(tmp_path: Path, **kwargs) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'results' / 'tiny.db'}", **kwargs)


def killed_trial(tmp_path: Path) -> optuna.trial.FrozenTrial:
    """A trial of the tiny study left RUNNING by a killed search: its table drawn (the space's cheapest, within
    any budget), one heartbeat sent, then silence for longer than ``STALE_AFTER_S``."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'results' / 'tiny.db'}",
                                         heartbeat_interval=search_module.HEARTBEAT_S)
    study = optuna.load_study(study_name="tiny", storage=storage)
    study.enqueue_trial(smallest_params([32]))
    trial = study.ask()
    sample_params(trial, [32])
    storage.record_heartbeat(trial._trial_id)
    time.sleep(search_module.STALE_AFTER_S + 1)  # SQLite's clock counts whole seconds
    return study.trials[trial.number]


# ---- the space ------------------------------------------------------------------------------------------------


def test_sampled_tables_are_mobilenetv3_style_and_on_the_grid():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    smallest_table, smallest_res = table_from_params(smallest_params([64, 96]))
    assert smallest_res == 64
    cheapest = mmacs(smallest_table, smallest_res)
    for _ in range(8):
        table, res = table_from_params(sample_params(study.ask(), [96, 64]))
        assert res in (64, 96)
        rows = [stage[0] for stage in table["stages"]]
        assert len(rows) == len(MOBILENETV3_SPACE.stages) and all(r["block"] == "ir" for r in rows)
        assert [r.get("stride", 1) for r in rows] == [1, 2, 2, 2, 1, 2]  # MobileNetV3-Large's skeleton
        for row, stage in zip(rows, MOBILENETV3_SPACE.stages):
            assert row["out_chs"] % 8 == 0 and stage.out_chs[0] <= row["out_chs"] <= stage.out_chs[1]
            assert stage.depth[0] <= row.get("repeats", 1) <= stage.depth[1]
            assert row["kernel"] in stage.kernels and row["exp_ratio"] in stage.exp_ratios
            assert row["act"] in ("relu", "hard_swish") and row.get("se_ratio", 0.25) == 0.25
        assert table["final"][0]["out_chs"] % 8 == 0
        net = zoo.create_model("searched", arch=table, num_classes=10)  # a valid table for the builder
        assert net.total_stride == 32
        assert mmacs(table, res) >= cheapest  # the space's cheapest table is the cheapest


def test_resolutions_must_be_multiples_of_32():
    assert check_resolutions([160, 96, 96]) == (96, 160)
    for bad in ([], [100], [0], [-32], "128", [128.0]):
        with pytest.raises(ValueError, match="multiples of 32"):
            check_resolutions(bad)


def test_a_searched_table_is_measured_end_to_end_like_a_registered_model(monkeypatch):
    """measure_networks takes the table itself (the timing is replaced: nothing is measured here)."""
    table, res = table_from_params(smallest_params([32]))
    built = []
    monkeypatch.setattr(build_module, "make_runners",
                        lambda engine, network, shape, threads, workdir, sessions: built.append((network, shape))
                        or [lambda: None] * sessions)
    monkeypatch.setattr(build_module, "_median_ms", lambda runners, *a: [float(i) for i in range(len(runners))])
    times = measure_networks("onnxruntime", 1, [table, "mobilenetv3_small_100"], res, passes=1, reference=None)
    assert times.ms == (3.0, 9.0)
    assert [shape for _, shape in built] == [(3, 32, 32)] * 2
    def size(network):
        return sum(p.numel() for p in network.parameters())

    assert [size(network) for network, _ in built] == [size(deployed_network(m, device="cpu"))
                                                     for m in (table, "mobilenetv3_small_100")]


# ---- multi-fidelity: the callback that reports val top-1 and stops poor runs -----------------------------------


class PruneAfterFirstReport:
    """A stand-in Optuna trial whose pruner prunes as soon as one value was reported."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return bool(self.reports)


def test_reporter_feeds_each_epoch_and_stops_a_pruned_run(compose_cfg):
    trial = PruneAfterFirstReport()
    reporter = ValTop1Reporter(trial)
    summary = train(compose_cfg("model=mobilenetv3_small", "model.width=0.5", "trainer.max_epochs=3"),
                    extra_callbacks=[reporter])
    assert summary["max_epochs"] == 3 and summary["epochs"] == 1  # stopped after the first epoch
    assert reporter.pruned_epoch == 0 and trial.reports == [(pytest.approx(summary["final_top1"]), 0)]


# ---- search.py end to end ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize",
                            "ignore::optuna.exceptions.ExperimentalWarning")
def test_search_trains_two_tiny_trials_then_resumes_from_its_storage(tmp_path, monkeypatch, fake_latency):
    monkeypatch.setattr(search_module, "STALE_AFTER_S", 1)  # a killed trial is found after 1 s
    budget = 5.0  # MMACs at 32 px: with seed 0 the second table is over it; the cheapest (about 2.1) is not
    run_search_py(monkeypatch, tmp_path, f"search.budget_ms={budget}", "search.n_trials=2", run="run1")
    study = load_tiny_study(tmp_path)
    trained = [t for t in study.trials if t.user_attrs.get("feasible")]
    over = [t for t in study.trials if not t.user_attrs.get("feasible")]
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    assert over and all(t.state == optuna.trial.TrialState.PRUNED and "run_dir" not in t.user_attrs for t in over)
    assert all(t.user_attrs["predicted_ms"] > budget for t in over)
    assert all(res == 32 for res, _ in MacsPredictor.calls) and all(m for _, m in MacsPredictor.calls)
    for t in trained:
        table, predicted = yaml.safe_load(t.user_attrs["table"]), t.user_attrs["predicted_ms"]
        assert predicted <= budget and predicted == pytest.approx(mmacs(table, 32))
        assert t.user_attrs["measured_ms"] == MEASURED_MS and t.user_attrs["res"] == 32
        assert t.value == t.user_attrs["best_top1"] and t.user_attrs["epochs"] == 1
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == tmp_path / "run1" / f"trial_{t.number}" and (run_dir / "metrics.csv").is_file()
        trained_with = yaml.safe_load((run_dir / "config.yaml").read_text())  # the table, the experiment's recipe
        assert trained_with["model"] == {"name": f"tiny_trial{t.number}", "arch": table}
        assert "search" not in trained_with
        assert trained_with["data"]["train_res"] == trained_with["data"]["val_res"] == 32
        assert trained_with["trainer"]["max_epochs"] == 1 and trained_with["optim"]["base_lr"] == 0.8
        assert list(t.intermediate_values) == [0]  # val top-1 of epoch 0, reported to the pruner
    assert fake_latency == [32, 32]  # measured: the two completed trials only
    assert not (tmp_path / "results" / "tiny").exists()  # checkpoints stay under the run directories
    with (tmp_path / "results" / "tiny.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    best = max(trained, key=lambda t: t.value)
    best_yaml = yaml.safe_load((tmp_path / "results" / "tiny_best.yaml").read_text())
    assert best_yaml["arch"] == yaml.safe_load(best.user_attrs["table"])

    first = [(t.number, t.params, t.value) for t in study.trials]
    killed = killed_trial(tmp_path)
    run_search_py(monkeypatch, tmp_path, f"search.budget_ms={budget}", "search.n_trials=3", run="run2")
    study = load_tiny_study(tmp_path)
    assert [(t.number, t.params, t.value) for t in study.trials[:len(first)]] == first  # the first run's trials kept
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL  # its heartbeat stopped
    retry = study.trials[-1]  # the killed trial's table trained again: the third table, so the run stops there
    assert len(study.trials) == len(first) + 2 and retry.system_attrs["failed_trial"] == killed.number
    assert retry.params == killed.params and retry.state == optuna.trial.TrialState.COMPLETE
    assert Path(retry.user_attrs["run_dir"]) == tmp_path / "run2" / f"trial_{retry.number}"
    assert len([t for t in study.trials if t.user_attrs.get("feasible")]) == 3  # n_trials counts over every run

    with pytest.raises(SystemExit, match="created with other settings .*budget_ms: 5.0 -> 6.0"):
        run_search_py(monkeypatch, tmp_path, "search.budget_ms=6.0", "search.n_trials=3", run="run3")


@pytest.mark.parametrize("overrides, message", [
    (["search.budget_ms=-1"], "search.budget_ms must be a positive number of milliseconds"),
    (["search.budget_ms=5", "search.engine=tpu"],
     "unknown engine 'tpu'; expected one of torch, onnxruntime, onnxruntime-int8"),
    (["search.budget_ms=1.0"], "no table of the search space meets search.budget_ms=1 on onnxruntime: the cheapest"),
    (["search.budget_ms=5", "search.resolutions=[100]"], "resolutions must be .* positive multiples of 32"),
])
def test_bad_settings_are_clear_errors(tmp_path, monkeypatch, fake_latency, overrides, message):
    with pytest.raises(SystemExit, match=f"^error: {message}"):
        run_search_py(monkeypatch, tmp_path, *overrides, run="run")
    assert not (tmp_path / "results" / "tiny.db").exists()  # nothing was started
