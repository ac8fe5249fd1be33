"""timm's model conventions on every zoo family: layer-decay groups, gradient checkpointing,
pretrained_cfg, FeatureInfo and features_only state_dicts, dilated backbones (output_stride), the
keywords of copy-pasted timm calls, and the values refused when a model is built."""

from __future__ import annotations

import copy
import weakref
from functools import lru_cache
from typing import Any, Callable

import pytest
import timm
import torch
from timm.models import FeatureInfo, group_parameters
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import zoo
from test_models import FAMILY_REPS, randomize
from zoo.blocks import GhostModule, InvertedResidual
from zoo.layers import ConvNormAct
from zoo.models.builder import FeatureNet
from zoo.models.fuse import reparameterize
from zoo.models.registry import get_entry
from zoo.models.weights import convert_state_dict

STRIDES = {32: [2, 4, 8, 16, 32], 16: [2, 4, 8, 16, 16], 8: [2, 4, 8, 8, 8]}


@lru_cache(maxsize=None)
def _model(name: str) -> nn.Module:
    """A model built once per test session; tests must not change it."""
    return zoo.create_model(name).eval()


def _n_blocks(model: nn.Module) -> int:
    return sum(len(stage) for stage in model.stages)


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_group_matcher_gives_timm_layer_decay_one_lr_per_block(name: str) -> None:
    model = _model(name)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.75)
    scales = sorted({group["lr_scale"] for group in optimizer.param_groups})
    # stem, one group per block (the final convs join the last block), head: the head trains at the full lr
    assert len(scales) == _n_blocks(model) + 2 and scales[-1] == 1.0
    assert scales[0] == pytest.approx(0.75 ** (len(scales) - 1))
    stem_scale = next(g["lr_scale"] for g in optimizer.param_groups if g["params"][0] is next(model.stem.parameters()))
    assert stem_scale == scales[0]
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == len(model.stages) + 2


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_pretrained_cfg_has_timm_keys(name: str) -> None:
    model = _model(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    first = model.get_submodule(cfg["first_conv"])
    assert isinstance(first, nn.Conv2d) and first.in_channels == model.in_chans
    res = cfg["input_size"][-1]
    assert cfg["pool_size"] == (-(-res // 32),) * 2 and cfg["num_classes"] == 1000
    assert cfg["crop_mode"] == "center" and cfg["fixed_input_size"] is False
    assert timm.data.resolve_data_config(model=model)["input_size"] == cfg["input_size"]


def test_pretrained_cfg_follows_the_model() -> None:
    model = zoo.create_model("resnet18", num_classes=10, in_chans=1, output_stride=16)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 10 and cfg["pool_size"] == (14, 14) and cfg["input_size"] == (1, 224, 224)
    assert model.get_submodule(cfg["first_conv"]).in_channels == 1
    model.reset_classifier(5, global_pool="avg")
    assert model.pretrained_cfg["num_classes"] == 5 and model(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    model.default_cfg = dict(cfg, crop_pct=1.0)
    assert model.pretrained_cfg["crop_pct"] == 1.0


class _PeakBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages alive at once among those the ops create (CPU or GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if id(storage) not in self.live:
                    self.live[id(storage)] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, id(storage))
        return out


def _train_step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Loss of one forward/backward in train mode (gradients left in the model)."""
    torch.manual_seed(0)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    return loss.detach()


def _peak_bytes(step: Callable[[], Any]) -> int:
    """Peak memory of ``step()``: the most bytes of tensor storages alive at once."""
    with _PeakBytes() as meter:
        step()
    return meter.peak


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_grad_checkpointing_gives_the_same_step(name: str) -> None:
    plain = zoo.create_model(name, num_classes=10, drop_rate=0.0).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing()
    x = torch.randn(2, 3, 32, 32)
    loss, loss_ckpt = _train_step(plain, x), _train_step(checkpointed, x)
    assert torch.allclose(loss_ckpt, loss, atol=1e-6, rtol=0)
    for (key, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(q.grad, p.grad, atol=1e-6, rtol=1e-5), key
    # BatchNorm ran twice in the checkpointed blocks, its running statistics moved once
    for (key, b), c in zip(plain.named_buffers(), checkpointed.buffers()):
        assert torch.equal(c, b), key


def test_grad_checkpointing_keeps_drop_path_and_lowers_peak_memory(capsys: pytest.CaptureFixture[str]) -> None:
    plain = zoo.create_model("mobilenetv2_050", num_classes=10, drop_path_rate=0.2).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing()
    x = torch.randn(2, 3, 128, 128)
    loss, loss_ckpt = _train_step(plain, x), _train_step(checkpointed, x)
    assert torch.allclose(loss_ckpt, loss, atol=1e-6, rtol=0)  # the same drop-path masks in the recomputation
    assert all(torch.allclose(q.grad, p.grad, atol=1e-6, rtol=1e-5)
               for p, q in zip(plain.parameters(), checkpointed.parameters()))
    peak, peak_ckpt = _peak_bytes(lambda: _train_step(plain, x)), _peak_bytes(lambda: _train_step(checkpointed, x))
    with capsys.disabled():
        print(f"\nmobilenetv2_050, batch 2 at 128 px, peak memory of a training step: {peak / 2**20:.1f} MiB, "
              f"{peak_ckpt / 2**20:.1f} MiB with set_grad_checkpointing()")
    assert peak_ckpt < peak
    checkpointed.eval()  # eval and no_grad run the blocks plainly
    with torch.no_grad():
        assert torch.equal(checkpointed(x), plain.eval()(x))


def test_features_only_backbone_checkpoints_too() -> None:
    backbone = zoo.create_model("resnet18", features_only=True, out_indices=(1, 3)).train()
    checkpointed = copy.deepcopy(backbone)
    checkpointed.set_grad_checkpointing()
    x = torch.randn(2, 3, 32, 32)
    for net in (backbone, checkpointed):
        sum(f.square().mean() for f in net(x)).backward()
    pairs = zip(backbone.parameters(), checkpointed.parameters())
    assert all(torch.allclose(q.grad, p.grad, atol=1e-6) for p, q in pairs)


@pytest.mark.parametrize("name", FAMILY_REPS)
def test_classifier_state_dict_loads_into_features_only_backbone(name: str) -> None:
    classifier = _model(name)
    backbone = FeatureNet(classifier, out_indices=(1, 3))
    missing, unexpected = backbone.load_state_dict(classifier.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k not in backbone.state_dict() for k in unexpected)
    info = backbone.feature_info
    assert isinstance(info, FeatureInfo) and info.reduction() == [4, 16] and len(info) == 2
    assert info.module_name() == [classifier.feature_info.module_name(i) for i in (1, 3)]
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 64))
    expected = [(c, 64 // r, 64 // r) for c, r in zip(info.channels(), info.reduction())]
    assert [tuple(f.shape[1:]) for f in feats] == expected


def test_features_only_backbone_scripts_and_shares_the_weights() -> None:
    full = randomize(zoo.create_model("mobilenetv3_small_100"))
    backbone = zoo.create_model("mobilenetv3_small_100", features_only=True).eval()
    backbone.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats, scripted = backbone(x), torch.jit.script(backbone)(x)
        c5 = full.stages(full.stem(x))
    assert all(torch.equal(a, b) for a, b in zip(feats, scripted)) and torch.equal(feats[-1], c5)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("name", FAMILY_REPS)
def test_output_stride_dilates_and_loads_the_same_weights(name: str, output_stride: int) -> None:
    if name.startswith("shufflenetv1") and output_stride == 8:
        with pytest.raises(ValueError, match="dilated average pool"):
            zoo.create_model(name, output_stride=output_stride)
        return
    base, dilated = _model(name), zoo.create_model(name, output_stride=output_stride).eval()
    assert dilated.feature_info.reduction() == STRIDES[output_stride] and dilated.total_stride == output_stride
    assert {k: v.shape for k, v in dilated.state_dict().items()} == {k: v.shape for k, v in base.state_dict().items()}
    dilated.load_state_dict(base.state_dict())  # strict: the same weights load
    with torch.no_grad():
        feats = FeatureNet(dilated)(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [64 // r for r in STRIDES[output_stride]]


@pytest.mark.parametrize("name, timm_kwargs", [
    ("resnet18d", {}),  # ResNet-D: dilated 3x3 convs and the stride-1 average-pool shortcut in two stages
    ("mobilenetv3_large_100", {"features_only": True, "out_indices": (4,)}),  # timm dilates MobileNetV3 features only
])
def test_output_stride_matches_timm(name: str, timm_kwargs: dict[str, Any]) -> None:
    ref_name = get_entry(name).references["timm"]["model"]
    reference = randomize(timm.create_model(ref_name))
    dilated_ref = timm.create_model(ref_name, output_stride=8, **timm_kwargs).eval()
    assert dilated_ref.load_state_dict(reference.state_dict(), strict=False).missing_keys == []
    model = zoo.create_model(name, output_stride=8)
    model.load_state_dict(convert_state_dict(reference.state_dict(), model, "timm"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = dilated_ref(x)[0] if timm_kwargs else dilated_ref(x)
        got = model.eval().forward_features(x) if timm_kwargs else model.eval()(x)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["repvgg_a0", "mobileone_s0"])
def test_dilated_reparameterizable_blocks_fuse_exactly(name: str) -> None:
    model = randomize(zoo.create_model(name, output_stride=8))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, deployed = model(x), reparameterize(model)(x)
    assert (deployed - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_copy_pasted_timm_kwargs() -> None:
    model = zoo.create_model("mobilenetv3_small_100", pretrained=False, num_classes=10, global_pool="avg",
                             exportable=True, scriptable=True, drop_rate=0.1, drop_path_rate=0.05)
    assert model.model_config["export_friendly"] is True and "pretrained" not in model.model_config
    assert not any(isinstance(m, (nn.Hardswish, nn.Hardsigmoid)) for m in model.modules())
    assert zoo.create_model(**model.model_config).model_config == model.model_config
    with pytest.raises(ValueError, match="weights='imagenet'"):
        zoo.create_model("resnet18", pretrained=True)
    with pytest.raises(ValueError, match="global_pool='avg'"):
        zoo.create_model("resnet18", global_pool="max")
    with pytest.raises(ValueError, match="contradicts"):
        zoo.create_model("resnet18", exportable=True, export_friendly=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(drop_path_rate=1.5), r"drop_path_rate must be a number in \[0, 1\), got 1.5"),
    (dict(drop_rate=-0.1), r"drop_rate must be a number in \[0, 1\)"),
    (dict(drop_block_rate=1.0), r"drop_block_rate must be a number in \[0, 1\)"),
    (dict(drop_spatial_rate=2), r"drop_spatial_rate must be a number in \[0, 1\)"),
    (dict(width=0), r"width multiplier must be > 0, got 0"),
    (dict(bn_momentum=1.5), r"bn_momentum must be a number in \[0, 1\]"),
    (dict(bn_eps=0), r"bn_eps must be a number in \(0, inf\)"),
    (dict(depths=[2, 2, 2.5, 2]), r"depths\[2\] must be an integer >= 1, got 2.5"),
    (dict(depths=[2, 0, 2, 2]), r"depths\[1\] must be an integer >= 1, got 0"),
    (dict(channels=[64, 128, -1, 512]), r"channels\[2\] must be an integer >= 1"),
    (dict(kernel_sizes=[3, 4, 3, 3]), r"kernel must be a positive odd number, got 4"),
    (dict(stem_chs=0), r"stem_chs must be an integer >= 1"),
    (dict(output_stride=4), r"output_stride must be one of \(8, 16, 32\)"),
])
def test_bad_overrides_are_refused_when_the_model_is_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zoo.create_model("resnet18", **kwargs)


def test_even_kernel_is_refused_unless_same_padding_keeps_the_size() -> None:
    with pytest.raises(ValueError, match="kernel_size 4 is not odd"):
        ConvNormAct(8, 8, 4)
    with pytest.raises(ValueError, match=r"kernel_size \(3, 2\) is not odd"):
        ConvNormAct(8, 8, (3, 2))
    with pytest.raises(ValueError, match="kernel_size 4 is not odd"):
        InvertedResidual(8, 8, kernel_size=4)  # a clear error, not a size mismatch in the residual add
    same = ConvNormAct(8, 8, 4, padding="same")
    assert same(torch.randn(1, 8, 9, 9)).shape == (1, 8, 9, 9)


@pytest.mark.parametrize("out_chs", [20, 21])  # 21: the ghost maps are cut to fit
def test_ghost_module_keeps_the_memory_format(out_chs: int) -> None:
    module = GhostModule(16, out_chs).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expected = module(x)
        out = module.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last) and out.shape == (2, out_chs, 8, 8)
    assert torch.allclose(out, expected, atol=1e-6)
