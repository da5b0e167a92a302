/*
 * ops.cuh - the lecture's operations as CUDA kernels, mirroring csrc/ops.h.
 *
 * Shapes: B batch rows, D inputs, H outputs, C classes; row-major float32.
 * Every launcher only enqueues work on `stream`; none synchronizes.
 *
 * Where the C core runs two ops back to back, the GPU fuses them into one
 * kernel to save a pass over memory and a launch:
 *   gather_batch + linear_forward + relu_forward  -> linear_forward
 *   softmax_crossentropy_forward + _backward      -> softmax_crossentropy_forward_backward
 *   linear_backward (dinp) + relu_backward        -> linear_backward_input
 *   linear_backward (dW, db) + sgd_update         -> linear_backward_weights_sgd
 *
 * The flat layout W (D,H) followed by b (H) means the two together form one
 * (D+1, H) matrix: the bias is the weight of a constant input 1. The kernels
 * use that "augmented" view throughout.
 */
#ifndef MLP_CUDA_OPS_CUH
#define MLP_CUDA_OPS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "mlp.h"

/* A layer's input rows: either activations (act, (B,D) contiguous) or rows
 * of the bound data set picked through order (or rows start.. when order is
 * NULL), read as uint8 scaled by 1/255 or as float32. */
struct LayerInput {
    const float *act;
    const void *X;
    mlp_dtype dtype;
    const int64_t *order;
    int64_t start;
};

/* Scratch space for split-K partial sums, owned by the model. */
struct Scratch {
    float *ptr;
    int64_t floats;
};

/* Floats of scratch that any GEMM below may use: a fixed bound, since
 * split-K stops once a product has about TARGET_BLOCKS blocks. */
int64_t gemm_scratch_floats(void);

/* (B,D) @ (D,H) + (H) -> (B,H), then max(0, .) when relu */
void linear_forward(cudaStream_t s, float *out, LayerInput in, const float *W_aug, int64_t B,
                    int64_t D, int64_t H, bool relu, Scratch scratch);

/* logits (B,C) -> dlogits (B,C) = (softmax - onehot) / B; each row's loss and
 * hit go to row_loss[row], row_hit[row]. Labels are y[order[start + row]]. */
void softmax_crossentropy_forward_backward(cudaStream_t s, float *dlogits, const float *logits,
                                           const int32_t *y, const int64_t *order, int64_t start,
                                           int64_t B, int64_t C, float *row_loss,
                                           int32_t *row_hit);

/* logits (B,C) -> probs (B,C) (when probs != NULL); with labels y[start +
 * row], also each row's loss and hit */
void softmax_crossentropy_forward(cudaStream_t s, float *probs, const float *logits,
                                  const int32_t *y, int64_t start, int64_t B, int64_t C,
                                  float *row_loss, int32_t *row_hit);

/* dout (B,H) -> dinp (B,D) = (dout @ W^T) * (act_in > 0) */
void linear_backward_input(cudaStream_t s, float *dinp, const float *dout, const float *W,
                           const float *act_in, int64_t B, int64_t D, int64_t H,
                           Scratch scratch);

/* dW_aug (D+1,H) = [in, 1]^T @ dout, then SGD on W_aug with velocity V:
 * g += wd * p; v = momentum * v + g; p -= lr * v */
void linear_backward_weights_sgd(cudaStream_t s, float *W_aug, float *V, const float *dout,
                                 LayerInput in, int64_t B, int64_t D, int64_t H, float lr,
                                 float momentum, float weight_decay, Scratch scratch);

/* batch_loss[b] = mean of row_loss over batch b; totals over all n rows:
 * *loss_sum, *hits (device pointers). Fixed summation order. */
void reduce_epoch(cudaStream_t s, const float *row_loss, const int32_t *row_hit, int64_t n,
                  int64_t batch_size, float *batch_loss, double *loss_sum, int64_t *hits);

#endif /* MLP_CUDA_OPS_CUH */
