"""zoo.design: the design notes' five tiers as table generators, their registered presets, and ``zoo.advise``.

The latency tests run on a tiny latency table filled with made-up figures (a fixed cost per
multiply-add), never on a measurement.
"""

from __future__ import annotations

import csv
import functools
import itertools
import math

import pytest
import torch
import yaml
from torch import nn

import zoo
from zoo._cli import run_cli
from zoo.advise import main as advise_main
import zoo.design.advise
from zoo.design import TIERS, advise_budget, fitting_models, get_tier, measure_fits, pick_tier, tier_ranges
from zoo.design.advise import Fit, rank_fits, recorded_top1
from zoo.design.tiers import BLOCKS, DOWNSAMPLINGS
from zoo.latency import LatencyCache, LatencyPredictor, NetworkTimes, decompose
from zoo.models.registry import get_entry

PRESETS = [tier.preset_name for tier in TIERS]
MS_PER_MMAC = 0.01  # the made-up cost of the fake table
CANDIDATES = ["mobilenetv3_small_075", "shufflenetv2_050"]
SIDES = (96, 128)


def conv_widths(model: nn.Module) -> list[int]:
    """Every conv's input and output channels and the classifier's input, the image's 3 channels left out."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    widths = [c for m in convs for c in (m.in_channels, m.out_channels)][1:]
    return widths + [m.in_features for m in model.modules() if isinstance(m, nn.Linear)]


def feature_rows(table: dict) -> tuple[set[str], set[str]]:
    """The block types of the downsampling rows (each stage's first) and of the feature rows."""
    return ({stage[0]["block"] for stage in table["stages"]},
            {row["block"] for stage in table["stages"] for row in stage[1:]})


# ---- the tiers and their presets ---------------------------------------------------------------------------------


def test_registered_presets_are_the_tables_the_rules_generate():
    assert zoo.list_models("tier*") == sorted(PRESETS)
    for tier in TIERS:
        entry = get_entry(tier.preset_name)
        assert entry.family == "tiers" and entry.overrides == {} and not entry.references
        assert entry.table == tier.table(), tier.preset_name


@pytest.mark.parametrize("tier", TIERS, ids=PRESETS)
def test_every_preset_runs_at_its_side_with_widths_in_multiples_of_8(tier):
    res = tier.design.res
    k = res // 32
    assert res == k * 2 ** 5 and res in tier.resolutions
    model = zoo.create_model(tier.preset_name, num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, res, res))
        logits = model.forward_head(features)
    assert features.shape[2:] == (k, k) and logits.shape == (1, 10) and torch.isfinite(logits).all()
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert model.pretrained_cfg["input_size"] == (3, res, res)
    assert all(c % 8 == 0 for c in conv_widths(model)), conv_widths(model)


def test_the_presets_follow_their_tiers_rules():
    """The notes' rows: tier 1 max pool + depthwise separable + ReLU at a small side ... tier 5 ResNet + SE +
    h-swish towards 500-600 px; MACs grow tier by tier."""
    expected = [  # downsampling, feature rows, act, SE in the table
        ({"maxpool"}, {"ds"}, "relu", False),
        ({"ds"}, {"ir"}, "relu6", False),
        ({"maxpool"}, {"conv"}, "leaky_relu", False),
        ({"conv"}, {"ir"}, "hard_swish", True),
        ({"conv"}, {"basic"}, "hard_swish", True),
    ]
    for tier, (down, blocks, act, se) in zip(TIERS, expected):
        table = tier.table()
        assert feature_rows(table) == (down, blocks) and table["act"] == act, tier.name
        assert any(row.get("se_ratio") for stage in table["stages"] for row in stage) == se, tier.name
    assert get_tier(1).resolutions == (128, 160, 192, 224, 256)
    assert get_tier(4).resolutions == (288, 320, 352, 384)  # the notes' 280, 320, 384 as multiples of 32
    assert get_tier(5).resolutions == (512, 544, 576)  # towards 500-600
    assert get_tier(5).blocks == ("basic",) and get_tier(5).acts == ("hard_swish",)
    macs = [sum(layer.macs for layer in layers_of(tier.preset_name, tier.design.res)) for tier in TIERS]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)


