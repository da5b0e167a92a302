/*
 * ops.cuh - the lecture's operations as CUDA kernels, mirroring csrc/ops.h.
 *
 * Shapes: B batch rows, D inputs, H outputs, C classes; row-major float32.
 * Every launcher only enqueues work on `stream`; none synchronizes.
 *
 * Where the C core runs ops back to back, the GPU fuses them, to save passes
 * over memory and, above all, kernel launches (a training step at batch 64
 * is a few microseconds of arithmetic):
 *   gather_batch + linear_forward + relu_forward   -> linear_forward
 *   linear_forward (last layer) + softmax_crossentropy_forward/_backward
 *     + linear_backward's dinp + relu_backward     -> head_forward_backward
 *   linear_backward (dinp) + relu_backward         -> linear_backward_input
 *   linear_backward (dW, db) + sgd_update, every layer in one launch
 *                                                  -> linear_backward_weights_sgd
 *
 * The flat layout W (D,H) followed by b (H) makes the two one (D+1, H)
 * matrix: the bias is the weight of a constant input 1. The kernels use that
 * "augmented" view throughout.
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

/* Device scratch owned by the model: split-K partial sums, and the counters
 * that let the last block of each tile add them up (zero between uses). */
struct Scratch {
    float *partial;
    int64_t partial_floats;
    unsigned *counters;
    int64_t n_counters;
};
int64_t scratch_partial_floats(void);
int64_t scratch_counters(void);

/* The most layers one linear_backward_weights_sgd launch updates. */
#define MLP_MAX_FUSED_LAYERS 8

/* Whether head_forward_backward takes a layer of H inputs and C classes
 * (at most MLP_HEAD_MAX_CLASSES, and a row h of H floats fits in shared memory);
 * otherwise the generic ops do the same work. */
#define MLP_HEAD_MAX_CLASSES 64
bool head_fits(int64_t H, int64_t C);

/* (B,D) @ (D,H) + (H) -> (B,H), then max(0, .) when relu. When stash is
 * given, the input rows, as floats, also go there, (B,D): the gathered batch
 * that the weight update of the same step reads. */
void linear_forward(cudaStream_t s, float *out, LayerInput in, const float *W_aug, int64_t B,
                    int64_t D, int64_t H, bool relu, float *stash, Scratch scratch);

/* The last layer and the loss, forward and backward, one warp per row:
 * logits (B,C) = h (B,H) @ W (H,C) + b; dlogits (B,C) = (softmax - onehot)/B;
 * dh (B,H) = (dlogits @ W^T) * (h > 0); each row's loss and hit go to
 * row_loss[start + row], row_hit[start + row]; labels y[order[start + row]]. */
void head_forward_backward(cudaStream_t s, float *logits, float *dlogits, float *dh,
                           const float *h, const float *W_aug, int64_t B, int64_t H, int64_t C,
                           const int32_t *y, const int64_t *order, int64_t start,
                           float *row_loss, int32_t *row_hit);

/* logits (B,C) -> dlogits (B,C) = (softmax - onehot) / B, with each row's
 * loss and hit; labels y[order[start + row]] (the generic path) */
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

/* One layer's share of linear_backward_weights_sgd */
struct WeightsJob {
    float *W_aug, *V;  /* (D+1, H) parameters and momentum */
    const float *dout; /* (B, H) */
    LayerInput in;     /* (B, D) */
    int64_t D, H;
};

/* For every job at once: dW_aug (D+1,H) = [in, 1]^T @ dout, then SGD:
 * g += wd * p; v = momentum * v + g; p -= lr * v */
void linear_backward_weights_sgd(cudaStream_t s, const WeightsJob *jobs, int n_jobs, int64_t B,
                                 float lr, float momentum, float weight_decay, Scratch scratch);

/* batch_loss[b] = mean of row_loss over batch b; totals over all n rows:
 * *loss_sum, *hits (device pointers). Fixed summation order. */
void reduce_epoch(cudaStream_t s, const float *row_loss, const int32_t *row_hit, int64_t n,
                  int64_t batch_size, float *batch_loss, double *loss_sum, int64_t *hits);

#endif /* MLP_CUDA_OPS_CUH */
