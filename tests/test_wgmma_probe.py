"""benchmarks/wgmma_probe.cu, the measurement of float32 products on
Hopper's warpgroup products (each operand split into two TF32 parts): it
compiles for sm_90a wherever nvcc is, and on an H100 or H200 (compute
capability 9.0, the only GPUs that run sm_90a code) its products match
float64 on sampled outputs to float32's accuracy."""

import pytest

from cuda_programs import build, compute_capability, needs_nvcc, run

pytestmark = needs_nvcc


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build(tmp_path_factory, "wgmma_probe.cu", ["-gencode=arch=compute_90a,code=sm_90a"])


@pytest.mark.cuda
@pytest.mark.parametrize("sizes", ["128 128 32", "256 384 96", "1024 512 4096"])
def test_matches_float64(program, sizes):
    cc = compute_capability()
    if cc != 9.0:
        pytest.skip(f"sm_90a code runs on compute capability 9.0 only, this GPU has {cc}")
    done = run(program, *sizes.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 of 4096 sampled outputs off" in done.stdout


def test_refuses_sizes_it_cannot_take(program):
    """A K that is not a multiple of 32 is refused before anything runs."""
    done = run(program, "128", "128", "48", timeout=60)
    assert done.returncode == 2
    assert "multiples of 128, 128, 32" in done.stderr
