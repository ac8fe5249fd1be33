"""The ``own_process`` plugin (tests/_own_process.py), run on small test files by pytest's ``pytester``: one child
pytest per test file, its outcomes (pass, failure text, skip reason) reported as each test's own, ``-x`` and
``--maxfail`` passed on to it, a missing module skipping without a child, and a child that dies failing the tests
it left without a result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
PLUGIN_CONFTEST = """
from _own_process import OwnProcess

def pytest_configure(config):
    config.pluginmanager.register(OwnProcess(), "own_process")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project with the plugin registered; its children import the plugin from tests/ too."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    own_process: runs in a child pytest\n")
    return pytester


def _pid_recorder(log: Path, name: str, marked: bool = True) -> str:
    """Source of a test that appends ``name pid`` to ``log``."""
    mark = "@pytest.mark.own_process()\n" if marked else ""
    return f"{mark}def {name}():\n    open({str(log)!r}, 'a').write(f'{name} {{os.getpid()}}\\n')\n\n"


def _pids(log: Path) -> dict[str, int]:
    return {name: int(pid) for name, pid in (line.split() for line in log.read_text().splitlines())}


def test_the_marked_tests_of_a_file_share_one_child(suite: pytest.Pytester) -> None:
    log = suite.path / "pids.txt"
    suite.makepyfile(
        test_one="import os\nimport pytest\n\n" + _pid_recorder(log, "test_a") + _pid_recorder(log, "test_b")
        + _pid_recorder(log, "test_here", marked=False),
        test_two="import os\nimport pytest\n\n" + _pid_recorder(log, "test_c"),
    )
    suite.runpytest().assert_outcomes(passed=4)
    pids = _pids(log)
    assert pids["test_here"] == os.getpid()  # pytester runs the suite in this process
    assert pids["test_a"] == pids["test_b"] != os.getpid()
    assert pids["test_c"] not in (pids["test_a"], os.getpid())


def test_deselected_tests_are_not_sent_to_the_child(suite: pytest.Pytester) -> None:
    log = suite.path / "pids.txt"
    suite.makepyfile("import os\nimport pytest\n\n" + _pid_recorder(log, "test_a") + _pid_recorder(log, "test_b"))
    suite.runpytest("-k", "not test_b").assert_outcomes(passed=1, deselected=1)
    assert list(_pids(log)) == ["test_a"]


def test_a_failure_in_the_child_fails_here_with_its_message(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest

        @pytest.mark.own_process()
        def test_sum():
            assert 1 + 1 == 3, "the sum is off"
    """)
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*in its own process:*", "*AssertionError: the sum is off*"])


@pytest.mark.parametrize("option, failing", [("-x", 1), ("--exitfirst", 1), ("--maxfail=2", 2)])
def test_the_child_stops_where_this_session_stops(suite: pytest.Pytester, option: str, failing: int) -> None:
    log = suite.path / "pids.txt"
    fails = "".join(f"@pytest.mark.own_process()\ndef test_fails_{i}():\n    assert False\n\n" for i in range(failing))
    suite.makepyfile("import os\nimport pytest\n\n" + fails + _pid_recorder(log, "test_after"))
    suite.runpytest(option).assert_outcomes(failed=failing)
    assert not log.exists()  # the child stopped before test_after, as this session did


def test_a_skip_in_the_child_skips_here_with_its_reason(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest

        @pytest.mark.own_process()
        def test_engine():
            pytest.skip("no engine on this machine")
    """)
    result = suite.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *: no engine on this machine"])


def test_a_missing_module_skips_without_a_child(suite: pytest.Pytester) -> None:
    log = suite.path / "pids.txt"
    suite.makepyfile("import os\nimport pytest\n\n"
                     + _pid_recorder(log, "test_a").replace("own_process()", "own_process('no_such_module_zoo')"))
    result = suite.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *could not import 'no_such_module_zoo': not installed"])
    assert not log.exists()


def test_a_child_that_dies_fails_the_tests_left_without_a_result(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import os
        import pytest

        @pytest.mark.own_process()
        def test_before():
            pass

        @pytest.mark.own_process()
        def test_dies():
            os._exit(3)

        @pytest.mark.own_process()
        def test_after():
            pass
    """)
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*test_dies*", "*the child pytest gave no result for this test, rc 3*",
                                 "*test_after*", "*the child pytest gave no result for this test, rc 3*"])
