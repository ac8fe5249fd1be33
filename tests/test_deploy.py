"""Deployment helpers: BatchNorm folding, ONNX export parity, int8 quantization mechanics, bench CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.deploy import check_onnx, count_int8_ops, evaluate_int8, export_onnx, fold_bn, quantize_int8, reparameterize
from zoo.models.registry import get_entry


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, so folding is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize(
    "name", ["mobilenetv3_small_075", "shufflenetv2_050", "ghostnet_050", "resnet18d"],
)
def test_fold_bn_exact(name: str) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(zoo.create_model(name, num_classes=10))
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    # 1e-5 relative to the output scale (random BN statistics can make logits large)
    scale = max(1.0, ref.abs().max().item())
    assert torch.allclose(out, ref, atol=1e-5 * scale, rtol=1e-5), (out - ref).abs().max()


def test_fold_bn_torchvision_and_only_sequential_pairs() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = _randomize_bn(torchvision.models.mobilenet_v3_small(num_classes=10))
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-5)
    # a BN that does not follow a conv in a Sequential is kept
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)).eval()
    assert isinstance(fold_bn(model)[0], nn.BatchNorm2d)
    with pytest.raises(ValueError, match="nn.Module"):
        fold_bn("resnet18")  # type: ignore[arg-type]


def _first_of_each_family() -> list[str]:
    first: dict[str, str] = {}
    for name in zoo.list_models():
        first.setdefault(get_entry(name).family, name)
    return list(first.values())


@pytest.mark.parametrize("name", _first_of_each_family())
def test_fold_bn_folds_every_conv_bn_pair_of_every_family(name: str) -> None:
    """The BatchNorms fold_bn leaves are the identity branches of re-parameterizable blocks (no conv
    before them; reparameterize fuses them): none after a conv, MobileNetV4's head included."""
    model = _randomize_bn(zoo.create_model(name, num_classes=10))
    folded = fold_bn(model)
    kept = {path.rpartition(".")[0] for path, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert all(callable(getattr(folded.get_submodule(p), "reparameterize", None)) for p in kept), sorted(kept)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in reparameterize(model).modules())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    scale = max(1.0, ref.abs().max().item())
    assert torch.allclose(out, ref, atol=1e-4 * scale, rtol=1e-4), (out - ref).abs().max()


class _ConvThenNorm(nn.Module):
    """A conv and a BatchNorm called one after the other by ``forward`` (not a Sequential); with
    ``reuse`` the conv's output is also added to the result, so the pair must not be folded."""

    def __init__(self, reuse: bool) -> None:
        super().__init__()
        self.reuse = reuse
        self.conv, self.norm = nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.norm(y) + y if self.reuse else torch.relu(self.norm(y))


