"""Structural re-parameterization: RepVGG and MobileOne blocks, ``zoo.deploy.reparameterize``, and what
uses it (deployed sizes against timm's fused models, state_dict forms, ONNX export, the profiler)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.blocks import MobileOneBlock, RepVGGBlock
from zoo.deploy import export_onnx, fold_bn, ort_session, reparameterize
from zoo.measure.profiler import complexity
from zoo.models.weights import convert_state_dict

REP_MODELS = zoo.list_models("mobileone*") + zoo.list_models("repvgg*")
REP_BLOCKS = (RepVGGBlock, MobileOneBlock)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine terms, so that every branch's fusion shows in the output.

    The gammas are the initial ones times U(0.5, 1.5): activations stay O(1) through these deep plain
    networks, so a float32 comparison measures the fusion and not the network's own float32
    sensitivity (with gammas drawn around 1, MobileOne-S4's train form alone moves by 6e-3 between
    float32 and float64).
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.mul_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
    return model.eval()


def assert_close(out: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal to ``rel`` of the reference output's scale."""
    err = (out - ref).abs().max().item()
    assert err <= rel * ref.abs().max().item(), f"max abs diff {err:.3g}, output scale {ref.abs().max().item():.3g}"


BLOCK_CASES = {
    "repvgg_identity": (lambda: RepVGGBlock(16, 16), 16, True),
    "repvgg_stride2_widen": (lambda: RepVGGBlock(16, 32, stride=2), 16, False),
    "repvgg_grouped_dilated_se": (lambda: RepVGGBlock(16, 16, groups=4, dilation=2, se_ratio=0.25), 16, True),
    "repvgg_5x5": (lambda: RepVGGBlock(8, 8, kernel_size=5), 8, True),
    "mobileone_dw_k4": (lambda: MobileOneBlock(16, 16, groups=16, num_branches=4), 16, True),
    "mobileone_dw_stride2": (lambda: MobileOneBlock(16, 16, stride=2, groups=16, num_branches=2), 16, False),
    "mobileone_pw_se": (lambda: MobileOneBlock(16, 16, kernel_size=1, num_branches=3, se_ratio=0.25), 16, True),
    "mobileone_pw_widen": (lambda: MobileOneBlock(16, 24, kernel_size=1, num_branches=4), 16, False),
    "mobileone_dense_3x3": (lambda: MobileOneBlock(3, 16, stride=2), 3, False),
}


@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_block_fuses_into_one_conv(case):
    make, in_chs, skip = BLOCK_CASES[case]
    block = randomize(make())
    assert block.has_skip is skip and (block.identity is not None) is skip and not block.deployed
    x = torch.randn(2, in_chs, 9, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        out = block(x)
        weight = block.reparam_conv.weight.clone()
        block.reparameterize()  # a second call is a no-op
    assert_close(out, ref)
    assert block.deployed and not block.has_skip and torch.equal(block.reparam_conv.weight, weight)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m is not block.reparam_conv]
    assert all(m.kernel_size == (1, 1) for m in convs)  # only SE's 1x1 convs are left besides the fused one
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert {k.split(".")[0] for k in block.state_dict()} <= {"reparam_conv", "se"}


def test_blocks_script_and_trace_in_both_forms():
    for block in (randomize(MobileOneBlock(8, 8, groups=8, num_branches=3, se_ratio=0.25)), randomize(RepVGGBlock(8, 8))):
        x = torch.randn(1, 8, 8, 8)
        for _ in range(2):  # train form, then deployed form
            with torch.no_grad():
                expected = block(x)
                assert torch.allclose(torch.jit.script(block)(x), expected, atol=1e-6)
                assert torch.allclose(torch.fx.symbolic_trace(block)(x), expected, atol=1e-6)
            block.reparameterize()


