"""MobileNetV4 (Qin et al. 2024): the Universal Inverted Bottleneck's four forms, the fused inverted
residual, the table rows and head that build them, and the three conv models (sizes, timm weights,
features, export)."""


import pytest
import timm
import torch
from torch import nn

import zoo
from zoo.blocks import FusedInvertedResidual, UniversalInvertedResidual
from zoo.layers import ConvNormAct, LayerScale2d
from zoo.models.arch import BlockRow, HeadSpec, apply_overrides, parse_arch
from zoo.models.registry import get_entry

from test_models import randomize

MNV4 = ["mobilenetv4_conv_small", "mobilenetv4_conv_medium", "mobilenetv4_conv_large"]
# timm 1.0's mobilenetv4_conv_* at 224 x 224, 1000 classes: params, MACs (zoo.count_macs counts them alike)
TIMM_SIZES = {
    "mobilenetv4_conv_small": (3_774_024, 186_005_568),
    "mobilenetv4_conv_medium": (9_715_512, 827_649_984),
    "mobilenetv4_conv_large": (32_590_864, 2_171_341_312),
}


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


# --- the block ---------------------------------------------------------------------------------------

# (dw_start, dw_mid) -> the paper's name (Fig. 4)
UIB_FORMS = {(0, 3): "IB", (3, 0): "ConvNext", (3, 5): "ExtraDW", (0, 0): "FFN"}


@pytest.mark.parametrize("start, mid", list(UIB_FORMS), ids=list(UIB_FORMS.values()))
def test_uib_forms_have_the_convs_of_fig4(start, mid):
    m = UniversalInvertedResidual(16, 16, kernel_size=mid, start_kernel_size=start, exp_ratio=4)
    assert isinstance(m.conv_dw_start, ConvNormAct) == bool(start)
    assert isinstance(m.conv_dw, ConvNormAct) == bool(mid)
    assert isinstance(m.conv_pw, ConvNormAct) and isinstance(m.conv_pwl, ConvNormAct)  # always expand and project
    if start:
        assert m.conv_dw_start.conv.kernel_size == (start, start) and m.conv_dw_start.conv.groups == 16
        assert not hasattr(m.conv_dw_start, "act")  # the extra depthwise conv is linear
    if mid:
        assert m.conv_dw.conv.kernel_size == (mid, mid) and m.conv_dw.conv.groups == 64
        assert hasattr(m.conv_dw, "act")
    assert not hasattr(m.conv_pwl, "act")  # linear bottleneck
    # weights: k1^2 * in + in * mid + k2^2 * mid + mid * out
    assert conv_weights(m) == start**2 * 16 + 16 * 64 + mid**2 * 64 + 64 * 16
    assert m.has_skip and isinstance(m.layer_scale, nn.Identity)
    assert m(torch.randn(2, 16, 9, 9)).shape == (2, 16, 9, 9)


@pytest.mark.parametrize("start, mid, strided", [(0, 3, "conv_dw"), (3, 0, "conv_dw_start"), (5, 3, "conv_dw")])
def test_uib_stride_goes_to_the_middle_dw_else_the_start_one(start, mid, strided):
    m = UniversalInvertedResidual(16, 24, stride=2, kernel_size=mid, start_kernel_size=start, exp_ratio=3)
    strides = {n: c.conv.stride for n, c in m.named_children() if isinstance(c, ConvNormAct)}
    assert strides.pop(strided) == (2, 2) and set(strides.values()) == {(1, 1)}
    assert not m.has_skip
    assert m(torch.randn(1, 16, 10, 14)).shape == (1, 24, 5, 7)


def test_uib_checks_its_arguments():
    with pytest.raises(ValueError, match="FFN.*cannot downsample"):
        UniversalInvertedResidual(16, 16, stride=2, kernel_size=0, start_kernel_size=0)
    with pytest.raises(ValueError, match="start_kernel_size must be 0"):
        UniversalInvertedResidual(16, 16, start_kernel_size=4)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        UniversalInvertedResidual(16, 16, stride=3)


