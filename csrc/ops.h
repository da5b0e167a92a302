/*
 * ops.h - the lecture's operations, one forward/backward pair per layer kind.
 *
 * Shapes: B batch rows, D inputs, H outputs, C outputs of the last layer;
 * all row-major float32. The same names exist in the numpy reference
 * (mlp/reference.py) and in the CUDA core (cuda/ops.cuh). The pointwise
 * math (activations, losses, optimizer rules) comes from pointwise.h.
 */
#ifndef MLP_OPS_H
#define MLP_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "mlp.h"
#include "pointwise.h"

/* rows of X picked by idx, as float: X[idx] * scale (B,D) */
void gather_batch(float *out, const void *X, mlp_dtype dtype, int64_t d, const int64_t *idx,
                  int64_t B, float scale);

/* (B,D) @ (D,H) + (H) -> (B,H) */
void linear_forward(float *out, const float *inp, const float *W, const float *b, int64_t B,
                    int64_t D, int64_t H);

/* (N) -> (N): out = f(inp) elementwise (relu_forward for MLP_RELU); out may
 * alias inp */
void activation_forward(mlp_activation act, float *out, const float *inp, int64_t N);

/* (N) -> (N): dinp = f'(inp) * dout, from the activation's input inp (may be
 * NULL unless mlp_activation_needs_input) and output out (relu_backward for
 * MLP_RELU); dinp may alias dout */
void activation_backward(mlp_activation act, float *dinp, const float *inp, const float *out,
                         const float *dout, int64_t N);

/* A batch's targets: labels (B) for cross-entropy or values (B,C) for the
 * others; weights (B) or NULL (every row 1). */
typedef struct batch_targets {
    const int32_t *labels;
    const float *values;
    const float *weights;
} batch_targets;

/* logits (B,C) -> out (B,C): the model's outputs (softmax probabilities,
 * logistic units, or z itself); with targets, returns the weighted sum of
 * the rows' losses and adds the rows predicted right to *correct
 * (softmax_crossentropy_forward for MLP_CROSS_ENTROPY) */
double loss_forward(mlp_loss loss, float *out, const float *logits, const batch_targets *t,
                    int64_t B, int64_t C, int64_t *correct);

/* out (from loss_forward), logits (B,C) -> dlogits (B,C) of the weighted
 * mean loss over a total weight wsum (softmax_crossentropy_backward for
 * MLP_CROSS_ENTROPY) */
void loss_backward(mlp_loss loss, float *dlogits, const float *out, const float *logits,
                   const batch_targets *t, int64_t B, int64_t C, double wsum);

/* dout (B,H) -> dW (D,H) = inp^T @ dout, db (H) = sum over B of dout,
 * dinp (B,D) = dout @ W^T (skipped when dinp is NULL: the first layer) */
void linear_backward(float *dinp, float *dW, float *db, const float *dout, const float *inp,
                     const float *W, int64_t B, int64_t D, int64_t H);

/* One optimizer step over every parameter (pointwise.h's mlp_update):
 * params, grads, and the state m, v, all in the layout L. */
void optimizer_update(const mlp_layout *L, const mlp_step *s, float *params, const float *grads,
                      float *m, float *v);

/* The L2 penalty of scikit-learn's convention: 0.5 * l2 * sum of W^2 over
 * every layer's weights (not the biases). */
double l2_penalty(const mlp_layout *L, const float *params, double l2);

/* The total weight of a batch: its rows, or the sum of their weights. */
double batch_weight(const float *weights, int64_t B);

#endif /* MLP_OPS_H */
