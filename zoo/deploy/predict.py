"""``predict(images, ckpt_path)``: top-k class names and probabilities with the checkpoint's preprocessing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from zoo.data import Preprocessing
from zoo.data.folder import _DECODE_ERRORS, load_rgb
from zoo.models.pretrained import load_model

__all__ = ["NotAnImageError", "image_to_input", "predict"]

log = logging.getLogger("zoo.deploy")


class NotAnImageError(ValueError):
    """A path given as an image that is missing or that PIL cannot read as an image."""


def image_to_input(model: nn.Module) -> Callable[[str | Path], torch.Tensor]:
    """A function: image file -> the ``1 x C x res x res`` float tensor ``model`` takes, by the
    eval preprocessing in its ``pretrained_cfg`` (:class:`zoo.data.Preprocessing`).

    The function raises :class:`NotAnImageError`, naming the file and why, for a missing file or
    one that is not an image PIL can decode."""
    transform = Preprocessing.from_pretrained_cfg(model).transform()

    def load(path: str | Path) -> torch.Tensor:
        path = Path(path)
        if not path.is_file():
            raise NotAnImageError(f"{path}: no such file")
        try:
            image = load_rgb(str(path))
        except _DECODE_ERRORS as err:
            raise NotAnImageError(f"{path}: not an image PIL can read ({err})") from None
        return transform(image).unsqueeze(0)

    return load


@torch.inference_mode()
def predict(images: Sequence[str | Path], ckpt_path: str | Path, topk: int = 5,
            ema: bool = True) -> list[list[tuple[str, float]] | None]:
    """For each image file, the ``topk`` (class name, probability) pairs, best first; None for a file
    that is missing or not an image, which is logged (logger ``zoo.deploy``) with the reason while
    the other images are still predicted.

    ``ckpt_path``: a zoo training checkpoint or a ``zoo.save_pretrained`` directory. Resize/crop/
    interpolation/normalisation are its eval preprocessing (``model.pretrained_cfg``; see
    :func:`image_to_input`).
    """
    if not images:
        raise ValueError("give at least one image file")
    model, info = load_model(ckpt_path, ema=ema)
    to_input = image_to_input(model)
    names = info["class_names"] or [str(i) for i in range(info["num_classes"])]
    out: list[list[tuple[str, float]] | None] = []
    for path in images:
        try:
            x = to_input(path)
        except NotAnImageError as err:
            log.warning("skipping %s", err)
            out.append(None)
            continue
        prob = model(x).softmax(dim=-1)[0]
        p, idx = prob.topk(min(topk, prob.numel()))
        out.append([(names[i], float(v)) for v, i in zip(p.tolist(), idx.tolist())])
    return out
