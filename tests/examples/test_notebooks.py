"""The notebooks in examples/notebooks run top to bottom in a real Jupyter kernel.

The kernel is this interpreter (a kernelspec written to a temporary
JUPYTER_PATH), so it imports the ringlet under test; the cells run on the
kernel's own event loop with top-level await.  Any error fails the test.
"""

import importlib.util
import os
import sys

import pytest

from conftest import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/examples/ -> root
NOTEBOOKS = os.path.join(ROOT, "examples", "notebooks")
NAMES = ["the_method_that_exits_twice.ipynb", "the_async_cliff.ipynb", "tour.ipynb"]

_missing = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]


def _need_tools():
    if _missing:
        pytest.fail(f"the notebook tests need {', '.join(_missing)} (make test installs them into .venv; "
                    "in an older .venv: rm .venv/.stamp-tools && make test)")


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory):
    """A JUPYTER_PATH whose python3 kernel runs sys.executable."""
    _need_tools()
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="python3", prefix=str(prefix))
    return str(prefix / "share" / "jupyter")


def _load_builder():
    spec = importlib.util.spec_from_file_location("notebook_builder", os.path.join(NOTEBOOKS, "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.own_backend  # reads files only
def test_notebooks_match_their_builder():
    _need_tools()
    built = _load_builder().build()
    assert sorted(built) == sorted(NAMES)
    for name, text in built.items():
        with open(os.path.join(NOTEBOOKS, name), encoding="utf-8") as f:
            assert f.read() == text, f"{name} differs from build.py: run python examples/notebooks/build.py"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, kernel_path, tmp_path, monkeypatch, require_io_uring):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", kernel_path)
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])  # the kernel imports the ringlet under test
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=240,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # The kernel ran this interpreter, and figures came out as pictures.
    if name != "tour.ipynb":
        pngs = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert pngs, "no figure was displayed"
