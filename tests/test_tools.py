"""Command-line tools (zoo.tools): the benchmark and the profiler CLI end to end, at tiny sizes.

The report tool has tests/test_report.py; stages, data_bench and report add/latency are in tests/test_features.py.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest


def test_bench_quick_writes_csv(tmp_path: Path) -> None:
    """zoo.tools.bench end to end as the README runs it (onnxruntime on, freed memory kept), on one small
    model at tiny sizes: a well-formed CSV with every figure, the onnxruntime one included (no timing asserts)."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("torchvision")
    pytest.importorskip("onnxruntime")
    from zoo.tools import bench

    # the default malloc mode calls keep_freed_memory() in this process, as train() in the other tests does
    rows = bench.main(["--quick", "--models", "mobilenetv3_small_100", "--res", "32", "--batch", "2",
                       "--train-res", "32", "--train-batch", "2", "--repeats", "1", "--inner", "1",
                       "--threads", "1", "--out", str(tmp_path)])
    with (tmp_path / "bench.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 6
    assert {r["metric"] for r in table} == {"train_img_s", "latency_b1_ms", "throughput_b32_img_s",
                                             "latency_b1_ms_bn_folded", "throughput_b32_img_s_bn_folded",
                                             "ort_latency_b1_ms"}  # an export failure would drop only this row
    kept = sys.platform.startswith("linux")  # glibc mallopt
    for r in table:
        assert r["zoo_model"] == "mobilenetv3_small_100" and r["ref_model"].startswith("torchvision")
        assert r["note"].endswith("freed memory kept (mallopt)" if kept else "default malloc")
        assert float(r["zoo"]) > 0 and float(r["ref"]) > 0
        assert abs(float(r["ratio"]) - float(r["zoo"]) / float(r["ref"])) < 1e-2 * float(r["ratio"]) + 1e-3
    assert (tmp_path / "bench.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no reference pairing"):
        bench.run_bench(["resnet34"])


def test_profile_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.tools.profile import main

    main(["--model", "mobilenetv3_small_075", "--res", "64", "--num-classes", "10", "--no-fvcore"])
    out = capsys.readouterr().out
    assert "stages.0.0" in out and "MACs (conv + linear" in out
    with pytest.raises(ValueError, match="unknown model"):
        main(["--model", "mobilenetv9"])
