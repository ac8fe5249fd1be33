"""eval.py / predict.py / zoo.models.checkpoint.load_checkpoint on a checkpoint from a tiny training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, TINY
from zoo.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """best.ckpt of a 1-epoch run at 32 px (val_res 32, crop_pct 0.9) of mobilenetv3_small_075."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from zoo.training import train

    tmp = tmp_path_factory.mktemp("evalrun")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"paths.log_dir={tmp}/logs", f"paths.output_dir={tmp}/run",
                                          "model=mobilenetv3_small", "model.width=0.75", "data.val_crop_pct=0.9"])
    GlobalHydra.instance().clear()
    summary = train(OmegaConf.to_container(cfg, resolve=True))
    return Path(summary["best_ckpt"])


def test_load_checkpoint_rebuilds_without_hydra(tiny_ckpt: Path) -> None:
    model, info = load_checkpoint(tiny_ckpt)
    assert not model.training and info["model_config"]["name"] == "mobilenetv3_small_100"
    assert info["preprocessing"]["val_res"] == 32 and info["preprocessing"]["crop_pct"] == 0.9
    # the model carries its preprocessing, in timm's pretrained_cfg names
    assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.pretrained_cfg["crop_pct"] == 0.9
    assert model.pretrained_cfg["interpolation"] == "bilinear" and len(model.pretrained_cfg["mean"]) == 3
    assert info["class_names"][:2] == ["tench", "English springer"] and len(info["class_folders"]) == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_eval_uses_checkpoint_preprocessing(compose_cfg, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    from zoo.training.evaluate import evaluate

    out = tmp_path / "eval.json"
    cfg = compose_cfg(f"ckpt_path={tiny_ckpt}", f"output_json={out}", "data.num_workers=0", "bench.repeats=2",
                      "bench.warmup=1", "bench.throughput_batch=4", config_name="eval")
    assert cfg["data"]["train_res"] != 32  # the eval data config says otherwise; the checkpoint wins
    res = evaluate(cfg)
    assert res["val_res"] == 32 and res["crop_pct"] == 0.9 and res["num_samples"] == 200
    assert 0 <= res["top1"] <= res["top5"] <= 100 and res["macs"] > 0 and res["params"] > 0
    assert res["latency"]["ms"] > 0 and res["throughput"]["img_per_s"] > 0
    saved = json.loads(out.read_text())
    assert saved["top1"] == res["top1"]
    text = capsys.readouterr().out
    assert "top-1 (%)" in text and "MACs conv+linear" in text and "fvcore total" in text


def test_eval_cli_explicit_crop_wins_over_checkpoint(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    args = [sys.executable, str(REPO_ROOT / "eval.py"), f"ckpt_path={tiny_ckpt}", f"output_json={out}",
            f"paths.log_dir={tmp_path}", "data.num_workers=0", "bench.repeats=1", "bench.warmup=0",
            "bench.throughput_batch=2"]
    res = subprocess.run([*args, "data.val_crop_pct=0.5"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(out.read_text())["crop_pct"] == 0.5
    assert "data.val_crop_pct=0.5 as set, not the checkpoint's crop_pct 0.9" in res.stdout
    res = subprocess.run([*args, "data.interpolation=bicubic"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["crop_pct"] == 0.9 and saved["interpolation"] == "bicubic"  # only the key that was set


def test_eval_by_model_name(compose_cfg, tmp_path: Path) -> None:
    from zoo.training.evaluate import evaluate

    cfg = compose_cfg("model=shufflenetv2", "model.width=0.5", "data.train_res=32", "data.num_workers=0",
                      "bench.repeats=1", "bench.warmup=0", "bench.throughput_batch=2",
                      f"output_json={tmp_path / 'e.json'}", config_name="eval")
    res = evaluate(cfg)
    assert res["model"] == "shufflenetv2_100" and res["num_samples"] == 200 and res["val_res"] == 32


def test_predict_cli_prints_top5(tiny_ckpt: Path) -> None:
    img = next((REPO_ROOT / "zoo" / "data" / "imagenette_mini" / "val" / "n01440764").glob("*"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, str(REPO_ROOT / "predict.py"), str(img), f"ckpt_path={tiny_ckpt}"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [line for line in res.stdout.splitlines() if line.startswith("  ")]
    assert len(lines) == 5 and all("%" in line for line in lines)
    from zoo.deploy.predict import predict

    (preds,) = predict([img], tiny_ckpt, topk=10)
    assert abs(sum(p for _, p in preds) - 1.0) < 1e-4 and len({n for n, _ in preds}) == 10


def test_eval_predict_and_deploy_feed_the_same_tensor(compose_cfg, tiny_ckpt: Path) -> None:
    """eval.py's data module (uint8 loader + normalize_batch), predict.py and `python -m zoo.deploy`'s
    int8 loaders turn one image into the same input tensor, bit for bit, for the same checkpoint."""
    from zoo.data import MINI_ROOT, Preprocessing
    from zoo.data.folder import load_rgb
    from zoo.deploy.__main__ import image_loaders, model_from_checkpoint
    from zoo.deploy.predict import image_to_input
    from zoo.training.evaluate import eval_setup

    img = str(sorted((MINI_ROOT / "val" / "n01440764").glob("*"))[0])
    cfg = compose_cfg(f"ckpt_path={tiny_ckpt}", "data.num_workers=0", config_name="eval")
    dm = eval_setup(cfg).datamodule
    dm.setup("validate")
    paths = [p for p, _ in dm.val_dataset.samples]
    x_eval = dm.normalize_batch(dm.val_dataset[paths.index(img)][0].unsqueeze(0))

    x_predict = image_to_input(load_checkpoint(tiny_ckpt)[0])(img)

    model, res = model_from_checkpoint(tiny_ckpt, None)
    _, val = image_loaders(model, MINI_ROOT, res, batch_size=1, num_calib=1)
    paths = [p for p, _ in val.dataset.samples]
    x_deploy = val.dataset[paths.index(img)][0].unsqueeze(0)

    assert res == 32 and x_eval.shape == (1, 3, 32, 32) and x_eval.dtype == torch.float32
    assert torch.equal(x_eval, x_predict) and torch.equal(x_eval, x_deploy)
    # the checkpoint's crop_pct (0.9) made it, not the default 0.875
    default_crop = Preprocessing(input_size=(3, 32, 32)).transform()
    assert not torch.equal(x_eval[0], default_crop(load_rgb(img)))