@pytest.mark.parametrize("tier", TIERS, ids=PRESETS)
def test_every_design_a_tier_allows_builds_with_widths_in_multiples_of_8(tier):
    designs = [(down, block, se) for down, block, se in itertools.product(tier.downsamplings, tier.blocks, tier.se)
               if not se or block in ("ds", "ir", "basic")]
    assert len(designs) >= len(tier.acts)  # the activations take turns: each is built at least once
    for (down, block, se), act in zip(designs, itertools.cycle(tier.acts)):
        table = tier.table(downsampling=down, block=block, act=act, se=se, width=0.75, res=tier.resolutions[0])
        with torch.device("meta"):
            model = zoo.create_model("design", arch=table, num_classes=10)
            out = model(torch.zeros(1, 3, table["res"], table["res"]))
        assert out.shape == (1, 10) and model.total_stride == 32, (down, block)
        assert all(c % 8 == 0 for c in conv_widths(model)), (down, block, conv_widths(model))


def test_choices_outside_a_tier_are_refused():
    poorest, middle = get_tier(1), get_tier(4)
    with pytest.raises(ValueError, match=r"tier 1 .* allows block in \['ds'\], got 'ir'"):
        poorest.table(block="ir")
    with pytest.raises(ValueError, match="allows res in .*got 288"):
        poorest.table(res=288)
    with pytest.raises(ValueError, match="allows act in .*got 'hard_swish'"):
        poorest.table(act="hard_swish")
    with pytest.raises(ValueError, match="allows downsampling in .*got 'maxpool'"):
        middle.table(downsampling="maxpool")
    with pytest.raises(ValueError, match="squeeze-excite applies to ds, ir, basic blocks, not conv3x3"):
        middle.table(block="conv3x3", se=True)
    assert feature_rows(middle.table(block="conv3x3"))[1] == {"conv"}  # the preset's SE dropped, no error
    with pytest.raises(ValueError, match="width must be a positive multiplier"):
        middle.table(width=0)
    with pytest.raises(ValueError, match="tiers are numbered 1-5"):
        get_tier(6)
    assert set(DOWNSAMPLINGS) >= {d for t in TIERS for d in t.downsamplings}
    assert set(BLOCKS) >= {b for t in TIERS for b in t.blocks}


def test_presets_train_with_the_imagenette_recipe(compose_cfg):
    for name in PRESETS:
        cfg = compose_cfg("experiment=imagenette_base", "model=zoo", f"model.name={name}", tiny=False)
        assert cfg["model"]["name"] == name and cfg["run_name"] == f"imagenette_{name}_5ep"
    from zoo.training import train

    summary = train(compose_cfg("model=zoo", f"model.name={PRESETS[0]}"))
    assert summary["final_top1"] is not None and summary["macs"] > 0


# ---- advice on a fake latency table ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def layers_of(name: str, res: int) -> tuple:
    return tuple(decompose(name, res))


def fill(cache: LatencyCache, name: str, res: int) -> None:
    """Made-up entries for every layer of ``name`` at ``res``: MS_PER_MMAC per million MACs, and the
    network measured at exactly its layer sum (so the fitted overhead is 0)."""
    layers = layers_of(name, res)
    for layer in layers:
        cache.layers[layer.key] = {"ms": MS_PER_MMAC * layer.macs / 1e6, "desc": layer.desc,
                                  "input_shape": list(layer.input_shape)}
    cache.networks[f"{name}@{res}/1000"] = {"model": name, "res": res, "layers": [layer.key for layer in layers],
                                           "ms": sum(cache.layers[layer.key]["ms"] for layer in layers)}


def expected_ms(name: str, res: int) -> float:
    return MS_PER_MMAC * sum(layer.macs for layer in layers_of(name, res)) / 1e6


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    """A torch table, 1 thread: the presets at their sides, the candidates at 96 and 128 px except
    shufflenetv2_050 at 128 px."""
    folder = tmp_path_factory.mktemp("latency")
    cache = LatencyCache("torch", 1, folder)
    for tier in TIERS:
        fill(cache, tier.preset_name, tier.design.res)
    for name, res in itertools.product(CANDIDATES, SIDES):
        if (name, res) != ("shufflenetv2_050", 128):
            fill(cache, name, res)
    cache.save()
    return folder


@pytest.fixture
def predictor(table_dir):
    return LatencyPredictor("torch", 1, table_dir)


