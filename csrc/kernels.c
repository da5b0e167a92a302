/*
 * kernels.c - see kernels.h. Built once per instruction set, with
 * MLP_KERNEL_SET defined to base, avx2 (then with -mavx2 -mfma, so that
 * every a += s * x below becomes one fused multiply-add) or avx512 (with
 * AVX-512 as well). GCC/Clang vector extensions keep the source free of
 * intrinsics: vf is one vector register (eight floats, or sixteen with
 * AVX-512), and the register blocks are sized in vf, so that each set
 * fills its registers.
 *
 * Summation orders are fixed by the code: each output is the same sum in
 * the same order whatever the block sizes, so the sets differ in rounding
 * only (a fused multiply-add rounds once), and avx2 and avx512 not at all.
 */
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "kernels.h"
#include "pointwise.h"

#ifndef MLP_KERNEL_SET
#define MLP_KERNEL_SET base
#endif
#define NAME_(set) #set
#define NAME(set) NAME_(set)
#define TABLE_(set) mlp_kernels_##set
#define TABLE(set) TABLE_(set)

/* eight floats: the dot product's lanes in every set (its order of sums) */
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));
#define SPLAT8(s) ((v8){(s), (s), (s), (s), (s), (s), (s), (s)})

#ifdef __AVX512F__
#define VL 16
typedef float vf __attribute__((vector_size(64), aligned(4)));
typedef int32_t vi __attribute__((vector_size(64), aligned(4)));
#define SPLAT(s)                                                                        \
    ((vf){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})
#define DENSE_ROWS 8 /* 32 registers: 8 x 2 accumulators */
#else
#define VL 8
typedef v8 vf;
typedef v8i vi;
#define SPLAT(s) SPLAT8(s)
#define DENSE_ROWS 4 /* 16 registers: 4 x 2 accumulators */
#endif

/* s + x * y, rounded once where the set has fused multiply-adds: a
 * reduction's tail, which a compiler may otherwise vectorize as products
 * and then sums, differently in each set */
#ifdef __FMA__
#define MADD(x, y, s) __builtin_fmaf((x), (y), (s))
#else
#define MADD(x, y, s) ((s) + (x) * (y))
#endif

#define CHUNK (8 * VL)      /* output columns per register block: 8 x vf */
#define DENSE_COLS (2 * VL) /* columns of a dense register block */
#define LOAD(p) (*(const vf *)(p))
#define STORE(p, v) (*(vf *)(p) = (v))
#define LOAD8(p) (*(const v8 *)(p))
#define STORE8(p, v) (*(v8 *)(p) = (v))
/* a0 .. a7 (a register block of CHUNK columns) += s * the CHUNK floats at p */
#define ADD_CHUNK(s, p)                                                                     \
    do {                                                                                    \
        const vf s_ = (s);                                                                  \
        const float *p_ = (p);                                                              \
        a0 += s_ * LOAD(p_), a1 += s_ * LOAD(p_ + VL), a2 += s_ * LOAD(p_ + 2 * VL);        \
        a3 += s_ * LOAD(p_ + 3 * VL), a4 += s_ * LOAD(p_ + 4 * VL);                         \
        a5 += s_ * LOAD(p_ + 5 * VL), a6 += s_ * LOAD(p_ + 6 * VL);                         \
        a7 += s_ * LOAD(p_ + 7 * VL);                                                       \
    } while (0)
/* the CHUNK floats at p += c * a0 .. a7 (a register block's sums, scaled) */
#define ADD_SCALED_CHUNK(p, c, a0, a1, a2, a3, a4, a5, a6, a7)                                  \
    do {                                                                                    \
        float *p_ = (p);                                                                    \
        const vf c_ = (c);                                                                  \
        STORE(p_, LOAD(p_) + c_ * (a0)), STORE(p_ + VL, LOAD(p_ + VL) + c_ * (a1));         \
        STORE(p_ + 2 * VL, LOAD(p_ + 2 * VL) + c_ * (a2));                                  \
        STORE(p_ + 3 * VL, LOAD(p_ + 3 * VL) + c_ * (a3));                                  \
        STORE(p_ + 4 * VL, LOAD(p_ + 4 * VL) + c_ * (a4));                                  \
        STORE(p_ + 5 * VL, LOAD(p_ + 5 * VL) + c_ * (a5));                                  \
        STORE(p_ + 6 * VL, LOAD(p_ + 6 * VL) + c_ * (a6));                                  \
        STORE(p_ + 7 * VL, LOAD(p_ + 7 * VL) + c_ * (a7));                                  \
    } while (0)
