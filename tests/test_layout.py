"""The package layout: one floor per folder, nothing points up, no import cycle.

Floors, bottom to top: layers, blocks, models, measure, compress, data, training, deploy, latency, design, tools. A
module imports only from its own floor or the ones below; the command-line modules
(``zoo.tools.*``, ``zoo.deploy.__main__``, ``zoo.latency.__main__``, ``zoo.advise``,
``zoo._cli``) are imported by no
library module.
The graph is read statically from every ``import``/``from`` statement, also those inside
functions, so a deferred import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "zoo"
FLOORS = ("layers", "blocks", "models", "measure", "compress", "data", "training", "deploy", "latency", "design", "tools")
CLI_MODULES = ("zoo.tools", "zoo.deploy.__main__", "zoo.latency.__main__", "zoo.advise", "zoo._cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every zoo module ``path`` imports (absolute and relative, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from zoo.data import cache` names a module, `... import X` an attribute
                full = f"{base}.{alias.name}"
                found.add(full if module_path(full) else base)
    return {m for m in found if m == "zoo" or m.startswith("zoo.")}


def module_path(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        graph[name] = {m for m in imports_of(path, name) if m != name}
    return graph


def floor(name: str) -> int | None:
    parts = name.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else None


def test_every_import_names_a_real_module() -> None:
    graph = import_graph()
    missing = {(src, dst) for src, deps in graph.items() for dst in deps if module_path(dst) is None}
    assert not missing


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_nothing_points_up_and_no_library_module_imports_a_cli() -> None:
    upward, cli = [], []
    for src, deps in import_graph().items():
        src_floor = floor(src)
        is_cli = src.startswith(CLI_MODULES)
        for dst in deps:
            if not is_cli and dst.startswith(CLI_MODULES):
                cli.append((src, dst))
            dst_floor = floor(dst)
            if src_floor is not None and (dst == "zoo" or (dst_floor is not None and dst_floor > src_floor)):
                upward.append((src, dst))
    assert not upward, f"imports that point up a floor: {upward}"
    assert not cli, f"library modules importing command-line modules: {cli}"


def test_the_graph_reader_sees_deferred_and_relative_imports(tmp_path: Path) -> None:
    source = "def f():\n    import zoo\n    from .helpers import make_divisible\n    from zoo.data import cache\n"
    path = PACKAGE / "layers" / "probe.py"  # never written: parsed from tmp_path under this name
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    found = imports_of(probe, "zoo.layers.probe")
    assert found == {"zoo", "zoo.layers.helpers", "zoo.data.cache"}
    assert not path.exists()
