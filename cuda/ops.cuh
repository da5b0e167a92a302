/*
 * ops.cuh - the lecture's operations as readable CUDA kernels, one kernel
 * per op, mirroring csrc/ops.h name for name: the plain path of the CUDA
 * core (mlp_use_plain_ops), the reference that the tuned GEMM (gemm.cu) and
 * the one-kernel epochs (fused.cu, fused_rows.cu) must match. Each kernel
 * gives one thread one output element (or one row), with the pointwise math
 * of csrc/pointwise.h.
 *
 * Shapes: B batch rows, D inputs, H outputs, C outputs of the last layer;
 * row-major float32. Every launcher only enqueues work on `stream`.
 */
#ifndef MLP_CUDA_OPS_CUH
#define MLP_CUDA_OPS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "common.h"
#include "step.cuh"

/* rows of the data set, as float: X[rows] * scale (B,D) */
void gather_batch(cudaStream_t s, float *out, LayerInput in, int64_t B, int64_t D);

/* (B,D) @ (D,H) + (H) -> (B,H) */
void linear_forward(cudaStream_t s, float *out, const float *inp, const float *W, const float *b,
                    int64_t B, int64_t D, int64_t H);

/* (N) -> (N): out = f(inp) */
void activation_forward(cudaStream_t s, mlp_activation act, float *out, const float *inp,
                        int64_t N);

/* (N) -> (N): dinp = f'(inp) * dout, from the input inp (or NULL when the
 * activation does not need it) and the output out */
void activation_backward(cudaStream_t s, mlp_activation act, float *dinp, const float *inp,
                         const float *out, const float *dout, int64_t N);

/* logits (B,C) -> out (B,C) (the model's outputs, when out != NULL) and,
 * with targets, each row's weighted loss and hit at row_loss[start + row],
 * row_hit[start + row]; rows of the data set through order (or start..). */
void loss_forward(cudaStream_t s, float *out, const float *logits, const Targets *t,
                  const int64_t *order, int64_t start, int64_t B, int64_t C, float *row_loss,
                  int32_t *row_hit);

/* logits (B,C) -> classes (B): each row's mlp_argmax */
void rows_argmax(cudaStream_t s, int32_t *classes, const float *logits, int64_t B, int64_t C);

/* logits (B,C) -> dlogits (B,C) of the weighted batch mean, each row
 * scaled by its weight * step->inv_wsum */
void loss_backward(cudaStream_t s, float *dlogits, const float *logits, Targets t,
                   const int64_t *order, int64_t start, int64_t B, int64_t C,
                   const StepInfo *step);

/* dout (B,H) -> dW (D,H) = inp^T @ dout, db (H) = sum over B of dout (added
 * to dW, db when accumulate), dinp (B,D) = dout @ W^T (skipped when NULL) */
void linear_backward(cudaStream_t s, float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int64_t B, int64_t D, int64_t H,
                     bool accumulate);

/* One optimizer step over every parameter (pointwise.h's mlp_update) */
void optimizer_update(cudaStream_t s, const mlp_layout *L, const StepInfo *step, float *params,
                      const float *grads, float *m, float *v);

/* *sum (device) += the sum of the squares of the weights (not the biases) */
void l2_sum(cudaStream_t s, const mlp_layout *L, const float *params, double *sum);

/* batch_loss[b] = the sum of row_loss over batch b * steps[b].inv_wsum
 * + steps[b].l2_half * penalty[b] (when penalty != NULL); totals over all n
 * rows: *loss_sum, *hits (device pointers). Fixed summation order. */
void reduce_epoch(cudaStream_t s, const float *row_loss, const int32_t *row_hit, int64_t n,
                  int64_t batch_size, const StepInfo *steps, const double *penalty,
                  float *batch_loss, double *loss_sum, int64_t *hits);

#endif /* MLP_CUDA_OPS_CUH */
