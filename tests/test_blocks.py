"""Blocks: shapes, the papers' cost formulas, shortcut rules, error messages and keyword signatures."""

import pytest
import torch
from torch import nn

import zoo
from zoo.blocks import (
    BasicBlock, Bottleneck, DepthwiseSeparable, GhostBottleneck, GhostModule, InvertedResidual, ShuffleV1Unit,
    ShuffleV2Unit,
)
from zoo.layers import HardSigmoidPrimitive, HardSwishPrimitive, SqueezeExcite, get_act_layer
from zoo.models.arch import BlockRow


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def test_depthwise_separable_worked_example():
    """MobileNetV1 (Howard et al. 2017, Sec. 3.1): 3 -> 4 channels with a 3x3 kernel: 108 weights standard,
    27 + 12 = 39 separable."""
    standard = nn.Conv2d(3, 4, 3, bias=False)
    separable = DepthwiseSeparable(3, 4, kernel_size=3)
    assert standard.weight.numel() == 108
    assert separable.conv_dw.conv.weight.numel() == 27 and separable.conv_pw.conv.weight.numel() == 12
    assert conv_weights(separable) == 39
    assert separable(torch.randn(1, 3, 5, 5)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("in_chs, out_chs, stride, skip", [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_inverted_residual_shortcut_rule(in_chs, out_chs, stride, skip):
    m = InvertedResidual(in_chs, out_chs, stride=stride, exp_ratio=6, se_ratio=0.25)
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
    first = ShuffleV1Unit(24, 240, stride=2, groups=3, pw_groups=1)
    assert first.conv_pw.conv.groups == 1 and first.conv_pwl.conv.groups == 3
    assert first(torch.randn(1, 24, 16, 16)).shape == (1, 240, 8, 8)
    unit = ShuffleV1Unit(240, 240, stride=1, groups=3)
    assert unit.conv_pw.conv.groups == 3
    assert unit(torch.randn(1, 240, 8, 8)).shape == (1, 240, 8, 8)


def test_shufflenet_v1_group_constraint_is_named():
    with pytest.raises(ValueError, match="divisible by groups"):
        ShuffleV1Unit(240, 240, stride=1, groups=7)
    with pytest.raises(ValueError, match="pw_groups"):
        ShuffleV1Unit(24, 240, stride=2, groups=3, pw_groups=0)


def test_shufflenet_v1_table_ungroups_only_the_first_unit_of_stage_2():
    """Zhang et al. 2018, Sec. 3.3: the row field ``first_pw_groups`` of the Stage 2 row, not builder state."""
    model = zoo.create_model("shufflenetv1_g3_100")
    groups = [[unit.conv_pw.conv.groups for unit in stage] for stage in model.stages]
    assert groups[0] == [1, 3, 3, 3] and set(groups[1]) == set(groups[2]) == {3}
    with pytest.raises(ValueError, match="first_pw_groups"):
        BlockRow(block="ir", out_chs=16, first_pw_groups=1)


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
    gb = GhostBottleneck(24, 40, stride=2, kernel_size=5, mid_chs=72, se_ratio=0.25)
    assert not gb.has_skip and gb(torch.randn(1, 24, 16, 16)).shape == (1, 40, 8, 8)
    assert gb.ghost1.out_chs == 72 and gb.ghost2.out_chs == 40
    assert gb.se.conv_reduce.out_channels == 20  # make_divisible(72 / 4, 4)
    assert GhostBottleneck(16, 16, mid_chs=16).has_skip


@pytest.mark.parametrize("cls, out_chs", [(BasicBlock, 128), (Bottleneck, 512)])
@pytest.mark.parametrize("avg_down", [False, True])
def test_resnet_blocks(cls, out_chs, avg_down):
    m = cls(64, out_chs, stride=2, se_ratio=1 / 16, avg_down=avg_down)
    assert m(torch.randn(1, 64, 16, 16)).shape == (1, out_chs, 8, 8)
    assert isinstance(m.se, SqueezeExcite)
    has_pool = isinstance(m.shortcut, nn.Sequential) and isinstance(m.shortcut[0], nn.AvgPool2d)
    assert has_pool is avg_down


def _acts(m: nn.Module) -> set[type]:
    """The hard_* activations in ``m``, fused ops or primitive forms (SE's inner ReLU is left out)."""
    hard = (nn.Hardswish, nn.Hardsigmoid, HardSwishPrimitive, HardSigmoidPrimitive)
    return {type(a) for a in m.modules() if isinstance(a, hard)}


@pytest.mark.parametrize("make", [
    lambda act, gate: DepthwiseSeparable(16, 24, act_layer=act, se_ratio=0.25, se_gate=gate),
    lambda act, gate: InvertedResidual(16, 24, act_layer=act, se_ratio=0.25, se_gate=gate),
    lambda act, gate: GhostBottleneck(16, 24, stride=2, mid_chs=48, act_layer=act, se_ratio=0.25, se_gate=gate),
], ids=["ds", "ir", "ghost"])
def test_blocks_take_activation_names_or_classes(make):
    """A name and its class build the same block; export-friendly classes pass straight through."""
    by_name, by_class = make("hard_swish", "hard_sigmoid"), make(nn.Hardswish, nn.Hardsigmoid)
    assert repr(by_name) == repr(by_class) and _acts(by_name) == {nn.Hardswish, nn.Hardsigmoid}
    friendly = make(get_act_layer("hard_swish", True), get_act_layer("hard_sigmoid", True))
    assert _acts(friendly) == {HardSwishPrimitive, HardSigmoidPrimitive}
    assert [k for k, _ in friendly.state_dict().items()] == [k for k, _ in by_name.state_dict().items()]
    x = torch.randn(2, 16, 8, 8)
    friendly.load_state_dict(by_name.state_dict())
    assert torch.allclose(friendly.eval()(x), by_name.eval()(x), atol=1e-5)


def test_block_activations_are_in_place_from_names_and_classes():
    for act in ("relu6", nn.ReLU6):
        m = InvertedResidual(16, 16, act_layer=act)
        assert m.conv_pw.act.inplace and m.conv_dw.act.inplace
    assert ShuffleV1Unit(24, 24, groups=3, act_layer=nn.ReLU).act.inplace


def test_blocks_take_options_by_keyword_only():
    with pytest.raises(TypeError):
        InvertedResidual(16, 24, 1, 3, 6.0)  # exp_ratio is keyword-only
    with pytest.raises(TypeError):
        ShuffleV1Unit(24, 240, 2, 3)  # groups is keyword-only
