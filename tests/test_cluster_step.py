"""benchmarks/cluster_step.cu, the measurement of a training step whose
model lives in one thread-block cluster: it compiles wherever nvcc is (so
that it does not rot beside the cores it borrows pointwise.h from), and on
a GPU with clusters (compute capability 9.0 or newer) its parameters after
a few steps match its host reference in double precision."""

import pytest

from cuda_programs import build, compute_capability, needs_nvcc, run

pytestmark = needs_nvcc


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build(tmp_path_factory, "cluster_step.cu", ["-arch=sm_90"])


def test_compiles(program):
    assert program.is_file()


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
    done = run(program, *sizes.split(), "8")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok" in done.stdout


def test_refuses_sizes_it_cannot_take(program):
    """An odd input width is refused before anything runs (no GPU needed)."""
    done = run(program, "99", "256", "2", "64", timeout=60)
    assert done.returncode == 2
    assert "multiple of 4" in done.stderr
