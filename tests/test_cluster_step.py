"""benchmarks/cluster_step.cu, the measurement of a training step whose
model lives in one thread-block cluster: it compiles wherever nvcc is (so
that it does not rot beside the cores it borrows pointwise.h from), and on
a GPU with clusters (compute capability 9.0 or newer) its parameters after
a few steps match its host reference in double precision."""

import functools
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "benchmarks" / "cluster_step.cu"
NVCC = shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")

pytestmark = pytest.mark.skipif(NVCC is None or not SOURCE.is_file(),
                                reason="needs nvcc and the source tree")

# nvcc and the program are programs of their own: not under the sanitizer
# runtime that CI's sanitizer step preloads into the test process
ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS",
                                                        "UBSAN_OPTIONS")}


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    exe = tmp_path_factory.mktemp("cluster_step") / "cluster_step"
    done = subprocess.run([NVCC, "-O3", "-std=c++17", "-arch=sm_90", f"-I{ROOT / 'csrc'}",
                           f"-I{ROOT / 'cuda'}", str(SOURCE), "-o", str(exe)],
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr
    return exe


def test_compiles(program):
    assert program.is_file()


@functools.lru_cache(maxsize=None)
def compute_capability():
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=60, env=ENV)
    try:
        return float(out.stdout.split()[0])
    except (IndexError, ValueError):
        return None


@pytest.mark.cuda
@pytest.mark.parametrize("sizes", [
    "100 256 1 200",  # the tabular set's shape at scikit-learn's batch: logistic output
    "100 256 2 64",   # softmax over two classes
    "48 128 10 40",   # ten classes, a cluster of 8 blocks, a batch that does not split evenly
])
def test_matches_host_reference(program, sizes):
    cc = compute_capability()
    if cc is None or cc < 9.0:
        pytest.skip(f"thread-block clusters need compute capability 9.0, this GPU has {cc}")
    done = subprocess.run([str(program), *sizes.split(), "8"], capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok" in done.stdout


def test_refuses_sizes_it_cannot_take(program):
    """An odd input width is refused before anything runs (no GPU needed)."""
    done = subprocess.run([str(program), "99", "256", "2", "64"], capture_output=True,
                          text=True, timeout=60, env=ENV)
    assert done.returncode == 2
    assert "multiple of 4" in done.stderr
