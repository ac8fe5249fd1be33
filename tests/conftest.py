"""Shared test fixtures: a fixed seed before every test, repository paths, the shared-data skip helper,
Hydra config composition, and the plugin that runs tests marked ``own_process`` in a child pytest per file
(tests/_own_process.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from _own_process import OwnProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
os.environ.setdefault("ZOO_ROOT", str(REPO_ROOT))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(OwnProcess(), "own_process")


#: Overrides that make any training config run in seconds on a CPU (embedded mini data, 32 px).
TINY = [
    "data=mini", "data.train_res=32", "data.batch_size=8", "data.num_workers=0", "data.cache=none",
    "trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "callbacks.progress_bar=none", "logger=none", "sched.warmup_epochs=0",
]


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same random state (torch, random, numpy), whatever ran before it."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where train.py and configs/ live)."""
    return REPO_ROOT


def shared_data(name: str) -> Path:
    """Path of ``../shared/data/<name>``; skips the calling test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data {path} is not available")
    return path


def compose_config(tmp: Path, *overrides: str, config_name: str = "train", tiny: bool = True,
                   output_dir: Path | None = None) -> dict[str, Any]:
    """``configs/<config_name>.yaml`` with overrides (after the :data:`TINY` settings unless ``tiny=False``)
    as a plain dict, its outputs under ``tmp`` (``paths.log_dir = tmp/logs``, ``paths.output_dir = tmp/run``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    out = output_dir or (tmp / "run")
    base = [f"paths.log_dir={tmp / 'logs'}", f"paths.output_dir={out}"]
    if config_name == "train" and tiny:
        base += TINY
    try:
        with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=base + list(overrides))
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., Any]:
    """:func:`compose_config` with outputs under ``tmp_path``."""
    def _compose(*overrides: str, config_name: str = "train", tiny: bool = True,
                 output_dir: Path | None = None) -> dict[str, Any]:
        return compose_config(tmp_path, *overrides, config_name=config_name, tiny=tiny, output_dir=output_dir)

    return _compose
