/*
 * model.c - the C core: mlp.h implemented with the ops of ops.c, the linear
 * ones through their fast paths in fast.c (or the plain ones of ops.c after
 * mlp_use_plain_ops, or for a configuration the fast paths do not support).
 */
#include <pthread.h>
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "fast.h"
#include "mlp.h"
#include "ops.h"
#include "pointwise.h"

/* The nonzero lists of a data set's rows (fast.h's nz_cache), built by its
 * first training epoch on the fast paths and kept for the next ones; one
 * lock, as several models may train on one data set at once. */
#define LIST_CACHE_BYTES ((size_t)256 << 20)
typedef struct data_lists {
    pthread_mutex_t lock;
    int tried;
    nz_cache *nz; /* NULL: too large, mostly nonzero, or out of memory */
} data_lists;

struct mlp_data {
    const void *X; /* (n, d), read in place */
    mlp_dtype dtype;
    mlp_targets t; /* read in place */
    mlp_target_info info;
    int64_t n, d;
    data_lists *lists;
};

struct mlp_model {
    mlp_layout L;
    mlp_activation act;
    mlp_loss loss;
    float input_scale;
    float *params, *grads;
    float *m, *v; /* optimizer state, same layout as params */
    int64_t steps;
    atomic_int stop;
    /* Workspace for up to `cap` rows: the gathered input batch, every layer's
     * output (after the activation for hidden layers, the last layer's raw
     * values for the last) and, when the activation's backward needs it,
     * its input (pre), the model's outputs (probabilities), two gradient
     * buffers used in turn, the batch's targets and weights. */
    int64_t cap;
    float *x, **acts, **pre, *out, *dbuf[2];
    const float *x_dense; /* x when this batch's input rows were gathered as floats, else NULL */
    const nz_cache *lists; /* the training data's kept nonzero lists during an epoch, or NULL */
    int32_t *ybuf;
    float *tbuf, *wbuf;
    int64_t *rowbuf; /* row numbers of a batch taken in order */
    nz_rows *nz;  /* the fast path's view of each layer's input rows */
    nz_cols cols; /* the same by column, for the weight gradients */
    float *T;     /* scratch for the transposed narrow layers */
    int plain;    /* run the plain ops of ops.c instead of the fast paths */
    int threads;  /* mlp_set_threads; 0: OpenMP's default */
    double sec_per_row[2]; /* recent training speed on one thread [0] and on all [1] */
    int64_t rounds;        /* rounds of steps timed so far (pick_threads) */
    int probe_gap, since_probe; /* on one thread: rounds between tries of all, and since the last */
    const mlp_kernels *kernels; /* the fast paths' inner loops for this CPU */
    /* The first layer's layout (fast.h's wlayout): by panels during an epoch
     * that keeps its W and their state m, v in `panels` (enter_panels), else
     * row by row in params, m and v. */
    wlayout wl0;
    float *panels; /* 3 panel copies of sizes[0] x sizes[1] floats: W, m, v */
    /* scikit-learn's reported penalty during a step (train_step): whether
     * the fused steps find their layers' squares (into `squares`, fast.h's
     * fused_step), and the sum of squares of every layer so far */
    int want_squares;
    float *squares;
    double step_squares;
};

const char *mlp_backend_name(void) { return "cpu"; }

mlp_status mlp_device_check(void) {
    mlp_clear_error();
    return MLP_OK;
}

mlp_status mlp_check_rounding(int64_t samples, uint64_t seed, int64_t *mismatches) {
    mlp_clear_error();
    if (!mismatches) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    if (samples < 0) return mlp_fail(MLP_ERR_INVALID, "samples must be >= 0");
    int64_t bad = 0;
    for (int64_t i = 0; i < samples; i++) {
        float a, b;
        mlp_rounding_case(seed, i, &a, &b);
        bad += !mlp_same_result(mlp_div(a, b), a / b);
        bad += !mlp_same_result(mlp_sqrt(a), sqrtf(a));
    }
    *mismatches = bad;
    return MLP_OK;
}

static void free_workspace(mlp_model *m) {
    if (m->nz)
        for (int l = 0; l < m->L.n_layers; l++) {
            free(m->nz[l].idx);
            free(m->nz[l].val);
            free(m->nz[l].nnz);
            free(m->nz[l].blk);
            free(m->nz[l].pkey);
            free(m->nz[l].pslots);
        }
    free(m->nz);
    free(m->rowbuf);
    free(m->cols.start);
    free(m->cols.next);
    free(m->cols.row);
    free(m->cols.val);
    free(m->cols.counts);
    memset(&m->cols, 0, sizeof m->cols);
    m->nz = NULL;
    m->rowbuf = NULL;
    free(m->x);
    for (int l = 0; l < m->L.n_layers; l++) {
        if (m->acts) free(m->acts[l]);
        if (m->pre) free(m->pre[l]);
    }
    free(m->acts);
    free(m->pre);
    free(m->out);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->ybuf);
    free(m->tbuf);
    free(m->wbuf);
    m->x = m->out = m->dbuf[0] = m->dbuf[1] = m->tbuf = m->wbuf = NULL;
    m->acts = m->pre = NULL;
    m->ybuf = NULL;
    m->cap = 0;
}

static float *alloc_floats(int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0) return NULL;
    return mlp_alloc_array((size_t)rows, sizeof(float) * (size_t)cols);
}

