"""Fine-tuning: reference and zoo weights into another classifier or number of input channels,
layer-wise lr decay, the frozen-backbone callback, and the finetune recipe through train.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from conftest import REPO_ROOT, TINY
from test_models import create_reference, randomize
from zoo.models.checkpoint import model_state_dict, read_checkpoint
from zoo.models.registry import get_entry
from zoo.training.optim import build_optimizer, build_scheduler

# One small variant per family and reference source (the arch YAMLs' `references`).
FINETUNE_REFERENCES = [
    ("timm", "efficientnet_lite0"), ("timm", "ghostnet_050"), ("timm", "mobilenetv1_100"),
    ("timm", "mobilenetv2_035"), ("torchvision", "mobilenetv2_100"), ("timm", "mobilenetv3_large_075"),
    ("torchvision", "mobilenetv3_large_100"), ("timm", "mobilenetv3_small_075"),
    ("torchvision", "mobilenetv3_small_100"), ("timm", "mobilenetv4_conv_small"), ("timm", "mobileone_s0"),
    ("timm", "repvgg_a0"), ("torchvision", "resnet18"), ("timm", "resnet18"), ("timm", "resnet50d"),
    ("torchvision", "shufflenetv2_050"),
]
FAMILIES_WITH_REFERENCES = {get_entry(n).family for n in zoo.list_models() if get_entry(n).references}


def test_every_family_with_a_reference_is_fine_tuned() -> None:
    assert {get_entry(name).family for _, name in FINETUNE_REFERENCES} == FAMILIES_WITH_REFERENCES


def _body(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The tensors before the classifier (the last weight/bias pair)."""
    return list(state.items())[:-2]


@pytest.mark.parametrize("source, name", FINETUNE_REFERENCES, ids=[f"{s}-{n}" for s, n in FINETUNE_REFERENCES])
def test_1000_class_reference_loads_into_10_classes(source: str, name: str, caplog) -> None:
    ref = randomize(create_reference(source, get_entry(name).references[source]["model"]))
    src = ref.state_dict()
    with caplog.at_level(logging.WARNING, logger="zoo.models"):
        model = zoo.create_model(name, num_classes=10, weights=src, weights_from=source)
    got = model.state_dict()
    assert len(_body(got)) == len(_body(src))
    for (src_key, src_t), (key, t) in zip(_body(src), _body(got)):
        assert torch.equal(t, src_t.reshape(t.shape)), (key, src_key)
    assert got["head.fc.weight"].shape == (10, src[list(src)[-2]].shape[1]) and got["head.fc.bias"].shape == (10,)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "classifier head.fc re-initialized for 10 classes (the weights have 1000)" in lines[0]


@pytest.mark.parametrize("source, name, in_chans", [("torchvision", "resnet18", 1), ("timm", "mobileone_s0", 4)])
def test_other_input_channels_follow_timm(source: str, name: str, in_chans: int) -> None:
    """1 channel: the RGB filters summed; other counts: repeated and scaled by 3 / in_chans (timm's rule),
    on every conv that reads the image (MobileOne's stem has a kxk and a 1x1 branch)."""
    src = create_reference(source, get_entry(name).references[source]["model"]).state_dict()
    model = zoo.create_model(name, num_classes=10, in_chans=in_chans, weights=src, weights_from=source)
    got, src_items = model.state_dict(), list(src.items())
    adapted = [(k, t) for (k, t), (_, s) in zip(_body(got), src_items) if t.shape != s.shape]
    assert len(adapted) == (1 if name == "resnet18" else 2)
    for key, t in adapted:
        s = src_items[list(got).index(key)][1]
        expected = s.sum(1, keepdim=True) if in_chans == 1 else s.repeat(1, 2, 1, 1)[:, :in_chans] * 3 / in_chans
        assert torch.allclose(t, expected), key
    assert model(torch.randn(1, in_chans, 64, 64)).shape == (1, 10)


def test_zoo_weights_fine_tune_and_drop_the_classifier(caplog) -> None:
    src = randomize(zoo.create_model("mobilenetv3_small_100")).state_dict()
    model = zoo.create_model("mobilenetv3_small_100", num_classes=3, weights=src)
    assert all(torch.equal(model.state_dict()[k], src[k]) for k, _ in _body(src))
    with caplog.at_level(logging.WARNING, logger="zoo.models"):
        headless = zoo.create_model("mobilenetv3_small_100", num_classes=0, weights=src)
    assert headless(torch.randn(1, 3, 64, 64)).shape == (1, headless.head_hidden_size)
    assert "classifier head.fc dropped (the model has none)" in caplog.records[-1].getMessage()


def test_weights_strict_refuses_what_fine_tuning_would_adapt() -> None:
    src = zoo.create_model("mobilenetv3_small_100").state_dict()
    with pytest.raises(ValueError, match=r"as they are \(strict\).*head\.fc re-initialized for 3 classes"):
        zoo.create_model("mobilenetv3_small_100", num_classes=3, weights=src, weights_strict=True)
    same = zoo.create_model("mobilenetv3_small_100", weights=src, weights_strict=True)
    assert all(torch.equal(same.state_dict()[k], v) for k, v in src.items())


