"""fp32 vs int8 batch-1 latency and top-1 of a hard-swish network, for each form of its activations.

Quantizes the model three ways with zoo.deploy.quantize_int8 (same calibration images and method):
  int8 fused      primitive_activations=False: HardSigmoid in fp32 between DQ/Q (the old form)
  int8 primitive  primitive_activations=True (the default): Add/Clip/Mul, all QLinear
  int8 prim+fold  the primitive graph with every Mul by a positive scalar constant (the 1/6) folded
                  into the scale of the DequantizeLinear in front of it (an experiment: one QLinearMul
                  less per activation; NOT in zoo)
then evaluates top-1 of PyTorch fp32 and of each int8 graph on the same val images, and times the
onnxruntime fp32 graph (model_fp32.onnx, fused ops) and the three int8 graphs interleaved
(zoo.measure.timing.median_seconds: blocks of 10 calls, median over --runs/10 blocks), repeated
--rounds times.

    cd /work/main && . .venv/bin/activate
    python results/int8_activations/measure_int8_activations.py --ckpt <best.ckpt> --data ../shared/data/imagenette2-224
    python results/int8_activations/measure_int8_activations.py --model mobilenetv3_small_100 --num-classes 10 --res 128
"""

from __future__ import annotations

import argparse
import shutil
from unittest import mock
from collections import defaultdict
from pathlib import Path

import torch

from zoo.deploy.__main__ import _default_data_root, image_loaders, model_from_checkpoint
import zoo.deploy.int8 as int8
from zoo.deploy.int8 import count_int8_ops, fold_constant_muls, quantize_int8
from zoo.deploy.onnx import example_input, ort_session
from zoo.measure.timing import median_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--res", type=int, default=None)
    p.add_argument("--data", default=str(_default_data_root()))
    p.add_argument("--calib", type=int, default=300)
    p.add_argument("--max-val", type=int, default=None)
    p.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=200, help="calls per graph per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="outputs/int8_activations")
    args = p.parse_args()
    model, res = model_from_checkpoint(args.ckpt, args.model, args.num_classes, args.res)
    model.eval()
    torch.set_num_threads(args.threads)
    out = Path(args.out) / model.model_config["name"]
    calib, val = image_loaders(model, args.data, res, num_calib=args.calib, max_val=args.max_val)
    fp32_path, fused = quantize_int8(model, calib, out / "fused", res, args.calib, calibrate_method=args.method,
                                     primitive_activations=False)
    with mock.patch.object(int8, "fold_constant_muls", lambda path: 0):  # the primitive graph before the fold
        _, primitive = quantize_int8(model, calib, out / "primitive", res, args.calib, calibrate_method=args.method)
    folded = out / "primitive" / "model_int8_folded.onnx"
    shutil.copy(primitive, folded)
    print(f"folded {fold_constant_muls(folded)} Mul-by-constant nodes")
    graphs = {"ort fp32": fp32_path, "int8 fused": fused, "int8 primitive": primitive, "int8 prim+fold": folded}
    for name, path in graphs.items():
        print(f"{name:>15} ops: " + ", ".join(f"{k} x{v}" for k, v in count_int8_ops(path).items()))
    sessions = {name: ort_session(path, args.threads) for name, path in graphs.items()}
    correct = defaultdict(int)
    total = 0
    with torch.no_grad():
        for images, labels in val:
            correct["torch fp32"] += int((model(images).argmax(1) == labels).sum())
            x = images.contiguous().numpy()
            for name, sess in sessions.items():
                correct[name] += int((torch.from_numpy(sess.run(None, {"images": x})[0]).argmax(1) == labels).sum())
            total += labels.numel()
    print(f"top-1 on {total} val images: " + ", ".join(f"{k} {100 * v / total:.2f}" for k, v in correct.items()))
    x1 = example_input(model, res, 1).numpy()
    calls = [lambda s=s: s.run(None, {"images": x1}) for s in sessions.values()]
    for r in range(args.rounds):
        ms = [1e3 * s for s in median_seconds(calls, max(args.runs // 10, 1), warmup=5, inner=10)]
        print(f"round {r + 1}, batch-1 ms ({args.threads} threads): "
              + ", ".join(f"{k} {v:.3f}" for k, v in zip(sessions, ms))
              + " | speed-up vs ort fp32: " + ", ".join(f"{k} {ms[0] / v:.2f}x" for k, v in list(zip(sessions, ms))[1:]))


if __name__ == "__main__":
    main()