@pytest.mark.parametrize("in_chs, out_chs, stride, skip", [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_uib_shortcut_rule(in_chs, out_chs, stride, skip):
    m = UniversalInvertedResidual(in_chs, out_chs, stride=stride, kernel_size=3, start_kernel_size=3)
    assert m.has_skip is skip
    assert m(torch.randn(2, in_chs, 8, 8)).shape == (2, out_chs, 8 // stride, 8 // stride)


def test_uib_layer_scale_scales_the_residual_branch_only():
    m = UniversalInvertedResidual(8, 8, kernel_size=3, start_kernel_size=3, layer_scale_init=1e-5).eval()
    assert isinstance(m.layer_scale, LayerScale2d) and list(m.state_dict())[-1] == "layer_scale.gamma"
    assert torch.equal(m.layer_scale.gamma, torch.full((8,), 1e-5))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        branch = m.conv_pwl(m.conv_dw(m.conv_pw(m.conv_dw_start(x))))
        assert torch.allclose(m(x), x + 1e-5 * branch, atol=1e-7)
        m.layer_scale.gamma.zero_()
        assert torch.equal(m(x), x)  # a zero scale leaves the identity


def test_uib_drop_path_on_the_residual_branch():
    m = UniversalInvertedResidual(16, 16, kernel_size=3, drop_path_rate=0.5).train()
    x = torch.randn(64, 16, 4, 4)
    residual = m(x) - x
    dropped = (residual.flatten(1).abs().sum(1) == 0).sum().item()
    assert 0 < dropped < 64
    assert isinstance(UniversalInvertedResidual(16, 24, drop_path_rate=0.5).drop_path, nn.Identity)  # no skip, no drop


def test_fused_inverted_residual():
    m = FusedInvertedResidual(32, 48, stride=2, kernel_size=3, exp_ratio=4)
    assert m.conv_exp.conv.kernel_size == (3, 3) and m.conv_exp.conv.groups == 1 and m.conv_exp.conv.stride == (2, 2)
    assert m.conv_exp.conv.out_channels == 128 and not hasattr(m.conv_pwl, "act")
    assert conv_weights(m) == 9 * 32 * 128 + 128 * 48  # a full kxk expansion, then the 1x1 projection
    assert not m.has_skip and m(torch.randn(1, 32, 16, 16)).shape == (1, 48, 8, 8)
    same = FusedInvertedResidual(24, 24, exp_ratio=2, drop_path_rate=0.5)
    assert same.has_skip and same(torch.randn(2, 24, 8, 8)).shape == (2, 24, 8, 8)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        FusedInvertedResidual(8, 8, stride=4)


# --- rows and head -----------------------------------------------------------------------------------

def test_uib_rows_are_validated():
    assert BlockRow(block="uib", out_chs=8, dw_start=5, dw_mid=0, stride=2).dw_start == 5
    with pytest.raises(ValueError, match="uib rows only"):
        BlockRow(block="ir", out_chs=8, dw_start=3)
    with pytest.raises(ValueError, match="dw_mid must be 0"):
        BlockRow(block="uib", out_chs=8, dw_mid=4)
    with pytest.raises(ValueError, match="not kernel"):
        BlockRow(block="uib", out_chs=8, kernel=5)
    with pytest.raises(ValueError, match="cannot downsample"):
        BlockRow(block="uib", out_chs=8, stride=2)
    with pytest.raises(ValueError, match="no squeeze-excite"):
        BlockRow(block="fused_ir", out_chs=8, se_ratio=0.25)
    with pytest.raises(ValueError, match="dw_strat"):
        parse_arch({"stem": [{"block": "conv", "out_chs": 8}], "stages": [[{"block": "uib", "out_chs": 8, "dw_strat": 3}]]})
    with pytest.raises(ValueError, match="needs hidden_chs"):
        HeadSpec(norm=True)


def test_kernel_sizes_override_sets_the_depthwise_kernels_a_uib_row_has():
    arch = parse_arch(get_entry("mobilenetv4_conv_small").table)
    rows = apply_overrides(arch, kernel_sizes=[3, 3, 7, 7]).stages[2]
    assert [(r.dw_start, r.dw_mid, r.kernel) for r in rows] == [(7, 7, 3), (0, 7, 3), (7, 0, 3)]


def test_head_norm_builds_a_bias_free_conv_and_batchnorm():
    head = zoo.create_model("mobilenetv4_conv_small").head
    assert head.conv_hidden.bias is None and isinstance(head.norm, nn.BatchNorm2d) and head.norm.num_features == 1280
    v3 = zoo.create_model("mobilenetv3_large_100")  # heads without norm keep their biased conv and state_dict
    assert v3.head.conv_hidden.bias is not None and isinstance(v3.head.norm, nn.Identity)
    assert not any(k.startswith("head.norm") for k in v3.state_dict())


# --- the models --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MNV4)
def test_timm_weights_give_the_same_outputs_and_features(name):
    ref = randomize(timm.create_model(name))
    sd = ref.state_dict()
    model = zoo.create_model(name, weights=sd, weights_from="timm").eval()
    untrained = zoo.create_model(name).eval()
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, out = ref(x), model(x)
        assert not torch.allclose(untrained(x), expected, rtol=1e-3, atol=1e-3)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    # features: timm taps the 960-channel conv at stride 32, the zoo the last stage before it
    ref_feats = randomize(timm.create_model(name, features_only=True))
    ref_feats.load_state_dict({k: v for k, v in sd.items() if k in ref_feats.state_dict()})
    backbone = zoo.create_model(name, features_only=True, weights=sd, weights_from="timm").eval()
    with torch.no_grad():
        got, want = backbone(x), ref_feats.eval()(x)
    for g, w in zip(got[:4], want[:4]):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-5 * w.abs().max().item())


@pytest.mark.parametrize("name, chs", [
    ("mobilenetv4_conv_small", [32, 32, 64, 96, 128]),
    ("mobilenetv4_conv_medium", [32, 48, 80, 160, 256]),
    ("mobilenetv4_conv_large", [24, 48, 96, 192, 512]),
])
def test_features_only_gives_five_levels(name, chs):
    backbone = zoo.create_model(name, features_only=True).eval()
    assert [f["reduction"] for f in backbone.feature_info] == [2, 4, 8, 16, 32]
    assert [f["num_chs"] for f in backbone.feature_info] == chs
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // r, 96 // r) for c, r in zip(chs, (2, 4, 8, 16, 32))]


def test_pretrained_cfg_follows_timm_default_weights():
    cfgs = {n: zoo.create_model(n).pretrained_cfg for n in MNV4}
    assert {n: (c["input_size"], c["interpolation"], c["crop_pct"]) for n, c in cfgs.items()} == {
        "mobilenetv4_conv_small": ((3, 224, 224), "bicubic", 0.875),
        "mobilenetv4_conv_medium": ((3, 256, 256), "bicubic", 0.95),
        "mobilenetv4_conv_large": ((3, 384, 384), "bicubic", 0.95),
    }


# medium covers every block type (conv, fused_ir, the four uib forms) and the normed head
