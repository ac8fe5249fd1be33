"""EfficientNet-Lite, TF "SAME" padding (zoo.layers.padding) and DropBlock / spatial dropout (zoo.layers.drop).

The registry's `references` give every lite variant its size test and a weight-equivalence test at
160 pixels (tests/test_models.py); here: the TF lite0 weights (no `references` entry), several and odd
input sizes, ONNX with dynamic height and width, and the layers themselves.
"""

import io
import math
from types import SimpleNamespace

import pytest
import timm
import torch
from timm.layers import create_conv2d, create_pool2d
from torch import nn

import zoo
from zoo.layers.conv import ConvNormAct
from zoo.layers.drop import DropBlock2d, add_feature_dropout, drop_block_layers, set_drop_block_progress
from zoo.layers.padding import Conv2dSame, MaxPool2dSame, needs_dynamic_pad, same_pad_amounts, use_padding
from zoo.models.fuse import fold_bn

from test_models import randomize

LITE = [f"efficientnet_lite{i}" for i in range(5)]
TF_OVERRIDES = {"pad": "same", "bn_eps": 1e-3}  # what timm's tf_efficientnet_lite* differ in
SIZES = [(224, 224), (225, 223), (97, 131)]


def _inputs(h: int, w: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))


def _close(out: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    return out.shape == expected.shape and torch.allclose(out, expected, rtol=rel, atol=rel * expected.abs().max().item())


# ---------------------------------------------------------------- padding
@pytest.mark.parametrize("kernel, stride, dilation", [(3, 2, 1), (5, 2, 1), (3, 2, 2), (3, 1, 1), (4, 1, 1), (7, 4, 1)])
def test_same_pad_amounts_are_tensorflows(kernel, stride, dilation):
    for size in range(1, 40):
        total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        assert same_pad_amounts(size, kernel, stride, dilation) == (total // 2, total - total // 2), size


def test_needs_dynamic_pad():
    assert needs_dynamic_pad(3, 2) and needs_dynamic_pad(4, 1) and needs_dynamic_pad(3, 2, 2)
    assert not needs_dynamic_pad(3, 1) and not needs_dynamic_pad(5, 1, 2) and not needs_dynamic_pad(1, 2)
    with pytest.raises(ValueError, match="smaller than its stride"):
        needs_dynamic_pad(3, 4)


@pytest.mark.parametrize("kernel, stride, dilation", [(3, 2, 1), (5, 2, 1), (3, 2, 2), (4, 2, 1), (2, 1, 1)])
def test_conv_and_max_pool_same_match_timm(kernel, stride, dilation):
    ref = create_conv2d(4, 6, kernel, stride=stride, dilation=dilation, padding="same")
    conv = Conv2dSame(4, 6, kernel, stride, dilation=dilation, bias=False)
    conv.load_state_dict(ref.state_dict())
    pool, ref_pool = MaxPool2dSame(kernel, stride), create_pool2d("max", kernel, stride=stride, padding="same")
    for h, w in [(224, 224), (225, 223), (7, 8), (9, 9)]:
        x = torch.randn(2, 4, h, w)
        assert torch.equal(conv(x), ref(x)), (h, w)
        assert torch.equal(pool(x), ref_pool(x)), (h, w)


def test_conv_norm_act_padding_mode():
    sym = ConvNormAct(8, 8, 3, 2)
    same = ConvNormAct(8, 8, 3, 2, padding="same")
    assert type(sym.conv) is nn.Conv2d and type(same.conv) is Conv2dSame and same.conv.padding == (0, 0)
    assert type(ConvNormAct(8, 8, 3, 1, padding="same").conv) is nn.Conv2d  # stride 1, odd k: SAME is symmetric
    assert list(sym.state_dict()) == list(same.state_dict())
    same.load_state_dict(sym.state_dict())
    sym.eval(), same.eval()
    x = torch.randn(1, 8, 15, 15)  # odd: SAME pads (1, 1) like symmetric
    assert torch.equal(sym(x), same(x))
    x = torch.randn(1, 8, 16, 16)  # even: SAME pads (0, 1), symmetric (1, 1)
    assert sym(x).shape == same(x).shape and not torch.allclose(sym(x), same(x))
    with pytest.raises(ValueError, match="padding must be one of"):
        ConvNormAct(8, 8, 3, padding="valid")


def test_use_padding_swaps_only_input_dependent_layers_and_keeps_weights():
    model = randomize(zoo.create_model("resnet18"))
    same = use_padding(zoo.create_model("resnet18", weights=model.state_dict()).eval(), "same")
    kinds = [type(m) for m in same.modules()]
    # resnet18: the 7x7 stem conv, the stem max-pool and the 3x3 convs of the 3 strided blocks
    assert kinds.count(Conv2dSame) == 4 and kinds.count(MaxPool2dSame) == 1
    assert list(model.state_dict()) == list(same.state_dict())
    with torch.no_grad():  # odd sizes all the way down (65, 33, 17, 9, 5): SAME pads like symmetric everywhere
        assert torch.equal(model(_inputs(65, 65)), same(_inputs(65, 65)))
        assert not torch.allclose(model(_inputs(64, 64)), same(_inputs(64, 64)))
    with pytest.raises(ValueError, match="pad must be one of"):
        use_padding(model, "reflect")


def test_default_padding_is_untouched():
    """pad is symmetric unless asked for: no SAME layer in a default model, the same layers as pad='symmetric'."""
    for name in ["mobilenetv2_100", "mobilenetv3_large_100", "resnet50d", "shufflenetv2_100", "ghostnet_100", *LITE]:
        model = zoo.create_model(name)
        assert not any(isinstance(m, (Conv2dSame, MaxPool2dSame, DropBlock2d, nn.Dropout2d)) for m in model.modules())
        assert repr(model) == repr(zoo.create_model(name, pad="symmetric"))
    with pytest.raises(ValueError, match="pad must be one of"):
        zoo.create_model("efficientnet_lite0", pad="SAME")


def test_pad_same_override_reaches_every_family():
    for name in ["mobilenetv3_small_100", "shufflenetv1_g3_100", "ghostnet_100", "resnet50d"]:
        model = zoo.create_model(name, pad="same").eval()
        assert any(isinstance(m, Conv2dSame) for m in model.modules()), name
        assert model.model_config["pad"] == "same"
        with torch.no_grad():
            assert model(_inputs(97, 131, 1)).shape == (1, 1000)


# ---------------------------------------------------------------- EfficientNet-Lite
def test_lite_variants_preprocessing_and_depths():
    expected = {  # res, crop_pct (res / (res + 32)), mean, depths
        "efficientnet_lite0": (224, 0.875, timm.data.IMAGENET_DEFAULT_MEAN, [1, 2, 2, 3, 3, 4, 1]),
        "efficientnet_lite1": (240, 0.882, (0.5,) * 3, [1, 3, 3, 4, 4, 5, 1]),
        "efficientnet_lite2": (260, 0.890, (0.5,) * 3, [1, 3, 3, 4, 4, 5, 1]),
        "efficientnet_lite3": (280, 0.897, (0.5,) * 3, [1, 3, 3, 5, 5, 6, 1]),
        "efficientnet_lite4": (300, 0.904, (0.5,) * 3, [1, 4, 4, 6, 6, 8, 1]),
    }
    for name, (res, crop, mean, depths) in expected.items():
        model = zoo.create_model(name)
        cfg = model.pretrained_cfg
        assert cfg["input_size"] == (3, res, res) and cfg["crop_pct"] == pytest.approx(crop, abs=1e-3), name
        assert cfg["crop_pct"] == pytest.approx(res / (res + 32), abs=5e-4) and cfg["interpolation"] == "bicubic"
        assert tuple(cfg["mean"]) == tuple(mean) and [len(s) for s in model.stages] == depths, name
        # the timm twin's depths (its decoder: ceil(repeats * depth multiplier), first and last stage fixed)
        assert [len(s) for s in timm.create_model(f"tf_{name}").blocks] == depths
        assert not any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
        assert model.stem[0].conv.out_channels == 32 and model.num_features == 1280  # fixed, never scaled


@pytest.mark.parametrize("ref_name, name, overrides", [
    ("efficientnet_lite0", "efficientnet_lite0", {}),
    ("tf_efficientnet_lite0", "efficientnet_lite0", TF_OVERRIDES),  # the TF lite0 weights: not a `references` entry
    ("tf_efficientnet_lite4", "efficientnet_lite4", {}),  # its reference overrides (pad same, eps 1e-3) apply
])
def test_timm_weights_give_the_same_outputs_at_any_size(ref_name, name, overrides):
    ref = randomize(timm.create_model(ref_name))
    model = zoo.create_model(name, weights=ref.state_dict(), weights_from="timm", **overrides).eval()
    for h, w in SIZES:
        x = _inputs(h, w)
        with torch.no_grad():
            assert _close(model(x), ref(x)), (h, w)
    if ref_name.startswith("tf_"):  # the padding matters: symmetric padding does not reproduce TF weights
        sym = zoo.create_model(name, weights=ref.state_dict(), weights_from="timm", pad="symmetric", bn_eps=1e-3).eval()
        with torch.no_grad():
            assert not _close(sym(_inputs(224, 224)), ref(_inputs(224, 224)), rel=1e-2)


def test_tf_lite_weights_survive_script_fx_compile_and_bn_folding():
    torch._dynamo.reset()
    ref = randomize(timm.create_model("tf_efficientnet_lite0"))
    model = zoo.create_model("efficientnet_lite0", weights=ref.state_dict(), weights_from="timm", **TF_OVERRIDES).eval()
    x = _inputs(97, 131)
    with torch.no_grad():
        expected = ref(x)
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        for variant in (torch.jit.script(model), torch.fx.symbolic_trace(model), compiled, fold_bn(model)):
            assert _close(variant(x), expected, rel=1e-4)
        channels_last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert _close(channels_last, expected, rel=1e-4)
    assert sum(isinstance(m, Conv2dSame) for m in fold_bn(model).modules()) == 5  # stem + 4 strided depthwise


@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_same_padding_dynamic_batch_and_size_matches_onnxruntime(opset):
    ort = pytest.importorskip("onnxruntime")
    model = randomize(zoo.create_model("efficientnet_lite0", pad="same", bn_eps=1e-3))
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        model, (torch.randn(1, 3, 96, 96),), buf, dynamo=False, opset_version=opset, input_names=["x"],
        output_names=["logits"], dynamic_axes={"x": axes, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for n, h, w in [(3, 96, 96), (2, 113, 97), (1, 160, 128)]:  # the traced size, odd sizes, a second even size
        x = _inputs(h, w, n)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == expected.shape
        assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max()), (n, h, w)


# ---------------------------------------------------------------- DropBlock / spatial dropout
def test_drop_block_placement():
    model = zoo.create_model("efficientnet_lite0", drop_block_rate=0.1, drop_spatial_rate=0.05)
    found = {name: m.block_size for name, m in model.named_modules() if isinstance(m, DropBlock2d)}
    # one per block of the stride-16 stages (3, 4) with 5x5 blocks and the stride-32 ones (5, 6) with 3x3
    expected = {f"stages.{s}.{b}.conv_dw.drop_block": 5 if s < 5 else 3 for s, n in [(3, 3), (4, 3), (5, 4), (6, 1)]
                for b in range(n)}
    assert found == expected
    assert list(model.stages[3][0].conv_dw._modules) == ["conv", "bn", "drop_block", "drop_spatial", "act"]
    assert sum(isinstance(m, nn.Dropout2d) for m in model.modules()) == len(expected)
    plain = zoo.create_model("efficientnet_lite0")
    assert list(model.state_dict()) == list(plain.state_dict())
    # ResNet: after the first 3x3 conv's BN of each block in the last two stages (timm's place)
    resnet = zoo.create_model("resnet50", drop_block_rate=0.1)
    names = [n for n, m in resnet.named_modules() if isinstance(m, DropBlock2d)]
    assert len(names) == 6 + 3 and all(n.startswith(("stages.2.", "stages.3.")) for n in names)


def test_drop_block_is_identity_in_eval_and_keeps_shapes_in_training():
    plain = randomize(zoo.create_model("efficientnet_lite0", num_classes=10))
    model = zoo.create_model("efficientnet_lite0", num_classes=10, drop_block_rate=0.2, drop_spatial_rate=0.1,
                             weights=plain.state_dict()).eval()
    x = _inputs(128, 160)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
        assert model.train()(x).shape == (2, 10)


def test_dropped_fraction_is_close_to_the_rate():
    model = zoo.create_model("efficientnet_lite0", drop_block_rate=0.1, drop_spatial_rate=0.2).train()
    layer = model.stages[3][0].conv_dw
    torch.manual_seed(0)
    x = torch.ones(64, 16, 28, 28)
    dropped = (layer.drop_block(x) == 0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.02)  # the paper's gamma (Eq. 1) targets the rate; overlaps lower it
    kept = layer.drop_block(x)
    assert kept.sum().item() == pytest.approx(x.sum().item(), rel=1e-3)  # kept units rescaled by the kept fraction
    channels = layer.drop_spatial(x).amax(dim=(2, 3))
    assert (channels == 0).float().mean().item() == pytest.approx(0.2, abs=0.02)  # whole channels


def test_drop_block_rate_is_validated():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"drop_block_rate must be a number in \[0, 1\)"):
            zoo.create_model("efficientnet_lite0", drop_block_rate=bad)
    with pytest.raises(ValueError, match="drop_spatial_rate must be in"):
        add_feature_dropout([nn.Identity()], drop_spatial_rate=2.0)


def test_drop_block_schedule_ramps_linearly_from_zero():
    model = zoo.create_model("efficientnet_lite0", drop_block_rate=0.1)
    layers = drop_block_layers(model)
    assert len(layers) == 11 and all(rate == 0.1 for _, rate in layers)
    for step, rate in [(0, 0.0), (25, 0.025), (50, 0.05), (100, 0.1), (150, 0.1)]:
        assert set_drop_block_progress(layers, step, 100) == pytest.approx(rate / 0.1)
        assert all(m.drop_prob == pytest.approx(rate) for m, _ in layers)


def test_training_module_schedules_drop_block():
    from zoo.training.module import ClassificationModule

    module = ClassificationModule(model={"name": "efficientnet_lite0", "drop_block_rate": 0.2}, num_classes=10)
    assert len(module.drop_blocks) == 11
    for step, rate in [(0, 0.0), (40, 0.04), (100, 0.1), (200, 0.2), (300, 0.2)]:
        module.trainer = SimpleNamespace(global_step=step, estimated_stepping_batches=200)
        module.on_train_batch_start(None, 0)
        assert all(m.drop_prob == pytest.approx(rate) for m in module.net.modules() if isinstance(m, DropBlock2d))
    assert ClassificationModule(model={"name": "efficientnet_lite0"}, num_classes=10).drop_blocks == []