/* Grows the workspace to hold `rows` rows; never shrinks it. */
static mlp_status reserve_rows(mlp_model *m, int64_t rows) {
    if (rows <= m->cap) return MLP_OK;
    free_workspace(m);
    const int64_t *s = m->L.sizes;
    const int n_layers = m->L.n_layers;
    m->x = alloc_floats(rows, s[0]);
    m->acts = calloc((size_t)n_layers, sizeof(float *));
    m->out = alloc_floats(rows, s[n_layers]);
    m->dbuf[0] = alloc_floats(rows, m->L.max_width);
    m->dbuf[1] = alloc_floats(rows, m->L.max_width);
    m->ybuf = mlp_alloc(sizeof(int32_t) * (size_t)rows);
    m->nz = calloc((size_t)n_layers, sizeof(nz_rows));
    m->rowbuf = mlp_alloc(sizeof(int64_t) * (size_t)rows);
    int ok = m->x && m->acts && m->out && m->dbuf[0] && m->dbuf[1] && m->ybuf && m->nz &&
             m->rowbuf;
    for (int l = 0; ok && l < n_layers; l++) ok = (m->acts[l] = alloc_floats(rows, s[l + 1])) != NULL;
    int64_t widest_in = 1;
    for (int l = 0; l < n_layers; l++) widest_in = s[l] > widest_in ? s[l] : widest_in;
    m->cols.start = mlp_alloc(sizeof(int32_t) * (size_t)(widest_in + 1));
    m->cols.next = mlp_alloc(sizeof(int32_t) * (size_t)widest_in);
    m->cols.row = mlp_alloc(sizeof(int32_t) * (size_t)rows * (size_t)widest_in);
    m->cols.val = alloc_floats(rows, widest_in + 1); /* room for pairs: fast.h */
    m->cols.pair_rows = nz_pair_rows(m->kernels);
#ifdef _OPENMP
    m->cols.threads = omp_get_max_threads();
#else
    m->cols.threads = 1;
#endif
    m->cols.counts = mlp_alloc(sizeof(int32_t) * (size_t)m->cols.threads);
    ok = ok && m->cols.start && m->cols.next && m->cols.row && m->cols.val && m->cols.counts;
    for (int l = 0; ok && l < n_layers; l++) {
        m->nz[l].idx = mlp_alloc(sizeof(int32_t) * (size_t)rows * (size_t)s[l]);
        m->nz[l].val = alloc_floats(rows, s[l]);
        m->nz[l].nnz = mlp_alloc(sizeof(int64_t) * (size_t)rows);
        m->nz[l].blk = mlp_alloc(sizeof(int32_t) * (size_t)rows * (size_t)(FAST_BLOCKS(s[l]) + 1));
        ok = m->nz[l].idx && m->nz[l].val && m->nz[l].nnz && m->nz[l].blk;
        if (ok && l == 0) { /* the data set's pairs of columns (fast.h), for the paired sort */
            m->nz[0].pkey = mlp_alloc(sizeof(int32_t) * (size_t)rows * (size_t)s[0]);
            m->nz[0].pslots = mlp_alloc(sizeof(int64_t) * (size_t)rows);
            ok = m->nz[0].pkey && m->nz[0].pslots;
        }
    }
    /* what the default recipe does not use */
    m->pre = ok ? calloc((size_t)n_layers, sizeof(float *)) : NULL;
    m->tbuf = ok ? alloc_floats(rows, s[n_layers]) : NULL;
    m->wbuf = ok ? alloc_floats(rows, 1) : NULL;
    ok = ok && m->pre && m->tbuf && m->wbuf;
    const int keep_pre = mlp_activation_needs_input(m->act);
    for (int l = 0; ok && keep_pre && l + 1 < n_layers; l++)
        ok = (m->pre[l] = alloc_floats(rows, s[l + 1])) != NULL;
    if (!ok) {
        free_workspace(m);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory for a workspace of %lld rows",
                        (long long)rows);
    }
    m->cap = rows;
    return MLP_OK;
}

/* What the fast paths support: layers whose inputs int32 indexes (their
 * nonzero lists); everything else of mlp_config is theirs too. */
static int fast_paths_support(const mlp_layout *L) {
    for (int l = 0; l < L->n_layers; l++)
        if (L->sizes[l] > INT32_MAX) return 0;
    return 1;
}

/* Layer l's weights for the fast paths, where they are now and how they lie
 * (wl), and those of its optimizer state (state: m->m or m->v). */
static wlayout layout_of(const mlp_model *m, int l) {
    return l == 0 ? m->wl0 : (wlayout){m->L.sizes[l], m->L.sizes[l + 1], 0};
}

static float *weights_of(const mlp_model *m, int l) {
    return l == 0 && m->wl0.panel ? m->panels : m->params + m->L.w_off[l];
}

static float *weight_state_of(const mlp_model *m, const float *state, int l) {
    if (l > 0 || !m->wl0.panel) return (float *)state + m->L.w_off[l];
    return m->panels + (state == m->m ? 1 : 2) * m->wl0.D * m->wl0.H;
}

