/*
 * ops.h - the lecture's operations, one forward/backward pair per layer kind.
 *
 * Shapes: B batch rows, D inputs, H outputs, C classes; all row-major float32.
 * The same names exist in the numpy reference (mlp/reference.py) and in the
 * CUDA core (cuda/ops.cuh).
 */
#ifndef MLP_OPS_H
#define MLP_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "mlp.h"

/* rows of X picked by idx, as float: X[idx] (B,D), uint8 scaled by 1/255 */
void gather_batch(float *out, const void *X, mlp_dtype dtype, int64_t d,
                  const int64_t *idx, int64_t B);

/* (B,D) @ (D,H) + (H) -> (B,H) */
void linear_forward(float *out, const float *inp, const float *W,
                    const float *b, int64_t B, int64_t D, int64_t H);

/* (B,H) -> (B,H), max(0, x) */
void relu_forward(float *out, const float *inp, int64_t N);

/* logits (B,C), labels (B) -> probs (B,C); returns the summed loss and adds
 * the number of rows whose argmax is the label to *correct */
double softmax_crossentropy_forward(float *probs, const float *logits,
                                    const int32_t *y, int64_t B, int64_t C,
                                    int64_t *correct);

/* probs (B,C), labels (B) -> dlogits (B,C) = (probs - onehot(y)) / B */
void softmax_crossentropy_backward(float *dlogits, const float *probs,
                                   const int32_t *y, int64_t B, int64_t C);

/* dout (B,H) -> dW (D,H) = inp^T @ dout, db (H) = sum over B of dout,
 * dinp (B,D) = dout @ W^T (skipped when dinp is NULL: the first layer) */
void linear_backward(float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int64_t B, int64_t D,
                     int64_t H);

/* dout (B,H), out = relu output (B,H) -> dinp (B,H); dinp may alias dout */
void relu_backward(float *dinp, const float *out, const float *dout,
                   int64_t N);

/* params, grads, velocity (n): PyTorch's SGD with momentum and weight decay */
void sgd_update(float *params, const float *grads, float *velocity, int64_t n,
                float lr, float momentum, float weight_decay);

#endif /* MLP_OPS_H */
