"""README.md and docs/*.md: every table is what ``python -m zoo.tools.report render`` writes, every command
in a code block parses (and the quick ones run), every Python snippet runs, every relative link resolves."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from zoo.tools import report

REPO = Path(__file__).resolve().parents[1]
PAGES = report.doc_pages(REPO)
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# stand-ins for the placeholders of the documented commands
_PLACEHOLDERS = [(re.compile(r"<[^>\s]+>"), "PLACEHOLDER"), (re.compile(r"\$R\b"), "0"),
                 (re.compile(r"\$HOST\b"), "localhost")]


def _rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def code_blocks(languages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(``page:line``, text) of every fenced block in one of ``languages``, over README.md and docs/*.md."""
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in _FENCE.finditer(text):
            if m.group(1) in languages:
                out.append((f"{_rel(page)}:{text.count(chr(10), 0, m.start()) + 1}", m.group(2)))
    return out


@dataclass(frozen=True)
class Command:
    where: str
    text: str  # as documented
    argv: tuple[str, ...]  # placeholders replaced; srun/torchrun launchers reduced to `python SCRIPT ...`


def _split_line(line: str) -> str:
    """The command part of a documented line: the trailing ``# comment`` is removed."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def shell_commands() -> list[Command]:
    commands = []
    for where, block in code_blocks(("bash", "sh", "shell")):
        for line in block.replace("\\\n", " ").splitlines():
            line = _split_line(line)
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                text = part.strip()
                for pattern, value in _PLACEHOLDERS:
                    part = pattern.sub(value, part)
                argv = shlex.split(part)
                if argv[0] == "srun":
                    argv = argv[1:]
                if argv[0] == "torchrun":  # torchrun's own flags, then the script and its arguments
                    script = next(i for i, a in enumerate(argv) if a.endswith(".py"))
                    argv = ["python", *argv[script:]]
                commands.append(Command(where, text, tuple(argv)))
    return commands


COMMANDS = shell_commands()
HYDRA_SCRIPTS = {"train.py": "train", "eval.py": "eval", "search.py": "search"}


class _Parsed(Exception):
    """Raised instead of running a CLI once its arguments have parsed."""


def parse_only(main, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Run ``main(argv)`` up to its ``parse_args``: the arguments parse, nothing else runs."""
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    try:
        main(argv)
    except _Parsed as parsed:
        return parsed.args[0]
    except SystemExit as exc:
        pytest.fail(f"arguments {argv} do not parse (exit {exc.code})")
    pytest.fail(f"{main} returned without parsing arguments")


def _module_main(module: str):
    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):
        mod = importlib.import_module(f"{module}.__main__")
    return mod.main


def _hydra_overrides(args: list[str]) -> list[list[str]]:
    """The override lists a Hydra command line stands for: ``-m a=1,2 b=x`` -> ``[a=1, b=x], [a=2, b=x]``."""
    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if a not in ("-m", "--multirun")]
    if not multirun:
        return [args]
    choices = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")] if "=" in a else [a] for a in args]
    return [list(c) for c in itertools.product(*choices)]


def test_the_docs_have_commands_and_snippets():
    assert len(PAGES) >= 6 and {_rel(p) for p in PAGES} >= {"README.md", "docs/models.md", "docs/training.md"}
    assert any(c.argv[:2] == ("python", "train.py") for c in COMMANDS)
    assert code_blocks(("python",))


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.where}:{c.text[:60]}" for c in COMMANDS])
def test_documented_command_parses(cmd: Command, compose_cfg, monkeypatch):
    """Each documented command names a module or script that exists, and its arguments parse (Hydra
    commands compose with the real configs)."""
    argv = list(cmd.argv)
    if argv[0] == "pip" or argv[:3] == ["python", "-m", "pytest"]:
        return
    assert argv[0] == "python", f"{cmd.where}: unknown command {cmd.text!r} (python, pip, srun or torchrun)"
    if argv[1] == "-m":
        assert argv[2].startswith("zoo."), f"{cmd.where}: {argv[2]} is not a zoo module"
        parse_only(_module_main(argv[2]), argv[3:], monkeypatch)
    elif argv[1] in HYDRA_SCRIPTS:
        for overrides in _hydra_overrides(argv[2:]):
            cfg = compose_cfg(*overrides, config_name=HYDRA_SCRIPTS[argv[1]], tiny=False)
            assert cfg["model"]["name"]
    elif argv[1] == "predict.py":
        spec = importlib.util.spec_from_file_location("predict", REPO / "predict.py")
        predict = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(predict)
        parse_only(predict.main, argv[2:], monkeypatch)
    else:
        assert (REPO / argv[1]).is_file(), f"{cmd.where}: {argv[1]} does not exist"