mlp_status mlp_create(mlp_model **model, const mlp_config *config) {
    mlp_clear_error();
    mlp_watch_forks();
    if (!model) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    *model = NULL;
    mlp_status st = mlp_check_config(config);
    if (st != MLP_OK) return st;
    mlp_model *m = calloc(1, sizeof *m);
    if (!m) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    st = mlp_layout_init(&m->L, config->n_sizes, config->sizes);
    if (st != MLP_OK) {
        free(m);
        return st;
    }
    m->act = config->activation;
    m->loss = config->loss;
    m->input_scale = config->input_scale;
    atomic_init(&m->stop, 0);
    const size_t bytes = sizeof(float) * (size_t)m->L.n_params;
    m->params = mlp_alloc_zeroed(1, bytes);
    m->grads = mlp_alloc_zeroed(1, bytes);
    m->m = mlp_alloc_zeroed(1, bytes);
    m->v = mlp_alloc_zeroed(1, bytes);
    int64_t narrow = 1, squares = 1;
    for (int l = 0; l < m->L.n_layers; l++) {
        const int64_t D = m->L.sizes[l], H = m->L.sizes[l + 1];
        if (H < FAST_NARROW && D * H > narrow) narrow = D * H;
        if ((D + FAST_WBLOCK - 1) / FAST_WBLOCK * H > squares)
            squares = (D + FAST_WBLOCK - 1) / FAST_WBLOCK * H;
    }
    m->T = mlp_alloc(sizeof(float) * (size_t)narrow);
    m->squares = mlp_alloc(sizeof(float) * (size_t)squares);
    m->kernels = mlp_pick_kernels();
    m->plain = !fast_paths_support(&m->L);
    m->wl0 = (wlayout){m->L.sizes[0], m->L.sizes[1], 0};
    if (!m->params || !m->grads || !m->m || !m->v || !m->T || !m->squares) {
        mlp_free(m);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory for %lld parameters",
                        (long long)(bytes / sizeof(float)));
    }
    *model = m;
    return MLP_OK;
}

void mlp_free(mlp_model *m) {
    if (!m) return;
    free_workspace(m);
    free(m->params);
    free(m->grads);
    free(m->m);
    free(m->v);
    free(m->T);
    free(m->panels);
    free(m->squares);
    mlp_layout_free(&m->L);
    free(m);
}

int64_t mlp_num_params(const mlp_model *m) { return m ? m->L.n_params : 0; }

const char *mlp_kernel_set(const mlp_model *m) {
    return !m ? "" : m->plain ? "plain" : m->kernels->name;
}

mlp_status mlp_set_threads(mlp_model *m, int n_threads) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    if (n_threads < 0) return mlp_fail(MLP_ERR_INVALID, "n_threads must be >= 0");
    m->threads = n_threads;
    return MLP_OK;
}

/* The calling thread's OpenMP thread count for this model's work (OpenMP
 * keeps it per calling thread); returns the count to restore. */
static int use_threads(const mlp_model *m) {
#ifdef _OPENMP
    const int before = omp_get_max_threads();
    if (m && m->threads > 0) omp_set_num_threads(m->threads);
    return before;
#else
    (void)m;
    return 0;
#endif
}

static mlp_status restore_threads(int before, mlp_status st) {
#ifdef _OPENMP
    omp_set_num_threads(before);
#else
    (void)before;
#endif
    return st;
}

mlp_status mlp_use_plain_ops(mlp_model *m, int on) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    m->plain = on || !fast_paths_support(&m->L);
    return MLP_OK;
}

mlp_status mlp_set_params(mlp_model *m, const float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    memcpy(m->params, params, sizeof(float) * (size_t)m->L.n_params);
    memset(m->m, 0, sizeof(float) * (size_t)m->L.n_params);
    memset(m->v, 0, sizeof(float) * (size_t)m->L.n_params);
    m->steps = 0;
    return MLP_OK;
}

mlp_status mlp_get_params(mlp_model *m, float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    memcpy(params, m->params, sizeof(float) * (size_t)m->L.n_params);
    return MLP_OK;
}

mlp_status mlp_get_state(mlp_model *m, float *state, int64_t *steps) {
    mlp_clear_error();
    if (!m || !state || !steps) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const size_t n = (size_t)m->L.n_params;
    memcpy(state, m->m, sizeof(float) * n);
    memcpy(state + n, m->v, sizeof(float) * n);
    *steps = m->steps;
    return MLP_OK;
}

mlp_status mlp_set_state(mlp_model *m, const float *state, int64_t steps) {
    mlp_clear_error();
    if (!m || !state) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    if (steps < 0) return mlp_fail(MLP_ERR_INVALID, "steps must be >= 0");
    const size_t n = (size_t)m->L.n_params;
    memcpy(m->m, state, sizeof(float) * n);
    memcpy(m->v, state + n, sizeof(float) * n);
    m->steps = steps;
    return MLP_OK;
}

void mlp_request_stop(mlp_model *m) {
    if (m) atomic_store(&m->stop, 1);
}

mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n, int64_t d,
                           const mlp_targets *targets) {
    mlp_clear_error();
    mlp_status st = mlp_check_data_args(data, X, dtype, n, d, targets);
    if (st != MLP_OK) return st;
    mlp_data *p = calloc(1, sizeof *p);
    data_lists *lists = calloc(1, sizeof *lists);
    if (!p || !lists || pthread_mutex_init(&lists->lock, NULL) != 0) {
        free(p);
        free(lists);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    }
    p->lists = lists;
    p->X = X;
    p->dtype = dtype;
    if (targets) p->t = *targets;
    p->info = mlp_target_info_of(targets, n);
    p->n = n;
    p->d = d;
    *data = p;
    return MLP_OK;
}

void mlp_data_free(mlp_data *data) {
    if (!data) return;
    pthread_mutex_destroy(&data->lists->lock);
    nz_cache_free(data->lists->nz);
    free(data->lists);
    free(data);
}

int mlp_data_on_host(const mlp_data *data) { return data != NULL; }

/* The data set's kept nonzero lists, built on first use (NULL when none) */
static const nz_cache *lists_of(const mlp_model *m, const mlp_data *data) {
    data_lists *l = data->lists;
    pthread_mutex_lock(&l->lock);
    if (!l->tried) {
        l->tried = 1;
        l->nz = nz_cache_build(m->kernels, data->X, data->dtype, data->n, data->d,
                               LIST_CACHE_BYTES);
    }
    pthread_mutex_unlock(&l->lock);
    return l->nz;
}

