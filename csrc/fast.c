/*
 * fast.c - the fast paths of the linear ops; see fast.h for the ideas. The
 * loops here cut the work into pieces and share them among threads; the
 * innermost loops are the kernels of kernels.c.
 */
#include "fast.h"

#include "ops.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if !defined(_WIN32)
#include <unistd.h> /* sysconf */
#endif

#define NARROW FAST_NARROW

/* parallel loops only where there is enough work to pay for the threads,
 * and never in a child forked from a process that ran them (GNU OpenMP's
 * threads are not in the child: a parallel region there hangs or crashes) */
#define PAR_MIN 4096

/* Inputs per piece of a weight-gradient pass shared among threads. Each
 * piece owns its outputs, so who runs it does not change the results; the
 * pieces go to the threads in contiguous runs (schedule(static)), so that a
 * thread's pieces share their columns of dout in its cache. */
#define WBLOCK FAST_WBLOCK
_Static_assert(FAST_WBLOCK % 2 == 0, "a block of weight rows holds whole pairs of columns");
#define PAR(enough) ((enough) && !mlp_forked)

/* ---- nonzero lists ------------------------------------------------------ */

/* row r of a data set X of width d */
static const void *row_of(const void *X, mlp_dtype dtype, int64_t d, int64_t r) {
    const size_t width = dtype == MLP_UINT8 ? 1 : sizeof(float);
    return (const char *)X + (size_t)(r * d) * width;
}

void nz_gather(const mlp_kernels *K, nz_rows *nz, const void *X, mlp_dtype dtype, int64_t d,
               const int64_t *idx, int64_t start, int64_t B, float scale) {
    nz->B = B;
    nz->D = d;
    nz->has_pairs = 0;
    const int64_t blocks = FAST_BLOCKS(d);
#pragma omp parallel for schedule(static) if (PAR(B * d > PAR_MIN))
    for (int64_t r = 0; r < B; r++) {
        const int64_t row = idx ? idx[r] : start + r;
        int32_t *blk = nz->blk + r * (blocks + 1);
        const int64_t n = K->row_nonzeros(nz->idx + r * d, nz->val + r * d, blk,
                                          row_of(X, dtype, d, row), dtype == MLP_UINT8, d,
                                          FAST_KBLOCK, scale);
        nz->nnz[r] = n;
        blk[blocks] = (int32_t)n;
    }
}

double nz_count(const mlp_kernels *K, nz_rows *nz, const float *X, int64_t d,
                const int64_t *idx, int64_t start, int64_t B) {
    nz->B = B;
    nz->D = d;
    nz->has_pairs = 0;
    int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (PAR(B * d > PAR_MIN))
    for (int64_t r = 0; r < B; r++) {
        const int64_t n = K->count_nonzeros(X + (idx ? idx[r] : start + r) * d, 0, d);
        nz->nnz[r] = n;
        total += n;
    }
    return B * d > 0 ? (double)total / (double)(B * d) : 0.0;
}

/* A large array of the data set's lists, in huge pages where Linux gives
 * them on request: a batch's rows lie anywhere in the lists, and with
 * small pages every row's copy started with a miss in the address cache
 * (benchmarks/RESULTS.md: 20 to 13 us a step at batch 64 on MNIST). */
static void *lists_alloc(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const size_t huge = (size_t)2 << 20;
    if (bytes >= 2 * huge) {
        void *p = NULL;
        const size_t whole = (bytes + huge - 1) / huge * huge;
        if (posix_memalign(&p, huge, whole) != 0) return NULL;
        madvise(p, whole, MADV_HUGEPAGE); /* a request: small pages if refused */
        return p;
    }
#endif
    return mlp_alloc(bytes);
}

/* A row's pairs of columns, one a slot (nz_rows' pkey), from its n
 * entries' columns ix (ascending): the pair of each entry but one of column
 * 2p + 1 that follows one of column 2p; returns how many. */
static int64_t row_pairs(int32_t *pkey, const int32_t *ix, int64_t n) {
    int64_t s = 0;
    for (int64_t t = 0; t < n; t++)
        if (!((ix[t] & 1) && t > 0 && ix[t - 1] == ix[t] - 1)) pkey[s++] = ix[t] >> 1;
    return s;
}

