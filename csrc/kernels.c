/*
 * kernels.c - see kernels.h. Built twice, with MLP_KERNEL_SET defined to
 * base and to avx2 (then with -mavx2 -mfma, so that every a += s * x below
 * becomes one fused multiply-add). GCC/Clang vector extensions (v8: eight
 * floats) keep the source free of intrinsics.
 *
 * Summation orders are fixed by the code: the sets differ in rounding only
 * (a fused multiply-add rounds once), never in the order of the sums.
 */
#include <string.h>

#include "kernels.h"
#include "pointwise.h"

#ifndef MLP_KERNEL_SET
#define MLP_KERNEL_SET base
#endif
#define NAME_(set) #set
#define NAME(set) NAME_(set)
#define TABLE_(set) mlp_kernels_##set
#define TABLE(set) TABLE_(set)

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));

#define CHUNK 64 /* output columns per register block: 8 x v8 */
#define LOAD(p) (*(const v8 *)(p))
#define STORE(p, v) (*(v8 *)(p) = (v))
#define SPLAT(s) ((v8){(s), (s), (s), (s), (s), (s), (s), (s)})
/* relu_forward of pointwise.h, eight lanes at once (the tests hold the two together) */
#define RELU(x) ((v8)((v8i)(x) & (v8i)((x) > SPLAT(0.0f))))

/* sum of x[k] * y[k] over k < n: 32 lanes (four independent chains of
 * fused multiply-adds), then the lanes and the tail in a fixed order */
static float dot(const float *x, const float *y, int64_t n) {
    v8 a0 = SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 += LOAD(x + k) * LOAD(y + k);
        a1 += LOAD(x + k + 8) * LOAD(y + k + 8);
        a2 += LOAD(x + k + 16) * LOAD(y + k + 16);
        a3 += LOAD(x + k + 24) * LOAD(y + k + 24);
    }
    for (; k + 8 <= n; k += 8) a0 += LOAD(x + k) * LOAD(y + k);
    const v8 a = (a0 + a1) + (a2 + a3);
    float s = 0.0f;
    for (int l = 0; l < 8; l++) s += a[l];
    for (; k < n; k++) s += x[k] * y[k];
    return s;
}

/* One row's columns [j0, j0 + w) of its entries t0 .. t1 @ W, added to o
 * (or to the bias b when first); ReLU applied when last. */
static void forward_chunk(float *o, const int32_t *ix, const float *vx, int64_t t0, int64_t t1,
                              const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                              int first, int last, int relu) {
    if (w == CHUNK) {
        const float *a = first ? b + j0 : o;
        v8 a0 = LOAD(a), a1 = LOAD(a + 8), a2 = LOAD(a + 16), a3 = LOAD(a + 24),
           a4 = LOAD(a + 32), a5 = LOAD(a + 40), a6 = LOAD(a + 48), a7 = LOAD(a + 56);
        for (int64_t t = t0; t < t1; t++) {
            const float *wr = W + (int64_t)ix[t] * H + j0;
            const v8 s = SPLAT(vx[t]);
            a0 += s * LOAD(wr);
            a1 += s * LOAD(wr + 8);
            a2 += s * LOAD(wr + 16);
            a3 += s * LOAD(wr + 24);
            a4 += s * LOAD(wr + 32);
            a5 += s * LOAD(wr + 40);
            a6 += s * LOAD(wr + 48);
            a7 += s * LOAD(wr + 56);
        }
        if (last && relu) {
            a0 = RELU(a0), a1 = RELU(a1), a2 = RELU(a2), a3 = RELU(a3);
            a4 = RELU(a4), a5 = RELU(a5), a6 = RELU(a6), a7 = RELU(a7);
        }
        STORE(o, a0), STORE(o + 8, a1), STORE(o + 16, a2), STORE(o + 24, a3);
        STORE(o + 32, a4), STORE(o + 40, a5), STORE(o + 48, a6), STORE(o + 56, a7);
        return;
    }
    float acc[CHUNK];
    memcpy(acc, first ? b + j0 : o, sizeof(float) * (size_t)w);
    for (int64_t t = t0; t < t1; t++) {
        const float *wr = W + (int64_t)ix[t] * H + j0;
        const float s = vx[t];
        for (int64_t j = 0; j < w; j++) acc[j] += s * wr[j];
    }
    for (int64_t j = 0; j < w; j++)
        o[j] = last && relu ? mlp_activation_forward(MLP_RELU, acc[j]) : acc[j];
}

/* forward_chunk over rows r0 .. r1 of a batch's nonzero lists (row r's
 * entries at ix + r * D and vx + r * D, its block starts at blk + r * nb),
 * input block kb, outputs o + r * ldo: one call for a run of rows, so that
 * forward_chunk is inlined into the loop. A row with no entries in the
 * block is skipped unless the block is its first (the bias) or last (ReLU). */