def test_block_options_are_checked_and_drop_path_hits_the_branches_only():
    with pytest.raises(ValueError, match="num_branches"):
        MobileOneBlock(8, 8, num_branches=0)
    with pytest.raises(ValueError, match="odd"):
        RepVGGBlock(8, 8, kernel_size=2)
    with pytest.raises(ValueError, match="stride"):
        RepVGGBlock(8, 8, stride=3)
    gn = RepVGGBlock(8, 8, norm_layer=lambda c: nn.GroupNorm(2, c)).eval()
    with pytest.raises(ValueError, match="BatchNorm"):
        gn.reparameterize()
    block = RepVGGBlock(16, 16, drop_path_rate=0.5).train()
    for bn in block.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.eval()  # fixed statistics: only drop-path is random
    x = torch.randn(64, 16, 4, 4)
    with torch.no_grad():
        out, skip = block(x), block.identity(x)
        branches = block.conv_kxk(x) + block.conv_1x1(x)
    relu = nn.functional.relu
    dropped = sum(torch.allclose(o, relu(s)) for o, s in zip(out, skip))
    kept = sum(torch.allclose(o, relu(s + 2 * b), atol=1e-5) for o, s, b in zip(out, skip, branches))  # 1 / (1 - p)
    assert 0 < dropped < 64 and dropped + kept == 64


def test_init_starts_the_branch_sum_at_unit_variance_or_as_the_identity():
    """n summed branches start at BatchNorm gamma 1/sqrt(n); in a built network (zero_init_last, the
    default) a block with an identity branch starts as that branch alone."""
    block = MobileOneBlock(16, 16, groups=16, num_branches=4)  # 4 kxk + scale + identity
    assert all(torch.allclose(bn.weight, torch.full_like(bn.weight, 6 ** -0.5))
               for bn in block.modules() if isinstance(bn, nn.BatchNorm2d))
    plain = zoo.create_model("repvgg_a0", zero_init_last=False).stages[2][-1]  # kxk + 1x1 + identity
    assert torch.allclose(plain.identity.weight, torch.full_like(plain.identity.weight, 3 ** -0.5))

    model = zoo.create_model("repvgg_a0")
    first, last = model.stages[2][0], model.stages[2][-1]
    assert first.identity is None and torch.allclose(first.conv_kxk.bn.weight, torch.full_like(first.conv_kxk.bn.weight, 2 ** -0.5))
    assert last.identity.weight.eq(1).all() and not last.conv_kxk.bn.weight.any() and not last.conv_1x1.bn.weight.any()
    x = torch.randn(2, last.identity.num_features, 8, 8)
    assert torch.equal(last.eval()(x), nn.functional.relu(last.identity(x)))


def test_tables_follow_the_papers():
    s0, s4 = zoo.create_model("mobileone_s0"), zoo.create_model("mobileone_s4")
    assert isinstance(s0.stem[0], RepVGGBlock) and s0.stem[0].conv_kxk.conv.out_channels == 48
    unit = s0.stages[1][0]  # the paper's MobileOne block: depthwise then pointwise
    assert unit.dw.conv_kxk[0].conv.groups == 48 and unit.dw.conv_kxk[0].conv.stride == (2, 2)
    assert len(unit.dw.conv_kxk) == len(unit.pw.conv_kxk) == 4 and unit.pw.conv_scale is None
    assert len(zoo.create_model("mobileone_s1").stages[1][0].dw.conv_kxk) == 1
    se_units = [(i, j) for i, stage in enumerate(s4.stages) for j, u in enumerate(stage)
                if not isinstance(u.dw.se, nn.Identity) and not isinstance(u.pw.se, nn.Identity)]
    assert se_units == [(2, j) for j in range(5, 10)] + [(3, 0)]  # the last 5 blocks of stage 5 and stage 6
    assert [len(s) for s in zoo.create_model("repvgg_b0").stages] == [4, 6, 16, 1]
    assert [f["num_chs"] for f in zoo.create_model("repvgg_a0").feature_info] == [48, 48, 96, 192, 1280]


