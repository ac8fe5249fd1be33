"""OpenVINO as a second CPU engine: IR parity per family, NNCF int8 end to end, the CSV rows, the latency
runners, and the message when the extra is not installed."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import zoo
from test_deploy import _randomize_bn
from zoo.deploy import (check_openvino, compile_openvino, count_openvino_ops, evaluate_openvino, example_input,
                        export_openvino, openvino_runner, quantize_openvino, reparameterize)
from zoo.models.registry import get_entry

# OpenVINO's runtime stays out of the main test process: the tests that load it run in a child (tests/conftest.py)
OPENVINO = pytest.mark.own_process("openvino", "nncf")

FIRST_OF_FAMILY: dict[str, str] = {}
for _name in zoo.list_models():
    FIRST_OF_FAMILY.setdefault(get_entry(_name).family, _name)

NOT_INSTALLED = r"OpenVINO is not installed: pip install 'zoo\[openvino\]'"


def _int8_convs(ops: dict[str, int]) -> int:
    return sum(n for op, n in ops.items() if op in ("Convolution u8", "Convolution i8"))


# ---- without the extra --------------------------------------------------------------------------------------------


def test_missing_engine_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs whether or not OpenVINO is installed: the import is made to fail."""
    from zoo.deploy.__main__ import main
    from zoo.deploy.openvino import require_library
    from zoo.latency.engines import engine_versions

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    model = zoo.create_model("mobilenetv1_025", num_classes=10)
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        export_openvino(model, tmp_path / "m.xml", res=32)
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        quantize_openvino(model, [torch.zeros(1, 3, 32, 32)], tmp_path, res=32, num_calib=1)
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        main(["export", "--engine", "openvino", "--model", "mobilenetv1_025", "--res", "32", "--out", str(tmp_path)])
    with pytest.raises(ImportError, match=NOT_INSTALLED):
        engine_versions("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"NNCF is not installed: pip install 'zoo\[openvino\]'"):
        require_library("nncf")
    assert not (tmp_path / "m.xml").exists()


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    """Checked before OpenVINO is loaded, so this runs here, with or without the extra."""
    model = zoo.create_model("mobilenetv1_025", num_classes=10)
    with pytest.raises(ValueError, match="preset must be one of performance, mixed"):
        quantize_openvino(model, [], tmp_path, preset="accuracy")
    with pytest.raises(ValueError, match="num_calib"):
        quantize_openvino(model, [], tmp_path, num_calib=0)
    for shape in [(1, 3, 32), (1, 3, 0, 32), (1, 3, 32.0, 32), (True, 3, 32, 32), 32]:
        with pytest.raises(ValueError, match=r"static_shape must be 4 positive ints \(N, C, H, W\)"):
            compile_openvino(tmp_path / "m.xml", static_shape=shape)
    assert "openvino" not in sys.modules or sys.modules["openvino"] is None


@OPENVINO
def test_bad_inputs_the_engine_sees_are_clear_errors(tmp_path: Path) -> None:
    model = zoo.create_model("mobilenetv1_025", num_classes=10)
    with pytest.raises(ValueError, match="yielded no images"):
        quantize_openvino(model, [], tmp_path, res=32)
    with pytest.raises(ValueError, match=r"ends in \.xml"):
        export_openvino(model, tmp_path / "m.onnx", res=32)


# ---- fp32 IR ------------------------------------------------------------------------------------------------------


@OPENVINO
@pytest.mark.parametrize("name", sorted(FIRST_OF_FAMILY.values()))
def test_openvino_export_parity(tmp_path: Path, name: str) -> None:
    """The deployed network's IR matches PyTorch at batch 1 and 3 (the batch axis is dynamic) to 1e-4 of the
    logits' scale (random BN statistics make some networks' logits large), as tests/test_models.py checks ONNX."""
    pytest.importorskip("openvino")
    model = _randomize_bn(zoo.create_model(name, num_classes=10))
    path = export_openvino(reparameterize(model), tmp_path / "model.xml", res=64)
    assert path.is_file() and path.with_suffix(".bin").is_file()
    with torch.no_grad():
        scale = max(1.0, model(example_input(model, 64, 3)).abs().max().item())
    assert check_openvino(model, path, res=64, atol=1e-4 * scale) <= 1e-4 * scale
    assert model.training is False


@OPENVINO
def test_static_shape_compile(tmp_path: Path) -> None:
    """A static batch-1 compile (how zoo times batch 1) computes what the dynamic-batch IR computes, on an input
    shape fixed at compile time; the model given is not reshaped, and a shape the IR cannot take is refused."""
    ov = pytest.importorskip("openvino")
    model = _randomize_bn(zoo.create_model("mobilenetv1_025", num_classes=10))
    path = export_openvino(reparameterize(model), tmp_path / "model.xml", res=32)
    dynamic = compile_openvino(path, threads=1)
    static = compile_openvino(path, threads=1, static_shape=(1, 3, 32, 32))
    assert dynamic.input(0).get_partial_shape().is_dynamic
    for shape in (static.input(0).get_partial_shape(), static.get_runtime_model().input(0).get_partial_shape()):
        assert shape.is_static and list(shape.to_shape()) == [1, 3, 32, 32]
    x = example_input(model, 32).numpy()
    np.testing.assert_allclose(openvino_runner(static)(x), openvino_runner(dynamic)(x), rtol=0, atol=1e-5)
    ir = ov.Core().read_model(str(path))
    assert compile_openvino(ir, threads=1, static_shape=[2, 3, 32, 32]).input(0).get_partial_shape().is_static
    assert ir.input().get_partial_shape().is_dynamic
    with pytest.raises(ValueError, match=r"static_shape \[1, 4, 32, 32\] does not fit the model's input shape"):
        compile_openvino(path, static_shape=(1, 4, 32, 32))


@OPENVINO
def test_parity_check_fails_on_another_model(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    model = _randomize_bn(zoo.create_model("mobilenetv1_025", num_classes=10))
    path = export_openvino(model, tmp_path / "model.xml", res=32)
    other = _randomize_bn(zoo.create_model("mobilenetv1_025", num_classes=10))
    with pytest.raises(RuntimeError, match="OpenVINO .*/PyTorch mismatch"):
        check_openvino(other, path, res=32)


# ---- int8 with NNCF -----------------------------------------------------------------------------------------------


@OPENVINO
def test_nncf_int8_mechanics(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    model = _randomize_bn(zoo.create_model("mobilenetv3_small_075", num_classes=10))
    g = torch.Generator().manual_seed(0)
    images = torch.randn(48, 3, 64, 64, generator=g)
    loader = DataLoader(TensorDataset(images, torch.randint(0, 10, (48,), generator=g)), batch_size=16)
    fp32_path, int8_path = quantize_openvino(model, loader, tmp_path, res=64, num_calib=32)
    assert fp32_path.is_file() and int8_path.is_file() and int8_path.with_suffix(".bin").is_file()
    assert _int8_convs(count_openvino_ops(int8_path)) > 0  # the CPU plugin runs int8 convolutions ...
    assert _int8_convs(count_openvino_ops(fp32_path)) == 0  # ... which the fp32 IR has none of
    report = evaluate_openvino(model, int8_path, loader, fp32_path, res=64, threads=1, latency_runs=3)
    assert report["images"] == 48
    assert report["argmax_agreement"] >= 0.75  # random weights and data: int8 still agrees with fp32 mostly
    assert report["latency_ms_openvino_int8"] > 0 and report["latency_ms_openvino_fp32"] > 0


@OPENVINO
def test_cli_on_embedded_images_and_the_int8_csv(tmp_path: Path) -> None:
    """`python -m zoo.deploy {export,quantize} --engine openvino` end to end on the embedded mini set; its row
    sits beside onnxruntime's in the same CSV and renders as a table of its own."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    pytest.importorskip("onnxruntime")
    from zoo.data import MINI_ROOT
    from zoo.deploy.__main__ import main
    from zoo.tools.report import int8_table

    common = ["--model", "mobilenetv1_025", "--num-classes", "10", "--res", "32", "--out", str(tmp_path)]
    exported = main(["export", "--engine", "openvino", *common])
    assert exported["path"].endswith("model_fp32.xml") and exported["max_abs_diff"] <= 1e-4
    table = tmp_path / "int8.csv"
    quantize = ["quantize", *common, "--data", str(MINI_ROOT), "--calib", "20", "--max-val", "24", "--threads", "1",
                "--csv", str(table)]
    report = main([*quantize, "--engine", "openvino"])
    assert Path(report["int8_path"]).suffix == ".xml" and report["images"] == 24
    assert 0.0 <= report["top1_int8"] <= 1.0 and _int8_convs(report["ops"]) > 0
    main(quantize)  # onnxruntime, the default engine: a row of its own
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["engine"], r["calibration"]) for r in rows] == [("openvino", "nncf performance"),
                                                                ("onnxruntime", "percentile 99.99")]
    assert rows[0]["val_images"] == "24" and float(rows[0]["engine_int8_bs1_ms"]) > 0
    assert "openvino" in rows[0]["machine"] and "--engine openvino" in rows[0]["command"]
    rendered = int8_table(tmp_path)
    assert rendered.count("| model (checkpoint) |") == 2
    assert "| openvino bs1 fp32 -> int8 (ms) |" in rendered and "| onnxruntime bs1 fp32 -> int8 (ms) |" in rendered
    assert "| mobilenetv1_025 (`None`) | nncf performance | 24 |" in rendered


# ---- latency runners ----------------------------------------------------------------------------------------------


@OPENVINO
@pytest.mark.parametrize("engine", ["openvino", "openvino-int8"])
def test_latency_runners_run_the_deployed_layer(tmp_path: Path, engine: str) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from zoo.latency.engines import engine_versions, make_runners

    layer = zoo.create_model("mobilenetv3_small_100").stages[1][0].eval()
    runs = make_runners(engine, reparameterize(layer), (16, 8, 8), 1, tmp_path, sessions=2)
    assert len(runs) == 2
    out = np.asarray(runs[0]()[0])
    assert out.shape == (1, 24, 4, 4)
    if engine == "openvino":
        x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
        assert abs(out - layer(x).detach().numpy()).max() < 1e-4
    assert {"torch", "onnx", "openvino"} <= set(engine_versions(engine))
    assert ("nncf" in engine_versions(engine)) == (engine == "openvino-int8")