class _Untraceable(nn.Module):
    """A conv -> BatchNorm Sequential in a forward that branches on data, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.seq(x)
        return y if y.sum() > 0 else -y


@pytest.mark.parametrize("reuse", [False, True])
def test_fold_bn_follows_the_forward(reuse: bool) -> None:
    model = _randomize_bn(_ConvThenNorm(reuse))
    folded = fold_bn(model)
    assert isinstance(folded.norm, nn.BatchNorm2d) is reuse
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-5)
    assert isinstance(fold_bn(_Untraceable()).seq[1], nn.Identity)  # untraceable: the Sequential pairs still fold


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", ["mobilenetv3_small_075", "shufflenetv2_050"])
def test_onnx_export_parity(tmp_path: Path, name: str, opset: int) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _randomize_bn(zoo.create_model(name, num_classes=10))
    path = export_onnx(model, tmp_path / f"{name}.onnx", res=64, opset=opset, dynamic_batch=True)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == opset
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    diff = check_onnx(model, path, res=64, atol=1e-4)  # batch 1 and 3
    assert diff <= 1e-4
    assert model.training is False


def test_onnx_folded_and_bad_opset(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = _randomize_bn(zoo.create_model("mobilenetv1_025", num_classes=10))
    path = export_onnx(fold_bn(model), tmp_path / "m.onnx", res=64, opset=17)
    assert check_onnx(model, path, res=64) <= 1e-4
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "bad.onnx", opset=9)


def test_quantize_int8_mechanics(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _randomize_bn(zoo.create_model("mobilenetv3_small_075", num_classes=10))
    g = torch.Generator().manual_seed(0)
    images = torch.randn(48, 3, 64, 64, generator=g)
    labels = torch.randint(0, 10, (48,), generator=g)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    fp32_path, int8_path = quantize_int8(model, loader, tmp_path, res=64, num_calib=32)
    assert fp32_path.is_file() and int8_path.is_file()
    ops = count_int8_ops(int8_path)
    assert ops.get("QLinearConv", 0) > 0  # real int8 convolutions
    assert ops.get("QLinearMul", 0) > 0 and ops.get("QLinearAdd", 0) > 0  # SE gating / hard-swish product, residuals
    assert "Conv" not in ops  # no conv left in fp32
    report = evaluate_int8(model, int8_path, loader, fp32_path, res=64, threads=1, latency_runs=3)
    assert report["images"] == 48
    # random weights, random data: int8 must still agree with fp32 on most predictions
    assert report["argmax_agreement"] >= 0.75
    assert report["latency_ms_ort_int8"] > 0 and report["latency_ms_ort_fp32"] > 0


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantize_int8_uneven_batches(tmp_path: Path, method: str) -> None:
    """A smaller last calibration batch (28 = 12 + 12 + 4) must not break the histogram calibrators."""
    pytest.importorskip("onnxruntime")
    model = _randomize_bn(zoo.create_model("mobilenetv1_025", num_classes=10))
    images = torch.randn(28, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(images, torch.zeros(28, dtype=torch.long)), batch_size=12)
    _, int8_path = quantize_int8(model, loader, tmp_path, res=32, num_calib=28, calibrate_method=method)
    assert count_int8_ops(int8_path).get("QLinearConv", 0) > 0


def test_quantize_int8_bad_args(tmp_path: Path) -> None:
    model = zoo.create_model("mobilenetv1_025", num_classes=10)
    with pytest.raises(ValueError, match="calibrate_method"):
        quantize_int8(model, [], tmp_path, calibrate_method="kl")
    with pytest.raises(ValueError, match="num_calib"):
        quantize_int8(model, [], tmp_path, num_calib=0)
    with pytest.raises(ValueError, match="percentile"):
        quantize_int8(model, [], tmp_path, percentile=100.5)


def test_deploy_cli_quantize_on_embedded_images(tmp_path: Path) -> None:
    """`python -m zoo.deploy quantize` end to end on the embedded mini set (correctness only, tiny sizes)."""
    pytest.importorskip("onnxruntime")
    from zoo.data import MINI_ROOT
    from zoo.deploy.__main__ import main

    table = tmp_path / "int8.csv"
    argv = ["quantize", "--model", "mobilenetv1_025", "--num-classes", "10", "--res", "32", "--data", str(MINI_ROOT),
            "--calib", "20", "--max-val", "24", "--threads", "1", "--out", str(tmp_path), "--csv", str(table)]
    report = main(argv)
    assert Path(report["int8_path"]).is_file()
    assert report["images"] == 24 and 0.0 <= report["top1_int8"] <= 1.0
    assert report["ops"].get("QLinearConv", 0) > 0
    main(argv)  # the same model, run and calibration again: its row is replaced ...
    main(argv + ["--method", "minmax"])  # ... another calibration adds a row
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["calibration"] for r in rows] == ["percentile 99.99", "minmax"]
    assert rows[0]["model"] == "mobilenetv1_025" and rows[0]["val_images"] == "24"
    assert rows[0]["command"].startswith("python -m zoo.deploy quantize --model mobilenetv1_025")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="has columns"):
        main(argv[:-1] + [str(other)])
    assert other.read_text() == "a,b\n1,2\n"  # a foreign CSV is left as it was
    with pytest.raises(ValueError, match="train/<class>"):
        main(["quantize", "--model", "mobilenetv1_025", "--data", str(tmp_path), "--out", str(tmp_path)])