static void forward_rows(float *o, int64_t ldo, const int32_t *ix, const float *vx,
                         const int32_t *blk, int64_t nb, int64_t D, int64_t r0, int64_t r1,
                         int64_t kb, const float *W, const float *b, int64_t H, int64_t j0,
                         int64_t w, int relu) {
    const int first = kb == 0, last = kb == nb - 2;
    for (int64_t r = r0; r < r1; r++) {
        const int32_t *bl = blk + r * nb;
        if (bl[kb] == bl[kb + 1] && !first && !last) continue;
        forward_chunk(o + r * ldo, ix + r * D, vx + r * D, bl[kb], bl[kb + 1], W, b, H, j0, w,
                      first, last, relu);
    }
}

/* g[k] = 0 where act[k] <= 0 (relu_backward), without branches */
static void relu_mask(float *g, const float *act, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const v8 a = LOAD(act + k), x = LOAD(g + k);
        STORE(g + k, (v8)((v8i)x & (v8i)(a > SPLAT(0.0f))));
    }
    for (; k < n; k++) g[k] = mlp_activation_backward(MLP_RELU, 0.0f, act[k], g[k]);
}

static void axpy(float *y, const float *x, float a, int64_t n) {
    int64_t k = 0;
    const v8 s = SPLAT(a);
    for (; k + 8 <= n; k += 8) STORE(y + k, LOAD(y + k) + s * LOAD(x + k));
    for (; k < n; k++) y[k] += a * x[k];
}

/* Row k of GW, columns [j0, j0 + w): += scale * sum over the entries (r, v)
 * of input column k of v * dout[r]; the sum is kept in registers, so each
 * weight is read and written once per step. */
static void weights_chunk(float *g, const int32_t *rows, const float *vals, int64_t n,
                              const float *dout, int64_t H, int64_t j0, int64_t w, float scale) {
    if (w == CHUNK) {
        v8 a0 = SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int64_t t = 0; t < n; t++) {
            const float *d = dout + (int64_t)rows[t] * H + j0;
            const v8 s = SPLAT(vals[t]);
            a0 += s * LOAD(d);
            a1 += s * LOAD(d + 8);
            a2 += s * LOAD(d + 16);
            a3 += s * LOAD(d + 24);
            a4 += s * LOAD(d + 32);
            a5 += s * LOAD(d + 40);
            a6 += s * LOAD(d + 48);
            a7 += s * LOAD(d + 56);
        }
        const v8 c = SPLAT(scale);
        STORE(g, LOAD(g) + c * a0);
        STORE(g + 8, LOAD(g + 8) + c * a1);
        STORE(g + 16, LOAD(g + 16) + c * a2);
        STORE(g + 24, LOAD(g + 24) + c * a3);
        STORE(g + 32, LOAD(g + 32) + c * a4);
        STORE(g + 40, LOAD(g + 40) + c * a5);
        STORE(g + 48, LOAD(g + 48) + c * a6);
        STORE(g + 56, LOAD(g + 56) + c * a7);
        return;
    }
    float acc[CHUNK] = {0};
    for (int64_t t = 0; t < n; t++) {
        const float *d = dout + (int64_t)rows[t] * H + j0;
        const float s = vals[t];
        for (int64_t j = 0; j < w; j++) acc[j] += s * d[j];
    }
    for (int64_t j = 0; j < w; j++) g[j] += scale * acc[j];
}

/* weights_chunk for input columns k0 .. k1 (column k's entries at
 * start[k] .. start[k + 1] of rows and vals; columns without entries
 * skipped): rows k of GW, one call for a run of columns, so that
 * weights_chunk is inlined into the loop. */
static void weights_cols(float *GW, const int32_t *start, const int32_t *rows, const float *vals,
                         int64_t k0, int64_t k1, const float *dout, int64_t H, int64_t j0,
                         int64_t w, float scale) {
    for (int64_t k = k0; k < k1; k++) {
        const int64_t first = start[k], n = start[k + 1] - first;
        if (n > 0)
            weights_chunk(GW + k * H + j0, rows + first, vals + first, n, dout, H, j0, w, scale);
    }
}

/* Rows x[0 .. n) (n <= 4, dense, ldx apart), columns [j0, j0 + w) (w <= 16):
 * o = b + x @ W, ReLU when relu. Four rows share each load of W. */
