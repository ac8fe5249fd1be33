"""Evaluate a model: ``python eval.py ckpt_path=PATH`` or ``python eval.py model=resnet18 model.weights=...``.

Thin Hydra entry point over ``zoo.training.evaluate.evaluate`` (see configs/eval.yaml).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ZOO_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    """Run the evaluation; returns top-1."""
    from hydra.core.hydra_config import HydraConfig

    from zoo.training.evaluate import evaluate

    keys = (o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task)
    explicit_data = {k.removeprefix("data.") for k in keys if k.startswith("data.")}
    return evaluate(OmegaConf.to_container(cfg, resolve=True), explicit_data)["top1"]


if __name__ == "__main__":
    main()
