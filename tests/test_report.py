"""zoo.tools.report: every generated table of README.md and docs/*.md, and the Pareto plot, come from results/.

The committed pages against the committed results: tests/test_docs.py."""

from pathlib import Path

import pytest

from zoo.measure.records import write_table
from zoo.tools import report

ROW = {
    "run": "imagenette_shufflenetv2_100_5ep", "model": "shufflenetv2_100", "family": "shufflenetv2",
    "params": "1263854", "macs_m": "47.0", "res": "128", "epochs": "5", "batch_size": "64",
    "recipe": "imagenette_shufflenetv2", "best_top1": "69.89", "final_top1": "69.89", "train_minutes": "26.6",
    "train_img_per_s": "109.2", "latency_bs1_ms": "4.26", "machine": "AMD EPYC, 2 CPUs", "git_commit": "abc1234",
    "command": "python train.py experiment=imagenette_shufflenetv2",
}
BENCH = {"zoo_model": "resnet18", "ref_model": "torchvision resnet18", "unit": "ms", "res": "224", "batch": "1",
         "repeats": "7", "threads": "2", "cpu": "cpu", "torch": "2", "note": "interleaved"}
INT8 = {
    "model": "resnet18", "checkpoint_run": "imagenette_resnet18_5ep/2026-11-29_05-12-59_044524", "engine": "onnxruntime",
    "val_images": "3925", "top1_fp32": "73.30", "top1_int8": "73.10", "top1_change": "-0.20", "argmax_agreement": "96.31",
    "engine_fp32_bs1_ms": "3.905", "engine_int8_bs1_ms": "1.602", "torch_fp32_bs1_ms": "9.362", "res": "128",
    "calibration": "percentile 99.99", "calibration_images": "300", "threads": "2", "machine": "m", "command": "c",
}


def test_render_rewrites_only_the_marked_table_and_draws_the_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    report.write_rows([ROW], tmp_path / "imagenette.csv")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.MARK_START}\nold table\n{report.MARK_END}\noutro\n")
    assert report.render(readme) == [readme]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| shufflenetv2_100 | 5 | 69.89 / 69.89 |" in text
    assert "`python train.py experiment=imagenette_shufflenetv2`" in text
    assert "85.77%" in text  # the leaderboard anchor beside the table
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert report.render(readme, check=True) == []  # a second render changes nothing
    assert report.render(readme) == [] and readme.read_text() == text


def test_render_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    report.write_rows([ROW], tmp_path / "imagenette.csv")
    page = tmp_path / "page.md"
    page.write_text(f"{report.MARK_START}\nstale\n{report.MARK_END}\n")
    assert report.render(page, check=True) == [page]
    assert page.read_text() == f"{report.MARK_START}\nstale\n{report.MARK_END}\n"
    assert not (tmp_path / "pareto.png").exists()


def test_render_refuses_a_readme_without_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "read_rows", lambda *a: [ROW])
    monkeypatch.setattr(report, "plot", lambda *a: tmp_path / "p.png")
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        report.render(readme)
    assert readme.read_text() == "no markers here\n"


@pytest.mark.parametrize("text, message", [
    ("<!-- nosuch:start -->\nx\n<!-- nosuch:end -->\n", "unknown block"),
    ("<!-- int8:start -->\nx\n<!-- results:end -->\n", "closed by"),
    ("<!-- int8:start -->\nno end\n", "no partner"),
    ("<!-- int8:end -->\n<!-- int8:start -->\nx\n<!-- int8:end -->\n", "no partner"),
])
def test_render_text_refuses_broken_markers(tmp_path, text, message):
    with pytest.raises(SystemExit, match=message):
        report.render_text(text, tmp_path)


def test_int8_table_from_the_csv(tmp_path):
    write_table(tmp_path / "int8.csv", [INT8], list(INT8))
    page = "a\n<!-- int8:start -->\n<!-- int8:end -->\nb\n"
    out = report.render_text(page, tmp_path)
    assert "| resnet18 (5 epochs) | percentile 99.99 | 3925 | 73.30 -> 73.10 | -0.20 | 96.31 | 3.90 -> 1.60 | 2.44x |" \
        in out
    assert out.startswith("a\n<!-- int8:start -->\n| model") and out.endswith("|\n<!-- int8:end -->\nb\n")
    assert report.render_text(out, tmp_path) == out