/* relu_forward of pointwise.h, a register's lanes at once (the tests hold the two together) */
#define RELU(x) ((vf)((vi)(x) & (vi)((x) > SPLAT(0.0f))))

/* sum of x[k] * y[k] over k < n: 32 lanes (four independent chains of
 * fused multiply-adds), then the lanes and the tail in a fixed order */
static float dot(const float *x, const float *y, int64_t n) {
    v8 a0 = SPLAT8(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 += LOAD8(x + k) * LOAD8(y + k);
        a1 += LOAD8(x + k + 8) * LOAD8(y + k + 8);
        a2 += LOAD8(x + k + 16) * LOAD8(y + k + 16);
        a3 += LOAD8(x + k + 24) * LOAD8(y + k + 24);
    }
    for (; k + 8 <= n; k += 8) a0 += LOAD8(x + k) * LOAD8(y + k);
    const v8 a = (a0 + a1) + (a2 + a3);
    float s = 0.0f;
    for (int l = 0; l < 8; l++) s += a[l];
    for (; k < n; k++) s = MADD(x[k], y[k], s);
    return s;
}

/* One row's columns [j0, j0 + w) of its entries t0 .. t1 @ W, added to o
 * (or to the bias b when first); ReLU applied when last. */
static void forward_chunk(float *o, const int32_t *ix, const float *vx, int64_t t0, int64_t t1,
                              const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                              int first, int last, int relu) {
    if (w == CHUNK) {
        const float *a = first ? b + j0 : o;
        vf a0 = LOAD(a), a1 = LOAD(a + 1 * VL), a2 = LOAD(a + 2 * VL), a3 = LOAD(a + 3 * VL),
           a4 = LOAD(a + 4 * VL), a5 = LOAD(a + 5 * VL), a6 = LOAD(a + 6 * VL), a7 = LOAD(a + 7 * VL);
        for (int64_t t = t0; t < t1; t++) {
            const float *wr = W + (int64_t)ix[t] * H + j0;
            ADD_CHUNK(SPLAT(vx[t]), wr);
        }
        if (last && relu) {
            a0 = RELU(a0), a1 = RELU(a1), a2 = RELU(a2), a3 = RELU(a3);
            a4 = RELU(a4), a5 = RELU(a5), a6 = RELU(a6), a7 = RELU(a7);
        }
        STORE(o, a0), STORE(o + 1 * VL, a1), STORE(o + 2 * VL, a2), STORE(o + 3 * VL, a3);
        STORE(o + 4 * VL, a4), STORE(o + 5 * VL, a5), STORE(o + 6 * VL, a6), STORE(o + 7 * VL, a7);
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
        const v8 a = LOAD8(act + k), x = LOAD8(g + k);
        STORE8(g + k, (v8)((v8i)x & (v8i)(a > SPLAT8(0.0f))));
    }
    for (; k < n; k++) g[k] = mlp_activation_backward(MLP_RELU, 0.0f, act[k], g[k]);
}

/* Row k of GW, columns [j0, j0 + w): += scale * sum over the entries (r, v)
 * of input column k of v * dout[r]; the sum is kept in registers, so each
 * weight is read and written once per step. */
static void weights_chunk(float *g, const int32_t *rows, const float *vals, int64_t n,
                              const float *dout, int64_t H, int64_t j0, int64_t w, float scale) {
    if (w == CHUNK) {
        vf a0 = SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int64_t t = 0; t < n; t++) {
            const float *d = dout + (int64_t)rows[t] * H + j0;
            ADD_CHUNK(SPLAT(vals[t]), d);
        }
        ADD_SCALED_CHUNK(g, SPLAT(scale), a0, a1, a2, a3, a4, a5, a6, a7);
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
 * skipped): rows k of GW (ldg apart), one call for a run of columns, so
 * that weights_chunk is inlined into the loop. */
static void weights_cols(float *GW, int64_t ldg, const int32_t *start, const int32_t *rows,
                         const float *vals, int64_t k0, int64_t k1, const float *dout, int64_t H,
                         int64_t j0, int64_t w, float scale) {
    for (int64_t k = k0; k < k1; k++) {
        const int64_t first = start[k], n = start[k + 1] - first;
        if (n > 0)
            weights_chunk(GW + k * ldg + j0, rows + first, vals + first, n, dout, H, j0, w,
                          scale);
    }
}

