"""One test per documented feature that no other test file covers: model API extras, weights="imagenet",
the loss / optimizer / data / trainer options of the configs, and the command-line tools."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import zoo
from conftest import REPO_ROOT, compose_config

CLIP = 1e-3  # trainer.gradient_clip_val of the tiny run: far below the gradients' norm at init


def _grad_norm(params) -> float:
    grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
    return float(torch.cat(grads).norm())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Any]:
    """A finished 1-epoch run (2 steps, 32 px) with ``optim=adamw`` and ``trainer.gradient_clip_val``, through
    the real ``train()``; records the optimizer it built and the gradient norm of each step before and after
    Lightning's clipping."""
    from lightning.pytorch import LightningModule
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import zoo.training.module as zmodule
    from zoo.training import train

    tmp = tmp_path_factory.mktemp("features")
    cfg = compose_config(tmp, "model=mobilenetv3_small", "model.width=0.5", "optim=adamw",
                         f"trainer.gradient_clip_val={CLIP}")
    seen: dict[str, Any] = {"optimizers": [], "before_clip": [], "after_clip": []}
    build = zmodule.build_optimizer

    def spy_build(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        opt = build(*args, **kwargs)
        seen["optimizers"].append(opt)
        return opt

    def before_step(self, optimizer) -> None:  # Lightning calls this hook right before it clips
        seen["before_clip"].append(_grad_norm(self.parameters()))

    def after_step(optimizer, args, kwargs) -> None:  # the gradients the update used
        seen["after_clip"].append(_grad_norm(p for g in optimizer.param_groups for p in g["params"]))

    hook = register_optimizer_step_post_hook(after_step)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(zmodule, "build_optimizer", spy_build)
            mp.setattr(LightningModule, "on_before_optimizer_step", before_step)
            summary = train(cfg)
    finally:
        hook.remove()
    return {"cfg": cfg, "summary": summary, **seen}


def test_every_test_starts_seeded() -> None:
    """conftest's autouse fixture: torch, random and numpy start from seed 0 in every test, whatever ran before."""
    import random

    import numpy as np

    assert torch.initial_seed() == 0
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(0)))
    assert random.random() == random.Random(0).random()
    assert np.random.rand() == np.random.RandomState(0).rand()