def test_tier_ranges_come_from_the_presets_predicted_latency(predictor):
    ranges = tier_ranges(predictor)
    preset_ms = [expected_ms(t.preset_name, t.design.res) for t in TIERS]
    assert [r.preset_ms for r in ranges] == pytest.approx(preset_ms)
    assert ranges[0].low_ms == 0 and ranges[-1].high_ms == math.inf
    assert all(a.high_ms == b.low_ms == b.preset_ms for a, b in zip(ranges, ranges[1:]))
    assert pick_tier(ranges, ranges[2].preset_ms * 0.999).tier.level == 2
    assert pick_tier(ranges, ranges[2].preset_ms).tier.level == 3
    assert pick_tier(ranges, ranges[0].preset_ms / 2).tier.level == 1  # below every preset: the poorest rules
    assert pick_tier(ranges, 1e9).tier.level == 5


def test_a_model_fits_at_its_largest_side_within_the_budget(predictor):
    small_96, small_128 = expected_ms("mobilenetv3_small_075", 96), expected_ms("mobilenetv3_small_075", 128)
    fits, skipped = fitting_models(predictor, (small_96 + small_128) / 2, CANDIDATES, SIDES)
    by_name = {fit.model: fit for fit in fits}
    assert by_name["mobilenetv3_small_075"].res == 96
    assert by_name["mobilenetv3_small_075"].predicted_ms == pytest.approx(small_96)
    fits, skipped = fitting_models(predictor, 1e9, CANDIDATES, SIDES)
    assert {(f.model, f.res) for f in fits} == {("mobilenetv3_small_075", 128), ("shufflenetv2_050", 96)}
    assert skipped == [("shufflenetv2_050", 128)]  # not in the table
    assert all(f.macs == sum(layer.macs for layer in layers_of(f.model, f.res)) for f in fits)


def test_fits_rank_by_recorded_top1_then_macs():
    fits = [Fit("a", 128, 1.0, macs=10), Fit("b", 128, 1.0, macs=30), Fit("c", 128, 1.0, macs=20),
            Fit("d", 128, 1.0, macs=5)]
    rows = [
        {"model": "d", "res": "128", "epochs": "5", "best_top1": "60.0"},
        {"model": "d", "res": "128", "epochs": "5", "best_top1": "62.5"},  # the best run counts
        {"model": "a", "res": "128", "epochs": "5", "best_top1": "61.0"},
        {"model": "c", "res": "128", "epochs": "20", "best_top1": "90.0"},  # another schedule: not compared
        {"model": "b", "res": "160", "epochs": "5", "best_top1": "90.0"},  # another side: not compared
    ]
    top1 = recorded_top1(rows)
    assert top1 == {"d": 62.5, "a": 61.0}
    ranked = rank_fits(fits, top1)
    assert [f.model for f in ranked] == ["d", "a", "b", "c"] and ranked[0].top1 == 62.5 and ranked[2].top1 is None


def test_advice_for_a_budget(predictor):
    preset_ms = [expected_ms(t.preset_name, t.design.res) for t in TIERS]
    budget = (preset_ms[1] + preset_ms[2]) / 2
    rows = [{"model": "shufflenetv2_050", "res": "128", "epochs": "5", "best_top1": "50.0"}]
    advice = advise_budget(budget, predictor, [*CANDIDATES, PRESETS[0]], SIDES, rows)
    assert advice.tier.tier.level == 2 and advice.engine == "torch"
    assert advice.fits[0].model == "shufflenetv2_050" and advice.fits[0].top1 == 50.0
    assert [f.model for f in advice.fits[1:]] == ["mobilenetv3_small_075", "tier1_poorest_ds"]  # by MACs
    assert all(fit.predicted_ms <= budget for fit in advice.fits)
    assert advice.skipped == (("shufflenetv2_050", 128),)  # tier1_poorest_ds fits at 128, 96 is never tried


@pytest.mark.parametrize("budget", [0.0, -2.0, math.nan, math.inf])
def test_a_budget_that_is_not_a_positive_number_is_a_clear_error(predictor, budget):
    with pytest.raises(ValueError, match=f"must be a positive number of milliseconds, got {budget}"):
        advise_budget(budget, predictor, CANDIDATES, SIDES)


