/*
 * kernels.h - the innermost loops of fast.c, compiled once per instruction
 * set (kernels.c is built up to three times: plain x86-64 or the native
 * baseline, AVX2 with FMA, and AVX-512) and picked at run time by what the
 * CPU supports.
 */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stdint.h>

#include "pointwise.h"

/* The largest register blocks of any set (fast.c's scratch arrays). */
#define MLP_CHUNK_MAX 128
#define MLP_DENSE_ROWS_MAX 8
#define MLP_DENSE_COLS_MAX 32

typedef struct mlp_kernels {
    const char *name; /* "base", "avx2" or "avx512" */
    /* Register blocks, in floats: the columns of forward_rows and
     * weights_chunk (chunk; w <= chunk below), and of forward_dense and
     * weights_dense (dense_rows x dense_cols; n <= dense_rows, w <=
     * dense_cols below). */
    int chunk, dense_rows, dense_cols;
    /* sum of x[k] * y[k], k < n */
    float (*dot)(const float *x, const float *y, int64_t n);
    /* g[k] = 0 where act[k] <= 0 */
    void (*relu_mask)(float *g, const float *act, int64_t n);
    /* rows r0 .. r1 of a batch's nonzero lists (nz_rows: entries D apart,
     * nb = blocks + 1 block starts per row), columns [j0, j0 + w), the
     * entries of input block kb: o (ldo apart; or b in the first block) +=
     * entries @ W (W's rows H apart), ReLU applied in the last block (nb -
     * 2) when relu */
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
     * of GW (ldg apart; dout's rows H apart) */
    void (*weights_cols)(float *GW, int64_t ldg, const int32_t *start, const int32_t *rows,
                         const float *vals, int64_t k0, int64_t k1, const float *dout, int64_t H,
                         int64_t j0, int64_t w, float scale);
    /* With AVX-512 only (NULL in the other sets): rows k and k + 1 of GW
     * (g0, g1), columns [j0, j0 + w): += scale * the sums of v0 * dout[r]
     * and v1 * dout[r] over the n slots (r, v0, v1) of the pair of input
     * columns k, k + 1 (rows[t], vals[2t], vals[2t + 1]; 0 where the row
     * lacks that column); each sum weights_chunk's, bit for bit */
    void (*weights_pair)(float *g0, float *g1, const int32_t *rows, const float *vals, int64_t n,
                         const float *dout, int64_t H, int64_t j0, int64_t w, float scale);
    /* dense rows x[0 .. n) (ldx apart), columns [j0, j0 + w): o (ldo
     * apart) = b + x @ W (or x @ W when b is NULL; W's rows H apart), ReLU
     * when relu; the sums start from the bias (or zero) and run over k in
     * order */
    void (*forward_dense)(float *o, int64_t ldo, const float *x, int64_t ldx, int n,
                          const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                          int64_t D, int relu);
    /* dense inputs x (B rows, ldx apart, from column k0), weight rows k0 ..
     * k0 + n (ldg apart), columns [j0, j0 + w) (g and dout point at column
     * j0): g += scale * x^T @ dout */
    void (*weights_dense)(float *g, int64_t ldg, const float *x, int64_t ldx, int n,
                          const float *dout, int64_t H, int64_t w, int64_t B, float scale);
    /* the nonzero entries of one row src of d values (uint8 when u8, else
     * float): their columns ix and values vx (src[k] * scale), in order,
     * and where each block of kblock inputs starts (blk[k / kblock] = the
     * entries before column k, for k a multiple of kblock); returns their
     * count. ix and vx have room for d entries, and entries past the count
     * may be written. */
    int64_t (*row_nonzeros)(int32_t *ix, float *vx, int32_t *blk, const void *src, int u8,
                            int64_t d, int64_t kblock, float scale);
    /* sq[i] += p[i] * p[i] for i < n (one fused multiply-add where the set
     * has them) */
    void (*add_squares)(float *sq, const float *p, int64_t n);
    /* how many entries row_nonzeros would find */
    int64_t (*count_nonzeros)(const void *src, int u8, int64_t d);
    /* optimizer_update of n parameters p with gradients g and state m, v
     * (pointwise.h's mlp_update, one loop per rule so that each vectorizes) */
    void (*update)(const mlp_step *s, float *p, const float *g, float *m, float *v, int64_t n,
                   int is_bias);
} mlp_kernels;

extern const mlp_kernels mlp_kernels_base;
#ifdef MLP_HAVE_AVX2_KERNELS
extern const mlp_kernels mlp_kernels_avx2;
#endif
#ifdef MLP_HAVE_AVX512_KERNELS
extern const mlp_kernels mlp_kernels_avx512;
#endif

/* The best set this CPU runs, unless MLP_KERNELS names one (base, avx2,
 * avx512); a set the CPU cannot run is never picked. */
const mlp_kernels *mlp_pick_kernels(void);

#endif /* MLP_KERNELS_H */
