"""What the tests of the stand-alone CUDA programs in benchmarks/ share:
finding nvcc, building a program, and the GPU's compute capability. The
programs are measurements kept beside the cores; their tests keep them
compiling and correct."""

import functools
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NVCC = shutil.which("nvcc") or shutil.which("nvcc", path="/usr/local/cuda/bin")

# nvcc and the programs are programs of their own: not under the sanitizer
# runtime that CI's sanitizer step preloads into the test process
ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS",
                                                        "UBSAN_OPTIONS")}


needs_nvcc = pytest.mark.skipif(NVCC is None or not (ROOT / "benchmarks").is_dir(),
                                reason="needs nvcc and the source tree")


def build(tmp_path_factory, source, arch_flags):
    """benchmarks/<source> compiled with the cores' headers on the include
    path, in a fresh folder; fails the test with nvcc's errors."""
    stem = pathlib.Path(source).stem
    exe = tmp_path_factory.mktemp(stem) / stem
    done = subprocess.run([NVCC, "-O3", "-std=c++17", *arch_flags, f"-I{ROOT / 'csrc'}",
                           f"-I{ROOT / 'cuda'}", str(ROOT / "benchmarks" / source), "-o",
                           str(exe)], capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr
    return exe


def run(exe, *args, timeout=300):
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


@functools.lru_cache(maxsize=None)
def compute_capability():
    """The first GPU's compute capability (9.0 for an H100), or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=60, env=ENV)
    try:
        return float(out.stdout.split()[0])
    except (IndexError, ValueError):
        return None