static mlp_status check_targets(const mlp_model *m, const mlp_data *data) {
    return mlp_check_targets(&data->info, m->loss, m->L.sizes[m->L.n_layers]);
}

/* The targets and weights of B rows (idx, or start.. when idx is NULL),
 * copied into the batch buffers when they are picked out of order. */
static batch_targets gather_targets(mlp_model *m, const mlp_data *data, const int64_t *idx,
                                    int64_t start, int64_t B) {
    batch_targets t = {NULL, NULL, NULL};
    const int64_t C = m->L.sizes[m->L.n_layers];
    if (!idx) {
        if (data->t.labels) t.labels = data->t.labels + start;
        if (data->t.values) t.values = data->t.values + start * C;
        if (data->t.sample_weight) t.weights = data->t.sample_weight + start;
        return t;
    }
    if (data->t.labels) {
        for (int64_t i = 0; i < B; i++) m->ybuf[i] = data->t.labels[idx[i]];
        t.labels = m->ybuf;
    }
    if (data->t.values) {
        for (int64_t i = 0; i < B; i++)
            memcpy(m->tbuf + i * C, data->t.values + idx[i] * C, sizeof(float) * (size_t)C);
        t.values = m->tbuf;
    }
    if (data->t.sample_weight) {
        for (int64_t i = 0; i < B; i++) m->wbuf[i] = data->t.sample_weight[idx[i]];
        t.weights = m->wbuf;
    }
    return t;
}

/* Forward pass of B rows of the data set (rows idx, or start.. when idx is
 * NULL): fills acts, pre and (with outputs, or targets) out; with targets,
 * returns the weighted sum of the rows' losses. */
static double forward_layers(mlp_model *m, const mlp_data *data, const int64_t *idx,
                             int64_t start, const batch_targets *t, int64_t B, int64_t *correct,
                             int outputs, int l0, int l1, int pairs);

static double forward(mlp_model *m, const mlp_data *data, const int64_t *idx, int64_t start,
                      const batch_targets *t, int64_t B, int64_t *correct, int outputs) {
    return forward_layers(m, data, idx, start, t, B, correct, outputs, 0, m->L.n_layers, 0);
}

/* forward for layers l0 .. l1 only (the fast paths; the plain ops take all
 * of them): the batch is gathered when l0 is 0 (with the rows' pairs of
 * columns where pairs and the data set's kept lists have them: fast.h,
 * nz_rows), and the loss is computed (and returned) when l1 is the last
 * layer's end, else 0. */
static double forward_layers(mlp_model *m, const mlp_data *data, const int64_t *idx,
                             int64_t start, const batch_targets *t, int64_t B, int64_t *correct,
                             int outputs, int l0, int l1, int pairs) {
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    if (m->plain) {
        const float *inp = m->x;
        if (!idx) {
            for (int64_t i = 0; i < B; i++) m->rowbuf[i] = start + i;
            idx = m->rowbuf;
        }
        gather_batch(m->x, data->X, data->dtype, data->d, idx, B, m->input_scale);
        for (int l = 0; l <= last; l++) {
            const int64_t in = L->sizes[l], out = L->sizes[l + 1];
            float *z = l < last && m->pre[l] ? m->pre[l] : m->acts[l];
            linear_forward(z, inp, m->params + L->w_off[l], m->params + L->b_off[l], B, in, out);
            if (l < last) activation_forward(m->act, m->acts[l], z, B * out);
            inp = m->acts[l];
        }
    } else if (l0 == 0) {
        int lists = 1;
        if (m->lists) { /* the rows' lists as the first epoch found them */
            nz_gather_cached(&m->nz[0], m->lists, idx, start, B, m->input_scale, pairs);
        } else {
            /* mostly nonzero float rows take the dense paths only: no lists
             * (the first few rows tell whether counting them all is worth it) */
            const int64_t few = B < 8 ? B : 8;
            lists = data->dtype != MLP_FLOAT32 ||
                    nz_count(m->kernels, &m->nz[0], data->X, data->d, idx, start, few) <=
                        FAST_DENSE ||
                    nz_count(m->kernels, &m->nz[0], data->X, data->d, idx, start, B) <= FAST_DENSE;
            if (lists)
                nz_gather(m->kernels, &m->nz[0], data->X, data->dtype, data->d, idx, start, B,
                          m->input_scale);
        }
        /* dense data (not pixels): the rows as floats too, for the dense paths */
        m->x_dense = NULL;
        if (!lists || nz_density(&m->nz[0]) > FAST_DENSE || L->sizes[1] < FAST_NARROW) {
            if (!idx) {
                for (int64_t i = 0; i < B; i++) m->rowbuf[i] = start + i;
                idx = m->rowbuf;
            }
            gather_batch(m->x, data->X, data->dtype, data->d, idx, B, m->input_scale);
            m->x_dense = m->x;
        }
    }
    if (!m->plain) {
        const float *x = m->x_dense;
        const int relu = m->act == MLP_RELU;
        for (int l = l0; l < l1; l++) {
            const int64_t out = L->sizes[l + 1];
            float *z = l < last && m->pre[l] ? m->pre[l] : m->acts[l];
            const wlayout wl = layout_of(m, l);
            linear_forward_fast(m->kernels, z, &m->nz[l], l == 0 ? x : m->acts[l - 1],
                                weights_of(m, l), &wl, m->params + L->b_off[l], l < last && relu,
                                m->T);
            if (l < last && !relu) activation_forward(m->act, m->acts[l], z, B * out);
            /* the next layer reads nonzero lists unless it is narrow */
            if (l < last && L->sizes[l + 2] >= FAST_NARROW)
                nz_from_dense(m->kernels, &m->nz[l + 1], m->acts[l], B, out);
            else if (l < last)
                m->nz[l + 1].B = B, m->nz[l + 1].D = out;
        }
    }
    if (l1 <= last) return 0.0;
    if (!t && !outputs) return 0.0; /* the logits are all the caller reads */
    return loss_forward(m->loss, m->out, m->acts[last], t, B, L->sizes[last + 1], correct);
}