#ifdef __AVX512F__
/* Rows k and k + 1 of GW (g0, g1), columns [j0, j0 + w): += scale * the
 * sums over the slots (r, v0, v1) of the pair of input columns k, k + 1 of
 * v0 * dout[r] and v1 * dout[r]. With AVX-512's 32 registers both rows'
 * sums fit beside a row of dout, which is then read once for both: where
 * dout's rows do not fit the L1 cache, its bandwidth from the L2 cache, not
 * the multiply-adds, bounds weights_chunk. A slot whose row has only one of
 * the two columns holds 0 for the other, and 0 * dout added to a sum leaves
 * it as it was (a sum that starts from +0 is never -0; dout is finite where
 * it matters, and where it is not, 0 * inf makes NaN as the dense X^T @ dout
 * does), so each sum is weights_chunk's over its own column, bit for bit. */
static void weights_pair(float *g0, float *g1, const int32_t *rows, const float *vals, int64_t n,
                         const float *dout, int64_t H, int64_t j0, int64_t w, float scale) {
    if (w == CHUNK) {
        vf a0 = SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        vf b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
        for (int64_t t = 0; t < n; t++) {
            const float *d = dout + (int64_t)rows[t] * H + j0;
            const vf s0 = SPLAT(vals[2 * t]), s1 = SPLAT(vals[2 * t + 1]);
            const vf d0 = LOAD(d), d1 = LOAD(d + VL), d2 = LOAD(d + 2 * VL), d3 = LOAD(d + 3 * VL);
            const vf d4 = LOAD(d + 4 * VL), d5 = LOAD(d + 5 * VL), d6 = LOAD(d + 6 * VL),
                     d7 = LOAD(d + 7 * VL);
            a0 += s0 * d0, a1 += s0 * d1, a2 += s0 * d2, a3 += s0 * d3;
            a4 += s0 * d4, a5 += s0 * d5, a6 += s0 * d6, a7 += s0 * d7;
            b0 += s1 * d0, b1 += s1 * d1, b2 += s1 * d2, b3 += s1 * d3;
            b4 += s1 * d4, b5 += s1 * d5, b6 += s1 * d6, b7 += s1 * d7;
        }
        const vf c = SPLAT(scale);
        ADD_SCALED_CHUNK(g0, c, a0, a1, a2, a3, a4, a5, a6, a7);
        ADD_SCALED_CHUNK(g1, c, b0, b1, b2, b3, b4, b5, b6, b7);
        return;
    }
    float acc0[CHUNK] = {0}, acc1[CHUNK] = {0};
    for (int64_t t = 0; t < n; t++) {
        const float *d = dout + (int64_t)rows[t] * H + j0;
        const float s0 = vals[2 * t], s1 = vals[2 * t + 1];
        for (int64_t j = 0; j < w; j++) acc0[j] += s0 * d[j], acc1[j] += s1 * d[j];
    }
    for (int64_t j = 0; j < w; j++) g0[j] += scale * acc0[j], g1[j] += scale * acc1[j];
}

#define WEIGHTS_PAIR weights_pair
#else /* too few registers for both rows' sums: the sets without do not pair columns */
#define WEIGHTS_PAIR NULL
#endif

/* Rows x[0 .. n) (n <= DENSE_ROWS, dense, ldx apart), columns [j0, j0 + w)
 * (w <= DENSE_COLS): o = b + x @ W (b NULL: no bias), ReLU when relu. The
 * rows share each load of W. */