def test_a_budget_no_network_meets_names_the_fastest(predictor):
    fastest = min(CANDIDATES, key=lambda name: expected_ms(name, 96))
    with pytest.raises(ValueError, match=f"no registered network fits 1e-06 ms on torch at 96-128 px; the fastest is "
                                         f"{fastest} at 96 px, {expected_ms(fastest, 96):.3g} ms"):
        advise_budget(1e-6, predictor, CANDIDATES, SIDES)


def test_bad_engine_sides_and_missing_presets_are_clear_errors(predictor, tmp_path):
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'; expected one of torch, onnxruntime"):
        LatencyPredictor("tensorrt", 1, tmp_path)
    with pytest.raises(ValueError, match="multiples of 32"):
        fitting_models(predictor, 1.0, CANDIDATES, (96, 100))
    empty = LatencyPredictor("torch", 1, tmp_path / "empty")
    with pytest.raises(ValueError, match="lacks layers of the tier presets tier1_poorest_ds @ 128 px.*"
                                         "python -m zoo.latency build --engine torch --threads 1 --models "
                                         "tier1_poorest_ds --res 128"):
        tier_ranges(empty)
    with pytest.raises(ValueError, match="none of the 2 networks on torch at 96-128 px is in the latency table"):
        fitting_models(empty, 1.0, CANDIDATES, SIDES)


def test_measured_fits_keep_their_order(monkeypatch):
    calls = []

    def fake_measure(engine, threads, models, res):
        calls.append((engine, threads, list(models), res))
        return NetworkTimes(tuple(float(len(name)) for name in models), None)

    monkeypatch.setattr(zoo.design.advise, "measure_networks", fake_measure)
    fits = [Fit("abc", 128, 1.0, 1), Fit("de", 96, 1.0, 1), Fit("fghi", 128, 1.0, 1), Fit("j", 96, 1.0, 1)]
    measured = measure_fits(fits, "onnxruntime", 2, top=3)
    assert [(f.model, f.measured_ms) for f in measured] == [("abc", 3.0), ("de", 2.0), ("fghi", 4.0)]
    assert calls == [("onnxruntime", 2, ["de"], 96), ("onnxruntime", 2, ["abc", "fghi"], 128)]
    with pytest.raises(ValueError, match="positive integer"):
        measure_fits(fits, "onnxruntime", 2, top=0)


# ---- the command line --------------------------------------------------------------------------------------------


def test_cli_prints_the_tier_and_the_fits_and_writes_a_model_config(table_dir, tmp_path, capsys):
    records = tmp_path / "imagenette.csv"
    with records.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "res", "epochs", "best_top1"])
        writer.writeheader()
        writer.writerow({"model": "shufflenetv2_050", "res": "128", "epochs": "5", "best_top1": "55.5"})
    budget = expected_ms(TIERS[1].preset_name, 160) * 1.01
    out = tmp_path / "tier.yaml"
    advise_main(["--budget-ms", str(budget), "--engine", "torch", "--threads", "1", "--cache-dir", str(table_dir),
                 "--res", "96", "128", "--models", "mobilenetv3_small*", "shufflenetv2_050", "--records", str(records),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"-> tier 2, {TIERS[1].note}" in printed and "tier2_poor_ir" in printed
    assert "   1 shufflenetv2_050" in printed and "55.50" in printed
    config = yaml.safe_load(out.read_text())
    assert config["defaults"] == ["zoo"] and set(config) == {"defaults", "name", "arch"}
    assert config["arch"] == TIERS[1].table()
    assert zoo.create_model(config["name"], arch=config["arch"], num_classes=10).total_stride == 32


@pytest.mark.parametrize("args, message", [
    (["--budget-ms", "-1", "--engine", "torch"], "error: the latency budget must be a positive number"),
    (["--budget-ms", "2", "--engine", "tensorrt"], "error: unknown engine 'tensorrt'; expected one of torch"),
    (["--budget-ms", "2", "--engine", "torch", "--res", "100"], "error: input sides must be positive multiples of 32"),
    (["--budget-ms", "2", "--engine", "torch", "--models", "nonet*"], "error: no registered model matches nonet"),
])
def test_cli_bad_input_exits_with_a_one_line_error(args, message):
    with pytest.raises(SystemExit, match=message):
        run_cli(lambda: advise_main(args))
