"""Loader vs. train-step throughput on this machine.

    python -m zoo.tools.data_bench --root ../shared/data/imagenette2-224 --res 128 --batch-size 64 --cache uint8

Prints images/s of (1) iterating the train DataLoader of ``ImageDataModule`` (uint8
batches, workers as given) and (2) one optimisation step of the model (uint8 ->
normalised float, channels_last forward, cross-entropy, backward, SGD) at the same
resolution and batch size on synthetic data, and their ratio. Each figure is the best
of ``--repeats`` runs (other processes on a shared machine only slow a run down); the
two are timed one after the other so they do not compete for the CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from zoo._cli import run_cli
from zoo.data import ImageDataModule
from zoo.models.registry import create_model


def loader_throughput(dm: ImageDataModule, batches: int, warmup: int) -> float:
    """Images/s of the train loader over ``batches`` batches, timed after ``warmup`` (worker start, prefetch)."""
    dm.setup("fit")
    loader = dm.train_dataloader()
    n, images, start = 0, 0, time.perf_counter()
    while n < warmup + batches:
        for x, _ in loader:
            n += 1
            if n == warmup:
                start = time.perf_counter()
            elif n > warmup:
                images += x.shape[0]
            if n >= warmup + batches:
                break
    return images / (time.perf_counter() - start)


def train_step_throughput(model: nn.Module, dm: ImageDataModule, res: int, batch_size: int, steps: int,
                          warmup: int = 3) -> float:
    """Images/s of forward + backward + SGD step, channels_last, on a random uint8 batch."""
    model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    loss_fn = nn.CrossEntropyLoss()
    x8 = torch.randint(0, 256, (batch_size, 3, res, res), dtype=torch.uint8)
    y = torch.randint(0, dm.num_classes, (batch_size,))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        x = dm.normalize_batch(x8, train=True).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m zoo.tools.data_bench``."""
    p = argparse.ArgumentParser(description="Loader-only vs. train-step images/s")
    p.add_argument("--root", default=None, help="ImageFolder root (default: embedded Imagenette-mini)")
    p.add_argument("--res", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cache", default="none", choices=["none", "uint8"])
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--aug", default="basic")
    p.add_argument("--model", default="mobilenetv3_small_100")
    p.add_argument("--batches", type=int, default=60, help="loader batches timed")
    p.add_argument("--steps", type=int, default=10, help="train steps timed")
    p.add_argument("--warmup", type=int, default=5, help="loader batches skipped before timing")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs of each measurement")
    args = p.parse_args(argv)

    dm = ImageDataModule(root=args.root, train_res=args.res, batch_size=args.batch_size, cache=args.cache,
                         cache_dir=args.cache_dir, num_workers=args.num_workers, aug=args.aug, pin_memory=False)
    if args.cache == "uint8":
        t = time.perf_counter()
        dm.prepare_data()
        print(f"cache ready in {time.perf_counter() - t:.1f} s (short side {dm.cache_short_side} px, {dm.cache_dir})")
    # Best of several runs: on a shared machine other processes only ever make a run slower.
    loader = max(loader_throughput(dm, args.batches, args.warmup) for _ in range(args.repeats))
    model = create_model(args.model, num_classes=dm.num_classes)
    step = max(train_step_throughput(model, dm, args.res, args.batch_size, args.steps) for _ in range(args.repeats))
    print(f"root={dm.root} res={args.res} batch={args.batch_size} cache={args.cache} workers={args.num_workers} "
          f"aug={args.aug} torch_threads={torch.get_num_threads()} load_avg_1min={os.getloadavg()[0]:.2f}")
    print(f"loader only : {loader:8.0f} img/s")
    print(f"train step  : {step:8.0f} img/s  ({args.model}, channels_last, SGD)")
    print(f"ratio loader/train: {loader / step:.2f}x")


if __name__ == "__main__":
    run_cli(main)
