/*
 * rounding.cu - mlp_check_rounding on the GPU: the pointwise header's
 * division and square root (mlp_div, mlp_sqrt) against nvcc's IEEE
 * float32 operations (__fdiv_rn, __fsqrt_rn), bit for bit.
 */
#include <cuda_runtime.h>

#include "common.h"
#include "pointwise.h"
#include "status.cuh"
#include "mlp.h"

namespace {

/* count of inputs [0, n) where either operation differs */
__global__ void rounding_kernel(int64_t n, uint64_t seed, unsigned long long *bad) {
    unsigned long long mine = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float a, b;
        mlp_rounding_case(seed, i, &a, &b);
        mine += !mlp_same_result(mlp_div(a, b), __fdiv_rn(a, b));
        mine += !mlp_same_result(mlp_sqrt(a), __fsqrt_rn(a));
    }
    if (mine) atomicAdd(bad, mine);
}

} // namespace

extern "C" mlp_status mlp_check_rounding(int64_t samples, uint64_t seed, int64_t *mismatches) {
    mlp_clear_error();
    if (!mismatches) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    if (samples < 0) return mlp_fail(MLP_ERR_INVALID, "samples must be >= 0");
    *mismatches = 0;
    mlp_status st = mlp_device_check();
    if (st != MLP_OK) return st;
    unsigned long long *bad = NULL, count = 0;
    st = device_alloc(&bad, 1, "the rounding check");
    if (st != MLP_OK) return st;
    cudaError_t e = cudaMemset(bad, 0, sizeof *bad);
    if (e == cudaSuccess && samples > 0) {
        rounding_kernel<<<1024, 256>>>(samples, seed, bad);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(&count, bad, sizeof count, cudaMemcpyDeviceToHost);
    cudaFree(bad);
    if (e != cudaSuccess) return cuda_fail(e, "the rounding check");
    *mismatches = (int64_t)count;
    return MLP_OK;
}
