"""Blocks and layers: shapes, the papers' cost formulas, shortcut rules and error messages."""

import pytest
import torch
from torch import nn

from zoo.blocks import (
    BasicBlock, Bottleneck, DepthwiseSeparable, GhostBottleneck, GhostModule, InvertedResidual, ShuffleV1Unit,
    ShuffleV2Unit,
)
from zoo.layers import (
    ChannelShuffle, ConvNormAct, ConvTransposeNormAct, DeformConvNormAct, HardSigmoidPrimitive, HardSwishPrimitive,
    SpatialSeparableConv, SqueezeExcite, act_names, channel_shuffle, create_act, make_divisible,
)


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("value, divisor, expected", [(32, 8, 32), (36, 8, 40), (12, 8, 16), (18, 8, 24), (4, 8, 8), (20.8, 4, 20)])
def test_make_divisible(value, divisor, expected):
    out = make_divisible(value, divisor)
    assert out == expected and out % divisor == 0 and out >= 0.9 * value


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "hard_sigmoid", "hard_swish", "sigmoid", "swish", "silu",
                                  "mish", "prelu", "elu", "selu"])
def test_activation_factory(name):
    act = create_act(name)
    x = torch.linspace(-5, 5, 21)
    y = act(x.clone())
    assert y.shape == x.shape and not torch.equal(y, x)
    assert name in act_names()


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="hard_swish"):
        create_act("hardswishh")


def test_export_friendly_activations_match_torch():
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(HardSwishPrimitive()(x), nn.Hardswish()(x), atol=1e-6)
    assert torch.allclose(HardSigmoidPrimitive()(x), nn.Hardsigmoid()(x), atol=1e-6)
    assert isinstance(create_act("hard_swish", export_friendly=True), HardSwishPrimitive)


@pytest.mark.parametrize("kwargs, out_hw", [
    (dict(kernel_size=3, stride=1), 16),
    (dict(kernel_size=3, stride=2), 8),
    (dict(kernel_size=3, groups=4), 16),
    (dict(kernel_size=3, dilation=2), 16),
    (dict(kernel_size=5, stride=2, dilation=2), 8),
])
def test_conv_norm_act_keeps_same_padding(kwargs, out_hw):
    m = ConvNormAct(8, 16, **kwargs)
    assert m(torch.randn(2, 8, 16, 16)).shape == (2, 16, out_hw, out_hw)
    assert m.conv.bias is None and isinstance(m.bn, nn.BatchNorm2d)


def test_conv_without_norm_has_bias_and_grouped_needs_divisible_channels():
    assert ConvNormAct(8, 8, norm_layer=None).conv.bias is not None
    with pytest.raises(ValueError, match="divisible by groups"):
        ConvNormAct(8, 10, groups=4)


def test_depthwise_separable_worked_example():
    """Seed article 002: 3 -> 4 channels with a 3x3 kernel: 108 weights standard, 27 + 12 = 39 separable."""
    standard = nn.Conv2d(3, 4, 3, bias=False)
    separable = DepthwiseSeparable(3, 4, kernel_size=3)
    assert standard.weight.numel() == 108
    assert separable.conv_dw.conv.weight.numel() == 27 and separable.conv_pw.conv.weight.numel() == 12
    assert conv_weights(separable) == 39
    assert separable(torch.randn(1, 3, 5, 5)).shape == (1, 4, 5, 5)


def test_spatial_separable_conv():
    m = SpatialSeparableConv(4, 8, kernel_size=3, stride=2)
    assert m(torch.randn(1, 4, 10, 10)).shape == (1, 8, 5, 5)
    assert conv_weights(m) == 4 * 8 * 3 + 8 * 8 * 3


@pytest.mark.parametrize("kernel_size, stride", [(4, 2), (3, 2), (2, 2), (3, 1)])
def test_transposed_conv_upsamples_by_stride(kernel_size, stride):
    m = ConvTransposeNormAct(8, 4, kernel_size, stride)
    assert m(torch.randn(1, 8, 7, 9)).shape == (1, 4, 7 * stride, 9 * stride)


def test_deformable_conv_macs_are_counted():
    from zoo.measure.complexity import count_macs

    m = DeformConvNormAct(8, 16, 3)
    offset, deform = 8 * 9 * 18 * 16 * 16, 8 * 9 * 16 * 16 * 16
    assert count_macs(m, 16, in_chans=8) == offset + deform


def test_deformable_conv_starts_as_plain_conv():
    m = DeformConvNormAct(4, 6, 3, act_layer=None, norm_layer=None).eval()
    x = torch.randn(1, 4, 8, 8)
    plain = nn.functional.conv2d(x, m.conv.weight, m.conv.bias, padding=1)
    assert torch.allclose(m(x), plain, atol=1e-5)