def test_rows_and_overrides():
    with pytest.raises(ValueError, match="branches"):
        zoo.BlockRow(block="repvgg", out_chs=8, branches=2)
    with pytest.raises(ValueError, match="branches"):
        zoo.BlockRow(block="mobileone", out_chs=8, branches=0)
    narrow = zoo.create_model("mobileone_s1", stem_chs=32)  # the stem is a repvgg row
    assert narrow.stem[0].conv_kxk.conv.out_channels == 32 and narrow.stages[0][0].dw.conv_kxk[0].conv.in_channels == 32
    with_se = zoo.create_model("repvgg_a0", se=True)
    assert all(isinstance(b.se, zoo.layers.SqueezeExcite) for s in with_se.stages for b in s)
    assert all(isinstance(u.pw.se, nn.Identity) for s in zoo.create_model("mobileone_s4", se=False).stages for u in s)


@pytest.mark.parametrize("name", REP_MODELS)
def test_deployed_form_equals_train_form(name):
    model = randomize(zoo.create_model(name))
    deployed = reparameterize(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(deployed(x), model(x))
    assert not deployed.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert all(m.deployed for m in deployed.modules() if isinstance(m, REP_BLOCKS))
    assert not any(m.deployed for m in model.modules() if isinstance(m, REP_BLOCKS))  # the original is untouched


# timm's own deployed forms (timm.utils.reparameterize_model): the fused sizes must agree
@pytest.mark.parametrize("name", REP_MODELS)
def test_deployed_size_matches_timm_reparameterized(name):
    timm = pytest.importorskip("timm")
    ref = timm.utils.reparameterize_model(timm.create_model(name, pretrained=False).eval())
    model = zoo.create_model(name)
    deployed = reparameterize(model)
    assert zoo.count_params(deployed) == zoo.count_params(ref) < zoo.count_params(model)
    assert zoo.count_macs(deployed, 224) == zoo.count_macs(ref, 224) < zoo.count_macs(model, 224)


def test_published_deployed_sizes():
    """timm's fused models: (params, MMACs at 224) after re-parameterization."""
    for name, (params, mmacs) in {"mobileone_s0": (2_078_504, 275.1), "mobileone_s4": (14_838_352, 2979.3),
                                  "repvgg_a0": (8_309_384, 1361.5), "repvgg_b0": (14_339_048, 3057.6)}.items():
        deployed = reparameterize(zoo.create_model(name))
        assert zoo.count_params(deployed) == params
        assert round(zoo.count_macs(deployed, 224) / 1e6, 1) == mmacs


def test_reparameterize_is_idempotent():
    once = reparameterize(randomize(zoo.create_model("mobileone_s0", num_classes=10)))
    twice = reparameterize(once)
    a, b = once.state_dict(), twice.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_reparameterize_without_rep_blocks_is_fold_bn():
    model = randomize(zoo.create_model("mobilenetv3_small_100", num_classes=10))
    a, b = reparameterize(model).state_dict(), fold_bn(model).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="nn.Module"):
        reparameterize("mobileone_s0")  # type: ignore[arg-type]


def test_train_and_deployed_state_dicts_do_not_mix():
    model = zoo.create_model("repvgg_a0", num_classes=10)
    deployed = reparameterize(model)
    with pytest.raises(RuntimeError, match=r"(?s)Missing key.*reparam_conv.*Unexpected key.*conv_kxk"):
        deployed.load_state_dict(model.state_dict())
    with pytest.raises(RuntimeError, match=r"(?s)Missing key.*conv_kxk.*Unexpected key.*reparam_conv"):
        model.load_state_dict(deployed.state_dict())
    with pytest.raises(ValueError, match=r"missing \['stem.0.identity|missing \['stem.0.conv_kxk"):
        zoo.create_model("repvgg_a0", num_classes=10, weights=deployed.state_dict())
    timm = pytest.importorskip("timm")
    train_sd = timm.create_model("repvgg_a0", num_classes=10).state_dict()
    # the first tensors pair up (a 3x3 kernel either way); the first BN of the train form is named
    with pytest.raises(ValueError, match=r"cannot match timm tensor 'stem.conv_kxk.bn.weight'.*'stem.0.reparam_conv.bias'"):
        convert_state_dict(train_sd, deployed, "timm")


