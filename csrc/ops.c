/*
 * ops.c - the lecture's operations in plain C11.
 *
 * Written to be read next to mlp/reference.py. The loops are ordered so the
 * compiler can vectorize the innermost one (contiguous in memory) without
 * reassociating floating-point sums, so results do not depend on -ffast-math.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

/* Eight independent partial sums: vectorizable, and the summation order is
 * fixed by the code, not by the compiler. */
#define LANES 8

void gather_batch(float *out, const void *X, mlp_dtype dtype, int64_t d, const int64_t *idx,
                  int64_t B, float scale) {
    for (int64_t i = 0; i < B; i++) {
        float *row = out + i * d;
        if (dtype == MLP_UINT8) {
            const uint8_t *src = (const uint8_t *)X + idx[i] * d;
            for (int64_t k = 0; k < d; k++) row[k] = (float)src[k] * scale;
        } else {
            const float *src = (const float *)X + idx[i] * d;
            for (int64_t k = 0; k < d; k++) row[k] = src[k] * scale;
        }
    }
}

/* (B,D) @ (D,H) + (H) -> (B,H) */
void linear_forward(float *out, const float *inp, const float *W, const float *b, int64_t B,
                    int64_t D, int64_t H) {
    for (int64_t i = 0; i < B; i++) {
        float *o = out + i * H;
        const float *x = inp + i * D;
        memcpy(o, b, (size_t)H * sizeof(float));
        for (int64_t k = 0; k < D; k++) {
            const float a = x[k];
            if (a == 0.0f) continue; /* pixels and ReLU outputs: mostly zero */
            const float *w = W + k * H;
            for (int64_t j = 0; j < H; j++) o[j] += a * w[j];
        }
    }
}

/* (N) -> (N) */
void activation_forward(mlp_activation act, float *out, const float *inp, int64_t N) {
    for (int64_t i = 0; i < N; i++) out[i] = mlp_activation_forward(act, inp[i]);
}

/* (N) -> (N) */
void activation_backward(mlp_activation act, float *dinp, const float *inp, const float *out,
                         const float *dout, int64_t N) {
    for (int64_t i = 0; i < N; i++)
        dinp[i] = mlp_activation_backward(act, inp ? inp[i] : 0.0f, out[i], dout[i]);
}

static float row_weight(const batch_targets *t, int64_t i) {
    return t->weights ? t->weights[i] : 1.0f;
}

/* (B,C) logits -> (B,C) outputs; returns the weighted sum of row losses */
double loss_forward(mlp_loss loss, float *out, const float *logits, const batch_targets *t,
                    int64_t B, int64_t C, int64_t *correct) {
    double total = 0.0;
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * C;
        float *o = out + i * C;
        if (loss == MLP_CROSS_ENTROPY) { /* softmax_crossentropy_forward */
            const int64_t argmax = mlp_argmax(z, C);
            const float zmax = z[argmax];
            float sum = 0.0f;
            for (int64_t c = 0; c < C; c++) {
                o[c] = mlp_softmax_term(z[c], zmax);
                sum += o[c];
            }
            const float inv = 1.0f / sum;
            for (int64_t c = 0; c < C; c++) o[c] *= inv;
            if (t && t->labels) {
                const int32_t y = t->labels[i];
                total += (double)row_weight(t, i) * (double)mlp_cross_entropy_loss(zmax, sum, z[y]);
                if (correct && argmax == y) (*correct)++;
            }
            continue;
        }
        for (int64_t c = 0; c < C; c++) o[c] = mlp_output(loss, z[c]);
        if (!t || !t->values) continue;
        const float *y = t->values + i * C;
        float row = 0.0f;
        int hit = loss == MLP_BINARY_CROSS_ENTROPY;
        for (int64_t c = 0; c < C; c++) {
            row += mlp_elementwise_loss(loss, z[c], y[c]);
            hit = hit && mlp_binary_hit(z[c], y[c]);
        }
        total += (double)row_weight(t, i) * (double)row;
        if (correct) *correct += hit;
    }
    return total;
}

/* (B,C) -> (B,C) dlogits of the weighted batch-mean loss */
void loss_backward(mlp_loss loss, float *dlogits, const float *out, const float *logits,
                   const batch_targets *t, int64_t B, int64_t C, double wsum) {
    for (int64_t i = 0; i < B; i++) {
        const float scale = wsum > 0.0 ? (float)(row_weight(t, i) / wsum) : 0.0f;
        float *d = dlogits + i * C;
        if (loss == MLP_CROSS_ENTROPY) { /* softmax_crossentropy_backward */
            for (int64_t c = 0; c < C; c++)
                d[c] = mlp_cross_entropy_grad(out[i * C + c], c == t->labels[i], scale);
            continue;
        }
        for (int64_t c = 0; c < C; c++)
            d[c] = mlp_elementwise_grad(loss, logits[i * C + c], t->values[i * C + c], scale);
    }
}

/* dout (B,H) -> dW (D,H) = inp^T @ dout, db (H), dinp (B,D) = dout @ W^T */
void linear_backward(float *dinp, float *dW, float *db, const float *dout, const float *inp,
                     const float *W, int64_t B, int64_t D, int64_t H) {
    for (int64_t j = 0; j < H; j++) db[j] = 0.0f;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < H; j++) db[j] += dout[i * H + j];

    for (int64_t k = 0; k < D; k++) {
        float *g = dW + k * H;
        for (int64_t j = 0; j < H; j++) g[j] = 0.0f;
        for (int64_t i = 0; i < B; i++) {
            const float a = inp[i * D + k];
            if (a == 0.0f) continue;
            const float *d = dout + i * H;
            for (int64_t j = 0; j < H; j++) g[j] += a * d[j];
        }
    }

    if (!dinp) return;
    for (int64_t i = 0; i < B; i++) {
        const float *d = dout + i * H;
        for (int64_t k = 0; k < D; k++) {
            const float *w = W + k * H;
            float acc[LANES] = {0};
            int64_t j = 0;
            for (; j + LANES <= H; j += LANES)
                for (int l = 0; l < LANES; l++) acc[l] += d[j + l] * w[j + l];
            for (; j < H; j++) acc[0] += d[j] * w[j];
            float s = 0.0f;
            for (int l = 0; l < LANES; l++) s += acc[l];
            dinp[i * D + k] = s;
        }
    }
}

void optimizer_update(const mlp_layout *L, const mlp_step *s, float *params, const float *grads,
                      float *m, float *v) {
    for (int l = 0; l < L->n_layers; l++) {
        const int64_t w0 = L->w_off[l], b0 = L->b_off[l], b1 = b0 + L->sizes[l + 1];
        for (int64_t i = w0; i < b0; i++)
            params[i] = mlp_update(s, params[i], grads[i], &m[i], &v[i], 0);
        for (int64_t i = b0; i < b1; i++)
            params[i] = mlp_update(s, params[i], grads[i], &m[i], &v[i], 1);
    }
}

double l2_penalty(const mlp_layout *L, const float *params, double l2) {
    double sum = 0.0;
    for (int l = 0; l < L->n_layers; l++) {
        const float *W = params + L->w_off[l];
        for (int64_t i = 0; i < L->sizes[l] * L->sizes[l + 1]; i++) sum += (double)W[i] * W[i];
    }
    return 0.5 * l2 * sum;
}

double batch_weight(const float *weights, int64_t B) {
    if (!weights) return (double)B;
    double s = 0.0;
    for (int64_t i = 0; i < B; i++) s += weights[i];
    return s;
}
