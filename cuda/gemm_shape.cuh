/*
 * gemm_shape.cuh - how gemm.cu cuts one product into blocks, for its float32
 * tiles and its tensor-core tiles (gemm_tensor.cuh) alike. Host arithmetic
 * only: tests/test_gemm_shape.py compiles it as plain C++.
 */
#ifndef MLP_CUDA_GEMM_SHAPE_CUH
#define MLP_CUDA_GEMM_SHAPE_CUH

#include <stdint.h>

namespace gemm {

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* One product C (M,N) = A (M,K) @ B (K,N), cut into tiles and, when that
 * gives too few blocks, into `splits` slices of K. (Kernels index arrays
 * of these: one more field cost the float32 weight update 26 registers a
 * thread and a block an SM.) */
struct Shape {
    int64_t M, N, K;
    int64_t tiles_n, tiles; /* tiles across N, tiles in all */
    int64_t k_per_split;
    int splits;
};

/* K halved into more slices while there are fewer than target_blocks blocks
 * and each slice keeps at least one k-tile of bk (target_blocks 0: no
 * split). Then, where `slots` blocks run at once on the GPU (0: not known),
 * fewer slices where that takes less time by its count of waves times the
 * k-tiles of a slice: 576 blocks of 64 k-tiles on 528 slots are two waves,
 * 504 blocks of 74 k-tiles one. */
inline Shape split_shape(int64_t M, int64_t N, int64_t K, int bm, int bn, int bk,
                         int64_t target_blocks, int64_t slots) {
    Shape sh;
    sh.M = M;
    sh.N = N;
    sh.K = K;
    sh.tiles_n = cdiv(N, bn);
    sh.tiles = cdiv(M, bm) * sh.tiles_n;
    const int64_t ktiles = cdiv(K, bk);
    int64_t splits = 1;
    while (sh.tiles * splits < target_blocks && ktiles >= 2 * splits) splits *= 2;
    if (slots > 0) {
        auto cost = [&](int64_t s) { return cdiv(sh.tiles * s, slots) * cdiv(ktiles, s); };
        int64_t best = splits;
        for (int64_t s = splits - 1; s >= 1; s--)
            if (cost(s) < cost(best)) best = s;
        splits = best;
    }
    sh.k_per_split = cdiv(ktiles, splits) * bk;
    sh.splits = (int)cdiv(K, sh.k_per_split);
    return sh;
}

/* The one count of slices for products of the same K that share a launch
 * of `tiles` tiles in all: as many as keep the launch within one wave of
 * `slots` blocks, at least 1 and at most one k-tile of bk a slice. */
inline int64_t shared_splits(int64_t tiles, int64_t K, int bk, int64_t slots) {
    const int64_t ktiles = cdiv(K, bk);
    int64_t s = slots > 0 && tiles > 0 ? slots / tiles : 1;
    if (s > ktiles) s = ktiles;
    return s < 1 ? 1 : s;
}

/* split_shape's cut with `splits` slices chosen by the caller */
inline Shape shape_with_splits(int64_t M, int64_t N, int64_t K, int bm, int bn, int bk,
                               int64_t splits) {
    Shape sh = split_shape(M, N, K, bm, bn, bk, 0, 0);
    sh.k_per_split = cdiv(cdiv(K, bk), splits) * bk;
    sh.splits = (int)cdiv(K, sh.k_per_split);
    return sh;
}

/* the scratch floats that a split product's partial tiles of tile_floats
 * take */
inline int64_t partial_floats(const Shape &sh, int64_t tile_floats) {
    return sh.splits > 1 ? (int64_t)sh.splits * sh.tiles * tile_floats : 0;
}

} // namespace gemm

#endif /* MLP_CUDA_GEMM_SHAPE_CUH */