static void forward_dense(float *o, int64_t ldo, const float *x, int64_t ldx, int n,
                          const float *W, const float *b, int64_t H, int64_t j0, int64_t w,
                          int64_t D, int relu) {
    if (w == DENSE_COLS && n == DENSE_ROWS) {
        const vf b0 = b ? LOAD(b + j0) : SPLAT(0.0f), b1 = b ? LOAD(b + j0 + VL) : SPLAT(0.0f);
        vf a0[DENSE_ROWS], a1[DENSE_ROWS];
        for (int i = 0; i < DENSE_ROWS; i++) a0[i] = b0, a1[i] = b1;
        for (int64_t k = 0; k < D; k++) {
            const float *wr = W + k * H + j0;
            const vf w0 = LOAD(wr), w1 = LOAD(wr + VL);
#pragma GCC unroll 8
            for (int i = 0; i < DENSE_ROWS; i++) {
                const vf s = SPLAT(x[i * ldx + k]);
                a0[i] += s * w0, a1[i] += s * w1;
            }
        }
        for (int i = 0; i < DENSE_ROWS; i++) {
            STORE(o + i * ldo, relu ? RELU(a0[i]) : a0[i]);
            STORE(o + i * ldo + VL, relu ? RELU(a1[i]) : a1[i]);
        }
        return;
    }
    for (int i = 0; i < n; i++) { /* the edges: fewer rows or columns */
        float acc[DENSE_COLS] = {0};
        if (b) memcpy(acc, b + j0, sizeof(float) * (size_t)w);
        for (int64_t k = 0; k < D; k++) {
            const float s = x[i * ldx + k], *wr = W + k * H + j0;
            for (int64_t j = 0; j < w; j++) acc[j] += s * wr[j];
        }
        for (int64_t j = 0; j < w; j++)
            o[i * ldo + j] = relu ? mlp_activation_forward(MLP_RELU, acc[j]) : acc[j];
    }
}

/* Rows k0 .. k0 + n of GW (n <= DENSE_ROWS, ldg apart), columns [j0, j0 + w)
 * (w <= DENSE_COLS): += scale * sum over the batch rows r < B of x[r][k] *
 * dout[r][j], from dense inputs x (ldx apart; x points at column k0). The
 * sum over r runs in order, in registers; the weight rows share each load of
 * dout. */
static void weights_dense(float *g, int64_t ldg, const float *x, int64_t ldx, int n,
                          const float *dout, int64_t H, int64_t w, int64_t B, float scale) {
    if (n == DENSE_ROWS && w == DENSE_COLS) {
        vf a0[DENSE_ROWS], a1[DENSE_ROWS];
        for (int i = 0; i < DENSE_ROWS; i++) a0[i] = a1[i] = SPLAT(0.0f);
        for (int64_t r = 0; r < B; r++) {
            const float *d = dout + r * H, *xr = x + r * ldx;
            const vf d0 = LOAD(d), d1 = LOAD(d + VL);
#pragma GCC unroll 8
            for (int i = 0; i < DENSE_ROWS; i++) {
                const vf s = SPLAT(xr[i]);
                a0[i] += s * d0, a1[i] += s * d1;
            }
        }
        const vf c = SPLAT(scale);
        for (int i = 0; i < DENSE_ROWS; i++) {
            STORE(g + i * ldg, LOAD(g + i * ldg) + c * a0[i]);
            STORE(g + i * ldg + VL, LOAD(g + i * ldg + VL) + c * a1[i]);
        }
        return;
    }
    for (int i = 0; i < n; i++) { /* the edges: fewer weight rows or columns */
        float acc[DENSE_COLS] = {0};
        for (int64_t r = 0; r < B; r++) {
            const float s = x[r * ldx + i], *d = dout + r * H;
            for (int64_t j = 0; j < w; j++) acc[j] += s * d[j];
        }
        for (int64_t j = 0; j < w; j++) g[i * ldg + j] += scale * acc[j];
    }
}

/* Whether values k0 .. k1 of src are eight with every bit zero (eight
 * blank pixels, or eight +0.0; -0.0 and anything else go on to the
 * element-wise test), so that a run of them is skipped at once. */
static inline int blank_eight(const void *src, int u8, int64_t k0, int64_t k1) {
    if (k1 - k0 != 8) return 0;
    uint64_t w[4] = {0, 0, 0, 0};
    if (u8)
        memcpy(w, (const uint8_t *)src + k0, 8);
    else
        memcpy(w, (const float *)src + k0, sizeof w);
    return (w[0] | w[1] | w[2] | w[3]) == 0;
}

/* row_nonzeros eight columns at a time: a blank run of eight is skipped
 * at once, the rest compacted without branches */
static int64_t nonzeros_by_eight(int32_t *ix, float *vx, int32_t *blk, const void *src, int u8,
                                 int64_t d, int64_t kblock, float scale, int64_t k0, int64_t n) {
    for (; k0 < d; k0 += 8) {
        const int64_t k1 = k0 + 8 < d ? k0 + 8 : d;
        if (k0 % kblock == 0) blk[k0 / kblock] = (int32_t)n;
        if (blank_eight(src, u8, k0, k1)) continue;
        if (u8) {
            const uint8_t *x = (const uint8_t *)src;
            for (int64_t k = k0; k < k1; k++) {
                ix[n] = (int32_t)k;
                vx[n] = (float)x[k] * scale;
                n += x[k] != 0;
            }
        } else {
            const float *x = (const float *)src;
            for (int64_t k = k0; k < k1; k++) {
                ix[n] = (int32_t)k;
                vx[n] = x[k] * scale;
                n += x[k] != 0.0f;
            }
        }
    }
    return n;
}

