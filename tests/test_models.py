"""Every registered model: published sizes, weight equivalence with torchvision/timm, and the model contract."""

import io
from collections import OrderedDict
from functools import lru_cache

import pytest
import timm
import torch
import torchvision
from torch import nn

import zoo
import zoo.blocks
from zoo.models.registry import get_entry
from zoo.models.weights import convert_state_dict

ALL_MODELS = zoo.list_models()
# Every (source, reference model, zoo model) that the arch YAMLs' `references` name: each must load
# into the zoo model and give the same outputs.
REFERENCES = [
    (source, ref["model"], name) for name in ALL_MODELS for source, ref in sorted(get_entry(name).references.items())
]
# A model with a reference takes its size target from that model, built at test time (torchvision first).
LIVE_TARGETS = {
    name: next((source, refs[source]["model"]) for source in ("torchvision", "timm") if source in refs)
    for name in ALL_MODELS
    if (refs := get_entry(name).references)
}

# Models without a torchvision/timm twin: the published (params, MMACs at 224), None where nothing
# is published. MobileNetV1 below width 1.0: the paper's Table 6. ShuffleNetV1: the complexity of
# 1x for every g from the paper's Table 1, at 0.5x for g = 1, 2, 4 from its Table 2 (38 MFLOPs); params,
# and 0.5x / 1.5x / 2x for g = 3 and 8, from megvii's official release (ShuffleNet-Series README).
PAPER_TARGETS = {
    "mobilenetv1_025": (0.5e6, 41), "mobilenetv1_050": (1.3e6, 149), "mobilenetv1_075": (2.6e6, 325),
    "shufflenetv1_g1_100": (None, 143), "shufflenetv1_g2_100": (None, 140), "shufflenetv1_g4_100": (None, 133),
    "shufflenetv1_g1_050": (None, 38), "shufflenetv1_g2_050": (None, 38), "shufflenetv1_g4_050": (None, 38),
    "shufflenetv1_g3_050": (0.7e6, 38), "shufflenetv1_g3_100": (1.9e6, 138),
    "shufflenetv1_g3_150": (3.4e6, 292), "shufflenetv1_g3_200": (5.4e6, 524),
    "shufflenetv1_g8_050": (1.0e6, 40), "shufflenetv1_g8_100": (2.4e6, 138),
    "shufflenetv1_g8_150": (4.3e6, 290), "shufflenetv1_g8_200": (6.5e6, 522),
}
# Registered, but neither a reference nor a publication gives their size: ShuffleNetV1 1.5x / 2x
# with g = 1, 2, 4 are widths the paper's Sec. 4.1.1 rule yields, never tabulated.
NO_PUBLISHED_SIZE = {f"shufflenetv1_g{g}_{w}" for g in (1, 2, 4) for w in ("150", "200")}
# The design notes' five tier presets (zoo.design.tiers): generated tables, sized by their rules only.
TIER_PRESETS = {"tier1_poorest_ds", "tier2_poor_ir", "tier3_low_conv3x3", "tier4_middle_ir_se", "tier5_high_resnet_se"}


# one model per family table: the expensive checks (ONNX, compile, features) run on these
FAMILY_REPS = [
    "mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100", "shufflenetv1_g3_100",
    "shufflenetv2_100", "ghostnet_100", "resnet18", "resnet50d", "efficientnet_lite0", "mobilenetv4_conv_medium",
    "mobileone_s0", "repvgg_a0",
]


