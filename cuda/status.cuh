/*
 * status.cuh - host-side helpers of the CUDA core's files (model.cu,
 * host_rows.cu): a CUDA error as an mlp status with its message, and
 * device allocations that say what ran out.
 */
#ifndef MLP_CUDA_STATUS_CUH
#define MLP_CUDA_STATUS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "common.h"

/* MLP_ERR_NOMEM for an allocation, else MLP_ERR_DEVICE with the CUDA error
 * string; `what` names the call or the work that failed. */
static inline mlp_status cuda_fail(cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear a non-sticky error so the process stays usable */
    if (e == cudaErrorMemoryAllocation)
        return mlp_fail(MLP_ERR_NOMEM, "out of GPU memory (%s)", what);
    return mlp_fail(MLP_ERR_DEVICE, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

/* count elements of T on the GPU (at least one), for `what`. */
template <class T>
static mlp_status device_alloc(T **p, int64_t count, const char *what) {
    *p = NULL;
    cudaError_t e = cudaMalloc((void **)p, sizeof(T) * (size_t)(count > 0 ? count : 1));
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            return mlp_fail(MLP_ERR_NOMEM, "out of GPU memory for %s (%lld bytes)", what,
                            (long long)(sizeof(T) * (size_t)count));
        return cuda_fail(e, "cudaMalloc");
    }
    return MLP_OK;
}

#endif /* MLP_CUDA_STATUS_CUH */
