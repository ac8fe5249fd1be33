"""zoo.latency: the table's key, the decomposition, the predictor's arithmetic, the errors, a tiny real build.

No figure measured here is asserted: the real-build tests check what gets written and skipped,
the predictor tests run on fake cached numbers.
"""

from __future__ import annotations

import importlib
import json
import math
import random
import statistics
from types import SimpleNamespace
from typing import Callable

import onnxruntime
import pytest
import torch

import zoo
from zoo.latency import (LatencyCache, LatencyPredictor, LayerSums, NetworkTimes, Overhead, build_table, decompose,
                         fit_overhead, measure_networks, predict)
from zoo.latency import build as build_module
from zoo.latency import cache as cache_module
from zoo.latency import report as report_module
from zoo.latency.__main__ import main as latency_main
from zoo.latency.engines import make_runners
from zoo.latency.build import NETWORK_GROUP
from zoo.latency.report import run_report, summarize, write_report
from zoo.models.fuse import reparameterize

predict_module = importlib.import_module("zoo.latency.predict")  # zoo.latency.predict is the function

TINY_TABLE = {
    "stem": [{"block": "conv", "kernel": 3, "out_chs": 8, "stride": 2}],
    "stages": [
        [{"block": "ds", "kernel": 3, "out_chs": 8}],
        [{"block": "ir", "kernel": 3, "exp_ratio": 2, "out_chs": 16, "stride": 2},
         {"block": "ir", "kernel": 3, "exp_ratio": 2, "out_chs": 16, "se_ratio": 0.25, "repeats": 2}],
    ],
    "final": [{"block": "conv", "kernel": 1, "out_chs": 32}],
}


def fake_table(tmp_path, engine: str = "torch", layer_ms: float = 0.1) -> tuple[LatencyCache, list]:
    """A torch table, 1 thread, with every layer of TINY_TABLE at 32 px at ``layer_ms`` * (its index + 1)."""
    cache = LatencyCache(engine, 1, tmp_path)
    layers = decompose(TINY_TABLE, 32)
    for i, layer in enumerate(layers):
        cache.layers.setdefault(layer.key, {"ms": layer_ms * (i + 1), "desc": layer.desc,
                                            "input_shape": list(layer.input_shape)})
    return cache, layers


def add_network(cache: LatencyCache, model: str, keys: list[str], ms: float) -> None:
    cache.networks[f"{model}@32/1000"] = {"model": model, "res": 32, "ms": ms, "layers": keys}


def melems(cache: LatencyCache, keys: list[str]) -> float:
    return sum(math.prod(cache.layers[k]["input_shape"]) for k in keys) / 1e6


# ---- the table's key -------------------------------------------------------------------------------------------


def test_table_key_changes_with_machine_threads_engine_and_versions(tmp_path, monkeypatch):
    cache = LatencyCache("torch", 1, tmp_path)
    cache.layers["abc"] = {"ms": 1.0, "input_shape": [3, 8, 8]}
    cache.save()
    assert LatencyCache("torch", 1, tmp_path).layers == {"abc": {"ms": 1.0, "input_shape": [3, 8, 8]}}
    assert cache.path.parent == tmp_path and cache.path.name.startswith("torch-")

    others = [LatencyCache("torch", 2, tmp_path), LatencyCache("onnxruntime", 1, tmp_path)]
    real_info = cache_module.machine_info
    monkeypatch.setattr(cache_module, "machine_info", lambda threads: {**real_info(threads), "cpu": "Other CPU"})
    others.append(LatencyCache("torch", 1, tmp_path))
    monkeypatch.setattr(cache_module, "machine_info", lambda threads: {**real_info(threads), "logical_cpus": "999"})
    others.append(LatencyCache("torch", 1, tmp_path))
    monkeypatch.setattr(cache_module, "machine_info", real_info)
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    others.append(LatencyCache("torch", 1, tmp_path))
    monkeypatch.undo()
    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    others.append(LatencyCache("onnxruntime", 1, tmp_path))
    paths = [c.path for c in others]
    assert len(set(paths)) == len(paths) and cache.path not in paths
    assert all(not c.layers and not c.networks for c in others)  # another key never reads these entries
    monkeypatch.undo()
    assert LatencyCache("torch", 1, tmp_path).layers == cache.layers  # the original key still does


