"""Resume after SIGKILL (explicit ckpt_path and resume=auto), DDP on 2 CPU processes, and a Hydra multirun.

These run the real ``train.py`` in subprocesses (marked slow; each takes tens of seconds on 2 cores).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY
from zoo.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


def run_train(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZOO_ROOT": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_train(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "ZOO_ROOT": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _complete(path: Path) -> bool:
    """Whether the checkpoint at ``path`` loads (a file still being written does not)."""
    try:
        read_checkpoint(path)
        return True
    except Exception:
        return False


def kill_after_first_checkpoint(proc: subprocess.Popen, runs: Path, timeout: float = 300) -> Path:
    """SIGKILL ``proc`` once some ``runs/**/checkpoints/last.ckpt`` exists (epoch 0 done, epoch 1 running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(runs.glob("**/checkpoints/last.ckpt"))
        if found and _complete(found[0]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before it could be killed")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no checkpoint appeared")


def epochs_in_csv(run_dir: Path) -> list[int]:
    return [int(r["epoch"]) for r in rows_in_csv(run_dir)]


def rows_in_csv(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def killed_mid_run(run_dir: Path, last: Path) -> list[dict[str, str]]:
    """The metrics rows of a killed run, after checking that the kill landed mid-run.

    The checkpoint holds an epoch before the last, and ``metrics.csv`` only epochs up to the kill:
    those of the checkpoint, plus at most the one that finished but whose checkpoint was not yet written.
    """
    done = read_checkpoint(last)["epoch"]
    rows = rows_in_csv(run_dir)
    assert done < 2, f"the kill came after the last epoch ({done})"
    assert [int(r["epoch"]) for r in rows] in (list(range(done + 1)), list(range(done + 2))), rows
    return rows[: done + 1]


def continued_from(run_dir: Path, before: list[dict[str, str]]) -> None:
    """The resumed run kept the killed run's epochs (the same rows, timings included) and trained the rest."""
    after = rows_in_csv(run_dir)
    assert [int(r["epoch"]) for r in after] == [0, 1, 2]
    assert after[: len(before)] == before, "the resumed run re-trained epochs the checkpoint had completed"


def tiny_args(tmp_path: Path, *extra: str) -> list[str]:
    # 3 epochs of 24 small batches: epoch 1 is still running when epoch 0's checkpoint has been read
    return [*TINY, f"paths.log_dir={tmp_path / 'logs'}", "model=mobilenetv3_small", "model.width=0.75",
            "trainer.max_epochs=3", "trainer.limit_train_batches=24", "logger=csv", *extra]


def test_resume_after_sigkill_with_ckpt_path_and_auto(tmp_path: Path) -> None:
    # 1) explicit ckpt_path
    run1 = tmp_path / "run1"
    proc = start_train(tiny_args(tmp_path, f"hydra.run.dir={run1}", "run_name=explicit"), tmp_path / "a.log")
    last = kill_after_first_checkpoint(proc, run1)
    assert not (run1 / "summary.json").exists()
    before = killed_mid_run(run1, last)
    res = run_train(tiny_args(tmp_path, f"hydra.run.dir={tmp_path / 'run1b'}", f"ckpt_path={last}",
                              "run_name=explicit"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"resuming from {last.resolve()}" in res.stdout
    continued_from(run1, before)
    summary = json.loads((run1 / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["resumed_from"] == str(last.resolve())
    assert read_checkpoint(run1 / "checkpoints" / "last.ckpt")["epoch"] >= 2

    # 2) resume=auto finds the newest last.ckpt of the same run_name and continues that directory
    runs = tmp_path / "logs" / "train" / "runs" / "auto"
    proc = start_train(tiny_args(tmp_path, "run_name=auto"), tmp_path / "b.log")
    last = kill_after_first_checkpoint(proc, runs)
    run_dir = last.parent.parent
    before = killed_mid_run(run_dir, last)
    res = run_train(tiny_args(tmp_path, "run_name=auto", "resume=auto"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"resume=auto: resuming from {last.resolve()}" in res.stdout
    continued_from(run_dir, before)
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3
    logged = (run_dir / "logs" / "csv" / "metrics.csv")
    assert logged.is_file()  # the Lightning logger run continues in the same directory


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    res = run_train([*TINY, f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={out}", "trainer=ddp",
                     "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                     "trainer.precision=32-true", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                     "trainer.limit_val_batches=null", "model=mobilenetv3_small", "model.width=0.75",
                     "ema.enabled=true"], timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_num_samples"] == 200  # each val image counted once across the 2 ranks
    assert summary["global_batch"] == 16  # 8 per process x 2
    assert epochs_in_csv(out) == [0]
    ckpt = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert any(k.startswith("ema.module.") for k in ckpt["state_dict"])
    # only rank 0 wrote outputs: one run directory, one of each file
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("**/metrics.csv"))
    ours = [p.relative_to(out) for p in out.rglob("*") if p.is_file() and not p.relative_to(out).parts[0].startswith(".")]
    for name in ("summary.json", "config.yaml", "metrics.csv"):  # .hydra*/ hold Hydra's own per-rank config
        assert [p for p in ours if p.name == name] == [Path(name)]


def test_multirun_sweep_two_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "multi"
    res = run_train(["-m", *TINY, f"paths.log_dir={tmp_path / 'logs'}", f"hydra.sweep.dir={sweep}",
                     "model=mobilenetv3_small", "model.width=0.75", "trainer.limit_train_batches=1",
                     "optim.base_lr=0.1,0.2"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lrs = sorted(json.loads((sweep / str(i) / "summary.json").read_text())["lr"] for i in (0, 1))
    assert lrs == pytest.approx([0.1 * 8 / 256, 0.2 * 8 / 256])
