"""What the installed package carries: one version number, the typing
marker, and `python -m mlp` run from a source tree."""

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys

import mlp

PACKAGE = pathlib.Path(mlp.__file__).parent


def test_one_version_number():
    assert importlib.metadata.version("mlp-cores") == mlp.__version__


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_cpu.pyi").is_file()


def _source_tree(tmp_path):
    """A copy of the package's Python files as the repository holds them:
    no compiled core, and the wrapper's Cython source beside them."""
    tree = tmp_path / "checkout" / "mlp"
    tree.mkdir(parents=True)
    for f in PACKAGE.glob("*.py"):
        shutil.copy(f, tree / f.name)
    (tree / "_core.pxi").write_text("# the wrapper's source\n")
    return tree.parent


def test_python_m_mlp_in_a_source_tree_runs_the_installed_package(tmp_path):
    root = _source_tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "mlp", "--version"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"mlp {mlp.__version__}"


def test_python_m_mlp_in_a_source_tree_without_an_installed_copy_says_why(tmp_path):
    root = _source_tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site-packages, so no installed copy to fall back on
    out = subprocess.run([sys.executable, "-S", "-m", "mlp", "train"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "source tree" in lines[0] and "pip install" in lines[0], out.stderr
