"""Build the embedded Imagenette-mini set from a local Imagenette v2 folder.

Run from the repository root::

    python -m zoo.tools.make_mini [--src ../shared/data/imagenette2-224]

It picks a fixed, seeded sample of ``--train-per-class`` / ``--val-per-class``
images per class (sorted file names, then ``random.Random(seed).sample``),
resizes each so its shorter side is at most ``--short-side`` px (aspect kept,
never upscaled) and writes it as a JPEG under ``zoo/data/imagenette_mini``.
The output folder is replaced, so the script is idempotent.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from PIL import Image

from zoo._cli import run_cli
from zoo.data import MINI_ROOT

_DEFAULT_SRC = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenette2-224"
_IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def make_mini(
    src: str | Path,
    dst: str | Path = MINI_ROOT,
    *,
    per_class: dict[str, int] | None = None,
    short_side: int = 112,
    quality: int = 85,
    seed: int = 0,
) -> dict[str, int]:
    """Write a deterministic per-class sample of ``src`` (ImageFolder layout) to ``dst``.

    Args:
        src: folder holding ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``.
        dst: output folder; its ``train/`` and ``val/`` subfolders are replaced.
        per_class: images to take per class, by split (default ``{"train": 60, "val": 20}``).
        short_side: maximum shorter side of the written images, in pixels.
        quality: JPEG quality of the written images.
        seed: seed of the per-class sample.

    Returns:
        The number of images written per split.
    """
    src, dst = Path(src), Path(dst)
    per_class = per_class or {"train": 60, "val": 20}
    written: dict[str, int] = {}
    for split, count in per_class.items():
        split_dir = src / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"expected an ImageFolder split at {split_dir} (<split>/<wnid>/*.JPEG)")
        out_split = dst / split
        if out_split.exists():
            shutil.rmtree(out_split)
        written[split] = 0
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS)
            if len(files) < count:
                raise ValueError(f"{class_dir} has {len(files)} images, fewer than the {count} requested")
            # Seed per (split, class) so that adding a class never changes another class's sample.
            rng = random.Random(f"{seed}/{split}/{class_dir.name}")
            chosen = sorted(rng.sample(files, count))
            (out_split / class_dir.name).mkdir(parents=True)
            for path in chosen:
                with Image.open(path) as img:
                    img = img.convert("RGB")
                    scale = short_side / min(img.size)
                    if scale < 1.0:
                        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
                    img.save(out_split / class_dir.name / (path.stem + ".JPEG"), quality=quality, optimize=True)
                written[split] += 1
    return written


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m zoo.tools.make_mini``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(_DEFAULT_SRC), help="Imagenette v2 ImageFolder root")
    parser.add_argument("--dst", default=str(MINI_ROOT))
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--short-side", type=int, default=112)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    written = make_mini(
        args.src,
        args.dst,
        per_class={"train": args.train_per_class, "val": args.val_per_class},
        short_side=args.short_side,
        quality=args.quality,
        seed=args.seed,
    )
    size = sum(p.stat().st_size for p in Path(args.dst).rglob("*") if p.is_file())
    print(f"wrote {written} images to {args.dst} ({size / 2**20:.2f} MiB in total)")


if __name__ == "__main__":
    run_cli(main)
