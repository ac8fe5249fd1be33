"""Hard-swish / hard-sigmoid networks in int8: the primitive activation forms and the graph they quantize to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.layers import HardSigmoidPrimitive, HardSwishPrimitive
from zoo.models.fuse import reparameterize, to_primitive_activations


def _types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_to_primitive_activations_keeps_outputs_and_the_original() -> None:
    torch.manual_seed(0)
    model = reparameterize(zoo.create_model("mobilenetv3_small_075", num_classes=10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = to_primitive_activations(model)
    assert {nn.Hardswish, nn.Hardsigmoid} <= _types(model)  # the original keeps its modules
    assert not {nn.Hardswish, nn.Hardsigmoid} & _types(converted)
    assert {HardSwishPrimitive, HardSigmoidPrimitive} <= _types(converted)
    assert converted.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), converted(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="nn.Module"):
        to_primitive_activations("mobilenetv3_small_100")  # type: ignore[arg-type]


def _quantized_ops(model: nn.Module, out_dir: Path, primitive_activations: bool) -> dict[str, int]:
    from zoo.deploy.int8 import count_int8_ops, quantize_int8

    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(images, torch.zeros(4, dtype=torch.long)), batch_size=2)
    _, int8_path = quantize_int8(model, loader, out_dir, res=32, num_calib=4, calibrate_method="minmax",
                                 primitive_activations=primitive_activations)
    return count_int8_ops(int8_path)


def test_hard_swish_network_quantizes_end_to_end(tmp_path: Path) -> None:
    """By default a MobileNetV3 runs int8 from the input's quantize to the logits' dequantize; the old
    form (``primitive_activations=False``) leaves every hard-sigmoid in fp32 between a DQ/Q pair."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = zoo.create_model("mobilenetv3_small_075", num_classes=10).eval()
    ops = _quantized_ops(model, tmp_path / "primitive", primitive_activations=True)
    assert not {"HardSigmoid", "HardSwish", "Div", "Clip", "Add", "Mul"} & set(ops), ops
    assert ops["DequantizeLinear"] == 1 and ops["QuantizeLinear"] == 1, ops
    assert ops["QLinearMul"] > 0 and ops["QLinearAdd"] > 0
    fused = _quantized_ops(model, tmp_path / "fused", primitive_activations=False)
    assert fused["HardSigmoid"] > 0 and fused["DequantizeLinear"] == fused["HardSigmoid"] + 1, fused
    assert any(isinstance(m, nn.Hardswish) for m in model.modules())  # quantize_int8 left the model as it was


def test_constant_products_fold_into_scales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hard-sigmoid's ``* 1/6`` leaves the int8 graph as a scale change: one QLinearMul less per
    hard-sigmoid, still one DQ/Q pair, outputs equal to the unfolded graph's up to int8 rounding."""
    import shutil

    import numpy as np
    import onnxruntime as ort

    import zoo.deploy.int8 as int8

    torch.manual_seed(0)
    model = zoo.create_model("mobilenetv3_small_075", num_classes=10).eval()
    hard_sigmoids = sum(isinstance(m, (nn.Hardswish, nn.Hardsigmoid)) for m in model.modules())
    monkeypatch.setattr(int8, "fold_constant_muls", lambda path: 0)  # quantize_int8 without its last step
    _quantized_ops(model, tmp_path / "q", primitive_activations=True)
    monkeypatch.undo()
    unfolded, folded = tmp_path / "q" / "model_int8.onnx", tmp_path / "folded.onnx"
    shutil.copy(unfolded, folded)
    assert int8.fold_constant_muls(folded) == hard_sigmoids
    assert int8.fold_constant_muls(folded) == 0  # nothing left to fold
    before, after = int8.count_int8_ops(unfolded), int8.count_int8_ops(folded)
    assert before["QLinearMul"] - after["QLinearMul"] == hard_sigmoids, (before, after)
    assert after["DequantizeLinear"] == 1 and after["QuantizeLinear"] == 1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)).numpy()
    ref, out = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
                for p in (unfolded, folded))
    assert np.abs(out - ref).max() <= 0.1 * np.abs(ref).max()
