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

void gather_batch(float *out, const void *X, mlp_dtype dtype, int64_t d,
                  const int64_t *idx, int64_t B) {
    for (int64_t i = 0; i < B; i++) {
        float *row = out + i * d;
        if (dtype == MLP_UINT8) {
            const uint8_t *src = (const uint8_t *)X + idx[i] * d;
            for (int64_t k = 0; k < d; k++) row[k] = (float)src[k] * (1.0f / 255.0f);
        } else {
            memcpy(row, (const float *)X + idx[i] * d, (size_t)d * sizeof(float));
        }
    }
}

/* (B,D) @ (D,H) + (H) -> (B,H) */
void linear_forward(float *out, const float *inp, const float *W,
                    const float *b, int64_t B, int64_t D, int64_t H) {
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

/* (B,H) -> (B,H) */
void relu_forward(float *out, const float *inp, int64_t N) {
    for (int64_t i = 0; i < N; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* (B,C) logits, (B) labels -> (B,C) probs; returns sum of -log p[y] */
double softmax_crossentropy_forward(float *probs, const float *logits,
                                    const int32_t *y, int64_t B, int64_t C,
                                    int64_t *correct) {
    double loss = 0.0;
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * C;
        float *p = probs + i * C;
        int64_t argmax = 0;
        for (int64_t c = 1; c < C; c++)
            if (z[c] > z[argmax]) argmax = c;
        const float zmax = z[argmax];
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            p[c] = expf(z[c] - zmax);
            sum += p[c];
        }
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < C; c++) p[c] *= inv;
        if (y) {
            loss += (double)(logf(sum) - (z[y[i]] - zmax));
            if (correct && argmax == y[i]) (*correct)++;
        }
    }
    return loss;
}

/* (B,C) probs, (B) labels -> (B,C) dlogits of the batch-mean loss */
void softmax_crossentropy_backward(float *dlogits, const float *probs,
                                   const int32_t *y, int64_t B, int64_t C) {
    const float scale = 1.0f / (float)B;
    for (int64_t i = 0; i < B; i++) {
        for (int64_t c = 0; c < C; c++)
            dlogits[i * C + c] = (probs[i * C + c] - (c == y[i] ? 1.0f : 0.0f)) * scale;
    }
}

/* dout (B,H) -> dW (D,H) = inp^T @ dout, db (H), dinp (B,D) = dout @ W^T */
void linear_backward(float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int64_t B, int64_t D,
                     int64_t H) {
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

/* (N) -> (N): the gradient passes where the ReLU output was positive */
void relu_backward(float *dinp, const float *out, const float *dout, int64_t N) {
    for (int64_t i = 0; i < N; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* (n) params, grads, velocity: g += wd * p; v = momentum * v + g; p -= lr * v */
void sgd_update(float *params, const float *grads, float *velocity, int64_t n,
                float lr, float momentum, float weight_decay) {
    if (momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++)
            params[i] -= lr * (grads[i] + weight_decay * params[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float g = grads[i] + weight_decay * params[i];
        velocity[i] = momentum * velocity[i] + g;
        params[i] -= lr * velocity[i];
    }
}