static void forward_dense(float *o, int64_t ldo, const float *x, int64_t ldx, int n,
                          const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                          int64_t D, int relu) {
    if (w == 16 && n == 4) {
        const v8 b0 = LOAD(b + j0), b1 = LOAD(b + j0 + 8);
        v8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
        for (int64_t k = 0; k < D; k++) {
            const float *wr = W + k * H + j0;
            const v8 w0 = LOAD(wr), w1 = LOAD(wr + 8);
            const v8 s0 = SPLAT(x[k]), s1 = SPLAT(x[ldx + k]), s2 = SPLAT(x[2 * ldx + k]),
                     s3 = SPLAT(x[3 * ldx + k]);
            a00 += s0 * w0, a01 += s0 * w1;
            a10 += s1 * w0, a11 += s1 * w1;
            a20 += s2 * w0, a21 += s2 * w1;
            a30 += s3 * w0, a31 += s3 * w1;
        }
        if (relu) {
            a00 = RELU(a00), a01 = RELU(a01), a10 = RELU(a10), a11 = RELU(a11);
            a20 = RELU(a20), a21 = RELU(a21), a30 = RELU(a30), a31 = RELU(a31);
        }
        STORE(o, a00), STORE(o + 8, a01);
        STORE(o + ldo, a10), STORE(o + ldo + 8, a11);
        STORE(o + 2 * ldo, a20), STORE(o + 2 * ldo + 8, a21);
        STORE(o + 3 * ldo, a30), STORE(o + 3 * ldo + 8, a31);
        return;
    }
    for (int i = 0; i < n; i++) { /* the edges: fewer rows or columns */
        float acc[16];
        memcpy(acc, b + j0, sizeof(float) * (size_t)w);
        for (int64_t k = 0; k < D; k++) {
            const float s = x[i * ldx + k], *wr = W + k * H + j0;
            for (int64_t j = 0; j < w; j++) acc[j] += s * wr[j];
        }
        for (int64_t j = 0; j < w; j++)
            o[i * ldo + j] = relu ? mlp_activation_forward(MLP_RELU, acc[j]) : acc[j];
    }
}

/* Rows k0 .. k0 + n of GW (n <= 4, ldg apart), columns [j0, j0 + w) (w <=
 * 16): += scale * sum over the batch rows r < B of x[r][k] * dout[r][j], from
 * dense inputs x (ldx apart; x points at column k0). The sum over r runs in
 * order, in registers; four weight rows share each load of dout. */
static void weights_dense(float *g, int64_t ldg, const float *x, int64_t ldx, int n,
                          const float *dout, int64_t H, int64_t w, int64_t B, float scale) {
    if (n == 4 && w == 16) {
        v8 a00 = SPLAT(0.0f), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
           a30 = a00, a31 = a00;
        for (int64_t r = 0; r < B; r++) {
            const float *d = dout + r * H, *xr = x + r * ldx;
            const v8 d0 = LOAD(d), d1 = LOAD(d + 8);
            const v8 s0 = SPLAT(xr[0]), s1 = SPLAT(xr[1]), s2 = SPLAT(xr[2]), s3 = SPLAT(xr[3]);
            a00 += s0 * d0, a01 += s0 * d1;
            a10 += s1 * d0, a11 += s1 * d1;
            a20 += s2 * d0, a21 += s2 * d1;
            a30 += s3 * d0, a31 += s3 * d1;
        }
        const v8 c = SPLAT(scale);
        STORE(g, LOAD(g) + c * a00), STORE(g + 8, LOAD(g + 8) + c * a01);
        STORE(g + ldg, LOAD(g + ldg) + c * a10), STORE(g + ldg + 8, LOAD(g + ldg + 8) + c * a11);
        g += 2 * ldg;
        STORE(g, LOAD(g) + c * a20), STORE(g + 8, LOAD(g + 8) + c * a21);
        STORE(g + ldg, LOAD(g + ldg) + c * a30), STORE(g + ldg + 8, LOAD(g + ldg + 8) + c * a31);
        return;
    }
    for (int i = 0; i < n; i++) { /* the edges: fewer weight rows or columns */
        float acc[16] = {0};
        for (int64_t r = 0; r < B; r++) {
            const float s = x[r * ldx + i], *d = dout + r * H;
            for (int64_t j = 0; j < w; j++) acc[j] += s * d[j];
        }
        for (int64_t j = 0; j < w; j++) g[i * ldg + j] += scale * acc[j];
    }
}

/* mlp_update over n parameters, the rule picked once: a copy of the step
 * that no store can alias, and one loop per rule, so that each vectorizes */
static void update(const mlp_step *step, float *p, const float *g, float *m, float *v, int64_t n,
                   int is_bias) {
    const mlp_step s = *step;
    if (s.adam) {
        for (int64_t i = 0; i < n; i++)
            p[i] = mlp_adam(&s, p[i], mlp_l2_grad(&s, p[i], g[i], is_bias), &m[i], &v[i]);
    } else if (s.sklearn) {
        for (int64_t i = 0; i < n; i++)
            p[i] = mlp_sklearn_sgd(&s, p[i], mlp_l2_grad(&s, p[i], g[i], is_bias), &m[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            p[i] = mlp_torch_sgd(&s, p[i], mlp_l2_grad(&s, p[i], g[i], is_bias), &m[i]);
    }
}

const mlp_kernels TABLE(MLP_KERNEL_SET) = {
    NAME(MLP_KERNEL_SET), dot,          axpy,          relu_mask,     forward_rows,
    weights_chunk,        weights_cols, forward_dense, weights_dense, update,
};
