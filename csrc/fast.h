/*
 * fast.h - the fast paths of the linear ops, used by the C core in place of
 * the readable ones in ops.c (which compute the same functions; the core
 * runs those instead after mlp_use_plain_ops).
 *
 * Two facts make them fast without any BLAS:
 * - inputs are mostly zeros (MNIST pixels: about 81%; ReLU outputs: about
 *   half), so each input row is first reduced to its nonzero entries and the
 *   products run over those only;
 * - the output is cut into column chunks (64 floats, 128 with AVX-512) held
 *   in eight vector registers across the whole sum, and the chunks are
 *   shared among threads.
 *   Each output element is computed by one thread in a fixed order, so the
 *   results do not depend on the number of threads.
 * The innermost loops (kernels.h) come in one set per instruction set; K
 * is the set to run (mlp_pick_kernels).
 */
#ifndef MLP_FAST_H
#define MLP_FAST_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "kernels.h"
#include "mlp.h"
#include "pointwise.h"

/* Layers with fewer outputs than this take the transposed (dense) paths,
 * and need their input rows as a dense matrix. */
#define FAST_NARROW 32

/* Inputs per block of the forward sums, and blocks in a row of D. Each
 * block of a row loads and stores its sums once more, so fewer, longer runs
 * are faster than blocks small enough for the L1 cache (32 inputs:
 * benchmarks/RESULTS.md, "the forward sums over whole rows"). */
#define FAST_KBLOCK 1024
#define FAST_BLOCKS(D) (((D) + FAST_KBLOCK - 1) / FAST_KBLOCK)

/* Above this share of nonzero inputs, linear_forward_fast runs dense
 * register blocks (four rows share each load of W) when the rows are also
 * at hand as a dense matrix. */
#define FAST_DENSE 0.5

/* Rows per block of a large batch. */
#define FAST_RBLOCK 64

/* Columns per panel of a layer's weights stored by panels (wlayout); a
 * multiple of every kernel set's chunk and dense block columns, and the
 * same for every set, so that the panels are too. */
#define FAST_PANEL 128

/* Where a layer's weight (k, j) of W (D,H) lies, and its optimizer state's
 * (laid out the same): row by row (panel 0: k * H + j), or by panels of
 * `panel` columns, panel after panel, each panel's D rows contiguous (the
 * last panel as wide as the columns left; a layer of at most `panel`
 * columns is one panel, the same as row by row). The fast paths hand the
 * threads column chunks of every row; by panels, a thread's columns lie
 * apart from the other threads' instead of beside them in each row, which
 * costs two cores a lot (benchmarks/RESULTS.md: "the development machine's
 * slow phase"). Either way each weight sees the same arithmetic in the
 * same order. */
typedef struct wlayout {
    int64_t D, H, panel;
} wlayout;

/* The leading dimension and offset that address the columns of j0's panel
 * as a row-major matrix would: (k, j) at wl_shift + k * wl_ld + j, for j in
 * that panel. The kernels take any range of columns inside one panel. */
static inline int64_t wl_first(const wlayout *l, int64_t j0) {
    return l->panel ? j0 / l->panel * l->panel : 0;
}
static inline int64_t wl_ld(const wlayout *l, int64_t j0) {
    const int64_t q0 = wl_first(l, j0);
    return l->panel && l->H - q0 > l->panel ? l->panel : l->H - q0;
}
static inline int64_t wl_shift(const wlayout *l, int64_t j0) {
    const int64_t q0 = wl_first(l, j0);
    return q0 * l->D - q0;
}

/* dst (by l's panels) = src (row by row), and back */
void wl_to_panels(float *dst, const float *src, const wlayout *l);
void wl_from_panels(float *dst, const float *src, const wlayout *l);

/* Rows per block of a weight-gradient pass's pieces (fast.c), and of the
 * sums of squares below; a multiple of every kernel set's dense_rows, so
 * that the dense pass's groups of rows end on its blocks. */
#define FAST_WBLOCK 64

/* The sum of W's squares (laid out as l says), in an order that depends on
 * neither the layout, the kernel set nor the threads: for each block of
 * FAST_WBLOCK rows, each column's squares summed over the rows in order
 * (K->add_squares), then those column sums in double, block by block and
 * column by column. A fused step (fused_step's squares) finds the same
 * column sums of the weights it is about to change, and fast_squares_sum
 * adds them up the same way. */
