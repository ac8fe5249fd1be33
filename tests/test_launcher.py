"""Cluster launch through Hydra: a tiny sweep with the submitit launcher's local executor (the `cluster` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY

pytestmark = pytest.mark.slow


def test_submitit_local_sweep(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed "
                        "(pip install -e '.[cluster]')")
    sweep = tmp_path / "sweep"
    env = {**os.environ, "ZOO_ROOT": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    args = ["-m", "hydra/launcher=submitit_local", *TINY, "model=mobilenetv3_small", "model.width=0.5",
            "trainer.limit_train_batches=1", "optim.base_lr=0.1,0.2", f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.sweep.dir={sweep}"]
    res = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in res.stdout + res.stderr
    lrs = sorted(json.loads((sweep / str(i) / "summary.json").read_text())["lr"] for i in (0, 1))
    assert lrs == pytest.approx([0.1 * 8 / 256, 0.2 * 8 / 256])
    assert (sweep / ".submitit").is_dir()  # the jobs ran through submitit
