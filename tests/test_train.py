"""Entry-point tests: the real configs composed with Hydra, run through ``zoo.training.train`` with tiny settings."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from zoo.models.checkpoint import load_checkpoint, read_checkpoint
from zoo.training import NonFiniteLossError, train
from zoo.training.callbacks import train_images_per_second

FAMILIES = ["mobilenetv1", "mobilenetv2", "mobilenetv3", "mobilenetv3_small", "shufflenetv1", "shufflenetv2",
            "ghostnet", "resnet18", "custom"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_trains_a_few_steps(compose_cfg, tmp_path: Path, model: str) -> None:
    cfg = compose_cfg(f"model={model}", "model.width=0.5" if model not in ("custom", "resnet18") else "seed=1")
    summary = train(cfg)
    out = Path(summary["run_dir"])
    assert out == (tmp_path / "run").resolve()
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    assert summary["params"] > 0 and summary["macs"] > 0 and summary["final_top1"] is not None
    net, info = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert info["model_config"]["name"] == cfg["model"]["name"] and info["num_classes"] == 10
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_outputs_metrics_and_summary(compose_cfg, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.75", "trainer.max_epochs=2",
                      "trainer.limit_val_batches=null", "data.batch_size=16", "trainer.accumulate_grad_batches=2",
                      "optim.base_lr=0.5")
    summary = train(cfg)
    out = Path(summary["run_dir"])
    for name in ("config.yaml", "metrics.csv", "curves.png", "summary.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    rows = read_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for key in ("train/loss", "train/acc", "val/loss", "val/acc1", "val/acc5", "lr", "epoch_time_s",
                "train_img_per_s"):
        assert rows[-1][key] != "", key
    assert float(rows[-1]["val/num_samples"]) == 200  # every val image once (20 per class x 10)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["epochs"] == 2 and saved["model"] == "mobilenetv3_small_100" and saved["train_res"] == 32
    assert saved["train_img_per_s"] == round(train_images_per_second(rows), 2)
    # lr scaling: base_lr x global batch (16 x 1 process x 2 accumulation) / 256
    assert saved["global_batch"] == 32 and saved["lr"] == pytest.approx(0.5 * 32 / 256)
    text = capsys.readouterr().out
    assert "final val top-1" in text and "global batch 32" in text and "label smoothing 0.1" in text
    assert "train_res 32 = 1 x 2^5" in text
    assert ("malloc: freed memory kept" in text) == sys.platform.startswith("linux")  # keep_freed_memory default
    ckpt = read_checkpoint(out / "checkpoints" / "last.ckpt")
    pre = ckpt["zoo_meta"]["preprocessing"]
    assert pre["val_res"] == 32 and pre["crop_pct"] == 0.875 and len(pre["mean"]) == 3
    assert ckpt["zoo_meta"]["class_names"][0] == "tench"
    assert all(k.startswith("net.") for k in ckpt["state_dict"])


def test_train_img_per_s_is_images_over_training_time() -> None:
    """Epochs of 1000 images in 10 s and 40 s: 2000 images in 50 s = 40 img/s (the mean of the rates is 62.5)."""
    rows = [{"epoch": 0, "train_img_per_s": 100.0, "epoch_time_s": 12.0},
            {"epoch": 1, "train_img_per_s": "25.0", "epoch_time_s": "45.0"}]  # as read back from metrics.csv
    assert train_images_per_second(rows) == pytest.approx(40.0)
    assert train_images_per_second(rows + [{"epoch": 2, "train_img_per_s": ""}]) == pytest.approx(40.0)
    assert train_images_per_second([{"epoch": 0, "train_img_per_s": float("nan")}]) is None
    assert train_images_per_second([]) is None


def test_recorded_train_img_per_s_is_computed_from_the_committed_epoch_logs() -> None:
    """Every results/imagenette.csv row's train img/s follows from its per-epoch log results/runs/<run>.csv."""
    from zoo.tools.report import RESULTS, read_rows

    rows = read_rows()
    if not rows:
        pytest.skip("no recorded runs")
    for row in rows:
        epochs = read_csv(RESULTS / "runs" / f"{row['run']}.csv")
        assert float(row["train_img_per_s"]) == round(train_images_per_second(epochs), 1), row["run"]