double wl_squares(const mlp_kernels *K, const float *W, const wlayout *l);
double fast_squares_sum(const float *squares, int64_t D, int64_t H);

/* The nonzero entries of B rows of width D, row b at offset b * D. */
typedef struct nz_rows {
    int32_t *idx; /* column of each entry */
    float *val;
    int64_t *nnz; /* entries in each row */
    int32_t *blk; /* per row, FAST_BLOCKS(D) + 1: where each block of inputs starts */
    int64_t B, D;
    /* Where the rows came from a data set's kept lists that have them,
     * asked for by nz_gather_cached's pairs: each row's pairs of columns
     * (nz_cols), one a slot, ascending, row b's at pkey + b * D, pslots[b]
     * of them. The weight pass then sorts by pairs and counts these instead
     * of finding them. has_pairs 0: none. */
    int32_t *pkey;
    int64_t *pslots;
    int has_pairs;
} nz_rows;

/* The same entries by column (scratch of linear_backward_weights_fast):
 * for column k, rows row[start[k] .. start[k + 1]) in ascending order and
 * their values val[..]. Or, when paired, by pairs of columns: for pair p,
 * columns 2p and 2p + 1, a slot s in start[p] .. start[p + 1] for each row
 * that has either column, in ascending row order: row[s], and val[2s] and
 * val[2s + 1], the row's values in the two columns (0 where it has none).
 * A row of dout is then read once for both columns (kernels.h,
 * weights_pair), which pays where a batch's rows of dout do not fit the L1
 * cache (pair_rows) and neighbouring columns are often nonzero together
 * (MNIST's 150 entries a row take 88 slots). Room: D + 1 starts, D cursors,
 * B * D rows and B * (D + 1) values. */
#define NZ_PAIRS(D) (((D) + 1) / 2)
typedef struct nz_cols {
    int32_t *start, *next, *row;
    float *val;
    int paired;        /* how the last sort laid the lists out */
    int64_t pair_rows; /* batches of this many rows or more pair (nz_pair_rows) */
    int32_t *counts; /* each thread's entries when they share the work */
    int threads;     /* how many threads counts has room for */
    const nz_rows *sorted; /* the rows nz_sort_columns sorted, until the next pass */
} nz_cols;

/* How many rows at a time linear_backward_weights_fast sorts by column for
 * these inputs (with_step: it is given a fused_step), 0 when it does not
 * read them by column. */
int64_t nz_columns_rows(const nz_rows *inp, const float *dense_inp, int64_t H, int with_step);

/* The rows from which a fused step's sort by column pays to pair the
 * columns with kernel set K (the caller then gathers the rows with their
 * pairs): where the set has weights_pair and a chunk of that many rows of
 * dout is more than the L1 data cache holds; else INT64_MAX. */
int64_t nz_pair_rows(const mlp_kernels *K);

/* All of inp's rows by column, on the calling thread, for the next
 * linear_backward_weights_fast on inp (which then sorts nothing when it
 * takes the whole batch at once; with_step: it is given a fused_step, and
 * the lists may be paired). */
void nz_sort_columns(nz_cols *cols, const nz_rows *inp, int with_step);

/* Every row's nonzero entries of a data set, built once and kept with it
 * (rows r's entries at start[r] .. start[r + 1], values unscaled; blk: per
 * row, FAST_BLOCKS(d) + 1 block starts counted from the row's first entry),
 * so that a batch copies its rows' lists instead of finding them again. */
typedef struct nz_cache {
    int64_t *start;
    int32_t *idx, *blk;
    float *val;
    /* each row's pairs of columns, one a slot (nz_rows' pkey), at the
     * row's start like its entries, pslots[r] of them; NULL where they would
     * not fit max_bytes beside the lists */
    int32_t *pkey, *pslots;
    int64_t n, d;
} nz_cache;

/* The cache of X (n rows of width d); NULL with nothing allocated when it
 * would take more than max_bytes or the rows are mostly nonzero (the dense
 * paths need no lists). NULL also when memory runs out: the caller then
 * finds the lists batch by batch, as without a cache. */
nz_cache *nz_cache_build(const mlp_kernels *K, const void *X, mlp_dtype dtype, int64_t n,
                         int64_t d, size_t max_bytes);