def randomize(model: nn.Module) -> nn.Module:
    """Random weights and BatchNorm statistics, so that a mis-mapped tensor changes the output."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
    return model.eval()


def test_registry_has_every_family_and_size():
    expected = (
        [f"mobilenetv1_{w}" for w in ("025", "050", "075", "100")]
        + [f"mobilenetv2_{w}" for w in ("035", "050", "075", "100", "140")]
        + [f"mobilenetv3_{s}_{w}" for s in ("large", "small") for w in ("075", "100")]
        + [f"shufflenetv1_g{g}_{w}" for g in (1, 2, 3, 4, 8) for w in ("050", "100", "150", "200")]
        + [f"shufflenetv2_{w}" for w in ("050", "100", "150", "200")]
        + [f"ghostnet_{w}" for w in ("050", "100", "130")]
        + [f"{p}resnet{d}{s}" for d in (18, 34, 50) for p, s in (("", ""), ("", "d"), ("se", ""))]
        + [f"efficientnet_lite{i}" for i in range(5)]
        + [f"mobilenetv4_conv_{s}" for s in ("small", "medium", "large")]
        + [f"mobileone_s{i}" for i in range(5)]
        + [f"repvgg_{v}" for v in ("a0", "a1", "b0")]
        + sorted(TIER_PRESETS)
    )
    assert sorted(expected) == ALL_MODELS
    assert zoo.list_models("ghostnet*") == ["ghostnet_050", "ghostnet_100", "ghostnet_130"]


def create_reference(source: str, ref_name: str) -> nn.Module:
    """A torchvision/timm model with random weights (never downloads)."""
    if source == "torchvision":
        return torchvision.models.get_model(ref_name, weights=None)
    return timm.create_model(ref_name, pretrained=False)


@lru_cache(maxsize=None)
def reference_size(source: str, ref_name: str) -> tuple[int, int]:
    """Params and MACs at 224 x 224 of the live reference model, counted like the zoo's."""
    ref = create_reference(source, ref_name)
    return zoo.count_params(ref), zoo.count_macs(ref, 224)


def test_every_model_has_params_and_macs_targets():
    """Each registered model takes its size target from exactly one place: a new model without one fails here."""
    places = {"reference": set(LIVE_TARGETS), "paper": set(PAPER_TARGETS), "unpublished": NO_PUBLISHED_SIZE,
              "design tiers": TIER_PRESETS}
    found = {name: [place for place, names in places.items() if name in names] for name in ALL_MODELS}
    assert {name: where for name, where in found.items() if len(where) != 1} == {}
    assert set().union(*places.values()) <= set(ALL_MODELS)


@pytest.mark.parametrize("name", sorted(LIVE_TARGETS))
def test_params_and_macs_match_reference(name):
    params, macs = reference_size(*LIVE_TARGETS[name])
    model = zoo.create_model(name)
    assert zoo.count_params(model) == pytest.approx(params, rel=0.005)
    assert zoo.count_macs(model, 224) == pytest.approx(macs, rel=0.005)


@pytest.mark.parametrize("name", sorted(PAPER_TARGETS))
def test_params_and_macs_match_paper(name):
    params, mmacs = PAPER_TARGETS[name]
    model = zoo.create_model(name)
    # papers print millions of params to one decimal: allow that rounding (0.47M prints as "0.5")
    if params is not None:
        assert zoo.count_params(model) == pytest.approx(params, rel=0.05, abs=0.05e6)
    assert zoo.count_macs(model, 224) / 1e6 == pytest.approx(mmacs, rel=0.05)


@pytest.mark.parametrize("source, ref_name, name", REFERENCES, ids=[f"{s}-{r}" for s, r, _ in REFERENCES])
def test_weights_from_reference_give_the_same_outputs(source, ref_name, name):
    ref = randomize(create_reference(source, ref_name))
    model = zoo.create_model(name, weights=ref.state_dict(), weights_from=source).eval()
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, out = ref(x), model(x)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_mismatched_reference_tensor_is_named():
    ref = torchvision.models.resnet34()
    with pytest.raises(ValueError, match="layer|cannot match|lacks|nothing to load"):
        zoo.create_model("resnet18", weights=ref.state_dict(), weights_from="torchvision")
    sd = torchvision.models.resnet18().state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    with pytest.raises(ValueError, match="layer2.0.conv1.weight"):
        zoo.create_model("resnet18", weights=sd, weights_from="torchvision")


