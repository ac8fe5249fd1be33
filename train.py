"""Train a zoo model: ``python train.py model=mobilenetv3`` (see configs/train.yaml).

Thin Hydra entry point: composes the config, converts it to plain dicts and calls
``zoo.training.train``, where all the logic lives.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ZOO_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run training; returns the best val top-1 (for Hydra sweepers)."""
    from zoo.training import train

    summary = train(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    return summary.get("best_top1")


if __name__ == "__main__":
    main()