/* Backward pass after forward(). Without a step s: the gradients (scale 1,
 * zeroed first), for mlp_loss_and_grad. With s: also the optimizer step.
 * The plain ops leave it to the caller; the fast paths take each layer's step
 * as soon as its gradient is known: fused into the weight-gradient pass (a
 * plain SGD step as p -= lr * g added in place, any other rule through
 * fused_step) or, for narrow layers of other rules, right after it. */
static void backward_layers(mlp_model *m, const batch_targets *t, int64_t B, double wsum,
                            const mlp_step *s, int hi, int lo);

/* Whether layer l's weight-gradient pass takes the step s itself
 * (fused_step) when it is not a plain SGD step: layers of FAST_NARROW
 * outputs or more whose batch fits the int32 column lists. */
static int takes_fused_step(const mlp_model *m, const mlp_step *s, int l, int64_t B) {
    return s && m->L.sizes[l + 1] >= FAST_NARROW && B * m->L.sizes[l] < INT32_MAX;
}

static void backward(mlp_model *m, const batch_targets *t, int64_t B, double wsum,
                     const mlp_step *s) {
    backward_layers(m, t, B, wsum, s, m->L.n_layers - 1, 0);
}

/* backward for layers hi down to lo (the loss's gradient first when hi is
 * the last layer): layer l's output gradient is in dbuf[(last - l) % 2]. */
static void backward_layers(mlp_model *m, const batch_targets *t, int64_t B, double wsum,
                            const mlp_step *s, int hi, int lo) {
    const float fused_lr = s && !m->plain && mlp_step_is_plain_sgd(s) ? s->lr : 0.0f;
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    float *dout = m->dbuf[(last - hi) % 2], *dinp = m->dbuf[(last - hi + 1) % 2];
    if (hi == last)
        loss_backward(m->loss, dout, m->out, m->acts[last], t, B, L->sizes[last + 1], wsum);
    for (int l = hi; l >= lo; l--) {
        const int64_t in = L->sizes[l], out = L->sizes[l + 1];
        float *W = m->params + L->w_off[l], *b = m->params + L->b_off[l];
        float *gW = m->grads + L->w_off[l], *gb = m->grads + L->b_off[l];
        const float *pre_in = l > 0 ? m->pre[l - 1] : NULL;
        if (m->plain) {
            const float *inp = l == 0 ? m->x : m->acts[l - 1];
            linear_backward(l == 0 ? NULL : dinp, gW, gb, dout, inp, W, B, in, out);
            if (l > 0) activation_backward(m->act, dinp, pre_in, m->acts[l - 1], dinp, B * in);
        } else {
            /* the input gradient first: it needs W before the update */
            if (l > 0)
                linear_backward_input_fast(m->kernels, dinp, dout, W, m->act, pre_in,
                                           m->acts[l - 1], B, in, out, m->T);
            const float *dense = l == 0 ? m->x_dense : m->acts[l - 1];
            const wlayout wl = layout_of(m, l), rows = {in, out, 0};
            if (fused_lr != 0.0f) {
                linear_backward_weights_fast(m->kernels, weights_of(m, l), &wl, b, &m->nz[l],
                                             dense, dout, -fused_lr, m->T, &m->cols, NULL);
            } else if (takes_fused_step(m, s, l, B)) {
                const fused_step u = {s,
                                      weight_state_of(m, m->m, l),
                                      weight_state_of(m, m->v, l),
                                      m->m + L->b_off[l],
                                      m->v + L->b_off[l],
                                      m->want_squares ? m->squares : NULL};
                linear_backward_weights_fast(m->kernels, weights_of(m, l), &wl, b, &m->nz[l],
                                             dense, dout, 1.0f, m->T, &m->cols, &u);
                if (u.squares) m->step_squares += fast_squares_sum(u.squares, in, out);
            } else { /* never by panels (enter_panels) */
                memset(gW, 0, sizeof(float) * (size_t)((in + 1) * out)); /* W and b */
                linear_backward_weights_fast(m->kernels, gW, &rows, gb, &m->nz[l], dense, dout,
                                             1.0f, m->T, &m->cols, NULL);
                if (s)
                    optimizer_update_layer_fast(m->kernels, L, l, s, m->params, m->grads, m->m,
                                                m->v);
            }
        }
        float *tmp = dout;
        dout = dinp;
        dinp = tmp;
    }
}

/* The L2 coefficient of the scikit-learn convention for a batch of total
 * weight wsum, whose penalty of the weights before the step is added to the
 * reported loss; 0 in PyTorch's convention. */
static double reported_l2(const mlp_optimizer *opt, double wsum) {
    if (opt->convention != MLP_SKLEARN || opt->weight_decay == 0.0f || !(wsum > 0.0)) return 0.0;
    return (double)opt->weight_decay / wsum;
}

static double reported_scale(const mlp_model *m, const mlp_optimizer *opt) {
    return mlp_reported_loss_scale(opt->convention, m->loss, m->L.sizes[m->L.n_layers]);
}

/* How much smaller than the column sort (per input entry) the work of the
 * layers above the first (multiply-adds per row) must be to run beside it. */
