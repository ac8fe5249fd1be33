"""Write a shareable ``zoo.save_pretrained`` directory (``model.safetensors`` + ``config.json``).

    python -m zoo.tools.save_pretrained logs/train/runs/<run>/<time>/checkpoints/best.ckpt my_model
    python -m zoo.tools.save_pretrained mobilenetv3_large_100 weights/mnv3 --weights imagenet

The source is a zoo training checkpoint (its EMA weights unless ``--no-ema``), another such
directory, or a registered model name with ``--weights`` (``imagenet``: the reference's published
weights, downloaded by torchvision/timm; or a file in the ``--weights-from`` layout). The directory
is what ``model.weights=`` of ``train.py`` (fine-tuning), ``eval.py``, ``predict.py`` and
``python -m zoo.deploy --ckpt`` take.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from zoo._cli import run_cli
from zoo.models.pretrained import save_pretrained
from zoo.models.registry import create_model, list_models

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> Path:
    """CLI entry point; see the module docs. Returns the directory written."""
    parser = argparse.ArgumentParser(prog="python -m zoo.tools.save_pretrained", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a training checkpoint, a save_pretrained directory, or a model name")
    parser.add_argument("out", help="the directory to write (its model.safetensors and config.json are replaced)")
    parser.add_argument("--weights", default=None, help="with a model name: 'imagenet' or a weights file")
    parser.add_argument("--weights-from", default="zoo", choices=["zoo", "torchvision", "timm"],
                        help="layout of --weights (imagenet: the model's reference, torchvision first)")
    parser.add_argument("--num-classes", type=int, default=1000, help="with a model name")
    parser.add_argument("--no-ema", action="store_true", help="a checkpoint's live weights, not its EMA weights")
    args = parser.parse_args(argv)
    if Path(args.source).expanduser().exists():
        out = save_pretrained(args.source, args.out, ema=not args.no_ema)
    elif args.source in list_models():
        if args.weights is None:
            raise ValueError(f"{args.source} is a model name: give its weights with --weights imagenet or "
                             "--weights FILE")
        model = create_model(args.source, num_classes=args.num_classes, weights=args.weights,
                             weights_from=args.weights_from)
        out = save_pretrained(model, args.out)
    else:
        raise ValueError(f"{args.source} is neither a checkpoint or directory that exists nor a registered model name")
    print(f"wrote {out / 'model.safetensors'} and {out / 'config.json'}")
    return out


if __name__ == "__main__":
    run_cli(main)