def test_onnxruntime_version_does_not_invalidate_the_torch_table(tmp_path, monkeypatch):
    path = LatencyCache("torch", 1, tmp_path).path
    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    assert LatencyCache("torch", 1, tmp_path).path == path


def test_a_file_holding_another_key_is_refused(tmp_path):
    cache = LatencyCache("torch", 1, tmp_path)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_text(json.dumps({"key": {**cache.key, "cpu": "Other"}, "layers": {}, "networks": {}}))
    with pytest.raises(ValueError, match="holds a table for"):
        LatencyCache("torch", 1, tmp_path)


def test_default_folder_is_the_zoo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    assert LatencyCache("torch", 1).path.parent == tmp_path / "latency"


# ---- decomposition ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "shufflenetv2_050", "resnet18d", "ghostnet_050",
                                  "mobileone_s0", "mobilenetv4_conv_small"])
def test_layers_macs_sum_to_the_deployed_networks_macs(name):
    layers = decompose(name, 64)
    model = zoo.create_model(name)
    assert sum(layer.macs for layer in layers) == zoo.count_macs(reparameterize(model), 64)
    n_blocks = sum(len(stage) for stage in model.stages)
    assert len(layers) == len(model.stem) + n_blocks + len(model.final) + 1
    assert layers[0].name == "stem.0" and layers[0].input_shape == (3, 64, 64) and layers[-1].name == "head"


def test_keys_name_the_computation():
    by_name = decompose("mobilenetv3_small_100", 64)
    table = zoo.model_arch("mobilenetv3_small_100")
    assert [layer.key for layer in decompose(table, 64)] == [layer.key for layer in by_name]
    instance = zoo.create_model("mobilenetv3_small_100", drop_path_rate=0.2, drop_rate=0.5)  # eval identities
    assert [layer.key for layer in decompose(instance, 64)] == [layer.key for layer in by_name]
    repeated = [layer for layer in by_name if layer.name in ("stages.2.1", "stages.2.2")]
    assert repeated[0].key == repeated[1].key  # the same block twice: one entry
    no_se = decompose(zoo.model_arch("mobilenetv3_small_100", se=False), 64)
    changed = {a.name for a, b in zip(by_name, no_se) if a.key != b.key}
    assert changed == {a.name for a in by_name if "+SE" in a.desc} and "stem.0" not in changed
    assert not {a.key for a in by_name} & {a.key for a in decompose("mobilenetv3_small_100", 96)}
    assert decompose("mobilenetv3_small_100", 64, num_classes=10)[-1].key != by_name[-1].key


# ---- the predictor's arithmetic --------------------------------------------------------------------------------


def test_prediction_is_the_layer_sum_plus_the_documented_overhead(tmp_path):
    cache, layers = fake_table(tmp_path)
    cache.save()
    keys = [layer.key for layer in layers]
    ms = [cache.layers[k]["ms"] for k in keys]  # a repeated block counts each time it runs
    assert len(set(keys)) == len(keys) - 1
    layer_sum = sum(ms)
    ir_sum = sum(t for t, layer in zip(ms, layers) if layer.desc.startswith("InvertedResidual "))
    overhead = Overhead(per_network_ms=0.4, layer_sum_share=-0.1, per_layer_ms=-0.02, per_melem_ms=30.0,
                        kind_share={"InvertedResidual": 0.25, "GhostBottleneck": 5.0})  # a kind it lacks adds nothing
    expected = layer_sum + 0.4 - 0.1 * layer_sum + 0.25 * ir_sum - 0.02 * len(layers) + 30.0 * melems(cache, keys)
    predictor = LatencyPredictor("torch", 1, tmp_path)
    assert predictor.layer_sum(layers) == pytest.approx(layer_sum)
    assert predictor.predict_layers(layers, overhead) == pytest.approx(expected, rel=1e-9)
    assert predictor.predict_layers(layers, Overhead(per_network_ms=1.0)) == pytest.approx(layer_sum + 1.0)
    by_kind = {"ConvNormAct": ms[0] + ms[5], "DepthwiseSeparable": ms[1], "InvertedResidual": ir_sum,
               "ClassifierHead": ms[6]}
    assert LayerSums.of([cache.layers[k] for k in keys]).ms_by_kind == pytest.approx(by_kind)


