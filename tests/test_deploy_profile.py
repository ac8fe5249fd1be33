"""``python -m zoo.deploy profile``: time per op type from onnxruntime's profiler and OpenVINO's performance counters,
on a tiny model at 32 px with a few runs; the errors for an unknown engine and a missing OpenVINO."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from torch import nn

import zoo
from zoo.deploy import export_onnx, export_openvino, reparameterize
from zoo.deploy.__main__ import main
from zoo.deploy.profile import (OpTime, format_comparison, format_profile, op_category, profile_model,
                                profile_onnxruntime, profile_openvino)

MODEL, RES = "mobilenetv1_025", 32
TINY_RUN = ["--model", MODEL, "--num-classes", "10", "--res", str(RES), "--threads", "1", "--runs", "2"]
NOT_INSTALLED = r"OpenVINO is not installed: pip install 'zoo\[openvino\]'"


def _model() -> nn.Module:
    return zoo.create_model(MODEL, num_classes=10).eval()


def _num_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def _check_profile(ops: list[OpTime]) -> None:
    """Shares of a positive total that sum to one, slowest op type first, every type with its nodes."""
    assert ops and all(op.ms >= 0 and op.nodes >= 1 for op in ops)
    assert sum(op.ms for op in ops) > 0
    assert sum(op.share for op in ops) == pytest.approx(1.0)
    assert [op.ms for op in ops] == sorted((op.ms for op in ops), reverse=True)


def _table_row(text: str, label: str) -> list[str]:
    """The cells after the first one of the markdown row starting with ``| label |``."""
    row = re.search(rf"^\| {re.escape(label)} \|(.+)\|$", text, re.M)
    assert row is not None, f"no row {label!r} in\n{text}"
    return [cell.strip() for cell in row.group(1).split("|")]


# ---- onnxruntime ---------------------------------------------------------------------------------------------------


def test_onnxruntime_profile_counts_every_conv_once(tmp_path: Path) -> None:
    model = _model()
    path = export_onnx(reparameterize(model), tmp_path / "m.onnx", res=RES)
    ops = profile_onnxruntime(path, RES, threads=1, runs=3, warmup=1)
    _check_profile(ops)
    by_type = {op.op_type: op for op in ops}
    assert by_type["Conv"].nodes == _num_convs(model)  # nodes of one inference, not of all runs
    assert all(op.kernel == "" and op.name == op.op_type for op in ops)


def test_onnxruntime_int8_profile_runs_int8_convs(tmp_path: Path) -> None:
    model = _model()
    ops = profile_model(model, "onnxruntime", tmp_path, res=RES, threads=1, runs=2, int8=True, num_calib=2)
    _check_profile(ops)
    by_type = {op.op_type: op for op in ops}
    assert by_type["QLinearConv"].nodes == _num_convs(model)
    assert "Conv" not in by_type
    assert (tmp_path / "model_int8.onnx").is_file()


def test_profile_cli_prints_a_table_sorted_by_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    profiles = main(["profile", *TINY_RUN])
    printed = capsys.readouterr().out
    assert list(profiles) == ["onnxruntime"]
    ops = profiles["onnxruntime"]
    assert format_profile(ops) in printed
    assert _table_row(printed, "Conv")[-1] == str(_num_convs(_model()))
    total = _table_row(printed, "**total**")
    assert float(total[0].strip("*")) == pytest.approx(sum(op.ms for op in ops), abs=1e-3)
    assert list(tmp_path.iterdir()) == []  # without --out the model files go to a temporary folder
    main(["profile", *TINY_RUN, "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "onnxruntime" / "model_fp32.onnx").is_file()


# ---- bad input -------------------------------------------------------------------------------------------------------


def test_unknown_engine_and_bad_counts_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="engine must be one of onnxruntime, openvino, got 'tensorrt'"):
        profile_model(_model(), "tensorrt", tmp_path, res=RES)
    with pytest.raises(SystemExit):
        main(["profile", "--engine", "tensorrt", *TINY_RUN])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runs must be >= 1"):
        profile_onnxruntime(tmp_path / "m.onnx", RES, runs=0)
    with pytest.raises(ValueError, match="num_calib must be >= 1"):
        profile_model(_model(), "onnxruntime", tmp_path, res=RES, int8=True, num_calib=0)
    assert not any(tmp_path.iterdir())


def test_missing_openvino_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs whether or not OpenVINO is installed: the import is made to fail."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        profile_openvino(tmp_path / "m.xml", RES)
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        main(["profile", "--engine", "openvino", *TINY_RUN])


# ---- op categories ---------------------------------------------------------------------------------------------------


def test_comparison_sums_each_engine_by_op_category() -> None:
    assert {op_category(op) for op in ("Conv", "FusedConv", "QLinearConv", "Convolution", "GroupConvolution")} == {
        "convolution"}
    assert op_category("FullyConnected") == op_category("Gemm") == "fully connected"
    assert op_category("NoSuchOp") == "other"
    profiles = {
        "onnxruntime": [OpTime("FusedConv", "", 2.0, 0.5, 3), OpTime("Conv", "", 1.0, 0.25, 2),
                        OpTime("NoSuchOp", "", 1.0, 0.25, 1)],
        "openvino": [OpTime("Convolution", "jit_avx2_1x1_I8", 1.5, 0.75, 4), OpTime("Reorder", "ref", 0.5, 0.25, 1)],
    }
    table = format_comparison(profiles)
    assert _table_row(table, "convolution") == ["3.000", "1.500"]
    assert _table_row(table, "layout, copy") == ["0.000", "0.500"]
    assert _table_row(table, "other") == ["1.000", "0.000"]
    assert _table_row(table, "**total**") == ["**4.000**", "**2.000**"]
    assert "pooling" not in table
    assert _table_row(format_profile(profiles["openvino"]), "Convolution (jit_avx2_1x1_I8)") == ["1.500", "75.0%", "4"]


# ---- OpenVINO (each in its own process, tests/conftest.py) -----------------------------------------------------------


@pytest.mark.own_process("openvino")
def test_openvino_profile_lists_its_convolution_kernels(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    path = export_openvino(reparameterize(_model()), tmp_path / "m.xml", res=RES)
    ops = profile_openvino(path, RES, threads=1, runs=3, warmup=1)
    _check_profile(ops)
    convs = [op for op in ops if op_category(op.op_type) == "convolution"]
    assert {op.op_type for op in convs} >= {"Convolution"}
    assert all(op.kernel and "f32" in op.kernel.lower() for op in convs)


@pytest.mark.own_process("openvino", "nncf")
def test_profile_cli_compares_the_int8_engines(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    profiles = main(["profile", "--compare", "--int8", "--calib", "2", *TINY_RUN])
    printed = capsys.readouterr().out
    assert list(profiles) == ["onnxruntime", "openvino"]
    for ops in profiles.values():
        _check_profile(ops)
        assert format_profile(ops) in printed
    assert "QLinearConv" in {op.op_type for op in profiles["onnxruntime"]}
    assert any(re.search(r"[iu]8", op.kernel, re.I) for op in profiles["openvino"] if op.op_type == "Convolution")
    assert all(float(ms) > 0 for ms in _table_row(printed, "convolution"))
