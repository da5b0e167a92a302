/*
 * step.cuh - what every CUDA kernel path shares about a training step: the
 * batch's rows and targets on the GPU, and the optimizer constants of each
 * step, which the kernels read from device memory so that a recorded epoch
 * (a CUDA graph) stays valid when the learning rate or Adam's step count
 * changes between epochs.
 */
#ifndef MLP_CUDA_STEP_CUH
#define MLP_CUDA_STEP_CUH

#include <stdint.h>

#include "mlp.h"
#include "pointwise.h"

/* One step's constants, worked out on the host for every step of an epoch. */
struct StepInfo {
    mlp_step s;
    float inv_wsum; /* 1 / the batch's rows or weight sum (0 for a weightless batch) */
    float l2_half;  /* scikit-learn's penalty in the reported loss: 0.5 * l2 per |W|^2 */
    float loss_scale; /* mlp_reported_loss_scale */
};

/* A layer's input rows: either activations (act, (B,D) contiguous) or rows
 * of the bound data set picked through order (or rows start.. when order is
 * NULL), read as uint8 or float32 times scale. */
struct LayerInput {
    const float *act;
    const void *X;
    mlp_dtype dtype;
    float scale;
    const int64_t *order;
    int64_t start;
};

/* The targets of the bound data set (device pointers; labels for
 * cross-entropy, values (n, C) for the others, weights or NULL). */
struct Targets {
    mlp_loss loss;
    const int32_t *labels;
    const float *values;
    const float *weights;
};

/* The row of the data set that batch row `row` is (order[start + row], or
 * start + row without an order). */
__host__ __device__ inline int64_t data_row(const int64_t *order, int64_t start, int64_t row) {
    return order ? order[start + row] : start + row;
}

#endif /* MLP_CUDA_STEP_CUH */
