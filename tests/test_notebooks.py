"""Notebooks run top to bottom in a real Jupyter kernel, and hold no logic of their own."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# notebooks that read the real third-party samples of ../shared/fixtures
NEEDS_SHARED = {"data.ipynb"}
# statements that would be logic of the notebook's own; it composes and calls instead
LOGIC = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.Try)


def test_notebooks_found() -> None:
    expected = {"quickstart.ipynb", "data.ipynb", "sweeps.ipynb", "eval.ipynb"}
    assert expected <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_holds_no_logic(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for n, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        found = [type(node).__name__ for node in ast.walk(ast.parse(cell.source))]
        bad = sorted({name for name in found if name in {t.__name__ for t in LOGIC}})
        assert not bad, f"{path.name} cell {n}: {bad} belongs in the library, not the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(
    path: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path.name in NEEDS_SHARED:
        # the kernel inherits the environment: the notebook finds the fixtures there
        monkeypatch.setenv("XLAM_SHARED_FIXTURES", str(request.getfixturevalue("shared_fixtures")))
    nb = nbformat.read(path, as_version=4)
    # Stored without outputs (nbstripout), so what runs here is what a reader sees.
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
