"""``predict(images, ckpt_path)``: top-k class names and probabilities with the checkpoint's preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from zoo.data import Preprocessing
from zoo.data.folder import load_rgb
from zoo.models.checkpoint import load_checkpoint

__all__ = ["image_to_input", "predict"]


def image_to_input(model: nn.Module) -> Callable[[str | Path], torch.Tensor]:
    """A function: image file -> the ``1 x C x res x res`` float tensor ``model`` takes, by the
    eval preprocessing in its ``pretrained_cfg`` (:class:`zoo.data.Preprocessing`)."""
    transform = Preprocessing.from_pretrained_cfg(model).transform()

    def load(path: str | Path) -> torch.Tensor:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        return transform(load_rgb(str(path))).unsqueeze(0)

    return load


@torch.inference_mode()
def predict(images: Sequence[str | Path], ckpt_path: str | Path, topk: int = 5,
            ema: bool = True) -> list[list[tuple[str, float]]]:
    """For each image file, the ``topk`` (class name, probability) pairs, best first.

    Resize/crop/interpolation/normalisation are the checkpoint's eval preprocessing
    (``model.pretrained_cfg`` as restored by ``load_checkpoint``; see :func:`image_to_input`).
    """
    if not images:
        raise ValueError("give at least one image file")
    model, info = load_checkpoint(ckpt_path, ema=ema)
    to_input = image_to_input(model)
    names = info["class_names"] or [str(i) for i in range(info["num_classes"])]
    out = []
    for path in images:
        prob = model(to_input(path)).softmax(dim=-1)[0]
        p, idx = prob.topk(min(topk, prob.numel()))
        out.append([(names[i], float(v)) for v, i in zip(p.tolist(), idx.tolist())])
    return out