#define SIDE_BY_SIDE_WORK 32

/* The first layer's forward pass, then everything down to the second
 * layer's backward pass (with its step); returns the batch's loss sum.
 * When the first layer's weight gradient will read its inputs by column
 * and the layers above are small, one thread sorts the inputs by column
 * (fast.h's nz_sort_columns) while another runs the layers above alone: the
 * sort gains little from a second thread, and neither do those small
 * layers, so doing them side by side saves the shorter of the two. The
 * results are the same either way. */
static double step_above_first(mlp_model *m, const mlp_data *data, const int64_t *idx,
                               const batch_targets *t, int64_t B, double w, const mlp_step *s,
                               int64_t *correct) {
    const mlp_layout *L = &m->L;
    const int n = L->n_layers;
    const int with_step = !mlp_step_is_plain_sgd(s) && takes_fused_step(m, s, 0, B);
    /* a fused step's weight pass over more rows of dout than the L1 cache
     * holds reads them by pairs of columns (fast.h, nz_cols) */
    forward_layers(m, data, idx, 0, t, B, correct, 1, 0, 1,
                   with_step && B >= m->cols.pair_rows);
    /* the layers above must not sort by column themselves (narrow ones
     * never do), and the first layer's pass must sort the whole batch */
    int64_t above = 0; /* multiply-adds a row above the first layer */
    int narrow = 1;
    for (int l = 1; l < n; l++) {
        above += L->sizes[l] * L->sizes[l + 1];
        narrow = narrow && L->sizes[l + 1] < FAST_NARROW;
    }
    const int64_t rows = nz_columns_rows(&m->nz[0], m->x_dense, L->sizes[1], with_step);
    const double entries = nz_density(&m->nz[0]) * (double)L->sizes[0]; /* a row's */
    int side_by_side = narrow && rows >= B && (double)above <= SIDE_BY_SIDE_WORK * entries;
#ifdef _OPENMP
    side_by_side = side_by_side && omp_get_max_threads() > 1 && !mlp_forked;
#else
    side_by_side = 0;
#endif
    if (!side_by_side) {
        const double loss_sum = forward_layers(m, data, idx, 0, t, B, correct, 1, 1, n, 0);
        backward_layers(m, t, B, w, s, n - 1, 1);
        return loss_sum;
    }
    double loss_sum = 0.0;
#pragma omp parallel num_threads(2)
#pragma omp single
    {
#pragma omp task
        nz_sort_columns(&m->cols, &m->nz[0], with_step);
        loss_sum = forward_layers(m, data, idx, 0, t, B, correct, 1, 1, n, 0);
        backward_layers(m, t, B, w, s, n - 1, 1);
#pragma omp taskwait
    }
    return loss_sum;
}

/* One optimizer step on rows idx[0 .. B); returns the batch's loss (the
 * weighted mean, with the reported penalty) and its weight in *wsum. */
static double train_step(mlp_model *m, const mlp_data *data, const int64_t *idx, int64_t B,
                         const mlp_optimizer *opt, double *wsum, int64_t *correct) {
    const batch_targets t = gather_targets(m, data, idx, 0, B);
    const double w = batch_weight(t.weights, B);
    const mlp_step s = mlp_step_init(opt, m->steps + 1, w);
    m->cols.sorted = NULL; /* the first layer uses only a sort of this step's rows */
    const double l2 = reported_l2(opt, w);
    double penalty = 0.0;
    /* the penalty's squares: the layers whose step is fused find theirs
     * during it (each weight is then read once a step), the others here */
    m->want_squares = l2 > 0.0 && !m->plain;
    m->step_squares = 0.0;
    if (l2 > 0.0 && m->plain) penalty = l2_penalty(&m->L, m->params, l2);
    for (int l = 0; m->want_squares && l < m->L.n_layers; l++) {
        const wlayout wl = layout_of(m, l);
        if (!takes_fused_step(m, &s, l, B))
            m->step_squares += wl_squares(m->kernels, weights_of(m, l), &wl);
    }
    double loss_sum;
    if (m->plain || m->L.n_layers < 2) {
        loss_sum = forward(m, data, idx, 0, &t, B, correct, 1);
        backward(m, &t, B, w, &s); /* the fast paths take the step there */
    } else {
        loss_sum = step_above_first(m, data, idx, &t, B, w, &s, correct);
        backward_layers(m, &t, B, w, &s, 0, 0);
    }
    if (m->want_squares) penalty = 0.5 * l2 * m->step_squares;
    m->want_squares = 0;
    const double loss = (w > 0.0 ? loss_sum / w : 0.0) * reported_scale(m, opt) + penalty;
    m->steps++;
    if (m->plain) optimizer_update(&m->L, &s, m->params, m->grads, m->m, m->v);
    *wsum = w;
    return loss;
}

static mlp_status train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                              int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                              float *batch_losses, double *mean_loss, double *accuracy);

mlp_status mlp_train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                           int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                           float *batch_losses, double *mean_loss, double *accuracy) {
    mlp_clear_error();
    const int before = use_threads(m);
    return restore_threads(before, train_epoch(m, data, order, n_order, batch_size, opt,
                                               batch_losses, mean_loss, accuracy));
}

/* Whether the threads help. On a shared or busy machine a second thread
 * can make the steps slower than one thread alone (its core is busy with
 * other work, and every step waits for it). With the thread count left to
 * OpenMP (mlp_set_threads 0), training runs in rounds of ROUND_STEPS steps,
 * each timed. All threads run while one thread is not clearly faster per
 * row lately (ONE_THREAD_MARGIN), with one thread every PROBE_EVERY-th
 * round, so that a change is noticed. A few slow rounds on a shared
 * machine can make one thread look faster for a while, so after a switch
 * to one thread all of them are tried again soon, then less and less often
 * (PROBE_SOON, doubling up to PROBE_EVERY) while one thread stays faster.
 * The results do not depend on the thread count (fast.h): this changes
 * only the time. Returns the count for the next round. */