def test_squeeze_excite_widths_and_gate():
    se = SqueezeExcite(72, rd_ratio=0.25, rd_divisor=8, gate_layer="hard_sigmoid")
    assert se.conv_reduce.out_channels == 24 and isinstance(se.gate, nn.Hardsigmoid)
    x = torch.randn(2, 72, 5, 5)
    assert se(x).shape == x.shape
    assert SqueezeExcite(256, rd_ratio=1 / 16).conv_reduce.out_channels == 16
    with pytest.raises(ValueError, match="rd_ratio"):
        SqueezeExcite(16, rd_ratio=0)


def test_channel_shuffle_on_tiny_tensor():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups of 3: [0 1 | 2 3 | 4 5] -> take one channel from each group in turn
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert torch.equal(ChannelShuffle(3)(x), channel_shuffle(x, 3))
    # shuffling with g then with C/g groups is the identity
    assert torch.equal(channel_shuffle(channel_shuffle(x, 3), 2), x)


def test_channel_shuffle_keeps_channels_last_and_matches_its_export_form():
    x = torch.randn(2, 12, 5, 7).contiguous(memory_format=torch.channels_last)
    out = channel_shuffle(x, 3)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the following convs stay channels_last
    assert torch.equal(out, x.unflatten(1, (3, -1)).transpose(1, 2).flatten(1, 2))  # the form ONNX export traces


@pytest.mark.parametrize("in_chs, out_chs, stride, skip", [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_inverted_residual_shortcut_rule(in_chs, out_chs, stride, skip):
    m = InvertedResidual(in_chs, out_chs, stride, exp_ratio=6, se_ratio=0.25)
    assert m.has_skip is skip
    assert m(torch.randn(2, in_chs, 8, 8)).shape == (2, out_chs, 8 // stride, 8 // stride)
    assert m.conv_pw.conv.out_channels == 96 and isinstance(m.se, SqueezeExcite)
    assert not hasattr(m.conv_pwl, "act")  # linear bottleneck


def test_inverted_residual_without_expansion_and_with_drop_path():
    m = InvertedResidual(16, 16, exp_ratio=1, drop_path_rate=0.5)
    assert isinstance(m.conv_pw, nn.Identity)
    m.train()
    x = torch.randn(64, 16, 4, 4)
    residual = m(x) - x  # some rows of the residual branch are dropped
    dropped = (residual.flatten(1).abs().sum(1) == 0).sum().item()
    assert 0 < dropped < 64


def test_shufflenet_v1_units():
    first = ShuffleV1Unit(24, 240, stride=2, groups=3, first_ungrouped=True)
    assert first.conv_pw.conv.groups == 1 and first.conv_pwl.conv.groups == 3
    assert first(torch.randn(1, 24, 16, 16)).shape == (1, 240, 8, 8)
    unit = ShuffleV1Unit(240, 240, stride=1, groups=3)
    assert unit.conv_pw.conv.groups == 3
    assert unit(torch.randn(1, 240, 8, 8)).shape == (1, 240, 8, 8)


def test_shufflenet_v1_group_constraint_is_named():
    with pytest.raises(ValueError, match="divisible by groups"):
        ShuffleV1Unit(240, 240, stride=1, groups=7)


def test_shufflenet_v2_units():
    down = ShuffleV2Unit(24, 116, stride=2)
    assert down(torch.randn(1, 24, 16, 16)).shape == (1, 116, 8, 8)
    unit = ShuffleV2Unit(116, 116)
    assert isinstance(unit.branch_proj, nn.Identity)
    x = torch.randn(1, 116, 8, 8)
    y = unit(x)
    # the untouched half lands on the even channels after the 2-group shuffle
    assert torch.equal(y[:, 0::2], x[:, :58])
    with pytest.raises(ValueError, match="even"):
        ShuffleV2Unit(24, 115, stride=2)


def test_ghost_module_and_bottleneck():
    gm = GhostModule(16, 20)
    assert gm.primary_conv.conv.out_channels == 10 and gm(torch.randn(1, 16, 8, 8)).shape == (1, 20, 8, 8)
    odd = GhostModule(16, 21)
    assert odd(torch.randn(1, 16, 8, 8)).shape == (1, 21, 8, 8)
    gb = GhostBottleneck(24, 72, 40, stride=2, kernel_size=5, se_ratio=0.25)
    assert not gb.has_skip and gb(torch.randn(1, 24, 16, 16)).shape == (1, 40, 8, 8)
    assert gb.se.conv_reduce.out_channels == 20  # make_divisible(72 / 4, 4)
    assert GhostBottleneck(16, 16, 16).has_skip


@pytest.mark.parametrize("cls, out_chs", [(BasicBlock, 128), (Bottleneck, 512)])
@pytest.mark.parametrize("avg_down", [False, True])
def test_resnet_blocks(cls, out_chs, avg_down):
    m = cls(64, out_chs, stride=2, se_ratio=1 / 16, avg_down=avg_down)
    assert m(torch.randn(1, 64, 16, 16)).shape == (1, out_chs, 8, 8)
    assert isinstance(m.se, SqueezeExcite)
    has_pool = isinstance(m.shortcut, nn.Sequential) and isinstance(m.shortcut[0], nn.AvgPool2d)
    assert has_pool is avg_down
