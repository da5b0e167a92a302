"""How the CUDA core's kernel-per-op path cuts a product into blocks
(cuda/gemm_shape.cuh's split_shape), checked on the host: the header is
plain C++ once CUDA's qualifiers are defined away, so this runs without a
GPU or nvcc."""

import pathlib
import shutil
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = ROOT / "cuda" / "gemm_shape.cuh"
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = pytest.mark.skipif(CXX is None or not HEADER.is_file(),
                                reason="needs a C++ compiler and the source tree")

# reads "M N K bm bn bk target slots" lines, prints "tiles splits k_per_split"
PROGRAM = r"""
#include <cstdio>
#include "gemm_shape.cuh"
int main() {
    long long M, N, K, target, slots;
    int bm, bn, bk;
    while (scanf("%lld %lld %lld %d %d %d %lld %lld", &M, &N, &K, &bm, &bn, &bk, &target,
                 &slots) == 8) {
        const gemm::Shape sh = gemm::split_shape(M, N, K, bm, bn, bk, target, slots);
        printf("%lld %d %lld\n", (long long)sh.tiles, sh.splits, (long long)sh.k_per_split);
    }
    return 0;
}
"""


def host_program(tmp_path_factory, name, source):
    """source compiled against the header; returns run(cases): each case a
    line of numbers in, each line of numbers out a tuple."""
    build = tmp_path_factory.mktemp(name)
    (build / "main.cpp").write_text(source)
    exe = build / name
    subprocess.run([CXX, "-std=c++17", "-O1", "-D__host__=", "-D__device__=",
                    f"-I{HEADER.parent}", str(build / "main.cpp"), "-o", str(exe)],
                   check=True, capture_output=True)

    def run(cases):
        lines = "".join(" ".join(str(v) for v in c) + "\n" for c in cases)
        out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True)
        return [tuple(int(v) for v in line.split()) for line in out.stdout.splitlines()]
    return run


@pytest.fixture(scope="module")
def split_shape(tmp_path_factory):
    return host_program(tmp_path_factory, "split_shape", PROGRAM)


def cdiv(a, b):
    return -(-a // b)


def test_the_documented_case(split_shape):
    # 72 small tiles over K = 8192: 8 slices are 576 blocks, two waves on 528
    # slots; 7 slices of 74 k-tiles are one
    assert split_shape([(513, 512, 8192, 64, 64, 16, 512, 0)]) == [(72, 8, 64 * 16)]
    assert split_shape([(513, 512, 8192, 64, 64, 16, 512, 528)]) == [(72, 7, 74 * 16)]


def test_slices_cover_k_and_whole_waves_never_cost_more(split_shape):
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(3000):
        bm, bn = [(64, 64), (128, 128)][rng.integers(2)]
        cases.append((int(rng.integers(1, 5000)), int(rng.integers(1, 5000)),
                      int(rng.integers(1, 20000)), bm, bn, 16,
                      int(rng.choice([0, 256, 512])), int(rng.choice([264, 396, 528, 1000]))))
    halved = split_shape([c[:7] + (0,) for c in cases])
    waves = split_shape(cases)
    changed = 0
    for (M, N, K, bm, bn, bk, target, slots), old, new in zip(cases, halved, waves):
        tiles, k_tiles = cdiv(M, bm) * cdiv(N, bn), cdiv(K, bk)
        for t, splits, per in (old, new):
            assert t == tiles
            assert per % bk == 0 and per > 0
            assert (splits - 1) * per < K <= splits * per  # every slice holds some of K
        # without slots: K halved while blocks are under target and slices keep 2 k-tiles
        s = 1
        while tiles * s < target and k_tiles >= 2 * s:
            s *= 2
        assert old[2] == cdiv(k_tiles, s) * bk
        # with slots: never more slices, and never more waves times k-tiles a slice
        assert new[1] <= old[1]

        def cost(s):
            return cdiv(tiles * s, slots) * cdiv(k_tiles, s)
        assert cost(new[1]) <= cost(old[1])
        changed += new[1] != old[1]
    assert changed > 0  # the cases do reach the wave rule


# reads "tiles K bk slots M N bm bn" lines, prints "s tiles splits k_per_split":
# shared_splits(tiles, K, bk, slots), then shape_with_splits of M x N x K with s
SHARED_PROGRAM = r"""
#include <cstdio>
#include "gemm_shape.cuh"
int main() {
    long long tiles, K, slots, M, N;
    int bk, bm, bn;
    while (scanf("%lld %lld %d %lld %lld %lld %d %d", &tiles, &K, &bk, &slots, &M, &N, &bm,
                 &bn) == 8) {
        const long long s = gemm::shared_splits(tiles, K, bk, slots);
        const gemm::Shape sh = gemm::shape_with_splits(M, N, K, bm, bn, bk, s);
        printf("%lld %lld %d %lld\n", s, (long long)sh.tiles, sh.splits,
               (long long)sh.k_per_split);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return host_program(tmp_path_factory, "shared", SHARED_PROGRAM)


def test_jobs_sharing_a_launch_take_one_count_of_slices(shared):
    # tabular 100-512-512-2 at 1024 rows: 72 + 16 small tiles on 528 slots, 6
    # slices of 11 k-tiles (the last 9) each
    assert shared([(88, 1024, 16, 528, 513, 512, 64, 64)]) == [(6, 72, 6, 11 * 16)]
    assert shared([(88, 1024, 16, 528, 101, 512, 64, 64)]) == [(6, 16, 6, 11 * 16)]
    rng = np.random.default_rng(4)
    cases = [(int(rng.integers(0, 2000)), int(rng.integers(1, 20000)), 16,
              int(rng.choice([0, 264, 528, 1000])), int(rng.integers(1, 5000)),
              int(rng.integers(1, 5000)), 64, 64) for _ in range(3000)]
    for (tiles, K, bk, slots, M, N, bm, bn), (s, t, splits, per) in zip(cases, shared(cases)):
        k_tiles = cdiv(K, bk)
        assert 1 <= s <= k_tiles
        if slots > 0 and tiles > 0:
            assert tiles * s <= slots or s == 1  # one wave where the tiles allow it
            assert tiles * (s + 1) > slots or s == k_tiles  # and no fewer slices than that
        assert t == cdiv(M, bm) * cdiv(N, bn)
        assert per % bk == 0 and per == cdiv(k_tiles, s) * bk
        assert splits <= s and (splits - 1) * per < K <= splits * per