def test_last_checkpoint_follows_every_epoch_when_the_metric_stalls(compose_cfg) -> None:
    """last.ckpt is the newest epoch even when best.ckpt stops changing (what `resume=auto` restarts from)."""
    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.5", "trainer.max_epochs=3",
                      "callbacks.checkpoint.monitor=val/num_samples")  # constant: only epoch 0 is ever "best"
    out = Path(train(cfg)["run_dir"]) / "checkpoints"
    assert read_checkpoint(out / "best.ckpt")["epoch"] == 0
    assert read_checkpoint(out / "last.ckpt")["epoch"] == 2


def test_resolution_warning_names_nearest_sizes(compose_cfg, capsys) -> None:
    train(compose_cfg("model=mobilenetv3_small", "data.train_res=40", "trainer.limit_train_batches=1",
                      "keep_freed_memory=false"))
    text = capsys.readouterr().out
    assert "train_res=40 is not a multiple of the total stride 32" in text
    assert "malloc:" not in text  # opted out
    from zoo.training.train import resolution_report

    _, warns = resolution_report(100, 128, 32)
    assert len(warns) == 1 and "96 or 128" in warns[0]


def test_mixup_ema_run_saves_ema_and_no_train_acc(compose_cfg) -> None:
    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.75", "aug=mixup", "ema.enabled=true",
                      "ema.decay=0.5")
    out = Path(train(cfg)["run_dir"])
    rows = read_csv(out / "metrics.csv")
    assert rows[0]["train/acc"] == ""  # soft targets: no training accuracy
    ckpt = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert any(k.startswith("ema.module.") for k in ckpt["state_dict"])
    ema_net, info = load_checkpoint(out / "checkpoints" / "last.ckpt", ema=True)
    live_net, info2 = load_checkpoint(out / "checkpoints" / "last.ckpt", ema=False)
    assert info["ema"] and not info2["ema"]
    assert any(not torch.equal(a, b) for a, b in zip(ema_net.parameters(), live_net.parameters()))


def test_second_run_does_not_overwrite(compose_cfg) -> None:
    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.75", "trainer.limit_train_batches=1")
    first = train(cfg)
    before = (Path(first["run_dir"]) / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    with pytest.raises(ValueError, match="refusing to overwrite"):
        train(cfg)
    assert (Path(first["run_dir"]) / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before


def test_missing_data_root_message(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("data=imagefolder", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="data root .*nowhere does not exist"):
        train(cfg)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(compose_cfg, monkeypatch) -> None:
    from zoo.training.module import ClassificationModule

    cfg = compose_cfg("model=mobilenetv3_small", "model.width=0.75", "trainer.max_epochs=2")
    original = ClassificationModule._prep

    def poisoned(self, x):
        x = original(self, x)
        return x * float("nan") if self.current_epoch == 1 else x

    monkeypatch.setattr(ClassificationModule, "_prep", poisoned)
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 1"):
        train(cfg)
    last = Path(cfg["paths"]["output_dir"]) / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(last)
    assert ckpt["epoch"] == 0  # the epoch-0 checkpoint, untouched
    net, _ = load_checkpoint(last)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_find_resume_checkpoint_skips_finished_runs(tmp_path: Path) -> None:
    import os

    from zoo.training.train import find_resume_checkpoint

    assert find_resume_checkpoint(tmp_path) is None
    for i, name in enumerate(["a", "b", "c"]):
        ck = tmp_path / name / "checkpoints" / "last.ckpt"
        ck.parent.mkdir(parents=True)
        ck.write_bytes(b"x")
        os.utime(ck, (1000 + i, 1000 + i))
    (tmp_path / "c" / "summary.json").write_text("{}")  # finished: not resumed
    assert find_resume_checkpoint(tmp_path) == (tmp_path / "b" / "checkpoints" / "last.ckpt").resolve()


def test_tensorboard_logger_writes_events(compose_cfg) -> None:
    cfg = compose_cfg("model=shufflenetv2", "model.width=0.5", "logger=tensorboard", "trainer.limit_train_batches=1")
    out = Path(train(cfg)["run_dir"])
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "logs" / "csv" / "metrics.csv").is_file()
