"""``data.mean=auto data.std=auto``: the training set's channel statistics (``zoo.data.stats``), computed once,
cached beside the uint8 cache, used for normalization and recorded in the checkpoint's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import zoo.data.stats
from conftest import compose_config
from zoo.data import ImageDataModule, Preprocessing, normalize_uint8
from zoo.data.stats import channel_stats
from zoo.models.checkpoint import load_checkpoint
from zoo.training import train


def auto_module(cache_dir: Path, cache: str) -> ImageDataModule:
    return ImageDataModule(mean="auto", std="auto", train_res=32, cache=cache, cache_dir=cache_dir, num_workers=0)


def test_auto_stats_are_the_training_images_mean_and_std(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = auto_module(tmp_path / "uint8", "uint8")
    mean, std = dm.mean, dm.std
    cache_file = dm._cache_file("train", build=False)
    pixels = np.load(cache_file).astype(np.float64) / 255  # the 600 decoded training squares, N x 3 x S x S
    assert pixels.shape[0] == 600
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), atol=1e-6)
    assert dm.stats_file.is_file() and dm.stats_file.name.startswith(cache_file.stem)  # keyed like the cache

    without_cache = auto_module(tmp_path / "none", "none")  # decodes the images itself, same numbers
    np.testing.assert_allclose(without_cache.mean, mean, atol=1e-9)
    np.testing.assert_allclose(without_cache.std, std, atol=1e-9)

    def no_recompute(*args, **kwargs):
        raise AssertionError("statistics computed again")

    monkeypatch.setattr(zoo.data.stats, "channel_stats", no_recompute)  # computed once: read back from the file
    again = auto_module(tmp_path / "none", "none")
    assert again.mean == without_cache.mean and again.std == without_cache.std
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(again.normalize_batch(images), normalize_uint8(images, mean, std))


def test_channel_stats_do_not_depend_on_batching() -> None:
    images = np.random.randint(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    whole = channel_stats([images])
    split = channel_stats([images[:2], images[2:3], images[3:]])
    np.testing.assert_allclose(split, whole, atol=1e-12)
    np.testing.assert_allclose(whole[1], (images / 255.0).std(axis=(0, 2, 3)), atol=1e-12)


def test_bad_mean_std_settings_say_what_is_expected() -> None:
    with pytest.raises(ValueError, match="or both 'auto'"):
        ImageDataModule(mean="auto", std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="or both 'auto'"):
        ImageDataModule(mean="mean", std="auto")
    with pytest.raises(ValueError, match="uint8 batches"):
        channel_stats([np.zeros((2, 3, 4, 4), dtype=np.float32)])


def test_checkpoint_preprocessing_carries_the_auto_stats(tmp_path: Path, capsys) -> None:
    cache_dir = tmp_path / "cache"
    summary = train(compose_config(tmp_path, "model=mobilenetv3_small", "model.width=0.5", "data.mean=auto",
                                   "data.std=auto", f"data.cache_dir={cache_dir}"))
    assert "normalization: the training set's mean" in capsys.readouterr().out
    expected = auto_module(cache_dir, "none")  # the same settings: reads the run's cached statistics
    model, info = load_checkpoint(summary["last_ckpt"])
    pre = Preprocessing.from_pretrained_cfg(model)  # what eval.py and predict.py normalize with
    assert pre.mean == expected.mean and pre.std == expected.std
    assert tuple(info["preprocessing"]["mean"]) == expected.mean
    assert pre.mean != Preprocessing().mean  # not ImageNet's
