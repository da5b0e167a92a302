/*
 * common.cuh - device code shared by gemm.cu and the fused kernels:
 * warp-wide reductions, and kernels chained by programmatic dependent
 * launch.
 */
#ifndef MLP_CUDA_COMMON_CUH
#define MLP_CUDA_COMMON_CUH

#include <cuda_runtime.h>
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

/* Split-K's hand-over, for a block that has stored its partial sums of a
 * tile: whether it is the last of the tile's `splits` blocks to get here,
 * which then adds every slice's partials (in slice order, so the result does
 * not depend on which block came last) and calls tile_released. The fences
 * make each block's partials visible before its count, and every count's
 * partials visible to the last block. Every thread of the block calls it. */
__device__ inline bool last_of_tile(unsigned *counters, int64_t tile, int splits) {
    __shared__ bool is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(&counters[tile], 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (is_last) __threadfence();
    return is_last;
}

/* The last block of a tile has read every partial: the counter is ready for
 * the next product. */
__device__ inline void tile_released(unsigned *counters, int64_t tile) {
    if (threadIdx.x == 0) counters[tile] = 0;
}

/* Programmatic dependent launch (GPUs of compute capability 9.0 and newer):
 * a kernel launched with launch_chained may be scheduled before the kernel
 * before it in the stream has finished, once each of that kernel's blocks
 * has called chained_next (or finished). It does nothing before
 * chained_start, which waits until that kernel has finished and its writes
 * are visible. So each kernel still runs after the one before it, with the
 * same results; what shrinks is the gap between them (a step of the
 * kernel-per-op path at batch 64 is several short kernels). A block calls
 * chained_next when its main work is done: the next kernel's blocks then
 * wait on the GPU during this one's last stores, not before its products.
 * Elsewhere both are no-ops. */
__device__ inline void chained_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ inline void chained_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* An attribute of the current GPU into *value; false (the error cleared)
 * where it cannot be read */
inline bool device_attribute(cudaDeviceAttr what, int *value) {
    int dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(value, what, dev) == cudaSuccess)
        return true;
    (void)cudaGetLastError();
    return false;
}

/* kernel<<<grid, block, smem, s>>>(args...), chained to the kernel before
 * it in s when `chained` (only where gemm::chaining_supported: a kernel
 * compiled for an older GPU has no chained_start to wait in) */
template <typename... Params, typename... Args>
inline cudaError_t launch_chained(bool chained, void (*kernel)(Params...), dim3 grid, dim3 block,
                                  size_t smem, cudaStream_t s, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = chained ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

#endif /* MLP_CUDA_COMMON_CUH */