def add_networks(cache: LatencyCache, keys: list[str], measured: Callable[[int, list[dict]], float]) -> None:
    """Eight networks of other shapes made of ``keys`` (two per network-wide term), each measured at
    ``measured(i, entries)``."""
    subsets = [keys, keys[:3], keys[2:], keys[:1] * 5, keys[1:] * 2, keys[3:], keys[::2], keys[:4] * 3]
    for i, subset in enumerate(subsets):
        add_network(cache, f"net{i}", subset, measured(i, [cache.layers[k] for k in subset]))


def test_the_fitted_overhead_recovers_the_network_wide_terms(tmp_path):
    cache, layers = fake_table(tmp_path)
    true = Overhead(per_network_ms=0.4, layer_sum_share=-0.1, per_layer_ms=-0.02, per_melem_ms=30.0)
    add_networks(cache, [layer.key for layer in layers], lambda i, entries: sum(e["ms"] for e in entries)
                 + true(LayerSums.of(entries)))
    cache.save()
    fitted = fit_overhead(cache)
    assert fitted.networks == 8
    for field in ("per_network_ms", "layer_sum_share", "per_layer_ms", "per_melem_ms"):
        assert getattr(fitted, field) == pytest.approx(getattr(true, field), abs=1e-9)
    assert set(fitted.kind_share) == {"ConvNormAct", "DepthwiseSeparable", "InvertedResidual", "ClassifierHead"}
    assert all(share == pytest.approx(0.0, abs=1e-9) for share in fitted.kind_share.values())
    sums = LayerSums.of([cache.layers[layer.key] for layer in layers])
    assert predict(TINY_TABLE, 32, "torch", threads=1, cache_dir=tmp_path) == pytest.approx(sums.ms + true(sums))


def test_a_kinds_share_departs_from_the_common_one_as_far_as_its_ridge_lets_it(tmp_path, monkeypatch):
    cache, layers = fake_table(tmp_path)  # inverted residuals run 50% slower in a network than in the table

    def measured(i: int, entries: list[dict]) -> float:
        return sum(e["ms"] * (1.5 if e["desc"].startswith("InvertedResidual ") else 1.0) for e in entries)

    add_networks(cache, [layer.key for layer in layers], measured)

    def shares() -> dict[str, float]:  # a kind's layers are scaled by 1 + the common share + its departure
        fitted = fit_overhead(cache)
        return {kind: fitted.layer_sum_share + share for kind, share in fitted.kind_share.items()}

    monkeypatch.setattr(predict_module, "KIND_RIDGE", 1e-12)
    assert shares() == pytest.approx({"ConvNormAct": 0.0, "DepthwiseSeparable": 0.0, "InvertedResidual": 0.5,
                                      "ClassifierHead": 0.0}, abs=1e-6)
    monkeypatch.setattr(predict_module, "KIND_RIDGE", 1e12)  # no departure: every kind gets the common share
    assert all(share == pytest.approx(0.0, abs=1e-9) for share in fit_overhead(cache).kind_share.values())


def test_one_disturbed_network_bends_the_fit_less_than_under_least_squares(tmp_path, monkeypatch):
    cache, layers = fake_table(tmp_path)  # 0.2 ms per network, but net0 was measured 60% slow
    add_networks(cache, [layer.key for layer in layers],
                 lambda i, entries: (sum(e["ms"] for e in entries) + 0.2) * (1.6 if i == 0 else 1.0))

    def worst_error_of_the_others() -> float:
        overhead = fit_overhead(cache)
        errors = []
        for net in list(cache.networks.values())[1:]:
            sums = LayerSums.of([cache.layers[k] for k in net["layers"]])
            errors.append(abs(sums.ms + overhead(sums) - net["ms"]) / net["ms"])
        return max(errors)

    huber = worst_error_of_the_others()
    monkeypatch.setattr(predict_module, "HUBER", 1e9)  # squares everywhere
    least_squares = worst_error_of_the_others()
    assert huber < 0.02 < least_squares


