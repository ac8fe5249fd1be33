"""Top-5 predictions for images: ``python predict.py IMG... ckpt_path=PATH`` (or ``--ckpt PATH``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, print the top-k classes of each image."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # accept Hydra-style key=value as well as flags
    argv = [f"--{a.split('=', 1)[0].replace('ckpt_path', 'ckpt')}={a.split('=', 1)[1]}"
            if a.split("=", 1)[0] in ("ckpt_path", "ckpt", "topk", "ema") else a for a in argv]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--ckpt", required=True, help="a zoo training checkpoint (.ckpt)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--ema", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                   help="use EMA weights when present (default true)")
    args = p.parse_args(argv)

    from zoo.deploy.predict import predict

    for path, preds in zip(args.images, predict(args.images, args.ckpt, topk=args.topk, ema=args.ema)):
        print(path)
        for name, prob in preds:
            print(f"  {prob * 100:6.2f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