void nz_cache_free(nz_cache *c);

/* nz_gather from the cache: the same lists, values and block starts; with
 * pairs, also the rows' pairs of columns where the cache has them (nz_rows'
 * has_pairs) */
void nz_gather_cached(nz_rows *nz, const nz_cache *c, const int64_t *idx, int64_t start,
                      int64_t B, float scale, int pairs);

/* gather_batch as nonzero lists: rows idx (or start.. when idx is NULL) of
 * X, times scale */
void nz_gather(const mlp_kernels *K, nz_rows *nz, const void *X, mlp_dtype dtype, int64_t d,
               const int64_t *idx, int64_t start, int64_t B, float scale);

/* Only counts the nonzero entries of float rows (as nz_gather picks them)
 * into nz->nnz, building no lists; returns their share. */
double nz_count(const mlp_kernels *K, nz_rows *nz, const float *X, int64_t d,
                const int64_t *idx, int64_t start, int64_t B);

/* the nonzero entries of act (B,D) */
void nz_from_dense(const mlp_kernels *K, nz_rows *nz, const float *act, int64_t B, int64_t D);

/* the share of nonzero entries */
double nz_density(const nz_rows *nz);

/* linear_forward (+ relu_forward): (B,D) @ (D,H) + (H) -> (B,H). When the
 * input rows are also at hand as a dense matrix (B,D), narrow layers and
 * mostly-nonzero inputs use it. W laid out as wl says. WT: scratch of D*H
 * floats. */
void linear_forward_fast(const mlp_kernels *K, float *out, const nz_rows *inp,
                         const float *dense_inp, const float *W, const wlayout *wl,
                         const float *b, int relu, float *WT);

/* linear_backward's dinp (+ activation_backward): dinp (B,D) = f'(.) *
 * (dout @ W^T), from the activation's output act_in (B,D) and, when it
 * needs it, its input pre_in (B,D). WT: scratch of D*H floats for narrow
 * layers. */
void linear_backward_input_fast(const mlp_kernels *K, float *dinp, const float *dout,
                                const float *W, mlp_activation act, const float *pre_in,
                                const float *act_in, int64_t B, int64_t D, int64_t H, float *WT);

/* optimizer_update of layer l, its pieces shared among threads (the same
 * result). */
void optimizer_update_layer_fast(const mlp_kernels *K, const mlp_layout *L, int l,
                                 const mlp_step *s, float *params, const float *grads, float *m,
                                 float *v);

/* An optimizer step fused into a weight-gradient pass: each finished piece
 * of the gradient goes straight to K->update on its parameters, so that the
 * gradient never goes to memory and the parameters and their state are read
 * and written once (m, v: the state of the layer's W and b). With squares
 * (ceil(D / FAST_WBLOCK) x H floats), the pass also leaves there the
 * column sums of wl_squares of the weights before the step, while they are
 * at hand (scikit-learn's reported penalty). */
typedef struct fused_step {
    const mlp_step *s;
    float *mW, *vW, *mb, *vb;
    float *squares;
} fused_step;

/* linear_backward's dW, db, scaled and added in place:
 *   GW (D,H) += scale * inp^T @ dout,  Gb (H) += scale * sum over B of dout
 * GW (and u's mW, vW) laid out as wl says.
 * With GW, Gb = W, b and scale = -lr this is linear_backward + sgd_update
 * fused (momentum and weight decay zero); with zeroed gradients and scale 1,
 * plain linear_backward. With u (layers of at least FAST_NARROW outputs
 * only): GW, Gb are W, b, scale is not used, and each finished piece of
 * the gradient takes u's optimizer step instead of being added. dense_inp
 * (B,D) may be given when the input rows are also at hand as a dense matrix
 * (used for narrow layers, and for mostly-nonzero inputs, which take dense
 * register blocks). GT: scratch of D*H floats; cols: scratch for the
 * entries by column. */
void linear_backward_weights_fast(const mlp_kernels *K, float *GW, const wlayout *wl,
                                  float *Gb, const nz_rows *inp, const float *dense_inp,
                                  const float *dout, float scale, float *GT, nz_cols *cols,
                                  const fused_step *u);

#endif /* MLP_FAST_H */