def test_overhead_has_fewer_terms_with_fewer_networks_and_leaves_a_model_out(tmp_path):
    cache, layers = fake_table(tmp_path)
    keys = [layer.key for layer in layers]

    def add(model: str, subset: list[str], overhead: float) -> None:
        add_network(cache, model, subset, sum(cache.layers[k]["ms"] for k in subset) + overhead)

    add("a", keys, 0.5)
    add("b", keys[:2], 9.0)
    one = fit_overhead(cache, exclude_model="b")
    assert one.networks == 1 and one.per_network_ms == pytest.approx(0.5)
    assert one.layer_sum_share == one.per_layer_ms == one.per_melem_ms == 0.0
    assert all(share == pytest.approx(0.0, abs=1e-9) for share in one.kind_share.values())
    two = fit_overhead(cache)  # two networks: the per-network term only
    assert two.networks == 2 and two.per_network_ms != 0.0 and two.layer_sum_share == 0.0
    add("c", keys[2:], 1.0)
    add("d", keys[:1], 3.0)
    four = fit_overhead(cache)  # four: and the share of the layer sum
    assert four.layer_sum_share != 0.0 and four.per_layer_ms == four.per_melem_ms == 0.0
    with pytest.raises(ValueError, match="no network other than a's"):
        fit_overhead(LatencyCache("torch", 1, tmp_path / "empty"), exclude_model="a")


