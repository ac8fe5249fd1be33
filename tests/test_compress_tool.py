"""``python -m zoo.tools.compress``: the stages of one network measured on the same val set and machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from zoo.compress import prune_model, save_pruned_checkpoint
from zoo.data import MINI_ROOT
from zoo.models.checkpoint import write_zoo_fields
from zoo.tools import compress

RES = 32


def _base_ckpt(path: Path) -> Path:
    model = zoo.create_model("mobilenetv2_050", num_classes=10)
    checkpoint = {"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}
    write_zoo_fields(checkpoint, model, 10, {"train_res": RES, "val_res": RES}, has_ema=False, best_acc1=0.0)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("compress")
    base = _base_ckpt(tmp / "base.ckpt")
    model, _ = zoo.load_checkpoint(base)
    pruned = save_pruned_checkpoint(prune_model(model, 0.5, res=RES).eval(), tmp / "pruned.ckpt",
                                    meta={"train_res": RES, "val_res": RES})
    return [f"base={base}", f"pruned={pruned}"]


def test_measure_records_every_stage_against_the_base(stages: list[str], tmp_path: Path) -> None:
    csv_path = tmp_path / "compress.csv"
    args = ["measure", "--name", "mnv2", *sum((["--stage", s] for s in stages), []), "--data", str(MINI_ROOT),
            "--calib", "4", "--max-val", "8", "--repeats", "1", "--threads", "1", "--csv", str(csv_path)]
    compress.main(args)
    rows = zoo.measure.records.read_table(csv_path)
    assert [r["stage"] for r in rows] == ["base", "pruned"]
    base, pruned = rows
    assert base["macs_vs_base"] == "1.000" and all(base[f"{e}_vs_base"] == "1.000" for e in compress.ENGINES)
    assert float(pruned["macs_vs_base"]) == pytest.approx(0.5, abs=0.05)
    assert int(pruned["params"]) < int(base["params"])
    for r in rows:
        assert 0.0 <= float(r["top1_fp32"]) <= 100.0 and 0.0 <= float(r["top1_int8"]) <= 100.0
        assert all(float(r[f"{e}_bs1_ms"]) > 0 for e in compress.ENGINES)
        assert r["val_images"] == "8" and r["res"] == str(RES) and r["command"].startswith("python -m zoo.tools.compress")
    compress.main(args)  # measuring the same name again replaces its rows
    assert len(zoo.measure.records.read_table(csv_path)) == 2
    out = tmp_path / "compress.png"
    compress.main(["plot", "--csv", str(csv_path), "--out", str(out)])
    assert out.stat().st_size > 0


def test_measure_times_only_its_interleaved_round_and_restores_threads(
        stages: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-stage int8 evaluation measures top-1 only (the latencies come from one interleaved round), and
    torch's thread count is what it was before."""
    import zoo.deploy.int8

    evaluation_timings: list[int] = []

    def counted(fns: list, *args: object, **kwargs: object) -> list[float]:
        evaluation_timings.append(len(fns))
        return [1e-3] * len(fns)

    monkeypatch.setattr(zoo.deploy.int8, "median_seconds", counted)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rows = compress.measure("mnv2", compress.parse_stages(stages[:1]), MINI_ROOT, threads=1, calib=4, max_val=8,
                                repeats=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert evaluation_timings == []
    assert float(rows[0]["top1_int8"]) >= 0.0 and all(float(rows[0][f"{e}_bs1_ms"]) > 0 for e in compress.ENGINES)


def test_bad_stages_and_a_foreign_csv_are_refused(stages: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LABEL=CHECKPOINT"):
        compress.parse_stages(["base"])
    with pytest.raises(ValueError, match="given twice"):
        compress.parse_stages([stages[0], stages[0]])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        compress.parse_stages([f"base={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(ValueError, match="at least one"):
        compress.parse_stages([])
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="expected"):
        compress.record(foreign, [{c: "0" for c in compress.COLUMNS}])
    assert foreign.read_text() == "a,b\n1,2\n"
    with pytest.raises(FileNotFoundError, match="measure"):
        compress.main(["plot", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.png")])