#define ROUND_STEPS 16
#define PROBE_EVERY 32
#define PROBE_SOON 4
#define ONE_THREAD_MARGIN 0.8

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int pick_threads(mlp_model *m, int all, int used, double seconds, int64_t rows) {
    if (used > 0 && rows > 0) { /* the round just timed */
        double *s = &m->sec_per_row[used == all];
        const double t = seconds / (double)rows;
        *s = *s > 0.0 ? 0.7 * *s + 0.3 * t : t;
        m->rounds++;
    }
    const double one = m->sec_per_row[0], many = m->sec_per_row[1];
    if (many == 0.0) return all; /* not timed yet: all threads first, then one */
    if (one == 0.0) return 1;
    if (!(one < ONE_THREAD_MARGIN * many)) {
        m->probe_gap = 0;
        return m->rounds % PROBE_EVERY == PROBE_EVERY - 1 ? 1 : all;
    }
    if (m->probe_gap == 0) m->probe_gap = PROBE_SOON, m->since_probe = 0;
    if (++m->since_probe < m->probe_gap) return 1;
    m->since_probe = 0;
    m->probe_gap = 2 * m->probe_gap < PROBE_EVERY ? 2 * m->probe_gap : PROBE_EVERY;
    return all;
}

/* Epochs of at least PANEL_STEPS steps on more than one thread keep the
 * first layer's W, and the state its optimizer uses, by panels (fast.h's
 * wlayout): copying them in and out costs about as much as two steps'
 * updates. Only where every step of the epoch takes one of the fused
 * weight-gradient passes of backward_layers (they take any layout; the
 * gradient buffer does not), and the copies take at most PANEL_BYTES.
 * MLP_PANELS=0 never keeps them so, 1 wherever those passes allow (the
 * tests compare the two: the same results bit for bit). Without memory for
 * the copies the epoch runs row by row. Returns whether it keeps them. */
#define PANEL_STEPS 8
#define PANEL_BYTES ((size_t)256 << 20)

/* The first layer's W, and the moments opt's rule writes, from row by row
 * into the panels (in) or back (the layout wl) */
static void copy_panels(mlp_model *m, const mlp_optimizer *opt, const wlayout *wl, int in) {
    const int uses_m = opt->kind == MLP_ADAM || opt->convention == MLP_SKLEARN ||
                       opt->momentum != 0.0f;
    float *rows[3] = {m->params, uses_m ? m->m : NULL, opt->kind == MLP_ADAM ? m->v : NULL};
    for (int i = 0; i < 3; i++) {
        if (!rows[i]) continue;
        float *flat = rows[i] + m->L.w_off[0], *panels = m->panels + i * wl->D * wl->H;
        if (in)
            wl_to_panels(panels, flat, wl);
        else
            wl_from_panels(flat, panels, wl);
    }
}

static int enter_panels(mlp_model *m, const mlp_optimizer *opt, int64_t steps, int64_t B,
                        int threads) {
    const char *want = getenv("MLP_PANELS");
    const int always = want && strcmp(want, "1") == 0;
    const int64_t D = m->L.sizes[0], H = m->L.sizes[1];
    if ((want && strcmp(want, "0") == 0) || m->plain || m->L.n_layers < 2 || H <= FAST_PANEL ||
        B * D >= INT32_MAX)
        return 0;
    if (!always && (threads < 2 || steps < PANEL_STEPS)) return 0;
    const size_t each = sizeof(float) * (size_t)D * (size_t)H;
    if (each > PANEL_BYTES / 3) return 0;
    if (!m->panels && !(m->panels = mlp_alloc(3 * each))) return 0;
    m->wl0 = (wlayout){D, H, FAST_PANEL};
    copy_panels(m, opt, &m->wl0, 1);
    return 1;
}

static void leave_panels(mlp_model *m, const mlp_optimizer *opt) {
    copy_panels(m, opt, &m->wl0, 0);
    m->wl0.panel = 0;
}

static mlp_status train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                              int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                              float *batch_losses, double *mean_loss, double *accuracy) {
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    mlp_status st = mlp_check_train_args(&m->L, data->n, data->d, order, n_order, batch_size, opt);
    if (st == MLP_OK) st = check_targets(m, data);
    if (st != MLP_OK) return st;
    const int64_t n = n_order, B_max = batch_size < n ? batch_size : n;
    if ((st = reserve_rows(m, B_max)) != MLP_OK) return st;

    double loss_sum = 0.0, weight_sum = 0.0;
    int64_t correct = 0, done = 0;
#ifdef _OPENMP
    const int all = omp_get_max_threads(), tune = m->threads == 0 && all > 1 && !m->plain;
#else
    const int all = 1, tune = 0;
#endif
    int used = 0;
    double round_start = 0.0;
    int64_t round_rows = 0;
    m->lists = m->plain ? NULL : lists_of(m, data);
    const int panels = enter_panels(m, opt, (n + batch_size - 1) / batch_size, B_max, all);
    for (int64_t start = 0, b = 0; start < n; start += batch_size, b++) {
        if (tune && b % ROUND_STEPS == 0) {
            const double t = now();
            used = pick_threads(m, all, used, t - round_start, round_rows);
#ifdef _OPENMP
            omp_set_num_threads(used);
#endif
            round_start = t;
            round_rows = 0;
        }
        if (atomic_exchange(&m->stop, 0)) {
            st = mlp_fail(MLP_STOPPED, "stopped at the caller's request after %lld rows",
                          (long long)done);
            break;
        }
        const int64_t B = n - start < batch_size ? n - start : batch_size;
        double w = 0.0;
        const double loss = train_step(m, data, order + start, B, opt, &w, &correct);
        loss_sum += loss * w;
        weight_sum += w;
        done += B;
        round_rows += B;
        if (batch_losses) batch_losses[b] = (float)loss;
    }
    m->lists = NULL;
    if (panels) leave_panels(m, opt);
    if (mean_loss) *mean_loss = weight_sum > 0.0 ? loss_sum / weight_sum : 0.0;
    if (accuracy) *accuracy = done > 0 ? (double)correct / (double)done : 0.0;
    return st;
}

