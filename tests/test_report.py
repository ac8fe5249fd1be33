"""zoo.tools.report: the README results table and the Pareto plot are generated from results/imagenette.csv."""

from pathlib import Path

import pytest

from zoo.tools import report

ROW = {
    "run": "imagenette_shufflenetv2_100_5ep", "model": "shufflenetv2_100", "family": "shufflenetv2",
    "params": "1263854", "macs_m": "47.0", "res": "128", "epochs": "5", "batch_size": "64",
    "recipe": "imagenette_shufflenetv2", "best_top1": "69.89", "final_top1": "69.89", "train_minutes": "26.6",
    "train_img_per_s": "109.2", "latency_bs1_ms": "4.26", "machine": "AMD EPYC, 2 CPUs", "git_commit": "abc1234",
    "command": "python train.py experiment=imagenette_shufflenetv2",
}


def test_render_rewrites_only_the_marked_table_and_draws_the_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    report.write_rows([ROW], tmp_path / "imagenette.csv")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.MARK_START}\nold table\n{report.MARK_END}\noutro\n")
    report.render(readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| shufflenetv2_100 | 5 | 69.89 / 69.89 |" in text and "`python train.py experiment=imagenette_shufflenetv2`" in text
    assert "85.77%" in text  # the leaderboard anchor beside the table
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_render_refuses_a_readme_without_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "read_rows", lambda: [ROW])
    monkeypatch.setattr(report, "plot", lambda rows: tmp_path / "p.png")
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        report.render(readme)
    assert readme.read_text() == "no markers here\n"


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
