"""benchmarks/tf32_split_check.cu: the TF32 splits of cuda/tf32.cuh over
every float32 bit pattern. For normal operands, hi_tf32 (Veltkamp's split)
must give a TF32 number as close to x as cvt.rna's, the same one off ties,
and an hi + lo (as the tensor cores read them) as close to x as cvt.rna's
(at ties in the lowest binade, where the rest is below TF32's smallest
step, the two sums differ, equally close); rest_to_tf32 must round
as cvt.rna does. For subnormal operands (below 2^-126), whose low bits TF32
may not hold, the error of hi + lo stays within TF32's smallest step,
2^-136. Compiles wherever nvcc is; runs on a GPU of compute
capability 8.0 or newer (TF32)."""

import re

import pytest

from cuda_programs import build, compute_capability, needs_nvcc, run

pytestmark = needs_nvcc


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build(tmp_path_factory, "tf32_split_check.cu", ["-arch=sm_80"])


def test_compiles(program):
    assert program.is_file()


@pytest.mark.cuda
def test_splits_over_every_float32(program):
    cc = compute_capability()
    if cc is None or cc < 8.0:
        pytest.skip(f"TF32 needs compute capability 8.0, this GPU has {cc}")
    done = run(program)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = {name: float(v) for name, v in re.findall(r"^(.*): (\S+)$", done.stdout, re.M)}
    assert len(figures) == 10, done.stdout
    for name in ("finite, rest_to_tf32 != cvt.rna", "normal, hi not a TF32 number",
                 "normal, hi farther from x than cvt.rna's",
                 "normal, hi + lo as read farther from x than cvt.rna's",
                 "normal, hi != cvt.rna's off a tie"):
        assert figures[name] == 0, f"{name}: {figures[name]}"
    assert figures["finite past TF32_SPLIT_MAX"] > 0
    assert figures["subnormal, largest error of hi + lo as read"] <= 2.0 ** -136
