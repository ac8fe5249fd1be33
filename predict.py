"""Top-5 predictions for images: ``python predict.py IMG... ckpt_path=PATH`` (or ``--ckpt PATH``).

``PATH``: a zoo training checkpoint or a ``zoo.save_pretrained`` directory. A file that is not an
image is reported (which file, and why) and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys

from zoo._cli import run_cli


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, print the top-k classes of each image.

    Raises:
        ValueError: some files are not images (after the others are printed), or the checkpoint is refused.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # accept Hydra-style key=value as well as flags
    argv = [f"--{a.split('=', 1)[0].replace('ckpt_path', 'ckpt')}={a.split('=', 1)[1]}"
            if a.split("=", 1)[0] in ("ckpt_path", "ckpt", "topk", "ema") else a for a in argv]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--ckpt", required=True, help="a zoo training checkpoint (.ckpt) or zoo.save_pretrained directory")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--ema", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                   help="use EMA weights when present (default true)")
    args = p.parse_args(argv)

    from zoo.deploy.predict import predict

    skipped = []
    for path, preds in zip(args.images, predict(args.images, args.ckpt, topk=args.topk, ema=args.ema)):
        if preds is None:
            skipped.append(path)
            continue
        print(path)
        for name, prob in preds:
            print(f"  {prob * 100:6.2f}%  {name}")
    if skipped:
        raise ValueError(f"{len(skipped)} of {len(args.images)} files are not images and were skipped: "
                         f"{', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