nz_cache *nz_cache_build(const mlp_kernels *K, const void *X, mlp_dtype dtype, int64_t n,
                         int64_t d, size_t max_bytes) {
    const int64_t blocks = FAST_BLOCKS(d);
    const int u8 = dtype == MLP_UINT8;
    int64_t *start = mlp_alloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!start) return NULL;
#pragma omp parallel for schedule(static) if (PAR(n * d > PAR_MIN))
    for (int64_t r = 0; r < n; r++)
        start[r + 1] = K->count_nonzeros(row_of(X, dtype, d, r), u8, d);
    start[0] = 0;
    for (int64_t r = 0; r < n; r++) start[r + 1] += start[r];
    const double bytes = 8.0 * (double)start[n] + 4.0 * (double)n * (double)(blocks + 1);
    /* the pairs of columns where they fit too (4 more bytes an entry) */
    const int pairs = bytes + 4.0 * (double)(start[n] + n) <= (double)max_bytes;
    if (bytes > (double)max_bytes || (double)start[n] > FAST_DENSE * (double)n * (double)d) {
        free(start);
        return NULL;
    }
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    nz_cache *c = calloc(1, sizeof *c);
    /* a row's lists are found in a thread's scratch row (row_nonzeros may
     * write past the count) and copied into place */
    int32_t *scratch_ix = mlp_alloc(sizeof(int32_t) * (size_t)threads * (size_t)d);
    float *scratch_vx = mlp_alloc(sizeof(float) * (size_t)threads * (size_t)d);
    if (c) {
        c->start = start;
        c->idx = lists_alloc(sizeof(int32_t) * (size_t)start[n]);
        c->val = lists_alloc(sizeof(float) * (size_t)start[n]);
        c->blk = lists_alloc(sizeof(int32_t) * (size_t)n * (size_t)(blocks + 1));
        if (pairs) {
            c->pkey = lists_alloc(sizeof(int32_t) * (size_t)start[n]);
            c->pslots = mlp_alloc(sizeof(int32_t) * (size_t)n);
        }
        c->n = n;
        c->d = d;
    }
    if (!c || !c->idx || !c->val || !c->blk || (pairs && (!c->pkey || !c->pslots)) ||
        !scratch_ix || !scratch_vx) {
        if (c) nz_cache_free(c);
        else free(start);
        free(scratch_ix);
        free(scratch_vx);
        return NULL;
    }
#pragma omp parallel for schedule(static) if (PAR(n * d > PAR_MIN))
    for (int64_t r = 0; r < n; r++) {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num();
#else
        const int64_t t = 0;
#endif
        int32_t *ix = scratch_ix + t * d, *blk = c->blk + r * (blocks + 1);
        float *vx = scratch_vx + t * d;
        const int64_t got =
            K->row_nonzeros(ix, vx, blk, row_of(X, dtype, d, r), u8, d, FAST_KBLOCK, 1.0f);
        blk[blocks] = (int32_t)got;
        memcpy(c->idx + start[r], ix, sizeof(int32_t) * (size_t)got);
        memcpy(c->val + start[r], vx, sizeof(float) * (size_t)got);
        if (pairs) c->pslots[r] = (int32_t)row_pairs(c->pkey + start[r], ix, got);
    }
    free(scratch_ix);
    free(scratch_vx);
    return c;
}

void nz_cache_free(nz_cache *c) {
    if (!c) return;
    free(c->start);
    free(c->idx);
    free(c->val);
    free(c->blk);
    free(c->pkey);
    free(c->pslots);
    free(c);
}

void nz_gather_cached(nz_rows *nz, const nz_cache *c, const int64_t *idx, int64_t start,
                      int64_t B, float scale, int pairs) {
    const int64_t d = c->d, blocks = FAST_BLOCKS(d);
    nz->B = B;
    nz->D = d;
    nz->has_pairs = pairs && nz->pkey && c->pkey;
#pragma omp parallel for schedule(static) if (PAR(B * d > PAR_MIN))
    for (int64_t r = 0; r < B; r++) {
        const int64_t row = idx ? idx[r] : start + r, first = c->start[row];
        const int64_t n = c->start[row + 1] - first;
        memcpy(nz->idx + r * d, c->idx + first, sizeof(int32_t) * (size_t)n);
        float *vx = nz->val + r * d;
        const float *src = c->val + first;
        for (int64_t t = 0; t < n; t++) vx[t] = src[t] * scale;
        memcpy(nz->blk + r * (blocks + 1), c->blk + row * (blocks + 1),
               sizeof(int32_t) * (size_t)(blocks + 1));
        nz->nnz[r] = n;
        if (nz->has_pairs) {
            nz->pslots[r] = c->pslots[row];
            memcpy(nz->pkey + r * d, c->pkey + first, sizeof(int32_t) * (size_t)c->pslots[row]);
        }
    }
}

