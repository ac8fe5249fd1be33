"""zoo.measure: the profiler (receptive field, cumulative stride, MAC totals, FLOP cross-checks, element-wise
ops) and wall-clock timing (interleaved medians, keep_freed_memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.measure.complexity import count_macs
from zoo.measure.profiler import LayerRow, complexity, format_summary, format_table, profile


def _last_spatial(rows: list[LayerRow], prefix: str) -> LayerRow:
    return [r for r in rows if r.name.startswith(prefix) and r.rf is not None][-1]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_rf_plain_stack_of_3x3(n: int) -> None:
    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(n)])
    rows = profile(model, 32, in_chans=4)
    assert rows[-1].rf == (2 * n + 1, 2 * n + 1)
    assert rows[-1].stride == (1, 1)


def test_rf_strided_and_dilated() -> None:
    # 3x3 s2 -> rf 3, jump 2; 3x3 dilation 2 -> rf 3 + 2*2*2 = 11; 3x1 -> rf 15 x 11
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, padding=2, dilation=2),
                          nn.Conv2d(4, 4, (3, 1), padding=(1, 0)))
    rows = profile(model, 32)
    assert [r.rf for r in rows] == [(3, 3), (11, 11), (15, 11)]
    assert rows[-1].stride == (2, 2)
    assert rows[-1].rf_str == "15x11"


@pytest.mark.parametrize("name", ["resnet18"])
def test_rf_resnet18_stage_boundaries(name: str) -> None:
    # Hand computation, rf_out = rf_in + (k - 1) * jump_in, jump_out = jump_in * s:
    #   stem 7x7 s2:           rf 1 + 6*1 = 7,     jump 2
    #   max-pool 3x3 s2:       rf 7 + 2*2 = 11,    jump 4
    #   stage 1, 4 x 3x3 s1:   rf 11 + 4*2*4 = 43, jump 4   <- end of stage 1 (C2)
    #   stage 2, 3x3 s2:       rf 43 + 2*4 = 51,   jump 8
    #            3 x 3x3 s1:   rf 51 + 3*2*8 = 99, jump 8   <- end of stage 2 (C3)
    # (the 1x1 s2 shortcut sees only 43 px; the block takes the larger branch)
    model = zoo.create_model(name, num_classes=10)
    rows = profile(model, 64)  # receptive field and stride do not depend on the input size
    assert _last_spatial(rows, "stages.0").rf == (43, 43)
    assert _last_spatial(rows, "stages.0").stride == (4, 4)
    assert _last_spatial(rows, "stages.1").rf == (99, 99)
    assert _last_spatial(rows, "stages.1").stride == (8, 8)
    result = complexity(model, 64, with_fvcore=False)
    assert result.rf == (435, 435) and result.total_stride == (32, 32)  # 99 + 2*8 + 3*2*16 = 211; 211 + 2*16 + 3*2*32
    assert model.total_stride == 32


def test_rf_torchvision_resnet18_matches() -> None:
    torchvision = pytest.importorskip("torchvision")
    rows = profile(torchvision.models.resnet18(num_classes=10), 64)
    assert _last_spatial(rows, "layer1").rf == (43, 43)
    assert _last_spatial(rows, "layer2").rf == (99, 99)


@pytest.mark.parametrize("name", ["mobilenetv3_small_075", "shufflenetv2_050", "ghostnet_050"])
def test_totals_match_count_macs_and_flop_counter(name: str) -> None:
    model = zoo.create_model(name, num_classes=10).eval()
    rows = profile(model, 96)
    macs = sum(r.macs for r in rows)
    assert macs == count_macs(model, 96)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 96, 96))
    assert counter.get_total_flops() == 2 * macs  # FlopCounterMode: conv + mm, 2 FLOPs per MAC
    assert sum(r.flops for r in rows) > 2 * macs  # plus bias, BN, activations, adds
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())


def test_complexity_labels_and_fvcore() -> None:
    model = zoo.create_model("mobilenetv3_small_075", num_classes=10)
    result = complexity(model, 96, name="mobilenetv3_small_075")
    assert result.res == (96, 96) and result.num_classes == 10
    assert result.macs == count_macs(model, 96)
    assert result.fvcore_conv_linear == result.macs
    assert result.flops_deployed < result.flops and result.bytes_deployed < result.bytes
    assert result.params_deployed < result.params and result.macs_deployed == result.macs  # BN folding adds no MACs
    assert "hardswish" in " ".join(result.fvcore_skipped)  # fvcore ignores hard-swish; we do not
    assert result.warnings == []
    text = format_summary(result)
    assert "papers' convention" in text and "BatchNorm folded" in text


def test_hardswish_se_shuffle_counted() -> None:
    rows = profile(zoo.create_model("mobilenetv3_small_075", num_classes=10), 64)
    hswish = [r for r in rows if r.kind == "Hardswish"]
    assert hswish and all(r.flops == 4 * torch.Size(r.out_shape).numel() for r in hswish)
    gates = [r for r in rows if r.kind == "Hardsigmoid"]
    se_mul = [r for r in rows if r.block == "InvertedResidual" and r.kind == "aten.mul"]
    assert gates and se_mul and all(r.flops > 0 and r.bytes > 0 for r in gates + se_mul)
    assert any(r.kind in ("aten.add", "aten.add_") and r.flops > 0 for r in rows)  # residual adds
    assert any(r.kind == "aten.mean" and r.rf is None for r in rows)  # SE squeeze is global

    rows = profile(zoo.create_model("shufflenetv2_050", num_classes=10), 64)
    shuffles = [r for r in rows if r.kind == "ChannelShuffle"]
    assert shuffles and all(r.flops == 0 and r.bytes > 0 for r in shuffles)  # 0 FLOPs, but a copy
    assert any(r.kind == "aten.cat" and r.bytes > 0 for r in rows)


def test_unknown_parametrized_leaf_reported() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(4, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gamma

    model = nn.Sequential(nn.Conv2d(3, 4, 3), Scale())
    result = complexity(model, 16, with_fvcore=False)
    assert any("Scale" in w for w in result.warnings)


def test_compiled_model_is_unwrapped() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    wrapper = nn.Module()
    wrapper._orig_mod = model  # what torch.compile's OptimizedModule holds
    rows = zoo.profile(wrapper, 8)  # zoo.profile is the profiler's profile()
    assert [r.kind for r in rows] == ["Conv2d", "ReLU"]
    assert "| name" in format_table(rows)


def test_median_seconds_interleaves_and_validates() -> None:
    from zoo.measure.timing import median_seconds

    calls: list[str] = []
    times = median_seconds([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3, warmup=1, inner=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warm-up each, then interleaved blocks of `inner`
    assert len(times) == 2 and all(t >= 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        median_seconds([lambda: None], repeats=0)


def test_torch_threads_restores_the_count_and_validates() -> None:
    from zoo.measure.timing import torch_threads

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match="inside"):
            with torch_threads(1):
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads"):
            with torch_threads(0):
                pass
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_checkpoint_run_names_the_training_run() -> None:
    from zoo.measure.records import checkpoint_run

    assert checkpoint_run("logs/train/runs/imagenette_mnv2/2026-11-29_05-12-59/checkpoints/best.ckpt") == (
        "imagenette_mnv2/2026-11-29_05-12-59")
    assert checkpoint_run("outputs/pruned.ckpt") == "outputs/pruned.ckpt"  # not a training run's checkpoint
    assert checkpoint_run(None) == "None"  # a freshly initialized model


_FAULTS_OF_REALLOCATION = """
import resource, sys
import torch
from zoo.measure.timing import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 * 2**20)  # 64 MB: above glibc's largest mmap threshold
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(3):  # the heap settles after a few blocks
    faults()
print(sum(faults() for _ in range(3)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_stops_page_faults_on_reallocation() -> None:
    """Re-allocating a 64 MB activation-sized block page-faults every time by default, and not after the call."""
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_OF_REALLOCATION, mode], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.split()[-1])

    default, kept = faults("default"), faults("keep")
    assert default > 0
    assert kept <= default // 10, (default, kept)