def test_zoo_weights_round_trip_via_file(tmp_path):
    model = randomize(zoo.create_model("mobilenetv3_small_100", num_classes=10))
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    again = zoo.create_model("mobilenetv3_small_100", num_classes=10, weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), again(x))
    with pytest.raises(ValueError, match="missing|unexpected|size"):
        zoo.create_model("mobilenetv3_small_100", num_classes=10, weights={"foo": torch.zeros(1)})


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_contract(name):
    model = zoo.create_model(name, num_classes=7).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(torch.randn(2, 3, 160, 192))
        pooled = model.forward_head(feats, pre_logits=True)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert out.shape == (1, 7) and torch.isfinite(out).all()
    assert feats.shape == (2, model.num_features, 5, 6)
    assert pooled.shape == (2, model.head_hidden_size)
    assert torch.allclose(cl, out, atol=1e-4, rtol=1e-4)
    assert model.total_stride == 32 and [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.model_config["num_classes"] == 3
    rebuilt = zoo.create_model(**model.model_config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


# Scripting and tracing depend on the block classes, not on widths: one model per family table
# covers every block type and code path (scripting all 49 sizes would cost minutes of CI).
@pytest.mark.parametrize("name", FAMILY_REPS + ["seresnet50", "resnet34d"])
def test_scriptable_and_fx_traceable(name):
    model = zoo.create_model(name).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)(x)
        traced = torch.fx.symbolic_trace(model)(x)
    assert torch.allclose(scripted, expected, atol=1e-5) and torch.allclose(traced, expected, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", FAMILY_REPS)
def test_onnx_export_dynamic_batch_matches_onnxruntime(name, opset):
    ort = pytest.importorskip("onnxruntime")
    model = randomize(zoo.create_model(name))
    buf = io.BytesIO()
    torch.onnx.export(
        model, (torch.randn(1, 3, 96, 96),), buf, dynamo=False, opset_version=opset, input_names=["x"],
        output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"x": x.numpy()})[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_torch_compile_captures_the_whole_model(name):
    torch._dynamo.reset()
    model = zoo.create_model(name).eval()
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_features_only_returns_what_feature_info_says(name):
    backbone = zoo.create_model(name, features_only=True).eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        feats = backbone(x)
    assert [f["reduction"] for f in backbone.feature_info] == [2, 4, 8, 16, 32]
    for f, info in zip(feats, backbone.feature_info):
        assert f.shape == (1, info["num_chs"], 128 // info["reduction"], 160 // info["reduction"])
    picked = zoo.create_model(name, features_only=True, out_indices=(2, 4))
    assert [f["reduction"] for f in picked.feature_info] == [8, 32] and len(picked(x)) == 2


def test_features_only_serves_a_feature_pyramid():
    from torchvision.ops import FeaturePyramidNetwork

    backbone = zoo.create_model("mobilenetv3_large_100", features_only=True, out_indices=(2, 3, 4)).eval()
    fpn = FeaturePyramidNetwork([f["num_chs"] for f in backbone.feature_info], out_channels=64).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 224, 224))
        pyramid = fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
    assert [tuple(p.shape) for p in pyramid.values()] == [(1, 64, 28, 28), (1, 64, 14, 14), (1, 64, 7, 7)]


def test_features_only_weights_are_those_of_the_full_model():
    full = randomize(zoo.create_model("resnet18"))
    backbone = zoo.create_model("resnet18", features_only=True, weights=full.state_dict()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x)[-1], full.forward_features(x))


