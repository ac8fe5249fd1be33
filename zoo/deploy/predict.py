"""``predict(images, ckpt_path)``: top-k class names and probabilities with the checkpoint's preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from zoo.data import eval_transform
from zoo.models.checkpoint import load_checkpoint

__all__ = ["predict"]


@torch.inference_mode()
def predict(images: Sequence[str | Path], ckpt_path: str | Path, topk: int = 5,
            ema: bool = True) -> list[list[tuple[str, float]]]:
    """For each image file, the ``topk`` (class name, probability) pairs, best first.

    Resize/crop/interpolation/normalisation are the checkpoint's eval preprocessing
    (``zoo.data.eval_transform`` at its ``val_res`` and ``crop_pct``, then its mean/std).
    """
    from PIL import Image

    if not images:
        raise ValueError("give at least one image file")
    model, info = load_checkpoint(ckpt_path, ema=ema)
    pre = info["preprocessing"]
    missing = [k for k in ("val_res", "crop_pct", "interpolation", "mean", "std") if pre.get(k) is None]
    if missing:
        raise ValueError(f"checkpoint {ckpt_path} lacks preprocessing {missing}")
    tf = eval_transform(int(pre["val_res"]), float(pre["crop_pct"]), pre["interpolation"])
    mean = torch.tensor(pre["mean"]).view(3, 1, 1)
    std = torch.tensor(pre["std"]).view(3, 1, 1)
    names = info["class_names"] or [str(i) for i in range(info["num_classes"])]
    out = []
    for path in images:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        x = tf(Image.open(path).convert("RGB")).float().div(255.0)
        x = ((x - mean) / std).unsqueeze(0)
        prob = model(x).softmax(dim=-1)[0]
        p, idx = prob.topk(min(topk, prob.numel()))
        out.append([(names[i], float(v)) for v, i in zip(p.tolist(), idx.tolist())])
    return out
