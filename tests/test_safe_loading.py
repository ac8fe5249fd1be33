"""Safe loading: no load path unpickles code, and the shareable save_pretrained format round-trips."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from conftest import REPO_ROOT
from test_models import randomize
from zoo.data import MINI_ROOT
from zoo.models.weights import UnsafeFileError

IMAGE = sorted((MINI_ROOT / "val" / "n01440764").glob("*"))[0]


class _WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: the file appears if the loader executes pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    """(a checkpoint that looks like a zoo checkpoint and runs code when unpickled, the marker it would write)."""
    marker = tmp_path / "code_ran"
    model = zoo.create_model("mobilenetv3_small_100", num_classes=10, width=0.5)
    ckpt = {"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
            "zoo_model_config": dict(model.model_config), "zoo_meta": {"num_classes": 10},
            "hyper_parameters": {"payload": _WritesMarker(marker)}}
    path = tmp_path / "crafted.ckpt"
    torch.save(ckpt, path)
    return path, marker


def _load_predict_script():
    spec = importlib.util.spec_from_file_location("predict_script", REPO_ROOT / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crafted_checkpoint_is_refused_everywhere(crafted: tuple[Path, Path], compose_cfg) -> None:
    from zoo.deploy.__main__ import main as deploy_main
    from zoo.training.evaluate import evaluate

    path, marker = crafted
    message = r"refused to load .*crafted\.ckpt.*could run any code"
    with pytest.raises(UnsafeFileError, match=message):
        zoo.load_checkpoint(path)
    with pytest.raises(UnsafeFileError, match=message):
        zoo.save_pretrained(path, path.parent / "out")
    with pytest.raises(UnsafeFileError, match=message):
        zoo.create_model("mobilenetv3_small_100", num_classes=10, width=0.5, weights=path)
    with pytest.raises(UnsafeFileError, match=message):
        evaluate(compose_cfg(f"ckpt_path={path}", "data.num_workers=0", config_name="eval"))
    with pytest.raises(UnsafeFileError, match=message):
        _load_predict_script().main([str(IMAGE), f"ckpt_path={path}"])
    with pytest.raises(UnsafeFileError, match=message):
        deploy_main(["export", "--ckpt", str(path), "--out", str(path.parent / "deploy")])
    assert not marker.exists()


def test_eval_py_refuses_a_crafted_checkpoint(crafted: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = crafted
    env = {**os.environ, "ZOO_ROOT": str(REPO_ROOT)}
    res = subprocess.run([sys.executable, str(REPO_ROOT / "eval.py"), f"ckpt_path={path}", f"paths.log_dir={tmp_path}",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode != 0 and "refused to load" in res.stderr and "could run any code" in res.stderr
    assert not marker.exists()


def test_resume_from_a_crafted_checkpoint_runs_no_code(crafted: tuple[Path, Path], compose_cfg) -> None:
    from zoo.training import train

    path, marker = crafted
    with pytest.raises(ValueError, match="refused to load .*unpickling them could run any code"):
        train(compose_cfg("model=mobilenetv3_small", "model.width=0.5", f"ckpt_path={path}"))
    assert not marker.exists()


def test_not_a_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.ckpt is not a file written by torch\.save"):
        zoo.load_checkpoint(path)


def test_save_pretrained_round_trip_needs_no_pickle(tmp_path: Path, monkeypatch, compose_cfg) -> None:
    from zoo.deploy.__main__ import model_from_checkpoint
    from zoo.deploy.predict import predict
    from zoo.training.evaluate import eval_setup

    model = randomize(zoo.create_model("mobilenetv3_small_100", num_classes=10, width=0.5, drop_rate=0.1))
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 48, 48), "crop_pct": 0.9}
    folders = sorted(p.name for p in (MINI_ROOT / "val").iterdir())
    out = zoo.save_pretrained(model, tmp_path / "shared", class_names=[f"c{i}" for i in range(10)],
                              class_folders=folders)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"] == {**model.model_config}
    assert config["architecture"]["width"] == 0.5 and config["pretrained_cfg"]["crop_pct"] == 0.9

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_pickle)
    again, info = zoo.load_pretrained(out)
    x = torch.randn(2, 3, 48, 48)
    assert not again.training and torch.equal(model(x), again(x))
    assert again.pretrained_cfg["input_size"] == (3, 48, 48) and again.pretrained_cfg["crop_pct"] == 0.9
    assert info["class_names"][0] == "c0" and info["num_classes"] == 10 and info["epoch"] is None

    # wherever a checkpoint is taken, the directory is too
    (preds,) = predict([IMAGE], out, topk=3)
    assert len(preds) == 3 and all(name in info["class_names"] for name, _ in preds)
    setup = eval_setup(compose_cfg(f"ckpt_path={out}", "data.num_workers=0", config_name="eval"))
    assert setup.datamodule.val_res == 48 and torch.equal(setup.model(x), model(x))
    deployed, res = model_from_checkpoint(out, None)
    assert res == 48 and torch.equal(deployed(x), model(x))
    finetuned = zoo.create_model("mobilenetv3_small_100", num_classes=3, weights=out)  # its width etc. come along
    assert finetuned.model_config["width"] == 0.5 and finetuned.model_config["drop_rate"] == 0.1
    assert finetuned.pretrained_cfg["crop_pct"] == 0.9 and finetuned(x).shape == (2, 3)


def test_a_checkpoint_saves_as_a_directory(tmp_path: Path, compose_cfg) -> None:
    from zoo.training import train

    ckpt = Path(train(compose_cfg("model=mobilenetv3_small", "model.width=0.5", "ema.enabled=true",
                                  "ema.decay=0.5"))["last_ckpt"])
    model, info = zoo.load_checkpoint(ckpt)
    again, again_info = zoo.load_pretrained(zoo.save_pretrained(ckpt, tmp_path / "shared"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x)) and again_info["ema"] is True
    for key in ("class_names", "class_folders", "preprocessing", "epoch", "best_acc1", "num_classes"):
        assert again_info[key] == info[key], key
    assert again.pretrained_cfg == model.pretrained_cfg