def test_any_other_mismatch_is_an_error_naming_the_tensor() -> None:
    src = zoo.create_model("resnet18").state_dict()
    src["stages.1.0.convs.0.conv.weight"] = torch.zeros(128, 64, 5, 5)
    with pytest.raises(ValueError, match=r"stages\.1\.0\.convs\.0\.conv\.weight"):
        zoo.create_model("resnet18", num_classes=10, weights=src)
    ref = create_reference("torchvision", "resnet18").state_dict()
    ref["fc.weight"] = torch.zeros(1000, 256)  # the classifier's input features must match
    with pytest.raises(ValueError, match=r"'fc.weight' \(1000, 256\).*the classifier"):
        zoo.create_model("resnet18", num_classes=10, weights=ref, weights_from="torchvision")
    wide = create_reference("torchvision", "resnet34").state_dict()
    with pytest.raises(ValueError, match="layer|cannot match|lacks|nothing to load"):
        zoo.create_model("resnet18", num_classes=10, weights=wide, weights_from="torchvision")


def test_checkpoint_path_is_timms_name_for_a_weights_file(tmp_path: Path) -> None:
    model = randomize(zoo.create_model("shufflenetv2_050", num_classes=10))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    again = zoo.create_model("shufflenetv2_050", num_classes=10, checkpoint_path=tmp_path / "w.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), again(x))
    with pytest.raises(ValueError, match="not both"):
        zoo.create_model("shufflenetv2_050", weights=tmp_path / "w.pth", checkpoint_path=tmp_path / "w.pth")


def test_layer_decay_groups_keep_the_weight_decay_rules() -> None:
    model = zoo.create_model("mobilenetv3_small_100", num_classes=10)
    opt = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4, wd_depthwise=0.0, layer_decay=0.75)
    groups = opt.param_groups
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.parameters())
    lrs = [g["lr"] for g in groups]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(0.1) and len(set(lrs)) > 5
    head = {id(p) for p in model.get_classifier().parameters()}
    assert head <= {id(p) for p in groups[0]["params"]} | {id(p) for p in groups[1]["params"]}
    stem = {id(p) for p in model.stem.parameters()}
    assert all(g["lr"] == pytest.approx(min(lrs)) for g in groups if stem & {id(p) for p in g["params"]})
    for g in groups:
        assert g["lr"] == pytest.approx(0.1 * g["lr_scale"])
        ndims = {p.ndim for p in g["params"]}
        assert (g["weight_decay"] == 0.0) == (ndims == {1} or g["name"].startswith("depthwise")), g["name"]
    # the per-step schedule keeps the ratios
    sched = build_scheduler(opt, total_steps=10, steps_per_epoch=5, name="cosine")
    for _ in range(3):
        opt.step()
        sched.step()
    assert [g["lr"] / groups[0]["lr"] for g in groups] == pytest.approx([g["lr_scale"] for g in groups])
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        build_optimizer(model, "sgd", lr=0.1, layer_decay=1.5)


def test_frozen_backbone_trains_only_the_classifier(compose_cfg, tmp_path: Path) -> None:
    from zoo.training import train

    src = randomize(zoo.create_model("mobilenetv3_small_100", width=0.5)).state_dict()
    torch.save(src, tmp_path / "w.pth")
    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.5", f"model.weights={tmp_path / 'w.pth'}",
                      "callbacks.freeze_backbone_epochs=1", "optim.layer_decay=0.75")
    out = Path(train(cfg)["run_dir"])
    state, _ = model_state_dict(read_checkpoint(out / "checkpoints" / "last.ckpt"))
    for key, t in _body(src):  # weights and BatchNorm statistics as loaded
        assert torch.equal(state[key], t), key
    assert state["head.fc.weight"].shape[0] == 10


@pytest.mark.slow
def test_finetune_recipe_through_train_py(tmp_path: Path) -> None:
    """`python train.py experiment=finetune` from a 1000-class torchvision state_dict file: one line on the
    new classifier, the backbone frozen in epoch 0 and trained in epoch 1."""
    ref = randomize(create_reference("torchvision", "mobilenet_v3_small"))
    weights = tmp_path / "mobilenet_v3_small.pth"
    torch.save(ref.state_dict(), weights)
    env = {**os.environ, "ZOO_ROOT": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    args = [*TINY, "experiment=finetune", "model=mobilenetv3_small", f"model.weights={weights}",
            "model.weights_from=torchvision", "trainer.max_epochs=2", f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    res = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert text.count("re-initialized for 10 classes (the weights have 1000)") == 1
    assert "backbone frozen for 1 epoch(s)" in text
    model, info = zoo.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["epoch"] == 1 and info["model_config"]["bn_eps"] == 0.001  # torchvision's BatchNorm eps
    trained = model.state_dict()
    converted = zoo.create_model("mobilenetv3_small_100", num_classes=10, weights=str(weights),
                                 weights_from="torchvision").state_dict()
    changed = [k for k, t in _body(converted) if not torch.equal(trained[k], t)]
    assert changed  # trained after the frozen epoch
    assert info["preprocessing"]["val_res"] == 32