/* Rows a chunk of forward_all holds at least. */
#define PREDICT_ROWS 1024

/* Runs forward() over the data set in chunks; copies outputs or last-layer
 * values out when `out` is given; sums the weighted loss, the weight and
 * the hits when the data has targets. When grad is given, also adds each
 * chunk's gradient of the loss summed over rows, each row's weighted by
 * its weight / total_weight. */
static mlp_status forward_all(mlp_model *m, const mlp_data *data, float *out, int want_logits,
                              int32_t *classes, double *loss_sum, double *weight, int64_t *correct, float *grad,
                              double total_weight) {
    const mlp_layout *L = &m->L;
    if (data->d != L->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)data->d, (long long)L->sizes[0]);
    const int64_t C = L->sizes[L->n_layers];
    /* chunks of at least PREDICT_ROWS rows (or the training batch, when
     * larger): small chunks spend their time starting parallel loops */
    const int64_t want = data->n < PREDICT_ROWS ? data->n : PREDICT_ROWS;
    const int64_t chunk = m->cap > want ? m->cap : want;
    mlp_status st = reserve_rows(m, chunk);
    if (st != MLP_OK) return st;
    const int has_targets = loss_sum != NULL;
    for (int64_t start = 0; start < data->n; start += chunk) {
        const int64_t B = data->n - start < chunk ? data->n - start : chunk;
        const batch_targets t = gather_targets(m, data, NULL, start, B);
        const double loss = forward(m, data, NULL, start, has_targets ? &t : NULL, B, correct,
                                    out && !want_logits);
        if (loss_sum) *loss_sum += loss;
        if (weight) *weight += batch_weight(t.weights, B);
        if (out) {
            const float *src = want_logits ? m->acts[L->n_layers - 1] : m->out;
            memcpy(out + start * C, src, sizeof(float) * (size_t)(B * C));
        }
        if (classes) {
            const float *logits = m->acts[L->n_layers - 1];
            for (int64_t i = 0; i < B; i++)
                classes[start + i] = (int32_t)mlp_argmax(logits + i * C, C);
        }
        if (grad) {
            backward(m, &t, B, total_weight, NULL);
            for (int64_t i = 0; i < L->n_params; i++) grad[i] += m->grads[i];
        }
    }
    return MLP_OK;
}

mlp_status mlp_predict(mlp_model *m, const mlp_data *data, float *out, int want_logits) {
    mlp_clear_error();
    if (!m || !data || !out) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const int before = use_threads(m);
    return restore_threads(before,
                           forward_all(m, data, out, want_logits, NULL, NULL, NULL, NULL, NULL,
                                       0.0));
}

mlp_status mlp_predict_classes(mlp_model *m, const mlp_data *data, int32_t *out) {
    mlp_clear_error();
    if (!m || !data || !out) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const int before = use_threads(m);
    return restore_threads(before,
                           forward_all(m, data, NULL, 0, out, NULL, NULL, NULL, NULL, 0.0));
}

mlp_status mlp_evaluate(mlp_model *m, const mlp_data *data, double *mean_loss, double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    mlp_status st = check_targets(m, data);
    if (st != MLP_OK) return st;
    double loss = 0.0, weight = 0.0;
    int64_t correct = 0;
    const int before = use_threads(m);
    st = restore_threads(before, forward_all(m, data, NULL, 0, NULL, &loss, &weight, &correct, NULL,
                                             0.0));
    if (st != MLP_OK) return st;
    if (mean_loss) *mean_loss = weight > 0.0 ? loss / weight : 0.0;
    if (accuracy) *accuracy = (double)correct / (double)data->n;
    return MLP_OK;
}

mlp_status mlp_loss_and_grad(mlp_model *m, const mlp_data *data, const mlp_optimizer *opt,
                             double *loss, float *grad) {
    mlp_clear_error();
    if (!m || !data || !loss) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    mlp_status st = mlp_check_optimizer(opt);
    if (st == MLP_OK) st = check_targets(m, data);
    if (st != MLP_OK) return st;
    const double total = batch_weight(data->t.sample_weight, data->n);
    if (grad) memset(grad, 0, sizeof(float) * (size_t)m->L.n_params);
    double loss_sum = 0.0, weight = 0.0;
    int64_t correct = 0;
    const int before = use_threads(m);
    st = restore_threads(before, forward_all(m, data, NULL, 0, NULL, &loss_sum, &weight, &correct,
                                             grad, total));
    if (st != MLP_OK) return st;
    const mlp_step s = mlp_step_init(opt, 1, total);
    *loss = (total > 0.0 ? loss_sum / total : 0.0) * reported_scale(m, opt) +
            mlp_l2_terms(&m->L, &s, m->params, grad);
    return MLP_OK;
}
