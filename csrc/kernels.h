/*
 * kernels.h - the innermost loops of fast.c, compiled once per instruction
 * set (kernels.c is built twice: plain x86-64 or the native baseline, and
 * AVX2 with FMA) and picked at run time by what the CPU supports.
 */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stdint.h>

#include "pointwise.h"

typedef struct mlp_kernels {
    const char *name; /* "base" or "avx2" */
    /* sum of x[k] * y[k], k < n */
    float (*dot)(const float *x, const float *y, int64_t n);
    /* y += a * x */
    void (*axpy)(float *y, const float *x, float a, int64_t n);
    /* g[k] = 0 where act[k] <= 0 */
    void (*relu_mask)(float *g, const float *act, int64_t n);
    /* rows r0 .. r1 of a batch's nonzero lists (nz_rows: entries D apart,
     * nb = blocks + 1 block starts per row), columns [j0, j0 + w), the
     * entries of input block kb: o (ldo apart; or b in the first block) +=
     * entries @ W, ReLU applied in the last block (nb - 2) when relu */
    void (*forward_rows)(float *o, int64_t ldo, const int32_t *ix, const float *vx,
                         const int32_t *blk, int64_t nb, int64_t D, int64_t r0, int64_t r1,
                         int64_t kb, const float *W, const float *b, int64_t H, int64_t j0,
                         int64_t w, int relu);
    /* row k of GW, columns [j0, j0 + w): += scale * sum of v * dout[r] over
     * the entries (r, v) of input column k */
    void (*weights_chunk)(float *g, const int32_t *rows, const float *vals, int64_t n,
                          const float *dout, int64_t H, int64_t j0, int64_t w, float scale);
    /* weights_chunk for input columns k0 .. k1 of a batch's entries by
     * column (nz_cols: column k's at start[k] .. start[k + 1]), into rows k
     * of GW (H apart) */
    void (*weights_cols)(float *GW, const int32_t *start, const int32_t *rows, const float *vals,
                         int64_t k0, int64_t k1, const float *dout, int64_t H, int64_t j0,
                         int64_t w, float scale);
    /* dense rows x[0 .. n) (n <= 4, ldx apart), columns [j0, j0 + w) (w <=
     * 16): o (ldo apart) = b + x @ W, ReLU when relu */
    void (*forward_dense)(float *o, int64_t ldo, const float *x, int64_t ldx, int n,
                          const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                          int64_t D, int relu);
    /* dense inputs x (B rows, ldx apart, from column k0), weight rows k0 ..
     * k0 + n (n <= 4, ldg apart), columns [j0, j0 + w) (w <= 16; g and dout
     * point at column j0): g += scale * x^T @ dout */
    void (*weights_dense)(float *g, int64_t ldg, const float *x, int64_t ldx, int n,
                          const float *dout, int64_t H, int64_t w, int64_t B, float scale);
    /* optimizer_update of n parameters p with gradients g and state m, v
     * (pointwise.h's mlp_update, one loop per rule so that each vectorizes) */
    void (*update)(const mlp_step *s, float *p, const float *g, float *m, float *v, int64_t n,
                   int is_bias);
} mlp_kernels;

extern const mlp_kernels mlp_kernels_base;
#ifdef MLP_HAVE_AVX2_KERNELS
extern const mlp_kernels mlp_kernels_avx2;
#endif

/* The best set this CPU runs, unless MLP_KERNELS=base (or avx2) asks for
 * one; a set the CPU cannot run is never picked. */
const mlp_kernels *mlp_pick_kernels(void);

#endif /* MLP_KERNELS_H */