void nz_from_dense(const mlp_kernels *K, nz_rows *nz, const float *act, int64_t B, int64_t D) {
    nz_gather(K, nz, act, MLP_FLOAT32, D, NULL, 0, B, 1.0f);
}

/* ---- helpers ------------------------------------------------------------ */

double nz_density(const nz_rows *nz) {
    int64_t n = 0;
    for (int64_t r = 0; r < nz->B; r++) n += nz->nnz[r];
    return nz->B * nz->D > 0 ? (double)n / (double)(nz->B * nz->D) : 0.0;
}

/* Whether this CPU (and its operating system) runs a set: the sets below
 * base are compiled with -mavx2 -mfma, then with AVX-512 F, VL, BW and DQ
 * as well (x86-64-v4). */
static int cpu_runs(const mlp_kernels *k) {
    if (k == &mlp_kernels_base) return 1;
#if defined(MLP_HAVE_AVX2_KERNELS) || defined(MLP_HAVE_AVX512_KERNELS)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#ifdef MLP_HAVE_AVX2_KERNELS
    if (k == &mlp_kernels_avx2) return avx2;
#endif
#ifdef MLP_HAVE_AVX512_KERNELS
    if (k == &mlp_kernels_avx512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    return 0;
}

const mlp_kernels *mlp_pick_kernels(void) {
    /* best first */
    const mlp_kernels *sets[] = {
#ifdef MLP_HAVE_AVX512_KERNELS
        &mlp_kernels_avx512,
#endif
#ifdef MLP_HAVE_AVX2_KERNELS
        &mlp_kernels_avx2,
#endif
        &mlp_kernels_base,
    };
    const int n = (int)(sizeof sets / sizeof sets[0]);
    const char *want = getenv("MLP_KERNELS");
    for (int i = 0; want && i < n; i++)
        if (strcmp(want, sets[i]->name) == 0 && cpu_runs(sets[i])) return sets[i];
    for (int i = 0; i < n; i++)
        if (cpu_runs(sets[i])) return sets[i];
    return &mlp_kernels_base;
}

/* ---- weights by panels ------------------------------------------------- */

void wl_to_panels(float *dst, const float *src, const wlayout *l) {
    for (int64_t q0 = 0; q0 < l->H; q0 += l->panel) {
        const int64_t ld = wl_ld(l, q0);
        float *p = dst + wl_shift(l, q0) + q0;
        for (int64_t k = 0; k < l->D; k++)
            memcpy(p + k * ld, src + k * l->H + q0, sizeof(float) * (size_t)ld);
    }
}

void wl_from_panels(float *dst, const float *src, const wlayout *l) {
    for (int64_t q0 = 0; q0 < l->H; q0 += l->panel) {
        const int64_t ld = wl_ld(l, q0);
        const float *p = src + wl_shift(l, q0) + q0;
        for (int64_t k = 0; k < l->D; k++)
            memcpy(dst + k * l->H + q0, p + k * ld, sizeof(float) * (size_t)ld);
    }
}

double wl_squares(const mlp_kernels *K, const float *W, const wlayout *l) {
    double squares = 0.0;
    for (int64_t k0 = 0; k0 < l->D; k0 += WBLOCK) {
        const int64_t k1 = k0 + WBLOCK < l->D ? k0 + WBLOCK : l->D;
        for (int64_t q0 = 0; q0 < l->H; q0 += FAST_PANEL) {
            const int64_t n = l->H - q0 < FAST_PANEL ? l->H - q0 : FAST_PANEL;
            const int64_t ld = wl_ld(l, q0);
            const float *p = W + wl_shift(l, q0) + q0;
            float sq[FAST_PANEL] = {0};
            for (int64_t k = k0; k < k1; k++) K->add_squares(sq, p + k * ld, n);
            for (int64_t j = 0; j < n; j++) squares += sq[j];
        }
    }
    return squares;
}

double fast_squares_sum(const float *squares, int64_t D, int64_t H) {
    double total = 0.0;
    for (int64_t i = 0; i < (D + WBLOCK - 1) / WBLOCK * H; i++) total += squares[i];
    return total;
}

/* WT (H,D) = W^T for W (D,H) */
static void transpose(float *WT, const float *W, int64_t D, int64_t H) {
    for (int64_t k = 0; k < D; k++)
        for (int64_t j = 0; j < H; j++) WT[j * D + k] = W[k * H + j];
}

/* ---- linear_forward ----------------------------------------------------- */

void linear_forward_fast(const mlp_kernels *K, float *out, const nz_rows *inp,
                         const float *dense_inp, const float *W, const wlayout *wl,
                         const float *b, int relu, float *WT) {
    const int64_t B = inp->B, D = inp->D, H = wl->H, CHUNK = K->chunk;
    const int64_t chunks = (H + CHUNK - 1) / CHUNK;
    if (H < NARROW && dense_inp) { /* a few outputs: dot products with the columns of W */
        transpose(WT, W, D, H);
#pragma omp parallel for schedule(static) if (PAR(B * D * H > PAR_MIN))
        for (int64_t r = 0; r < B; r++)
            for (int64_t j = 0; j < H; j++) {
                const float v = b[j] + K->dot(dense_inp + r * D, WT + j * D, D);
                out[r * H + j] = relu ? mlp_activation_forward(MLP_RELU, v) : v;
            }
        return;
    }
    if (dense_inp && nz_density(inp) > FAST_DENSE) { /* most inputs nonzero: dense blocks */
        const int64_t DC = K->dense_cols, DR = K->dense_rows, dchunks = (H + DC - 1) / DC;
#pragma omp parallel for schedule(static) if (PAR(B * H > PAR_MIN))
        for (int64_t c = 0; c < dchunks; c++) {
            const int64_t j0 = c * DC, w = H - j0 < DC ? H - j0 : DC;
            const float *Wp = W + wl_shift(wl, j0);
            for (int64_t r0 = 0; r0 < B; r0 += DR)
                K->forward_dense(out + r0 * H + j0, H, dense_inp + r0 * D, D,
                                 B - r0 < DR ? (int)(B - r0) : (int)DR, Wp, b, wl_ld(wl, j0), j0,
                                 w, D, relu);
        }
        return;
    }
    /* chunk-major, then blocks of FAST_KBLOCK inputs (MNIST's 784 in one):
     * a block's weights (256 B a row of the chunk) stay in the L2 cache
     * while every row uses them; the sum for each output still runs over the
     * entries in order, bias first */
    const int64_t blocks = FAST_BLOCKS(D);
    const int64_t rblocks = (B + FAST_RBLOCK - 1) / FAST_RBLOCK; /* rows' lists stay in cache */
#pragma omp parallel for collapse(2) schedule(static) if (PAR(B * H > PAR_MIN))
    for (int64_t c = 0; c < chunks; c++)
        for (int64_t rb = 0; rb < rblocks; rb++) {
        const int64_t j0 = c * CHUNK, w = H - j0 < CHUNK ? H - j0 : CHUNK, r0 = rb * FAST_RBLOCK;
        const int64_t r1 = r0 + FAST_RBLOCK < B ? r0 + FAST_RBLOCK : B;
        for (int64_t kb = 0; kb < blocks; kb++)
            K->forward_rows(out + j0, H, inp->idx, inp->val, inp->blk, blocks + 1, D, r0, r1, kb,
                            W + wl_shift(wl, j0), b, wl_ld(wl, j0), j0, w, relu);
    }
}

/* ---- linear_backward: the input gradient --------------------------------- */

void linear_backward_input_fast(const mlp_kernels *K, float *dinp, const float *dout,
                                const float *W, mlp_activation act, const float *pre_in,
                                const float *act_in, int64_t B, int64_t D, int64_t H, float *WT) {
    const int relu = act == MLP_RELU;
    if (H < NARROW) { /* dinp = dout @ W^T as dense register blocks on W^T (H,D) */
        transpose(WT, W, D, H);
        const int64_t DR = K->dense_rows, DC = K->dense_cols;
#pragma omp parallel for schedule(static) if (PAR(B * D * H > PAR_MIN))
        for (int64_t r0 = 0; r0 < B; r0 += DR) {
            const int n = B - r0 < DR ? (int)(B - r0) : (int)DR;
            for (int64_t j0 = 0; j0 < D; j0 += DC)
                K->forward_dense(dinp + r0 * D + j0, D, dout + r0 * H, H, n, WT, NULL, D, j0,
                                 D - j0 < DC ? D - j0 : DC, H, 0);
            for (int64_t r = r0; r < r0 + n; r++) {
                float *g = dinp + r * D;
                if (relu)
                    K->relu_mask(g, act_in + r * D, D);
                else
                    activation_backward(act, g, pre_in ? pre_in + r * D : NULL, act_in + r * D,
                                        g, D);
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) if (PAR(B * D * H > PAR_MIN))
    for (int64_t r = 0; r < B; r++)
        for (int64_t k = 0; k < D; k++) {
            const int64_t i = r * D + k;
            if (relu) {
                dinp[i] = mlp_relu_passes(act_in[i]) ? K->dot(dout + r * H, W + k * H, H) : 0.0f;
            } else {
                const float g = K->dot(dout + r * H, W + k * H, H);
                dinp[i] = mlp_activation_backward(act, pre_in ? pre_in[i] : 0.0f, act_in[i], g);
            }
        }
}

/* ---- the optimizer ------------------------------------------------------ */

/* Elements per piece of the update shared among threads. */
#define UPDATE_PIECE 4096

void optimizer_update_layer_fast(const mlp_kernels *K, const mlp_layout *L, int l,
                                 const mlp_step *s, float *params, const float *grads, float *m,
                                 float *v) {
    const int64_t w0 = L->w_off[l], nw = L->sizes[l] * L->sizes[l + 1];
    const int64_t pieces = (nw + UPDATE_PIECE - 1) / UPDATE_PIECE;
#pragma omp parallel for schedule(static) if (PAR(nw >= 4 * UPDATE_PIECE))
    for (int64_t c = 0; c < pieces; c++) {
        const int64_t i = w0 + c * UPDATE_PIECE;
        const int64_t n = nw - c * UPDATE_PIECE < UPDATE_PIECE ? nw - c * UPDATE_PIECE
                                                               : UPDATE_PIECE;
        K->update(s, params + i, grads + i, m + i, v + i, n, 0);
    }
    const int64_t b0 = L->b_off[l];
    K->update(s, params + b0, grads + b0, m + b0, v + b0, L->sizes[l + 1], 1);
}

/* ---- linear_backward: the weight gradient (+ sgd_update) ------------------ */

/* A row's list keys, sorted: its entries' columns, or when paired, its
 * pairs of columns kept with the data set, one a slot (nz_rows' pkey;
 * pairs_pay) */
static inline const int32_t *row_keys(const nz_rows *inp, int paired, int64_t r, int64_t *n) {
    *n = paired ? inp->pslots[r] : inp->nnz[r];
    return (paired ? inp->pkey : inp->idx) + r * inp->D;
}

/* A row's entries e0 .. e1 written to their slots at the lists' cursors
 * (cnt[list]), by column or, when paired, by pairs of columns (nz_cols). An
 * entry of column 2p + 1 whose row's entry before it is of column 2p (the
 * row's order by column puts it just before) joins that entry's slot,
 * which it writes again, whole. */
static inline void row_slots(nz_cols *cols, int paired, int32_t *cnt, const nz_rows *inp,
                             int64_t r, int64_t e0, int64_t e1) {
    const int32_t *ix = inp->idx + r * inp->D;
    const float *vx = inp->val + r * inp->D;
    int32_t k_before = -2;
    float v_before = 0.0f;
    for (int64_t t = e0; t < e1; t++) {
        const int32_t k = ix[t];
        const float v = vx[t];
        if (!paired) {
            const int32_t at = cnt[k]++;
            cols->row[at] = (int32_t)r;
            cols->val[at] = v;
            continue;
        }
        const int odd = k & 1, joins = odd && k_before == k - 1;
        const int32_t at = cnt[k >> 1] - joins;
        cnt[k >> 1] += !joins;
        cols->row[at] = (int32_t)r;
        cols->val[2 * at] = odd ? (joins ? v_before : 0.0f) : v;
        cols->val[2 * at + 1] = odd ? v : 0.0f;
        k_before = k, v_before = v;
    }
}

/* The entries of rows r0 .. r1 of inp by column or by pairs of columns
 * (nz_cols): a list for each column or pair, its rows in ascending order. */
static void to_columns_serial(nz_cols *cols, const nz_rows *inp, int64_t r0, int64_t r1,
                              int paired) {
    cols->paired = paired;
    const int64_t lists = paired ? NZ_PAIRS(inp->D) : inp->D;
    int32_t *start = cols->start;
    memset(start, 0, sizeof(int32_t) * (size_t)(lists + 1));
    for (int64_t r = r0; r < r1; r++) {
        int64_t n;
        const int32_t *key = row_keys(inp, paired, r, &n);
        for (int64_t e = 0; e < n; e++) start[key[e] + 1]++;
    }
    for (int64_t k = 0; k < lists; k++) start[k + 1] += start[k];
    int32_t *next = cols->next;
    memcpy(next, start, sizeof(int32_t) * (size_t)lists);
    for (int64_t r = r0; r < r1; r++) row_slots(cols, paired, next, inp, r, 0, inp->nnz[r]);
}

/* The first entry of a row's column-sorted list idx[0 .. n) at column k or
 * past it. */
static int64_t first_at(const int32_t *idx, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (idx[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The same, the lists cut into one contiguous range per thread: each
 * thread finds its columns' entries in every row (a row's list is sorted by
 * column), counts them, and after one barrier writes them after the entries
 * of the threads before it. Each thread writes only its own part of the
 * lists (no cache line goes back and forth between threads, as when each
 * thread took a part of the rows and wrote into every column), and the
 * lists come out as the serial ones do. The ranges have equal numbers of
 * columns: MNIST's pixels split into the image's top and bottom halves. */
static void to_columns(nz_cols *cols, const nz_rows *inp, int64_t r0, int64_t r1, int paired) {
    const int64_t D = inp->D;
    int64_t entries = 0;
    for (int64_t r = r0; r < r1; r++) entries += inp->nnz[r];
#ifdef _OPENMP
    int T = omp_get_max_threads();
#else
    int T = 1;
#endif
    T = T < cols->threads ? T : cols->threads;
    const int64_t lists = paired ? NZ_PAIRS(D) : D;
    if (!PAR(entries > PAR_MIN) || T < 2 || lists < 2 * T) {
        to_columns_serial(cols, inp, r0, r1, paired);
        return;
    }
    cols->paired = paired;
    int32_t *totals = cols->counts; /* each thread's slots */
#pragma omp parallel num_threads(T)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), n_t = omp_get_num_threads();
#else
        const int t = 0, n_t = 1;
#endif
        const int64_t ka = lists * t / n_t, kb = lists * (t + 1) / n_t; /* this thread's lists */
        const int64_t ca = paired ? 2 * ka : ka, cb = paired ? 2 * kb : kb; /* and columns */
        int32_t *cnt = cols->next; /* counts, then cursors, of this thread's lists */
        memset(cnt + ka, 0, sizeof(int32_t) * (size_t)(kb - ka));
        int32_t mine = 0;
        for (int64_t r = r0; r < r1; r++) {
            int64_t n;
            const int32_t *key = row_keys(inp, paired, r, &n);
            const int64_t e1 = first_at(key, n, kb);
            for (int64_t e = first_at(key, n, ka); e < e1; e++) cnt[key[e]]++;
        }
        for (int64_t k = ka; k < kb; k++) mine += cnt[k];
        totals[t] = mine;
#pragma omp barrier
        int32_t at = 0;
        for (int u = 0; u < t; u++) at += totals[u];
        for (int64_t k = ka; k < kb; k++) {
            const int32_t c = cnt[k];
            cols->start[k] = cnt[k] = at;
            at += c;
        }
        if (t == n_t - 1) cols->start[lists] = at;
        for (int64_t r = r0; r < r1; r++) {
            const int32_t *ix = inp->idx + r * D;
            const int64_t n = inp->nnz[r];
            row_slots(cols, paired, cnt, inp, r, first_at(ix, n, ca), first_at(ix, n, cb));
        }
    }
}

/* whether a sort of inp's rows for the weight pass pairs the columns: only
 * for a fused step's (with_step), which takes the whole batch at once, and
 * rows gathered with their pairs (nz_rows' has_pairs, which the caller asks
 * for where they pay: nz_pair_rows; counting the pairs in the sort made it
 * the longer of step_above_first's halves) */
static int pairs_pay(const nz_rows *inp, int with_step) { return with_step && inp->has_pairs; }

void nz_sort_columns(nz_cols *cols, const nz_rows *inp, int with_step) {
    to_columns_serial(cols, inp, 0, inp->B, pairs_pay(inp, with_step));
    cols->sorted = inp;
}

int64_t nz_pair_rows(const mlp_kernels *K) {
    if (!K->weights_pair) return INT64_MAX;
    long l1 = 0;
#ifdef _SC_LEVEL1_DCACHE_SIZE
    l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
    if (l1 <= 0) l1 = 32768;
    return l1 / (K->chunk * (int64_t)sizeof(float)) + 1;
}

int64_t nz_columns_rows(const nz_rows *inp, const float *dense_inp, int64_t H, int with_step) {
    if (dense_inp && (H < NARROW || nz_density(inp) > FAST_DENSE)) return 0;
    return with_step ? inp->B : FAST_RBLOCK;
}

/* Gb (H) += scale * the sum over the B rows of dout (B,H), each column's
 * sum over the rows in order (row by row across a chunk's columns, which
 * vectorizes); with u, an optimizer step on the biases Gb instead */
static void bias_grad(const mlp_kernels *K, float *Gb, const float *dout, int64_t B, int64_t H,
                      float scale, const fused_step *u) {
    const int64_t CHUNK = K->chunk, chunks = (H + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (PAR(B * H > PAR_MIN))
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t j0 = c * CHUNK, w = H - j0 < CHUNK ? H - j0 : CHUNK;
        float s[MLP_CHUNK_MAX] = {0};
        for (int64_t r = 0; r < B; r++)
            for (int64_t j = 0; j < w; j++) s[j] += dout[r * H + j0 + j];
        if (u)
            K->update(u->s, Gb + j0, s, u->mb + j0, u->vb + j0, w, 1);
        else
            for (int64_t j = 0; j < w; j++) Gb[j0 + j] += scale * s[j];
    }
}

void linear_backward_weights_fast(const mlp_kernels *K, float *GW, const wlayout *wl,
                                  float *Gb, const nz_rows *inp, const float *dense_inp,
                                  const float *dout, float scale, float *GT, nz_cols *cols,
                                  const fused_step *u) {
    const int64_t B = inp->B, D = inp->D, H = wl->H;
    if (H >= NARROW && dense_inp && nz_density(inp) > FAST_DENSE) {
        /* most inputs nonzero: dense register blocks of weight rows x
         * columns, each summed over the whole batch by one thread */
        bias_grad(K, Gb, dout, B, H, scale, u);
        const int64_t DC = K->dense_cols, DR = K->dense_rows, dchunks = (H + DC - 1) / DC;
#pragma omp parallel for schedule(static) if (PAR(B * D * H > PAR_MIN))
        for (int64_t c = 0; c < dchunks; c++) {
            const int64_t j0 = c * DC, w = H - j0 < DC ? H - j0 : DC;
            const int64_t shift = wl_shift(wl, j0), ld = wl_ld(wl, j0);
            float sq[MLP_DENSE_COLS_MAX] = {0}; /* u->squares of this block of rows */
            for (int64_t k0 = 0; k0 < D; k0 += DR) {
                const int n = D - k0 < DR ? (int)(D - k0) : (int)DR;
                if (!u) {
                    K->weights_dense(GW + shift + k0 * ld + j0, ld, dense_inp + k0, D, n,
                                     dout + j0, H, w, B, scale);
                    continue;
                }
                /* the gradient of the block's weights */
                float g[MLP_DENSE_ROWS_MAX * MLP_DENSE_COLS_MAX] = {0};
                K->weights_dense(g, DC, dense_inp + k0, D, n, dout + j0, H, w, B, 1.0f);
                for (int i = 0; i < n; i++) {
                    const int64_t at = shift + (k0 + i) * ld + j0;
                    if (u->squares) K->add_squares(sq, GW + at, w);
                    K->update(u->s, GW + at, g + DC * i, u->mW + at, u->vW + at, w, 0);
                }
                if (u->squares && ((k0 + n) % WBLOCK == 0 || k0 + n == D)) {
                    memcpy(u->squares + (k0 + n - 1) / WBLOCK * H + j0, sq,
                           sizeof(float) * (size_t)w);
                    memset(sq, 0, sizeof sq);
                }
            }
        }
        return;
    }
    if (H < NARROW && dense_inp) {
        /* GT (H,D) = dout^T @ inp as dense register blocks (the roles of
         * weights_dense swapped: the few outputs are its rows), each sum
         * over the batch in order from zero */
        const int64_t DR = K->dense_rows, DC = K->dense_cols, dchunks = (D + DC - 1) / DC;
        memset(GT, 0, sizeof(float) * (size_t)(H * D));
#pragma omp parallel for schedule(static) if (PAR(B * D * H > PAR_MIN))
        for (int64_t c = 0; c < dchunks; c++) {
            const int64_t k0 = c * DC, w = D - k0 < DC ? D - k0 : DC;
            for (int64_t j0 = 0; j0 < H; j0 += DR)
                K->weights_dense(GT + j0 * D + k0, D, dout + j0, H,
                                 H - j0 < DR ? (int)(H - j0) : (int)DR, dense_inp + k0, D, w, B,
                                 1.0f);
            for (int64_t k = k0; k < k0 + w; k++)
                for (int64_t j = 0; j < H; j++) GW[k * H + j] += scale * GT[j * D + k];
        }
        for (int64_t j = 0; j < H; j++) {
            float s = 0.0f;
            for (int64_t r = 0; r < B; r++) s += dout[r * H + j];
            Gb[j] += scale * s;
        }
        return;
    }
    /* Blocks of FAST_RBLOCK rows, so that their dout columns stay in cache.
     * With a step, the whole batch in one block instead: each weight's
     * gradient is then whole when the step needs it (an input column with
     * no entries has gradient zero, and its weights still take their step). */
    const int64_t CHUNK = K->chunk, chunks = (H + CHUNK - 1) / CHUNK;
    const int64_t kblocks = (D + WBLOCK - 1) / WBLOCK;
    const int64_t rows = u ? B : FAST_RBLOCK;
    /* Only this path reads (and uses up) a sort by nz_sort_columns: the
     * dense paths above run on another thread while that sort may still be
     * going on (model.c, step_above_first), and must not touch it. */
    const int presorted =
        cols->sorted == inp && cols->paired == pairs_pay(inp, u != NULL);
    cols->sorted = NULL;
    bias_grad(K, Gb, dout, B, H, scale, u);
    for (int64_t r0 = 0; r0 < B; r0 += rows) {
        if (!(presorted && rows >= B)) /* else nz_sort_columns did it */
            to_columns(cols, inp, r0, r0 + rows < B ? r0 + rows : B,
                       pairs_pay(inp, u != NULL));
#pragma omp parallel for collapse(2) schedule(static) if (PAR(B * H > PAR_MIN))
        for (int64_t c = 0; c < chunks; c++)
            for (int64_t kb = 0; kb < kblocks; kb++) {
                const int64_t j0 = c * CHUNK, w = H - j0 < CHUNK ? H - j0 : CHUNK;
                const int64_t k1 = (kb + 1) * WBLOCK < D ? (kb + 1) * WBLOCK : D;
                const int64_t shift = wl_shift(wl, j0), ld = wl_ld(wl, j0);
                if (!u) { /* lists by column: pairs_pay */
                    K->weights_cols(GW + shift, ld, cols->start, cols->row, cols->val,
                                    kb * WBLOCK, k1, dout, H, j0, w, scale);
                    continue;
                }
                float sq[MLP_CHUNK_MAX] = {0}; /* u->squares of this block of rows */
                const int step = cols->paired ? 2 : 1; /* weight rows a list holds */
                for (int64_t k = kb * WBLOCK; k < k1; k += step) {
                    const int32_t *st = cols->start + k / step;
                    const int64_t first = st[0], n = st[1] - first;
                    float g[2][MLP_CHUNK_MAX];
                    memset(g, 0, sizeof g[0] * (size_t)step);
                    if (n > 0 && step == 2)
                        K->weights_pair(g[0], g[1], cols->row + first, cols->val + 2 * first,
                                        n, dout, H, j0, w, 1.0f);
                    else if (n > 0)
                        K->weights_chunk(g[0], cols->row + first, cols->val + first, n, dout, H,
                                         j0, w, 1.0f);
                    for (int64_t i = 0; i < step && k + i < k1; i++) {
                        const int64_t at = shift + (k + i) * ld + j0;
                        if (u->squares) K->add_squares(sq, GW + at, w);
                        K->update(u->s, GW + at, g[i], u->mW + at, u->vW + at, w, 0);
                    }
                }
                if (u->squares) memcpy(u->squares + kb * H + j0, sq, sizeof(float) * (size_t)w);
            }
    }
}
