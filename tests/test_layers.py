"""Layers: rounding, activations, conv layers, squeeze-excite, channel shuffle (blocks: tests/test_blocks.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers import (
    ChannelShuffle, ConvNormAct, ConvTransposeNormAct, DeformConvNormAct, HardSigmoidPrimitive, HardSwishPrimitive,
    SpatialSeparableConv, SqueezeExcite, act_names, channel_shuffle, create_act, get_act_layer, make_divisible,
)


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("value, divisor, expected", [(32, 8, 32), (36, 8, 40), (12, 8, 16), (18, 8, 24), (4, 8, 8), (20.8, 4, 20)])
def test_make_divisible(value, divisor, expected):
    out = make_divisible(value, divisor)
    assert out == expected and out % divisor == 0 and out >= 0.9 * value


# Every activation name and the torch.nn.functional op it must compute (nn.PReLU starts at slope 0.25).
ACT_REFERENCES = {
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "hard_sigmoid": F.hardsigmoid,
    "hard_swish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "swish": F.silu,
    "silu": F.silu,
    "mish": F.mish,
    "prelu": lambda x: F.prelu(x, torch.tensor([0.25])),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "identity": lambda x: x,
}


def test_every_activation_name_has_a_reference():
    assert sorted(ACT_REFERENCES) == act_names()


@pytest.mark.parametrize("name", sorted(ACT_REFERENCES))
def test_activation_matches_its_functional_reference(name):
    """Each name computes its torch.nn.functional op (hard_swish built as SiLU would fail here)."""
    x = torch.linspace(-6, 6, 49)  # steps of 0.25: covers the kinks of relu6/hard_* at -3, 0, 3 and 6
    expected = ACT_REFERENCES[name](x.clone())
    with torch.no_grad():
        for act in (create_act(name), create_act(name, inplace=False), create_act(get_act_layer(name))):
            torch.testing.assert_close(act(x.clone()), expected, rtol=0, atol=1e-6)
        friendly = get_act_layer(name, export_friendly=True)()
        torch.testing.assert_close(friendly(x.clone()), expected, rtol=0, atol=1e-6)


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="hard_swish"):
        create_act("hardswishh")


def test_export_friendly_activations_match_torch():
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(HardSwishPrimitive()(x), F.hardswish(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(HardSigmoidPrimitive()(x), F.hardsigmoid(x), rtol=0, atol=1e-6)
    assert get_act_layer("hard_swish", export_friendly=True) is HardSwishPrimitive
    assert get_act_layer("hard_sigmoid", export_friendly=True) is HardSigmoidPrimitive
    assert get_act_layer("relu6", export_friendly=True) is nn.ReLU6  # only the hard_* ops have a primitive form
    assert isinstance(create_act(get_act_layer("hard_swish", export_friendly=True)), HardSwishPrimitive)


def test_create_act_is_in_place_where_the_class_allows_it():
    for act in ("relu", nn.ReLU, "hard_swish", nn.Hardswish, "leaky_relu"):
        assert create_act(act).inplace and not create_act(act, inplace=False).inplace
    for act in ("sigmoid", "gelu", "prelu", HardSwishPrimitive, None):
        assert not getattr(create_act(act), "inplace", False)  # no inplace argument: built without one
    assert isinstance(create_act(None), nn.Identity)


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