@pytest.mark.parametrize("name", ["mobileone_s0", "mobileone_s4"])
def test_timm_deployed_weights_load_into_the_deployed_form(name):
    """timm's reparameterized state_dict pairs tensor by tensor with zoo's deployed form (SE before the fused conv)."""
    timm = pytest.importorskip("timm")
    ref = timm.utils.reparameterize_model(randomize(timm.create_model(name, num_classes=10)))
    deployed = reparameterize(zoo.create_model(name, num_classes=10))
    deployed.load_state_dict(convert_state_dict(ref.state_dict(), deployed, "timm"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(deployed(x), ref(x))


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", ["mobileone_s0", "mobileone_s4", "repvgg_a0"])
def test_deployed_form_exports_with_dynamic_batch(name, opset, tmp_path):
    pytest.importorskip("onnxruntime")
    model = randomize(zoo.create_model(name, num_classes=10))
    path = export_onnx(reparameterize(model), tmp_path / "m.onnx", res=64, opset=opset)
    session = ort_session(path)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)  # the train form: export of the deployed form equals it
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert got.shape == expected.shape
    assert_close(got, expected, rel=1e-4)


def test_deploy_cli_exports_the_deployed_form(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from zoo.deploy.__main__ import main

    result = main(["export", "--model", "repvgg_a0", "--res", "64", "--num-classes", "10", "--out", str(tmp_path)])
    graph = onnx.load(result["path"]).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 22 and "Add" not in ops and "BatchNormalization" not in ops  # 22 plain 3x3 convs


def test_profiler_deployed_totals_are_below_train_totals():
    c = complexity(zoo.create_model("mobileone_s0"), 64, with_fvcore=False)
    assert c.params_deployed < c.params and c.macs_deployed < c.macs / 3
    assert c.flops_deployed < c.flops and c.bytes_deployed < c.bytes
    assert c.warnings == []


def test_reparameterize_serves_timm_models_too():
    timm = pytest.importorskip("timm")
    ref = randomize(timm.create_model("mobileone_s0", num_classes=10))
    deployed = reparameterize(ref)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close(deployed(x), ref(x))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert not any("conv_kxk" in k for k in deployed.state_dict())


def test_same_padding_on_a_strided_block_refuses_to_fuse() -> None:
    """TF 'same' padding is asymmetric on strided convs: the 1x1 branch then samples another pixel than
    the kxk window's centre, so there is no exact fused conv, and reparameterize says so."""
    model = zoo.create_model("repvgg_a0", num_classes=10, pad="same")
    with pytest.raises(ValueError, match="same' padding"):
        zoo.deploy.reparameterize(model)


_CHANNELS_LAST_STEM_STEP = """
import torch
from zoo.blocks import RepVGGBlock
block = RepVGGBlock(3, 48, stride=2).to(memory_format=torch.channels_last)
x = torch.randn(64, 3, 128, 128).contiguous(memory_format=torch.channels_last)
block(x).sum().backward()
print("ok")
"""


def test_strided_stem_block_trains_in_channels_last() -> None:
    """A strided 1x1 conv's weight gradient on 3 channels crashes torch 2.14's CPU build in channels_last
    memory (heap corruption): the block's 1x1 branch subsamples and convolves with stride 1 instead.
    Run in a subprocess, so that a crash fails this test instead of killing the session."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CHANNELS_LAST_STEM_STEP], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-500:])