/* count_nonzeros eight columns at a time */
static int64_t count_by_eight(const void *src, int u8, int64_t d, int64_t k0) {
    int64_t n = 0;
    for (; k0 < d; k0 += 8) {
        const int64_t k1 = k0 + 8 < d ? k0 + 8 : d;
        if (blank_eight(src, u8, k0, k1)) continue;
        if (u8)
            for (int64_t k = k0; k < k1; k++) n += ((const uint8_t *)src)[k] != 0;
        else
            for (int64_t k = k0; k < k1; k++) n += ((const float *)src)[k] != 0.0f;
    }
    return n;
}

#ifdef __AVX512F__
static int64_t count_nonzeros(const void *src, int u8, int64_t d) {
    int64_t n = 0, k = 0;
    if (u8) {
        for (; k + 64 <= d; k += 64) {
            const __m512i bytes = _mm512_loadu_si512((const void *)((const uint8_t *)src + k));
            n += __builtin_popcountll(_mm512_test_epi8_mask(bytes, bytes));
        }
    } else {
        for (; k + 16 <= d; k += 16) {
            const __m512 x = _mm512_loadu_ps((const float *)src + k);
            n += __builtin_popcount(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ));
        }
    }
    return n + count_by_eight(src, u8, d, k);
}
#else
static int64_t count_nonzeros(const void *src, int u8, int64_t d) {
    return count_by_eight(src, u8, d, 0);
}
#endif

#ifdef __AVX512F__
/* sixteen columns at a time: which are nonzero is a mask, and AVX-512's
 * compress packs their columns and values (the one place with intrinsics:
 * vector extensions have no compress). Whole sixteen-float stores at the
 * count stay inside the row: the count is at most the columns before. */
static int64_t row_nonzeros(int32_t *ix, float *vx, int32_t *blk, const void *src, int u8,
                            int64_t d, int64_t kblock, float scale) {
    if (kblock % 16 != 0) return nonzeros_by_eight(ix, vx, blk, src, u8, d, kblock, scale, 0, 0);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 s = _mm512_set1_ps(scale);
    int64_t n = 0, k0 = 0;
    for (; k0 + 16 <= d; k0 += 16) {
        if (k0 % kblock == 0) blk[k0 / kblock] = (int32_t)n;
        __mmask16 nz;
        __m512 x;
        if (u8) {
            const __m128i bytes = _mm_loadu_si128((const __m128i *)((const uint8_t *)src + k0));
            nz = _mm_test_epi8_mask(bytes, bytes);
            if (!nz) continue;
            x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
        } else {
            x = _mm512_loadu_ps((const float *)src + k0);
            nz = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ); /* NaN too, as != */
            if (!nz) continue;
        }
        const __m512i cols = _mm512_add_epi32(_mm512_set1_epi32((int32_t)k0), iota);
        _mm512_storeu_si512((void *)(ix + n), _mm512_maskz_compress_epi32(nz, cols));
        _mm512_storeu_ps(vx + n, _mm512_maskz_compress_ps(nz, _mm512_mul_ps(x, s)));
        n += __builtin_popcount(nz);
    }
    return nonzeros_by_eight(ix, vx, blk, src, u8, d, kblock, scale, k0, n);
}
#else
static int64_t row_nonzeros(int32_t *ix, float *vx, int32_t *blk, const void *src, int u8,
                            int64_t d, int64_t kblock, float scale) {
    return nonzeros_by_eight(ix, vx, blk, src, u8, d, kblock, scale, 0, 0);
}
#endif

static void add_squares(float *sq, const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) sq[i] = MADD(p[i], p[i], sq[i]);
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
    NAME(MLP_KERNEL_SET), CHUNK,         DENSE_ROWS,   DENSE_COLS,    dot,
    relu_mask,            forward_rows,  weights_chunk, weights_cols,  WEIGHTS_PAIR,
    forward_dense,        weights_dense, row_nonzeros,  add_squares,   count_nonzeros,
    update,
};
