/*
 * common.cuh - device code shared by gemm.cu and the fused kernels:
 * warp-wide reductions.
 */
#ifndef MLP_CUDA_COMMON_CUH
#define MLP_CUDA_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include "pointwise.h"

__device__ inline float warp_sum(float v) {
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

struct RowStats {
    float zmax;
    int64_t argmax;
    float sum;
};

/* max, first index of the max, and sum of exp(z - max) of one row of C
 * logits, by the 32 lanes of a warp; every lane gets the result */
__device__ inline RowStats row_stats(const float *z, int64_t C) {
    const int lane = threadIdx.x % 32;
    float best = -INFINITY;
    int arg = (int)C; /* classes fit in 32 bits: one shuffle a step, not two */
    for (int c = lane; c < C; c += 32)
        if (z[c] > best || arg == C) {
            best = z[c];
            arg = c;
        }
    for (int off = 16; off > 0; off /= 2) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, off);
        const int oa = __shfl_xor_sync(0xffffffffu, arg, off);
        if (ob > best || (ob == best && oa < arg)) {
            best = ob;
            arg = oa;
        }
    }
    float sum = 0.0f;
    for (int64_t c = lane; c < C; c += 32) sum += mlp_softmax_term(z[c], best);
    sum = warp_sum(sum);
    return RowStats{best, arg, sum};
}

#endif /* MLP_CUDA_COMMON_CUH */