def test_compress_table_from_the_csv(tmp_path):
    base = {"name": "net", "stage": "base", "macs_m": "72.2", "top1_fp32": "85.94", "top1_int8": "85.83",
            "macs_vs_base": "1.000", "torch_bs1_ms": "7.775", "torch_vs_base": "1.000", "ort_fp32_bs1_ms": "2.724",
            "ort_fp32_vs_base": "1.000", "ort_int8_bs1_ms": "2.136", "ort_int8_vs_base": "1.000"}
    pruned = {**base, "stage": "pruned_distilled", "macs_m": "37.9", "top1_fp32": "85.76", "top1_int8": "85.76",
              "macs_vs_base": "0.525", "torch_bs1_ms": "6.332", "torch_vs_base": "0.814"}
    write_table(tmp_path / "compress.csv", [base, pruned], list(base))
    text = report.compress_table(tmp_path)
    assert text.splitlines()[2].startswith("| net | base | 72.2 | 85.94 / 85.83 | 1.00 | 7.78 (1.00) |")
    assert "| net | pruned_distilled | 37.9 | 85.76 / 85.76 | 0.53 | 6.33 (0.81) | 2.72 (1.00) | 2.14 (1.00) |" in text
    (tmp_path / "compress.csv").write_text(",".join(base) + "\n")
    with pytest.raises(SystemExit, match="has no rows"):
        report.compress_table(tmp_path)


def test_bench_block_summarises_the_csv(tmp_path):
    rows = [
        {**BENCH, "metric": "latency_b1_ms", "zoo": "13.5", "ref": "13.3", "ratio": "1.015", "speedup": "0.985"},
        {**BENCH, "metric": "latency_b1_ms_bn_folded", "zoo": "12.9", "ref": "13.3", "ratio": "0.97",
         "speedup": "1.031"},
        {**BENCH, "zoo_model": "mobilenetv2_100", "ref_model": "tv", "metric": "latency_b1_ms_bn_folded", "zoo": "6.1",
         "ref": "7.3", "ratio": "0.84", "speedup": "1.19"},
    ]
    write_table(tmp_path / "bench.csv", rows, list(rows[0]))
    write_table(tmp_path / "bench_rerun_full.csv", [{**rows[0], "zoo": "6.0", "ref": "5.67", "speedup": "0.945"}],
                list(rows[0]))
    (tmp_path / "bench.log").write_text("machine: cpu X, threads 2\nmore\n")
    text = report.bench_block(tmp_path)
    assert "`python -m zoo.tools.bench --repeats 7 --threads 2`" in text and "cpu X, threads 2" in text
    assert "| resnet18 vs torchvision resnet18 | - | 13.5 / 13.3 (1.01) |" in text
    assert "3 have zoo within 5%" in text and "resnet18 `latency_b1_ms` at 0.985x" in text
    assert "3-3% less time for the ResNets, 16-16% less time for the other models" in text
    assert "1 of 1 figures below 0.95x the reference's speed: resnet18 `latency_b1_ms` 6.00 / 5.67 ms (0.945x)" in text


def test_tuning_table_reads_every_run(tmp_path):
    runs = tmp_path / "results" / "runs"
    metrics = [{"epoch": "0", "train/loss": "2.0", "val/acc1": "20.0"},
               {"epoch": "1", "train/loss": "1.5", "val/acc1": "50.5"}]
    write_table(runs / "imagenette_mobilenetv3_large_100_20ep.csv", metrics, list(metrics[0]))
    write_table(runs / "tuning" / "imagenette_mobilenetv3_large_100_20ep_x_stopped.csv", metrics[:1], list(metrics[0]))
    text = report.tuning_table(tmp_path / "results")
    assert ("| `results/runs/imagenette_mobilenetv3_large_100_20ep.csv` | 2 | 50.50 / 50.50 | 20.0 50.5 | 2.00 1.50 |"
            in text)
    assert "| `results/runs/tuning/imagenette_mobilenetv3_large_100_20ep_x_stopped.csv` | 1 | 20.00 / 20.00 |" in text


def test_brace_groups_variant_names():
    assert report._brace(["ghostnet_050", "ghostnet_100", "resnet18", "resnet18d"]) == \
        "`ghostnet_{050,100}`, `resnet18`, `resnet18d`"


def test_plot_takes_one_point_per_model_and_schedule():
    rows = [ROW, {**ROW, "run": "b", "best_top1": "71.0"}, {**ROW, "run": "c", "best_top1": "70.0"},
            {**ROW, "run": "d", "epochs": "20", "best_top1": "60.0"}]
    assert [r["run"] for r in report.best_per_model(rows)] == ["b", "d"]


def test_experiment_is_read_from_the_command():
    assert report._experiment_of("python train.py experiment=imagenette_ghostnet trainer.max_epochs=20") == \
        "imagenette_ghostnet"
    assert report._experiment_of("python train.py model=ghostnet") is None


def test_committed_results_table_matches_the_csv():
    readme = (Path(report.REPO) / "README.md").read_text()
    rows = report.read_rows()
    if not rows:
        pytest.skip("no recorded runs")
    table = readme.split(report.MARK_START + "\n", 1)[1].split("\n" + report.MARK_END, 1)[0]
    assert table == report.markdown_table(rows)
