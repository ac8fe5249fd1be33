"""Tests marked ``own_process`` run in a child pytest, one child per test file, so the libraries they load never
enter the main test process (the full suite with OpenVINO's runtime loaded in it crashed with a segmentation
fault in later, unrelated tests).

The marker's arguments name modules the test needs; where one is not installed the test skips without a child.
The first marked test of a file to be called starts ``python -m pytest <node id> ...`` with every marked test of
that file that this session runs (and this session's ``-x`` / ``--maxfail``, so that the child stops where this
session will); the child writes each test's reports, one JSON line per phase, to the file
named by :data:`CHILD_REPORTS`, and each test then passes, fails or skips here as it did there. A test the
child gave no result for (it crashed) fails with the child's exit status and the tail of its output.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

#: Set in the child: the JSON-lines file it writes its test reports to.
CHILD_REPORTS = "ZOO_TEST_IN_OWN_PROCESS"

Outcome = Literal["passed", "skipped", "failed"]
_SEVERITY: dict[str, int] = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass(frozen=True)
class ChildResult:
    """One test's outcome in the child: the failure text or the skip reason in ``message``."""

    outcome: Outcome
    message: str = ""


def missing_module(item: pytest.Item) -> str | None:
    """The first module named by the item's ``own_process`` marker that is not installed, else None."""
    marker = item.get_closest_marker("own_process")
    return next((m for m in marker.args if importlib.util.find_spec(m) is None), None) if marker else None


def results_from_reports(lines: list[str]) -> dict[str, ChildResult]:
    """Each test's outcome from the child's report lines: a failure in any phase over a skip over a passed call.
    A test with no call report and no failed or skipped phase (the child died during it) has no result."""
    results: dict[str, ChildResult] = {}
    for line in lines:
        report = json.loads(line)
        if report["outcome"] == "passed" and report["when"] != "call":
            continue
        known = results.get(report["nodeid"])
        if known is None or _SEVERITY[report["outcome"]] > _SEVERITY[known.outcome]:
            results[report["nodeid"]] = ChildResult(report["outcome"], report["message"])
    return results


class OwnProcess:
    """The plugin (registered by tests/conftest.py): batches marked tests per file, runs each batch in a child."""

    def __init__(self) -> None:
        self.batches: dict[Path, list[str]] = {}  # test file -> node ids of its marked tests to run in the child
        self.results: dict[str, ChildResult] = {}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Record the marked tests that will run (after deselection) and have their modules installed."""
        for item in session.items:
            if item.get_closest_marker("own_process") and missing_module(item) is None:
                self.batches.setdefault(item.path, []).append(item.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """Here, a marked test takes its outcome in its file's child, starting the child on the file's first."""
        if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(CHILD_REPORTS):
            return None
        module = missing_module(pyfuncitem)
        if module is not None:
            pytest.skip(f"could not import {module!r}: not installed")
        if pyfuncitem.nodeid not in self.results:
            batch = self.batches.get(pyfuncitem.path, [])
            self.run_child(pyfuncitem.config, batch if pyfuncitem.nodeid in batch else [pyfuncitem.nodeid])
        result = self.results[pyfuncitem.nodeid]
        if result.outcome == "failed":
            pytest.fail(f"in its own process:\n{result.message}", pytrace=False)
        if result.outcome == "skipped":
            pytest.skip(result.message)
        return True

    def run_child(self, config: pytest.Config, nodeids: list[str]) -> None:
        """Run ``nodeids`` in one child pytest, stopping after as many failures as this session
        (``--maxfail``, ``-x`` being ``--maxfail=1``), and keep a result for each of them."""
        stop_after = config.getoption("maxfail") or 0  # None or 0 when not given: run them all
        maxfail = [f"--maxfail={stop_after}"] if stop_after > 0 else []
        with tempfile.TemporaryDirectory(prefix="zoo-own-process-") as tmp:
            reports = Path(tmp) / "reports.jsonl"
            reports.touch()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *maxfail, *nodeids],
                                  cwd=config.rootpath, env={**os.environ, CHILD_REPORTS: str(reports)},
                                  capture_output=True, text=True)
            results = results_from_reports(reports.read_text().splitlines())
        crashed = ChildResult("failed", f"the child pytest gave no result for this test, rc {proc.returncode}:\n"
                                        f"{proc.stdout[-6000:]}{proc.stderr[-2000:]}")
        self.results.update({nodeid: results.get(nodeid, crashed) for nodeid in nodeids})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """In the child: append the report of each test phase to the parent's file."""
        path = os.environ.get(CHILD_REPORTS)
        if not path:
            return
        if report.skipped:
            message = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else ""
        else:
            message = report.longreprtext
        with open(path, "a", encoding="utf-8") as reports:
            reports.write(json.dumps({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                                      "message": message}) + "\n")
