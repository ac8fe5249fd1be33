"""Structured channel pruning (zoo.compress.prune): MAC target, channel rounding, the pruned table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.compress import prune_model, pruned_arch, save_pruned_checkpoint

pytest.importorskip("torch_pruning")

RES = 64
# one small variant per prunable family
PRUNABLE = ["mobilenetv1_025", "mobilenetv2_050", "mobilenetv3_small_075", "efficientnet_lite0", "resnet18", "seresnet18"]
NOT_PRUNABLE = {"shufflenetv2_050": "shufflev2", "shufflenetv1_g3_050": "shufflev1", "ghostnet_050": "ghost",
                "repvgg_a0": "repvgg", "mobileone_s0": "mobileone", "mobilenetv4_conv_small": "uib"}


def _pruned_channels(model: torch.nn.Module, pruned: torch.nn.Module) -> list[int]:
    """Conv output widths that changed (the pruned ones)."""
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    return [m.out_channels for n, m in pruned.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels != before[n]]


@pytest.mark.parametrize("name", PRUNABLE)
def test_prune_reaches_the_mac_target_and_rebuilds_from_its_table(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=10)
    pruned = prune_model(model, 0.5, res=RES)
    ratio = zoo.count_macs(pruned, RES) / zoo.count_macs(model, RES)
    assert abs(ratio - 0.5) <= 0.05 * 0.5
    assert pruned(torch.randn(2, 3, RES, RES)).shape == (2, 10)
    changed = _pruned_channels(model, pruned)
    assert changed and all(c % 8 == 0 for c in changed)
    again = zoo.create_model(name, arch=pruned_arch(pruned), num_classes=10)
    again.load_state_dict(pruned.state_dict(), strict=True)
    assert pruned.get_classifier().out_features == 10


@pytest.mark.parametrize("importance, global_pruning", [("bn_scale", False), ("taylor", True)])
def test_other_importances_and_global_pruning(importance: str, global_pruning: bool) -> None:
    model = zoo.create_model("mobilenetv2_050", num_classes=10)
    x, y = torch.randn(4, 3, RES, RES), torch.randint(0, 10, (4,))
    pruned = prune_model(model, 0.5, importance=importance, global_pruning=global_pruning, res=RES,
                         example_inputs=x, targets=y)
    assert abs(zoo.count_macs(pruned, RES) / zoo.count_macs(model, RES) - 0.5) <= 0.025


@pytest.mark.parametrize("name, block", sorted(NOT_PRUNABLE.items()))
def test_unprunable_family_raises_naming_the_block(name: str, block: str) -> None:
    with pytest.raises(ValueError, match=f"cannot prune blocks of type .*{block}"):
        prune_model(zoo.create_model(name, num_classes=10), 0.5, res=RES)


def test_bad_arguments_are_refused() -> None:
    model = zoo.create_model("mobilenetv2_050", num_classes=10)
    with pytest.raises(ValueError, match="macs_ratio must be in"):
        prune_model(model, 1.5, res=RES)
    with pytest.raises(ValueError, match="importance must be one of"):
        prune_model(model, 0.5, importance="l1", res=RES)
    with pytest.raises(ValueError, match="needs a batch"):
        prune_model(model, 0.5, importance="taylor", res=RES)


def test_explicit_se_and_inner_widths_in_a_table() -> None:
    table = zoo.model_arch("seresnet18")
    table["stages"][0][0].update(mid_chs=24, se_chs=8, repeats=1)
    block = zoo.create_model("t", arch=table, num_classes=10).stages[0][0]
    assert block.convs[0].conv.out_channels == 24 and block.se.conv_reduce.out_channels == 8
    table["stages"][0][0]["se_ratio"] = 0.0
    with pytest.raises(ValueError, match="se_chs sets the squeeze-excite width"):
        zoo.create_model("t", arch=table)


def test_pruned_checkpoint_loads_without_torch_pruning(tmp_path: Path) -> None:
    model = zoo.create_model("mobilenetv3_small_075", num_classes=10)
    pruned = prune_model(model, 0.5, res=RES).eval()
    path = save_pruned_checkpoint(pruned, tmp_path / "pruned.ckpt", meta={"val_res": RES})
    x = torch.randn(1, 3, RES, RES)
    torch.save(x, tmp_path / "x.pt")
    torch.save(pruned(x).detach(), tmp_path / "y.pt")
    code = (
        "import sys; sys.modules['torch_pruning'] = None\n"
        "import torch, zoo\n"
        f"model, info = zoo.load_checkpoint({str(path)!r})\n"
        f"x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})\n"
        "assert torch.allclose(model(x), y, atol=1e-5), 'outputs differ'\n"
        "assert 'torch_pruning' not in sys.modules or sys.modules['torch_pruning'] is None\n"
        "print(zoo.count_macs(model, 64))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == zoo.count_macs(pruned, RES)


def test_missing_torch_pruning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(ImportError, match=r"\.\[prune\]"):
        prune_model(zoo.create_model("mobilenetv2_050", num_classes=10), 0.5, res=RES)


def test_non_zoo_model_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="zoo.create_model"):
        prune_model(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), 0.5, res=RES)
    with pytest.raises(ValueError, match="prune_model returns"):
        save_pruned_checkpoint(zoo.create_model("mobilenetv2_050"), tmp_path / "x.ckpt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- train.py prune.from=<ckpt>: prune, then fine-tune

@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo training checkpoint to prune: MobileNetV2 0.5 after 2 steps at 32 px on the embedded set."""
    from conftest import compose_config
    from zoo.training import train

    tmp = tmp_path_factory.mktemp("base")
    return Path(train(compose_config(tmp, "model=mobilenetv2", "model.width=0.5"))["last_ckpt"])


