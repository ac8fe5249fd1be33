"""The engine table of zoo.tools.bench (``--engines``/``--only-engines``): the fastest-engine choice on hand-made
figures, the table and CSV measured on a tiny model at 32 px, and OpenVINO's columns skipped where it is missing."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from zoo.tools import bench
from zoo.tools.bench import EngineRow, engines_markdown, fastest_engine

#: the columns docs/benchmark.md documents for bench_engines.csv
CSV_COLUMNS = ["model", "family", "engine", "batch", "res", "value", "unit", "repeats", "threads", "cpu", "torch",
               "onnxruntime", "openvino"]
TINY = ["--models", "mobilenetv1_025", "--res", "32", "--batch", "2", "--repeats", "1", "--inner", "1",
        "--threads", "1"]
NOT_INSTALLED = "openvino, openvino-int8 skipped: OpenVINO is not installed: pip install 'zoo[openvino]'"


def _row(model: str, engine: str, batch: int, value: float) -> EngineRow:
    return EngineRow(model, "family", engine, batch, 32, value, "ms" if batch == 1 else "img/s", 1, 1, "cpu", "t",
                     "o", "n/a")


def test_fastest_engine_is_least_ms_and_most_img_s() -> None:
    figures = {"torch": 4.0, "onnxruntime": 1.5, "onnxruntime-int8": 2.5, "openvino": 1.7}
    assert fastest_engine(figures, higher_is_better=False) == "onnxruntime"
    assert fastest_engine(figures, higher_is_better=True) == "torch"
    with pytest.raises(ValueError, match="no engine figures"):
        fastest_engine({}, higher_is_better=False)


def test_markdown_has_a_row_per_model_and_names_the_fastest_engines() -> None:
    rows = [_row("a", "torch", 1, 3.0), _row("a", "onnxruntime", 1, 1.0), _row("a", "torch", 32, 900.0),
            _row("a", "onnxruntime", 32, 300.0), _row("b", "torch", 1, 2.0), _row("b", "torch", 32, 50.0),
            _row("b", "onnxruntime", 32, 80.0)]
    header, rule, *body = engines_markdown(rows).splitlines()
    assert header == ("| model | family | bs1 ms torch | bs1 ms onnxruntime | bs32 img/s torch "
                      "| bs32 img/s onnxruntime | fastest bs1 | fastest bs32 |")
    assert rule.count("|") == header.count("|")
    assert body == ["| a | family | 3.00 | 1.00 | 900.00 | 300.00 | onnxruntime | torch |",
                    "| b | family | 2.00 | - | 50.00 | 80.00 | torch | onnxruntime |"]


def _printed_fastest(out: str, model: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"| {model} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][-2:]


def test_engine_table_without_openvino(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``import openvino`` is made to fail: its two engines are skipped with one line naming the extra, the
    other engines are measured at batch 1 and 2, and only bench_engines.csv is written."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)
    rows = bench.main(["--only-engines", *TINY, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("skipped") == 1 and NOT_INSTALLED in out
    with (tmp_path / "bench_engines.csv").open() as f:
        reader = csv.DictReader(f)
        table = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert not (tmp_path / "bench.csv").exists()
    assert len(rows) == len(table) == 6
    assert {(r["engine"], r["batch"], r["unit"]) for r in table} == {
        (engine, batch, unit) for engine in ("torch", "onnxruntime", "onnxruntime-int8")
        for batch, unit in (("1", "ms"), ("2", "img/s"))}
    assert all(r["model"] == "mobilenetv1_025" and r["family"] == "mobilenetv1" and r["res"] == "32"
               and r["openvino"] == "n/a" and float(r["value"]) > 0 for r in table)
    ms = {r["engine"]: float(r["value"]) for r in table if r["batch"] == "1"}
    img_s = {r["engine"]: float(r["value"]) for r in table if r["batch"] == "2"}
    assert _printed_fastest(out, "mobilenetv1_025") == [min(ms, key=ms.__getitem__), max(img_s, key=img_s.__getitem__)]


@pytest.mark.own_process("openvino", "nncf")
def test_engine_table_covers_every_engine(capsys: pytest.CaptureFixture[str]) -> None:
    """With OpenVINO and NNCF installed, all five engines get a figure at both batch sizes."""
    openvino = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    rows = bench.run_engines(["mobilenetv1_025"], repeats=1, threads=1, res=32, batch=2, inner=1, sessions=1)
    assert "skipped" not in capsys.readouterr().out
    assert sorted((r.engine, r.batch) for r in rows) == sorted((e, b) for e in bench.ENGINES for b in (1, 2))
    assert {r.openvino for r in rows} == {openvino.__version__}
    assert engines_markdown(rows).splitlines()[0].count("openvino") == 4


def test_bad_engine_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        bench.run_engines(["mobilenetv1_025"], engines=["tensorrt"])
    with pytest.raises(ValueError, match="unknown model 'mobilenetv9'"):
        bench.run_engines(["mobilenetv9"], engines=["torch"])
    with pytest.raises(ValueError, match="batch >= 1"):
        bench.run_engines(["mobilenetv1_025"], engines=["torch"], batch=0)
    with pytest.raises(SystemExit):
        bench.main(["--engines", "tensorrt", "--out", str(tmp_path)])