# ---- errors ----------------------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(tmp_path):
    cache, layers = fake_table(tmp_path)
    cache.save()
    with pytest.raises(ValueError, match="unknown engine 'tpu'; expected one of torch, onnxruntime, onnxruntime-int8"):
        predict(TINY_TABLE, 32, "tpu", cache_dir=tmp_path)
    for res in (0, -32, 32.5, "32"):
        with pytest.raises(ValueError, match="res must be a positive integer"):
            decompose(TINY_TABLE, res)
    with pytest.raises(ValueError, match="too small"):
        decompose(TINY_TABLE, 2)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        LatencyCache("torch", 0, tmp_path)
    with pytest.raises(ValueError, match="unknown model"):
        decompose("mobilenetv9", 32)
    with pytest.raises(ValueError, match="expected a zoo classifier"):
        decompose(torch.nn.Conv2d(3, 8, 3), 32)
    build_hint = "no network measured end to end .*`python -m zoo.latency build --engine torch --threads 1`"
    with pytest.raises(ValueError, match=build_hint):
        predict(TINY_TABLE, 32, "torch", threads=1, cache_dir=tmp_path)
    add_network(cache, "a", [layers[0].key], 1.0)
    cache.save()
    with pytest.raises(ValueError, match=r"of mobilenetv3_small_100 are not in the torch latency table.*"
                                         r"python -m zoo.latency build --engine torch --threads 1 --res 32 "
                                         r"--models mobilenetv3_small_100.*measure_missing=True"):
        predict("mobilenetv3_small_100", 32, "torch", threads=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        build_module.measure_layers(cache, TINY_TABLE, decompose(TINY_TABLE, 64), repeats=0)


def test_cli_rejects_unknown_engines_and_models(tmp_path):
    with pytest.raises(SystemExit):
        latency_main(["build", "--engine", "tpu"])
    with pytest.raises(ValueError, match="no registered model matches nonet"):
        latency_main(["build", "--engine", "torch", "--models", "nonet*", "--cache-dir", str(tmp_path)])


# ---- engines and a tiny real build -----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "onnxruntime-int8"])
def test_engines_run_the_deployed_layer(engine, tmp_path):
    layer = zoo.create_model("mobilenetv3_small_100").stages[1][0].eval()
    deployed = reparameterize(layer)
    (run,) = make_runners(engine, deployed, (16, 8, 8), 1, tmp_path)
    out = run()
    out = out[0] if isinstance(out, list) else out.detach().numpy()
    assert out.shape == (1, 24, 4, 4)
    if engine == "onnxruntime":
        x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
        assert abs(out - layer(x).detach().numpy()).max() < 1e-4


def test_onnxruntime_layers_are_timed_in_context_minus_the_context(tmp_path, monkeypatch):
    layers = decompose(TINY_TABLE, 32)
    distinct = list({layer.key: layer for layer in layers}.values())
    built = []
    monkeypatch.setattr(build_module, "make_runners", lambda engine, module, *a: built.append(module) or [None])
    times = [3.0, 1.0] * (len(distinct) - 1) + [1.0, 1.5]  # the last layer is faster than its context: noise
    monkeypatch.setattr(build_module, "_median_ms", lambda calls, *a: times)
    cache = LatencyCache("onnxruntime", 1, tmp_path)
    build_module.measure_layers(cache, TINY_TABLE, layers)
    assert [cache.layers[layer.key]["ms"] for layer in distinct] == [2.0] * (len(distinct) - 1) + [0.0]
    assert len(built) == 2 * len(distinct)
    with torch.no_grad():
        for with_layer, without, layer in zip(built[::2], built[1::2], distinct):
            x = torch.randn(1, *layer.input_shape)
            assert type(with_layer[1]).__name__ == layer.desc.split()[0]  # pre -> the layer -> post
            assert tuple(with_layer(x).shape[1:]) == layer.output_shape
            assert without(x).shape == x.shape


def test_tiny_build_writes_entries_and_a_second_build_measures_nothing(tmp_path, monkeypatch):
    logs: list[str] = []
    kwargs = dict(threads=1, repeats=2, warmup=0, network_repeats=1, inner=1, cache_dir=tmp_path, log=logs.append)
    cache = build_table(["mobilenetv3_small_100"], [32], "torch", **kwargs)
    layers = decompose("mobilenetv3_small_100", 32)
    assert set(cache.layers) == {layer.key for layer in layers}
    assert all(entry["ms"] > 0 and entry["desc"] for entry in cache.layers.values())
    assert list(cache.networks) == ["mobilenetv3_small_100@32/1000"]
    entry = cache.networks["mobilenetv3_small_100@32/1000"]
    assert entry["layers"] == [layer.key for layer in layers]
    assert entry["reference"] == "mobilenetv2_100" and entry["reference_ms"] > 0 and entry["passes"] == 3
    assert json.loads(cache.path.read_text())["layers"] == cache.layers  # written to disk
    calls = []
    monkeypatch.setattr(build_module, "make_runners", lambda *a, **k: calls.append(a) or [])
    logs.clear()
    again = build_table(["mobilenetv3_small_100"], [32], "torch", **kwargs)
    assert not calls and again.layers == cache.layers and again.networks == cache.networks
    assert any("all cached" in line for line in logs)


def test_measure_missing_adds_the_layers_a_table_lacks(tmp_path):
    build_table(["mobilenetv3_small_100"], [32], "torch", threads=1, repeats=1, warmup=0, network_repeats=1,
                inner=1, cache_dir=tmp_path, log=lambda line: None)
    table = zoo.model_arch("mobilenetv3_small_100", se=False)
    with pytest.raises(ValueError, match="measure_missing=True"):
        predict(table, 32, "torch", threads=1, cache_dir=tmp_path)
    ms = predict(table, 32, "torch", threads=1, cache_dir=tmp_path, measure_missing=True)
    assert ms == predict(table, 32, "torch", threads=1, cache_dir=tmp_path)  # now from the table alone
    assert {layer.key for layer in decompose(table, 32)} <= set(LatencyCache("torch", 1, tmp_path).layers)


# ---- networks end to end: shuffled passes, a reference in every group ------------------------------------------

REFERENCE = "mobilenetv2_100"
NETWORKS = ["mobilenetv3_small_100", "shufflenetv2_050", "mobilenetv2_035", "ghostnet_050", "resnet18",
            "mobileone_s0", "repvgg_a0", "mobilenetv1_025", "efficientnet_lite0", "shufflenetv1_g3_050"]
BASE_MS = {name: 1.0 + 0.5 * i for i, name in enumerate([*NETWORKS, REFERENCE])}


@pytest.fixture
def drifting_machine(monkeypatch):
    """Nothing built or timed: a network's time in the g-th group timed is its BASE_MS times the g-th
    drift factor (the machine's state while that group ran). Returns the groups timed (network names)
    and the networks deployed."""
    drift = [1.0, 1.7, 0.6, 1.3, 0.9, 2.2, 1.1, 0.8, 1.5, 0.7]
    groups: list[list[str]] = []
    deployed: list[str] = []

    def deploy(model, num_classes, device):
        deployed.append(model)
        return SimpleNamespace(in_chans=3, model=model)

    def time_group(runners, repeats, warmup, inner):
        names = [run() for run in runners]
        assert names[::2] == names[1::2]  # an untimed run before each timed run
        groups.append(list(dict.fromkeys(names)))  # a network's sessions (onnxruntime) one after the other
        return [BASE_MS[name] * drift[len(groups) - 1] for name in names]

    monkeypatch.setattr(build_module, "deployed_network", deploy)
    monkeypatch.setattr(build_module, "make_runners", lambda engine, network, shape, threads, workdir, sessions:
                        [lambda: network.model] * sessions)
    monkeypatch.setattr(build_module, "_median_ms", time_group)
    return SimpleNamespace(drift=drift, groups=groups, deployed=deployed)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_the_reference_divides_out_each_groups_drift(drifting_machine, engine):
    models = [*NETWORKS[:4], REFERENCE, *NETWORKS[4:]]  # the reference may be measured too
    times = measure_networks(engine, 1, models, 32)
    groups = drifting_machine.groups
    assert len(groups) == 3 * 2  # three passes of 10 networks in groups of 7, the reference added to each
    assert all(len(group) <= NETWORK_GROUP and group.count(REFERENCE) == 1 for group in groups)
    assert sorted(drifting_machine.deployed) == sorted(models)  # each deployed once, not once per pass
    anchor = statistics.median(BASE_MS[REFERENCE] * d for d in drifting_machine.drift[:len(groups)])
    assert times.anchor_ms == pytest.approx(anchor, rel=1e-12)
    assert times.ms == pytest.approx([BASE_MS[name] * anchor / BASE_MS[REFERENCE] for name in models], rel=1e-12)
    assert times.ms[4] == times.anchor_ms


def test_without_a_reference_the_drift_stays(drifting_machine):
    times = measure_networks("torch", 1, NETWORKS, 32, reference=None)
    assert times.anchor_ms is None
    assert [len(group) for group in drifting_machine.groups] == [NETWORK_GROUP, 2] * 3
    for name, ms in zip(NETWORKS, times.ms):  # the median of its own times over the passes, drift and all
        own = [BASE_MS[name] * d for group, d in zip(drifting_machine.groups, drifting_machine.drift) if name in group]
        assert len(own) == 3 and ms == statistics.median(own)
    assert len({round(ms / BASE_MS[name], 9) for name, ms in zip(NETWORKS, times.ms)}) > 1


def test_passes_shuffle_the_order_deterministically_by_seed(drifting_machine):
    def pass_orders(seed: int) -> list[list[str]]:
        drifting_machine.groups.clear()
        measure_networks("torch", 1, NETWORKS, 32, passes=2, seed=seed)
        timed = [name for group in drifting_machine.groups for name in group if name != REFERENCE]
        return [timed[:len(NETWORKS)], timed[len(NETWORKS):]]

    orders = pass_orders(seed=5)
    expected = []
    for p in range(2):
        order = list(NETWORKS)
        random.Random(5 + p).shuffle(order)
        expected.append(order)
    assert orders == expected and orders[0] != orders[1] != NETWORKS
    assert pass_orders(seed=5) == orders and pass_orders(seed=6) != orders


def test_bad_passes_and_an_unknown_reference_fail_before_measuring(drifting_machine, tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(build_module, "measure_layers", lambda *a, **k: measured.append(a))
    calls = [lambda **k: measure_networks("torch", 1, NETWORKS, 32, **k),
             lambda **k: build_table(NETWORKS, [32], "torch", 1, cache_dir=tmp_path, log=lambda line: None, **k),
             lambda **k: run_report(NETWORKS, [32], "torch", 1, cache_dir=tmp_path, log=lambda line: None, **k)]
    for call in calls:
        for passes in (0, -1, 1.5):
            with pytest.raises(ValueError, match=f"passes must be an integer >= 1, got {passes}"):
                call(passes=passes)
        with pytest.raises(ValueError, match=r"unknown reference model 'mobilenetv9'.*zoo.list_models\(\)"):
            call(reference="mobilenetv9")
    for command in ("build", "report"):
        base = [command, "--engine", "torch", "--models", "mobilenetv3_small_100", "--cache-dir", str(tmp_path)]
        with pytest.raises(ValueError, match="passes must be an integer >= 1, got 0"):
            latency_main([*base, "--passes", "0"])
        with pytest.raises(ValueError, match="unknown reference model 'mobilenetv9'"):
            latency_main([*base, "--reference", "mobilenetv9"])
    assert not measured and not drifting_machine.deployed and not drifting_machine.groups


def test_cli_passes_the_passes_and_the_reference(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("zoo.latency.__main__.build_table", lambda *a, **k: calls.append(k))
    base = ["build", "--engine", "torch", "--models", "mobilenetv3_small_100", "--cache-dir", str(tmp_path)]
    latency_main(base)
    latency_main([*base, "--passes", "5", "--reference", "none"])
    latency_main([*base, "--reference", "resnet18"])
    assert [(k["passes"], k["reference"]) for k in calls] == [(3, REFERENCE), (5, None), (3, "resnet18")]


def test_build_records_the_reference_and_its_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "measure_layers", lambda *a: [])
    seen = []

    def fake_measure(engine, threads, models, res, num_classes, repeats, warmup, inner, passes, reference, seed):
        seen.append((list(models), passes, reference))
        return NetworkTimes(tuple(1.0 + i for i in range(len(models))), 2.5 if reference else None)

    monkeypatch.setattr(build_module, "measure_networks", fake_measure)
    models = ["mobilenetv3_small_100", "shufflenetv2_050"]
    cache = build_table(models, [32], "torch", 1, passes=2, cache_dir=tmp_path, log=lambda line: None)
    assert seen == [(models, 2, REFERENCE)]  # every network of the resolution in one call: one anchor
    entries = [cache.networks[f"{name}@32/1000"] for name in models]
    assert [(e["ms"], e["passes"], e["reference"], e["reference_ms"]) for e in entries] == [
        (1.0, 2, REFERENCE, 2.5), (2.0, 2, REFERENCE, 2.5)]
    cache = build_table(["mobilenetv2_035"], [32], "torch", 1, reference=None, cache_dir=tmp_path,
                        log=lambda line: None)
    assert (cache.networks["mobilenetv2_035@32/1000"]["reference"], cache.networks["mobilenetv2_035@32/1000"]
            ["reference_ms"]) == (None, None)


# ---- the report ------------------------------------------------------------------------------------------------


REPORTED = ["mobilenetv3_small_100", "shufflenetv2_050", "mobilenetv2_035", "ghostnet_050"]


def report_table(tmp_path, reference: dict[str, object] | None = None) -> LatencyCache:
    """A torch table of REPORTED at 32 px, every layer at 0.05 ms, each network with its own overhead and
    ``reference`` (a model's entries: {"reference": ..., "reference_ms": ...})."""
    cache = LatencyCache("torch", 1, tmp_path)
    for i, name in enumerate(REPORTED):
        layers = decompose(name, 32)
        for layer in layers:
            cache.layers[layer.key] = {"ms": 0.05, "desc": layer.desc, "input_shape": list(layer.input_shape)}
        keys = [layer.key for layer in layers]
        add_network(cache, name, keys, 0.05 * len(keys) + 0.3 * (i + 1))
        cache.networks[f"{name}@32/1000"].update((reference or {}).get(name, {}))
    cache.save()
    return cache


def fake_report_measure(monkeypatch, measured: dict[str, float], anchor_ms: float | None) -> list:
    calls = []

    def measure(engine, threads, models, res, num_classes, repeats, warmup, inner, passes, reference, seed):
        calls.append((list(models), passes, reference))
        return NetworkTimes(tuple(measured[name] for name in models), anchor_ms)

    monkeypatch.setattr(report_module, "measure_networks", measure)
    return calls


def test_report_predicts_each_model_without_its_own_measurements(tmp_path, monkeypatch):
    cache = report_table(tmp_path)
    fake_report_measure(monkeypatch, {name: 1.0 + i for i, name in enumerate(REPORTED)}, 2.0)
    rows = run_report(REPORTED, [32], "torch", 1, cache_dir=tmp_path, log=lambda line: None)
    assert [row["model"] for row in rows] == REPORTED
    full = fit_overhead(cache)  # fitted on every model, which the report must not use
    for row in rows:
        keys = cache.networks[f"{row['model']}@32/1000"]["layers"]
        left_out = fit_overhead(cache, exclude_model=row["model"])  # fitted on the other models only
        sums = LayerSums.of([cache.layers[k] for k in keys])
        assert row["layer_sum_ms"] == pytest.approx(sums.ms, abs=1e-4)
        assert row["predicted_ms"] == pytest.approx(sums.ms + left_out(sums), abs=1e-3)
        assert row["predicted_ms"] != pytest.approx(sums.ms + full(sums), abs=1e-3)
        error = 100 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
        assert row["error_pct"] == pytest.approx(error, abs=0.01)
        assert row["normalized_ms"] is None and row["normalized_error_pct"] is None  # the table has no anchor
    paths = write_report(rows, tmp_path / "out", "torch", "torch, 1 threads", "python -m zoo.latency report")
    assert [p.name for p in paths] == ["torch.csv", "torch_summary.csv", "torch.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_report_rescales_to_the_build_anchor_of_the_same_reference(tmp_path, monkeypatch):
    built = {"reference": REFERENCE, "reference_ms": 2.0}
    report_table(tmp_path, {"mobilenetv3_small_100": built, "shufflenetv2_050": built, "mobilenetv2_035": {
        "reference": "resnet18", "reference_ms": 9.0}})  # ghostnet_050: built before references
    measured = {name: 1.0 + i for i, name in enumerate([*REPORTED, "resnet18"])}
    calls = fake_report_measure(monkeypatch, measured, 2.5)  # the machine 25% slower than at the build
    rows = run_report(REPORTED, [32], "torch", 1, cache_dir=tmp_path, log=lambda line: None, passes=4)
    assert calls == [(REPORTED, 4, REFERENCE)]
    by_model = {row["model"]: row for row in rows}
    for name in ("mobilenetv3_small_100", "shufflenetv2_050"):
        row = by_model[name]
        assert row["measured_ms"] == measured[name]  # the raw figure stays what the report measured
        assert (row["reference"], row["build_reference_ms"], row["report_reference_ms"]) == (REFERENCE, 2.0, 2.5)
        assert row["normalized_ms"] == pytest.approx(measured[name] * 2.0 / 2.5, abs=1e-4)
        error = 100 * (row["predicted_ms"] - row["normalized_ms"]) / row["normalized_ms"]
        assert row["normalized_error_pct"] == pytest.approx(error, abs=0.01)
    for name in ("mobilenetv2_035", "ghostnet_050"):  # another reference, none: nothing to rescale to
        assert by_model[name]["normalized_ms"] is None and by_model[name]["build_reference_ms"] is None
    summary = {s["res"]: s for s in summarize(rows)}["all"]
    assert summary["networks"] == 4 and summary["normalized_networks"] == 2

    cache = report_table(tmp_path / "all", {name: built for name in REPORTED})
    for layer in decompose("resnet18", 32):  # its layers, but no network entry
        cache.layers[layer.key] = {"ms": 0.05, "desc": layer.desc, "input_shape": list(layer.input_shape)}
    cache.save()
    rows = run_report(["resnet18", *REPORTED], [32], "torch", 1, cache_dir=tmp_path / "all", log=lambda line: None)
    assert rows[0]["build_reference_ms"] == 2.0  # no entry of its own: the anchor its resolution shares
    rows = run_report(REPORTED, [32], "torch", 1, cache_dir=tmp_path / "all", reference=None, log=lambda line: None)
    assert all(row["normalized_ms"] is None and row["reference"] == "" for row in rows)


def test_summary_counts_within_ten_percent_and_ranks():
    rows = [
        {"res": 128, "macs": 400, "predicted_ms": 1.0, "measured_ms": 1.0, "error_pct": 5.0,
         "normalized_ms": 1.0, "normalized_error_pct": 0.0},
        {"res": 128, "macs": 300, "predicted_ms": 2.0, "measured_ms": 2.0, "error_pct": -12.0,
         "normalized_ms": 3.0, "normalized_error_pct": -33.3},
        {"res": 128, "macs": 200, "predicted_ms": 3.0, "measured_ms": 3.0, "error_pct": 10.0,
         "normalized_ms": 2.0, "normalized_error_pct": 50.0},
        {"res": 128, "macs": 100, "predicted_ms": 4.0, "measured_ms": 4.0, "error_pct": -9.9,
         "normalized_ms": "", "normalized_error_pct": ""},  # as read back from the CSV
        {"res": 160, "macs": 100, "predicted_ms": 2.0, "measured_ms": 1.0, "error_pct": 100.0},
        {"res": 160, "macs": 200, "predicted_ms": 1.0, "measured_ms": 2.0, "error_pct": -50.0},
    ]
    by_res = {s["res"]: s for s in summarize(rows)}
    assert by_res["128"]["networks"] == 4 and by_res["128"]["within_10pct"] == 0.75
    assert by_res["128"]["spearman_predicted"] == pytest.approx(1.0)
    assert by_res["128"]["spearman_macs"] == pytest.approx(-1.0)
    assert by_res["128"]["normalized_networks"] == 3
    assert by_res["128"]["within_10pct_normalized"] == pytest.approx(1 / 3, abs=1e-4)
    assert by_res["128"]["spearman_predicted_normalized"] == pytest.approx(0.5)
    assert by_res["160"]["within_10pct"] == 0.0 and by_res["160"]["spearman_predicted"] == pytest.approx(-1.0)
    assert by_res["160"]["normalized_networks"] == 0 and by_res["160"]["within_10pct_normalized"] is None
    assert by_res["all"]["networks"] == 6 and by_res["all"]["within_10pct"] == 0.5
