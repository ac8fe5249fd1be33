"""The teaching notebooks in ``notebooks/``: committed without outputs, and each one runs top to bottom.

Execution uses nbclient with a kernel named ``python3`` that runs *this* interpreter: the test
writes a temporary kernelspec (``ipykernel.kernelspec.install(prefix=...)``) and puts it first on
``JUPYTER_PATH``, so a fresh CI venv needs no ``ipykernel install`` step and a ``python3`` kernel
found elsewhere (another Python without zoo) is never used. The working directory is
``notebooks/``, as when a user opens them in Jupyter.

    pytest tests/test_notebooks.py            # all (slow: about a minute per notebook on 2 CPUs)
    pytest tests/test_notebooks.py -m "not slow"   # only the fast "no outputs committed" check
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 240  # per cell; a whole notebook is meant to take well under a minute
KERNEL_NAME = "python3"


def test_notebooks_exist() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 4, f"expected the teaching notebooks in {NB_DIR}, found {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_clean(path: Path) -> None:
    """No outputs or execution counts in the repository (strip with ``python notebooks/strip_outputs.py``)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `python notebooks/strip_outputs.py`"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL_NAME


@pytest.fixture(scope="module")
def python3_kernel(tmp_path_factory: pytest.TempPathFactory):
    """A ``python3`` kernelspec running ``sys.executable``, first on ``JUPYTER_PATH`` for this module."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = tmp_path_factory.mktemp("jupyter_prefix")
    install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    data_dir = prefix / "share" / "jupyter"
    patch = pytest.MonkeyPatch()
    old = os.environ.get("JUPYTER_PATH")
    patch.setenv("JUPYTER_PATH", os.pathsep.join([str(data_dir)] + ([old] if old else [])))
    spec_dir = Path(KernelSpecManager().find_kernel_specs()[KERNEL_NAME])
    assert spec_dir.resolve() == (data_dir / "kernels" / KERNEL_NAME).resolve(), spec_dir
    yield KERNEL_NAME
    patch.undo()


def _failing_cell(nb) -> tuple[int, str] | None:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, f"{out.get('ename')}: {out.get('evalue')}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, python3_kernel: str) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=python3_kernel, timeout=CELL_TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(NB_DIR)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        where = _failing_cell(nb)
        cell = f"cell {where[0]} ({where[1]})" if where else "a cell"
        pytest.fail(f"{path.name}: {cell} failed:\n{exc}", pytrace=False)
    except nbclient.exceptions.CellTimeoutError as exc:
        pytest.fail(f"{path.name}: a cell ran longer than {CELL_TIMEOUT_S} s:\n{exc}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