# ------------------------------------------------------------------------------------------- models
def test_model_arch_is_the_table_create_model_builds() -> None:
    """zoo.model_arch: plain data (YAML round trip) that builds the registered network, overrides included."""
    arch = zoo.model_arch("mobilenetv2_100")
    assert yaml.safe_load(yaml.safe_dump(arch)) == arch
    mine = zoo.create_model("my_mobilenetv2", arch=arch, num_classes=10).eval()
    ref = zoo.create_model("mobilenetv2_100", num_classes=10).eval()
    assert [(k, v.shape) for k, v in mine.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(mine(x), ref(x))
    half = zoo.create_model("half", arch=zoo.model_arch("mobilenetv2_100", width=0.5))
    assert zoo.count_params(half) == zoo.count_params(zoo.create_model("mobilenetv2_100", width=0.5))
    with pytest.raises(ValueError, match="closest"):
        zoo.model_arch("mobilenetv2_10")


def test_imagenet_weights_download_through_torchvision(tmp_path: Path, monkeypatch) -> None:
    """weights="imagenet": torchvision's own download code fetches the reference state_dict (here from a
    file:// URL with the hash torchvision checks in its name), and the converted zoo model equals the reference."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.mobilenet_v3_small()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    src = tmp_path / "weights.pth"
    torch.save(ref.state_dict(), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    published = src.rename(tmp_path / f"mobilenet_v3_small-{digest[:8]}.pth")
    weights = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT
    monkeypatch.setattr(weights.value, "url", published.as_uri())
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    model = zoo.create_model("mobilenetv3_small_100", weights="imagenet").eval()
    assert (tmp_path / "hub" / "checkpoints" / published.name).is_file()  # downloaded, hash checked
    assert model.model_config["bn_eps"] == 1e-3  # torchvision's MobileNetV3 BatchNorm eps, set before loading
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = ref.eval()(x)
        assert torch.allclose(model(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_pretrained_cfg_holds_the_preprocessing() -> None:
    model = zoo.create_model("mobilenetv3_small_100", in_chans=1)
    assert model.pretrained_cfg == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                                    "interpolation": "bilinear", "crop_pct": 0.875, "input_size": (1, 224, 224),
                                    "crop_mode": "center", "fixed_input_size": False, "pool_size": (7, 7),
                                    "num_classes": 1000, "first_conv": "stem.0.conv", "classifier": "head.fc"}
    backbone = zoo.create_model("resnet18", features_only=True)
    assert backbone.pretrained_cfg == zoo.create_model("resnet18").pretrained_cfg


def test_channels_final_chs_bn_momentum_and_zero_init_last_overrides() -> None:
    narrow = zoo.create_model("resnet18", channels=[32, 64, 96, 128])
    assert [f["num_chs"] for f in narrow.feature_info][1:] == [32, 64, 96, 128] and narrow.num_features == 128
    assert narrow(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    slim = zoo.create_model("mobilenetv3_large_100", final_chs=640)
    assert slim.num_features == 640 and slim.forward_features(torch.randn(1, 3, 64, 64)).shape[1] == 640
    with pytest.raises(ValueError, match="no final conv"):
        zoo.create_model("resnet18", final_chs=640)
    bns = [m for m in zoo.create_model("ghostnet_050", bn_momentum=0.01).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 for m in bns)

    def zero_gamma_bns(model: nn.Module) -> int:
        return sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.any())

    # resnet18: 8 residual blocks, each branch's last BN starts at gamma 0 (the block starts as its shortcut)
    assert zero_gamma_bns(zoo.create_model("resnet18", zero_init_last=True)) == 8
    assert zero_gamma_bns(zoo.create_model("resnet18", zero_init_last=False)) == 0


# --------------------------------------------------------------------------------------------- loss
def test_loss_bce_config_gives_smoothed_binary_cross_entropy(tmp_path: Path) -> None:
    """loss.bce=true: timm BinaryCrossEntropy with the smoothing of loss.label_smoothing (0.1 by default).

    Logits (2, 0, ..., 0), target 0, 10 classes: targets 0.91 / 0.01; each zero logit costs log 2, the first
    0.91 softplus(-2) + 0.09 softplus(2); the loss is the mean over the 10 outputs."""
    from zoo.training import ClassificationModule

    cfg = compose_config(tmp_path, "loss.bce=true")
    module = ClassificationModule(cfg["model"], 10, loss=cfg["loss"])
    assert cfg["loss"]["label_smoothing"] == 0.1 and "loss: BCE, label smoothing 0.1" in module.describe_loss()
    logits = torch.zeros(1, 10)
    logits[0, 0] = 2.0

    def softplus(v: float) -> float:
        return math.log1p(math.exp(v))

    expected = (0.91 * softplus(-2.0) + 0.09 * softplus(2.0) + 9 * math.log(2.0)) / 10
    assert float(module.train_criterion(logits, torch.tensor([0]))) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------ optim, trainer
def test_optim_adamw_builds_adamw_at_the_scaled_lr(tiny_run: dict[str, Any]) -> None:
    cfg, summary = tiny_run["cfg"], tiny_run["summary"]
    assert cfg["optim"]["name"] == "adamw" and cfg["optim"]["base_lr"] == 2e-3
    lr = 2e-3 * 8 / 256  # base_lr x global batch (8, from TINY) / base_batch_size, linear scaling
    assert summary["lr"] == pytest.approx(lr)
    (opt,) = tiny_run["optimizers"]
    assert type(opt) is torch.optim.AdamW
    assert all(g["initial_lr"] == pytest.approx(lr) and g["betas"] == (0.9, 0.999) for g in opt.param_groups)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]  # none on norm and bias


def test_gradient_clip_val_bounds_every_update(tiny_run: dict[str, Any]) -> None:
    """trainer.gradient_clip_val reaches Lightning: every step's gradient norm is above the clip value before
    clipping and at most the clip value in the update."""
    before, after = tiny_run["before_clip"], tiny_run["after_clip"]
    assert len(before) == len(after) == 2  # limit_train_batches=2
    assert min(before) > 10 * CLIP
    assert max(after) <= CLIP * (1 + 1e-4)


# --------------------------------------------------------------------------------------------- data
def test_data_imagenet100_reads_its_100_classes(tmp_path: Path) -> None:
    """data=imagenet100: the shipped CMC list picks its 100 wnids (in list order) out of an ImageNet tree."""
    from zoo.data import ImageDataModule, read_class_list
    from zoo.training.train import _data_kwargs

    wnids = read_class_list("imagenet100")
    assert len(wnids) == len(set(wnids)) == 100 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for i, wnid in enumerate([*wnids, "n99999999"]):  # the last one is not in the list
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (40, 30), (i, 2 * i % 256, 100)).save(root / split / wnid / "0.JPEG")
    cfg = compose_config(tmp_path, "data=imagenet100", f"data.root={root}", "data.train_res=32",
                         "data.batch_size=4", "data.num_workers=0", tiny=False)
    assert cfg["data"]["classes"] == "imagenet100"
    dm = ImageDataModule(**_data_kwargs(cfg))  # the data module train() builds from the config
    assert dm.num_classes == 100 and dm.class_folders == wnids
    assert dm.class_names[wnids.index("n01558993")] == "robin"  # wnids get ImageNet's names
    dm.setup("fit")
    assert len(dm.train_dataset) == len(dm.val_dataset) == 100
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and int(y.max()) < 100


# ------------------------------------------------------------------------------------ deploy, tools
def test_deploy_export_of_a_trained_checkpoint(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    """python -m zoo.deploy export --ckpt: an ONNX file at the checkpoint's resolution, equal to PyTorch."""
    pytest.importorskip("onnxruntime")
    from zoo.deploy.__main__ import main

    out = main(["export", "--ckpt", tiny_run["summary"]["best_ckpt"], "--out", str(tmp_path), "--opset", "13"])
    path = Path(out["path"])
    assert path.is_file() and path.parent == tmp_path / "mobilenetv3_small_100"
    assert out["max_abs_diff"] <= 1e-4


def test_report_add_and_latency_into_a_results_folder(tiny_run: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    """python -m zoo.tools.report add RUN_DIR records the run (row + per-epoch log); latency re-measures it."""
    from zoo.tools import report

    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    rendered = []
    monkeypatch.setattr(report, "render", lambda *a, **k: rendered.append(a))  # never the real README
    summary = tiny_run["summary"]
    run_dir = Path(summary["run_dir"])
    report.main(["add", str(run_dir), "--command", "python train.py model=mobilenetv3_small optim=adamw"])
    (row,) = report.read_rows()
    assert row["run"] == run_dir.parent.name and row["model"] == "mobilenetv3_small_100"
    assert row["recipe"] == run_dir.parent.name  # no experiment= in the command
    assert float(row["train_img_per_s"]) == round(summary["train_img_per_s"], 1)
    assert float(row["best_top1"]) == round(summary["best_top1"], 2) and row["res"] == "32"
    assert float(row["latency_bs1_ms"]) > 0
    logged = tmp_path / "results" / "runs" / f"{row['run']}.csv"
    assert logged.read_text() == (run_dir / "metrics.csv").read_text()

    threads = torch.get_num_threads()
    try:
        report.main(["latency"])  # measure_latency sets 2 threads for the process
    finally:
        torch.set_num_threads(threads)
    (again,) = report.read_rows()
    assert {k: v for k, v in again.items() if k != "latency_bs1_ms"} == {k: v for k, v in row.items()
                                                                        if k != "latency_bs1_ms"}
    assert float(again["latency_bs1_ms"]) > 0 and rendered == [()]


def test_data_bench_cli(capsys) -> None:
    from zoo.tools.data_bench import main

    main(["--res", "32", "--batch-size", "4", "--num-workers", "0", "--batches", "2", "--warmup", "1",
          "--steps", "1", "--repeats", "1", "--model", "mobilenetv3_small_075"])
    text = capsys.readouterr().out
    assert "res=32 batch=4 cache=none workers=0" in text
    for line in ("loader only", "train step", "ratio loader/train"):
        assert line in text


def test_stages_cli(capsys) -> None:
    from zoo._cli import run_cli
    from zoo.tools.stages import main

    table = main(["resnet18", "mobilenetv3_small_100"])
    assert capsys.readouterr().out.strip() == table
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | C1 (stride 2)")
    assert lines[2] == ("| resnet18 | `stem.0` 64 | `stages.0.1` 64 | `stages.1.1` 128 | `stages.2.1` 256 | "
                        "`stages.3.1` 512 | 512 |")
    with pytest.raises(SystemExit, match="error: unknown model 'resnet9'"):
        run_cli(lambda: main(["resnet9"]))


def test_strip_outputs_cleans_a_notebook(tmp_path: Path) -> None:
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("strip_outputs", REPO_ROOT / "notebooks" / "strip_outputs.py")
    strip_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strip_outputs)

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}, "widgets": {"state": {}}})
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")],
                                     metadata={"execution": {"iopub.status.busy": "x"}, "scrolled": True,
                                               "tags": ["keep"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), code]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert strip_outputs.strip(path) is True
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert clean.cells[1].metadata == {"tags": ["keep"]} and clean.cells[1].source == "print(1)"
    assert clean.cells[1].id == code.id and clean.cells[0].source == "# title"
    assert "widgets" not in clean.metadata and clean.metadata["kernelspec"]["name"] == "python3"
    before = path.read_text()
    assert strip_outputs.strip(path) is False and path.read_text() == before  # already clean: untouched
    json.loads(before)  # still a valid notebook file