def test_overrides_change_the_network():
    base = zoo.create_model("mobilenetv3_large_100")
    narrow = zoo.create_model("mobilenetv3_large_100", width=0.5)
    assert zoo.count_params(narrow) < zoo.count_params(base)
    relu = zoo.create_model("mobilenetv3_large_100", act_layer="relu")
    assert not any(isinstance(m, nn.Hardswish) for m in relu.modules())
    no_se = zoo.create_model("mobilenetv3_large_100", se=False)
    assert not any(isinstance(m, zoo.layers.SqueezeExcite) for m in no_se.modules())
    with_se = zoo.create_model("mobilenetv2_100", se=True)
    assert any(isinstance(m, zoo.layers.SqueezeExcite) for m in with_se.modules())
    shallow = zoo.create_model("resnet18", depths=[1, 1, 1, 1])
    assert [len(s) for s in shallow.stages] == [1, 1, 1, 1]
    k7 = zoo.create_model("mobilenetv2_100", kernel_sizes=[7] * 7)
    assert k7.stages[3][0].conv_dw.conv.kernel_size == (7, 7)
    eps = zoo.create_model("ghostnet_100", bn_eps=1e-3, drop_rate=0.5, drop_path_rate=0.1, in_chans=1, num_classes=5)
    assert all(m.eps == 1e-3 for m in eps.modules() if isinstance(m, nn.BatchNorm2d))
    assert eps.head.dropout.p == 0.5 and eps(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    deep = zoo.create_model("resnet50d", stem_chs=48)  # the stem's last conv: what the first stage sees
    assert [r.conv.out_channels for r in deep.stem if hasattr(r, "conv")] == [32, 32, 48]
    assert deep.stages[0][0].convs[0].conv.in_channels == 48


def test_export_friendly_option_loads_the_same_weights():
    model = randomize(zoo.create_model("mobilenetv3_small_100"))
    friendly = zoo.create_model("mobilenetv3_small_100", export_friendly=True, weights=model.state_dict()).eval()
    assert not any(isinstance(m, (nn.Hardswish, nn.Hardsigmoid)) for m in friendly.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(friendly(x), model(x), atol=1e-5)


def test_a_network_defined_by_a_table_alone():
    arch = {
        "act": "hard_swish",
        "stem": [{"block": "conv", "out_chs": 16, "stride": 2}],
        "stages": [
            [{"block": "ds", "out_chs": 16}],
            [{"block": "ir", "exp_ratio": 4, "out_chs": 24, "stride": 2, "se_ratio": 0.25}],
            [{"block": "shufflev2", "out_chs": 48, "stride": 2, "repeats": 2}],
            [{"block": "ghost", "mid_chs": 96, "out_chs": 64, "stride": 2}],
            [{"block": "basic", "out_chs": 96, "stride": 2}],
        ],
        "head": {"hidden_chs": 256, "act": "hard_swish"},
    }
    model = zoo.create_model("my_net", arch=arch, num_classes=10)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert zoo.create_model(**model.model_config).model_config["arch"] == model.model_config["arch"]
    with pytest.raises(ValueError, match="unknown field"):
        zoo.create_model("typo", arch={**arch, "stem": [{"block": "conv", "out_chs": 16, "strid": 2}]})
    with pytest.raises(ValueError, match="unknown block type"):
        zoo.create_model("typo", arch={**arch, "stem": [{"block": "conv2d", "out_chs": 16}]})


def test_bad_input_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="closest: mobilenetv3_large_100"):
        zoo.create_model("mobilenetv3_large_10")
    with pytest.raises(ValueError, match="divisible by groups"):
        zoo.create_model("shufflenetv1_g3_100", groups=5)
    with pytest.raises(ValueError, match="width multiplier must be > 0"):
        zoo.create_model("mobilenetv2_100", width=0)
    with pytest.raises(TypeError, match="unknown argument"):
        zoo.create_model("mobilenetv2_100", widht=0.5)
    with pytest.raises(ValueError, match="one value per stage"):
        zoo.create_model("resnet18", depths=[2, 2])
    model = zoo.create_model("resnet18").eval()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3, 16, 64))


def test_convert_state_dict_reshapes_linear_to_1x1_conv():
    src = torchvision.models.mobilenet_v3_small().state_dict()
    model = zoo.create_model("mobilenetv3_small_100", bn_eps=1e-3)
    converted = convert_state_dict(src, model, "torchvision")
    assert converted["head.conv_hidden.weight"].shape == (1024, 576, 1, 1)


def test_channel_shuffle_exports_with_dynamic_batch_and_size():
    """torchvision #3158/#7686: a shuffle whose reshape loses the static channel count breaks the
    following channel split (ConstantChunk) on export. Here batch, height and width are all dynamic."""
    ort = pytest.importorskip("onnxruntime")
    unit = randomize(nn.Sequential(zoo.blocks.ShuffleV2Unit(48, 48), zoo.blocks.ShuffleV2Unit(48, 48)))
    buf = io.BytesIO()
    torch.onnx.export(
        unit, (torch.randn(1, 48, 8, 8),), buf, dynamo=False, opset_version=13, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(2, 48, 8, 8), (3, 48, 5, 7)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = unit(x).numpy()
        assert abs(session.run(None, {"x": x.numpy()})[0] - expected).max() < 1e-4