def _zoo_ckpt(path: Path, name: str, num_classes: int) -> Path:
    """A zoo checkpoint of an untrained ``name`` (what a training run writes, without the training)."""
    from zoo.models.checkpoint import write_zoo_fields

    model = zoo.create_model(name, num_classes=num_classes)
    checkpoint = {"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}
    write_zoo_fields(checkpoint, model, num_classes, {"train_res": 32}, has_ema=False, best_acc1=0.0)
    torch.save(checkpoint, path)
    return path


def test_train_prunes_a_checkpoint_and_fine_tunes_it_with_its_teacher(base_ckpt: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from conftest import compose_config
    from zoo.models.checkpoint import read_checkpoint
    from zoo.training import train

    overrides = [f"prune.from={base_ckpt}", "prune.macs_ratio=0.5", "distill=kd", f"distill.teacher={base_ckpt}"]
    summary = train(compose_config(tmp_path, *overrides))
    base, _ = zoo.load_checkpoint(base_ckpt)
    last = Path(summary["last_ckpt"])
    net, info = zoo.load_checkpoint(last)  # rebuilt from the pruned table in the checkpoint
    assert "arch" in info["model_config"] and info["model_config"]["name"] == "mobilenetv2_100"
    assert abs(zoo.count_macs(net, 32) / zoo.count_macs(base, 32) - 0.5) <= 0.05 * 0.5
    assert summary["macs"] == zoo.count_macs(net, 32) and summary["model"] == "mobilenetv2_100"
    record = read_checkpoint(last)["zoo_pruned"]
    assert summary["pruned"] == record and record["from"] == str(base_ckpt.resolve())
    assert record["macs_ratio"] == 0.5 and record["macs_after"] == summary["macs"] and record["res"] == 32
    assert summary["distill"]["teacher"] == str(base_ckpt.resolve())
    assert "MACs" in capsys.readouterr().out
    # resume rebuilds the pruned network from its own checkpoint: no pruning again
    monkeypatch.setattr("zoo.training.pruning.prune_model", lambda *a, **k: pytest.fail("pruned again"))
    resumed = train(compose_config(tmp_path, *overrides, "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert resumed["epochs"] == 2 and resumed["pruned"] == record and resumed["macs"] == summary["macs"]
    # and without prune.from on the command line: the checkpoint alone says the run is pruned
    again = train(compose_config(tmp_path, *overrides[2:], "trainer.max_epochs=3", f"ckpt_path={resumed['last_ckpt']}"))
    assert again["epochs"] == 3 and again["pruned"] == record and again["macs"] == summary["macs"]


def test_train_prunes_with_taylor_importance_on_a_training_batch(base_ckpt: Path, tmp_path: Path) -> None:
    from conftest import compose_config
    from zoo.training import train

    summary = train(compose_config(tmp_path, f"prune.from={base_ckpt}", "prune.importance=taylor", "prune.global=true",
                                   "prune.macs_ratio=0.6", "trainer.limit_train_batches=1"))
    assert summary["pruned"]["importance"] == "taylor" and summary["pruned"]["global"] is True
    assert abs(summary["macs"] / summary["pruned"]["macs_before"] - 0.6) <= 0.05 * 0.6


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"), ("text", "is not a usable zoo training checkpoint"),
    ("not_zoo", "is not a usable zoo training checkpoint"), ("shufflenet", "cannot prune blocks of type shufflev2"),
    ("classes", "trained on 5 classes"),
])
def test_train_refuses_a_bad_prune_source_before_writing(tmp_path: Path, kind: str, message: str) -> None:
    from conftest import compose_config
    from zoo.training import train

    path = tmp_path / f"{kind}.ckpt"
    if kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "not_zoo":
        torch.save({"state_dict": {}}, path)
    elif kind == "shufflenet":
        _zoo_ckpt(path, "shufflenetv2_050", 10)
    elif kind == "classes":
        _zoo_ckpt(path, "mobilenetv2_050", 5)
    cfg = compose_config(tmp_path, f"prune.from={path}")
    with pytest.raises(ValueError, match=message) as err:
        train(cfg)
    assert kind in ("shufflenet", "classes") or f"prune.from: {path}" in str(err.value)
    assert not (tmp_path / "run").exists()
