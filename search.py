"""Latency-constrained architecture search: ``python search.py search.budget_ms=2.1`` (see configs/search.yaml).

Thin Hydra entry point: composes the training config plus the ``search`` group, converts it to plain
dicts and calls ``zoo.design.search.run_search``, where all the logic lives; bad input exits with a
one-line ``error: ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ZOO_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="search")
def main(cfg: DictConfig) -> None:
    """Run or resume the search."""
    from zoo._cli import run_cli
    from zoo.design.search import run_search

    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    run_cli(lambda: run_search(plain))


if __name__ == "__main__":
    main()
