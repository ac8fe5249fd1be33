"""Regression floor on the real Imagenette: one epoch of MobileNetV3-Small at 96 px.

Runs only where ``../shared/data/imagenette2-224`` exists. A regression in data loading,
augmentation, the loss or the blocks shows up as a top-1 below the measured floor.
"""

from pathlib import Path

import pytest

IMAGENETTE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette2-224"

# Seeded, so a run repeats itself on the same code and machine: 32.76% top-1 (seed 42, 2-core CPU,
# 34-43 s), both at this session's first commit c49e448 and after the layout redesign, to the last
# digit. An earlier 36.41% (2026-11-29) was measured on older code and is not reproduced by c49e448.
# The floor sits ~3 points below the measured value, for numeric differences between machines.
SEED = 42
FLOOR = 30.0


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason=f"{IMAGENETTE} is not available")
def test_one_epoch_of_mobilenetv3_small_on_imagenette_beats_the_floor(compose_cfg, tmp_path):
    """python train.py experiment=imagenette_mobilenetv3_small data.train_res=96 data.val_res=96 trainer.max_epochs=1
    seed=42"""
    from zoo.training.train import train

    cfg = compose_cfg(
        "experiment=imagenette_mobilenetv3_small", f"data.root={IMAGENETTE}", "data.train_res=96", "data.val_res=96",
        f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "sched.warmup_epochs=0.3",
        "callbacks.progress_bar=none", "logger=csv", f"seed={SEED}", tiny=False,
    )
    summary = train(cfg)
    print(f"imagenette 1 epoch @96 px: top-1 {summary['final_top1']:.2f}%, {summary['wall_time_s']:.0f} s")
    assert summary["val_num_samples"] == 3925
    assert summary["final_top1"] > FLOOR