def test_quick_commands_run(monkeypatch, capsys):
    """The documented commands that take seconds run as written (in this process; `report render` runs in
    test_render_on_a_copy_changes_nothing)."""
    quick = {"zoo.tools.stages", "zoo.tools.profile"}
    ran = []
    for cmd in COMMANDS:
        argv = list(cmd.argv)
        if argv[:2] == ["python", "-m"] and argv[2] in quick:
            _module_main(argv[2])(argv[3:])
            ran.append(cmd.text)
    out = capsys.readouterr().out
    assert "python -m zoo.tools.stages" in ran and "| mobilenetv3_large_100 |" in out
    assert any(c.startswith("python -m zoo.tools.profile") for c in ran) and "papers' convention" in out


def test_render_on_a_copy_changes_nothing(tmp_path):
    """`python -m zoo.tools.report render` reproduces every committed table byte for byte (so rendering
    twice changes nothing either)."""
    assert any(c.text == "python -m zoo.tools.report render" for c in COMMANDS)
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copytree(REPO / "results", tmp_path / "results")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "zoo.tools.report", "render", "--repo", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    for page in PAGES:
        assert (tmp_path / _rel(page)).read_text() == page.read_text(), f"render changes {_rel(page)}"
    assert (tmp_path / "results" / "pareto.png").stat().st_size > 0


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_table_is_what_render_writes(page: Path, rendered: dict[str, str]):
    text = page.read_text()
    assert report.render_text(text, report.RESULTS, rendered, source=_rel(page)) == text, \
        f"{_rel(page)} differs from `python -m zoo.tools.report render`: run it"


def test_every_generated_block_has_a_place():
    names = {m.group(1) for page in PAGES for m in re.finditer(r"<!-- ([a-z0-9-]+):start -->", page.read_text())}
    assert names == set(report.BLOCKS)


def test_stage_map_is_what_the_code_builds():
    """The stage map of docs/models.md, from models built with real weights (render uses the meta device)."""
    from zoo.tools.stages import stage_map_markdown

    text = (REPO / "docs" / "models.md").read_text()
    table = text.split("<!-- stage-map:start -->\n", 1)[1].split("\n<!-- stage-map:end -->", 1)[0]
    assert table == stage_map_markdown()


SNIPPETS = code_blocks(("python",))
OPTIONAL_ENGINES = ("openvino",)


@pytest.mark.parametrize("where, code", [
    pytest.param(w, c, id=w, marks=[pytest.mark.own_process(*(m for m in OPTIONAL_ENGINES if m in c))]
                 if any(m in c for m in OPTIONAL_ENGINES) else [])
    for w, c in SNIPPETS])
def test_python_snippet_runs(where: str, code: str, tmp_path, monkeypatch):
    """Every ```python block runs (lines that download published weights are left out); a block that uses
    an optional extra's engine runs, in its own process, where that extra is installed."""
    for module in OPTIONAL_ENGINES:
        if module in code:
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    lines = [line for line in code.splitlines() if 'weights="imagenet"' not in line]
    exec(compile("\n".join(lines), where, "exec"), {"__name__": "__docs__"})


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page."""
    heads = re.findall(r"^#+ (.+)$", _FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path):
    for target in _LINK.findall(_FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{_rel(page)}: link to {target}: no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{_rel(page)}: link to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_pages_are_documentation_not_a_diary(page: Path):
    prose = _FENCE.sub("", page.read_text())
    assert not re.search(r"\b(I|I'm|I've|my|we|We)\b", prose), f"{_rel(page)} speaks in the first person"
