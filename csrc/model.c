/*
 * model.c - the C core: mlp.h implemented with the ops of ops.c, the linear
 * ones through their fast paths in fast.c (or the plain ones of ops.c after
 * mlp_use_plain_ops).
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fast.h"
#include "mlp.h"
#include "ops.h"

struct mlp_data {
    const void *X; /* (n, d), read in place */
    mlp_dtype dtype;
    const int32_t *y; /* (n) or NULL */
    int32_t y_lo, y_hi; /* label range, checked against the class count */
    int64_t n, d;
};

struct mlp_model {
    mlp_layout L;
    float *params, *grads, *velocity; /* n_params each, same layout */
    /* Workspace for up to `cap` rows: the gathered input batch, every layer's
     * output (after ReLU for hidden layers, logits for the last), the softmax
     * probabilities, two gradient buffers used in turn, the batch labels. */
    int64_t cap;
    float *x, **acts, *probs, *dbuf[2];
    int32_t *ybuf;
    int64_t *rowbuf; /* row numbers of a batch taken in order */
    nz_rows *nz;  /* the fast path's view of each layer's input rows */
    nz_cols cols; /* the same by column, for the weight gradients */
    float *T;     /* scratch for the transposed narrow layers */
    int plain;    /* run the plain ops of ops.c instead of the fast paths */
    const mlp_kernels *kernels; /* the fast paths' inner loops for this CPU */
};

const char *mlp_backend_name(void) { return "cpu"; }

mlp_status mlp_device_check(void) {
    mlp_clear_error();
    return MLP_OK;
}

static void free_workspace(mlp_model *m) {
    if (m->nz)
        for (int l = 0; l < m->L.n_layers; l++) {
            free(m->nz[l].idx);
            free(m->nz[l].val);
            free(m->nz[l].nnz);
            free(m->nz[l].blk);
        }
    free(m->nz);
    free(m->rowbuf);
    free(m->cols.start);
    free(m->cols.next);
    free(m->cols.row);
    free(m->cols.val);
    memset(&m->cols, 0, sizeof m->cols);
    m->nz = NULL;
    m->rowbuf = NULL;
    free(m->x);
    if (m->acts)
        for (int l = 0; l < m->L.n_layers; l++) free(m->acts[l]);
    free(m->acts);
    free(m->probs);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->ybuf);
    m->x = m->probs = m->dbuf[0] = m->dbuf[1] = NULL;
    m->acts = NULL;
    m->ybuf = NULL;
    m->cap = 0;
}

static float *alloc_floats(int64_t rows, int64_t cols) {
    return malloc(sizeof(float) * (size_t)rows * (size_t)cols);
}

/* Grows the workspace to hold `rows` rows; never shrinks it. */
static mlp_status reserve_rows(mlp_model *m, int64_t rows) {
    if (rows <= m->cap) return MLP_OK;
    free_workspace(m);
    const int64_t *s = m->L.sizes;
    const int n_layers = m->L.n_layers;
    m->x = alloc_floats(rows, s[0]);
    m->acts = calloc((size_t)n_layers, sizeof(float *));
    m->probs = alloc_floats(rows, s[n_layers]);
    m->dbuf[0] = alloc_floats(rows, m->L.max_width);
    m->dbuf[1] = alloc_floats(rows, m->L.max_width);
    m->ybuf = malloc(sizeof(int32_t) * (size_t)rows);
    m->nz = calloc((size_t)n_layers, sizeof(nz_rows));
    m->rowbuf = malloc(sizeof(int64_t) * (size_t)rows);
    int ok = m->x && m->acts && m->probs && m->dbuf[0] && m->dbuf[1] && m->ybuf && m->nz &&
             m->rowbuf;
    for (int l = 0; ok && l < n_layers; l++) ok = (m->acts[l] = alloc_floats(rows, s[l + 1])) != NULL;
    int64_t widest_in = 1;
    for (int l = 0; l < n_layers; l++) widest_in = s[l] > widest_in ? s[l] : widest_in;
    m->cols.start = malloc(sizeof(int32_t) * (size_t)(widest_in + 1));
    m->cols.next = malloc(sizeof(int32_t) * (size_t)widest_in);
    m->cols.row = malloc(sizeof(int32_t) * (size_t)rows * (size_t)widest_in);
    m->cols.val = alloc_floats(rows, widest_in);
    ok = ok && m->cols.start && m->cols.next && m->cols.row && m->cols.val;
    for (int l = 0; ok && l < n_layers; l++) {
        m->nz[l].idx = malloc(sizeof(int32_t) * (size_t)rows * (size_t)s[l]);
        m->nz[l].val = alloc_floats(rows, s[l]);
        m->nz[l].nnz = malloc(sizeof(int64_t) * (size_t)rows);
        m->nz[l].blk = malloc(sizeof(int32_t) * (size_t)rows * (size_t)(FAST_BLOCKS(s[l]) + 1));
        ok = m->nz[l].idx && m->nz[l].val && m->nz[l].nnz && m->nz[l].blk;
    }
    if (!ok) {
        free_workspace(m);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory for a workspace of %lld rows",
                        (long long)rows);
    }
    m->cap = rows;
    return MLP_OK;
}

/* The fast paths' nonzero lists index a layer's inputs with int32. */
static int too_wide_for_fast_paths(const mlp_layout *L) {
    for (int l = 0; l < L->n_layers; l++)
        if (L->sizes[l] > INT32_MAX) return 1;
    return 0;
}

mlp_status mlp_create(mlp_model **model, int n_sizes, const int64_t *sizes) {
    mlp_clear_error();
    if (!model) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    *model = NULL;
    mlp_model *m = calloc(1, sizeof *m);
    if (!m) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    mlp_status st = mlp_layout_init(&m->L, n_sizes, sizes);
    if (st != MLP_OK) {
        free(m);
        return st;
    }
    const size_t bytes = sizeof(float) * (size_t)m->L.n_params;
    m->params = calloc(1, bytes);
    m->grads = calloc(1, bytes);
    m->velocity = calloc(1, bytes);
    int64_t narrow = 1;
    for (int l = 0; l < m->L.n_layers; l++) {
        if (m->L.sizes[l + 1] < FAST_NARROW && m->L.sizes[l] * m->L.sizes[l + 1] > narrow)
            narrow = m->L.sizes[l] * m->L.sizes[l + 1];
    }
    m->T = malloc(sizeof(float) * (size_t)narrow);
    m->kernels = mlp_pick_kernels();
    m->plain = too_wide_for_fast_paths(&m->L);
    if (!m->params || !m->grads || !m->velocity || !m->T) {
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
    free(m->velocity);
    free(m->T);
    mlp_layout_free(&m->L);
    free(m);
}

int64_t mlp_num_params(const mlp_model *m) { return m ? m->L.n_params : 0; }

const char *mlp_kernel_set(const mlp_model *m) {
    return !m ? "" : m->plain ? "plain" : m->kernels->name;
}

mlp_status mlp_use_plain_ops(mlp_model *m, int on) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    m->plain = on || too_wide_for_fast_paths(&m->L);
    return MLP_OK;
}

mlp_status mlp_set_params(mlp_model *m, const float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    memcpy(m->params, params, sizeof(float) * (size_t)m->L.n_params);
    memset(m->velocity, 0, sizeof(float) * (size_t)m->L.n_params);
    return MLP_OK;
}

mlp_status mlp_get_params(mlp_model *m, float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    memcpy(params, m->params, sizeof(float) * (size_t)m->L.n_params);
    return MLP_OK;
}

mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype,
                           const int32_t *y, int64_t n, int64_t d) {
    mlp_clear_error();
    mlp_status st = mlp_check_data_args(data, X, dtype, n, d);
    if (st != MLP_OK) return st;
    mlp_data *p = malloc(sizeof *p);
    if (!p) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    p->X = X;
    p->dtype = dtype;
    p->y = y;
    mlp_label_range(y, n, &p->y_lo, &p->y_hi);
    p->n = n;
    p->d = d;
    *data = p;
    return MLP_OK;
}

void mlp_data_free(mlp_data *data) { free(data); }

static mlp_status check_labels(const mlp_model *m, const mlp_data *data) {
    return mlp_check_labels(data->y != NULL, data->y_lo, data->y_hi, m->L.sizes[m->L.n_layers]);
}

/* Forward pass of B rows of the data set (rows idx, or start.. when idx is
 * NULL): fills acts and probs; returns the summed loss when y is given. */
static double forward(mlp_model *m, const mlp_data *data, const int64_t *idx, int64_t start,
                      const int32_t *y, int64_t B, int64_t *correct) {
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    if (m->plain) {
        const float *inp = m->x;
        if (!idx) {
            for (int64_t i = 0; i < B; i++) m->rowbuf[i] = start + i;
            idx = m->rowbuf;
        }
        gather_batch(m->x, data->X, data->dtype, data->d, idx, B);
        for (int l = 0; l <= last; l++) {
            const int64_t in = L->sizes[l], out = L->sizes[l + 1];
            linear_forward(m->acts[l], inp, m->params + L->w_off[l], m->params + L->b_off[l], B,
                           in, out);
            if (l < last) relu_forward(m->acts[l], m->acts[l], B * out);
            inp = m->acts[l];
        }
    } else {
        nz_gather(&m->nz[0], data->X, data->dtype, data->d, idx, start, B);
        /* dense data (not pixels): the rows as floats too, for the dense paths */
        const float *x = NULL;
        if (nz_density(&m->nz[0]) > FAST_DENSE || L->sizes[1] < FAST_NARROW) {
            if (!idx) {
                for (int64_t i = 0; i < B; i++) m->rowbuf[i] = start + i;
                idx = m->rowbuf;
            }
            gather_batch(m->x, data->X, data->dtype, data->d, idx, B);
            x = m->x;
        }
        for (int l = 0; l <= last; l++) {
            const int64_t out = L->sizes[l + 1];
            linear_forward_fast(m->kernels, m->acts[l], &m->nz[l], l == 0 ? x : m->acts[l - 1],
                                m->params + L->w_off[l], m->params + L->b_off[l], out, l < last,
                                m->T);
            /* the next layer reads nonzero lists unless it is narrow */
            if (l < last && L->sizes[l + 2] >= FAST_NARROW)
                nz_from_dense(&m->nz[l + 1], m->acts[l], B, out);
            else if (l < last)
                m->nz[l + 1].B = B, m->nz[l + 1].D = out;
        }
    }
    return softmax_crossentropy_forward(m->probs, m->acts[last], y, B, L->sizes[last + 1],
                                        correct);
}

/* Backward pass after forward() and the SGD step: with the plain ops,
 * gradients then sgd_update; with the fast paths, each layer's update fused
 * into its weight gradient when there is no momentum and no weight decay. */
static void backward_and_step(mlp_model *m, const int32_t *y, int64_t B, float lr, float momentum,
                              float weight_decay) {
    const mlp_layout *L = &m->L;
    float *dout = m->dbuf[0], *dinp = m->dbuf[1];
    const int fused = !m->plain && momentum == 0.0f && weight_decay == 0.0f;
    softmax_crossentropy_backward(dout, m->probs, y, B, L->sizes[L->n_layers]);
    for (int l = L->n_layers - 1; l >= 0; l--) {
        const int64_t in = L->sizes[l], out = L->sizes[l + 1];
        float *W = m->params + L->w_off[l], *b = m->params + L->b_off[l];
        float *gW = m->grads + L->w_off[l], *gb = m->grads + L->b_off[l];
        if (m->plain) {
            const float *inp = l == 0 ? m->x : m->acts[l - 1];
            linear_backward(l == 0 ? NULL : dinp, gW, gb, dout, inp, W, B, in, out);
            if (l > 0) relu_backward(dinp, m->acts[l - 1], dinp, B * in);
        } else {
            /* the input gradient first: it needs W before the update */
            if (l > 0)
                linear_backward_input_fast(m->kernels, dinp, dout, W, m->acts[l - 1], B, in, out,
                                           m->T);
            const float *dense = l == 0 ? NULL : m->acts[l - 1];
            if (fused) {
                linear_backward_weights_fast(m->kernels, W, b, &m->nz[l], dense, dout, out, -lr,
                                             m->T, &m->cols);
            } else {
                memset(gW, 0, sizeof(float) * (size_t)((in + 1) * out)); /* W and b */
                linear_backward_weights_fast(m->kernels, gW, gb, &m->nz[l], dense, dout, out, 1.0f,
                                             m->T, &m->cols);
            }
        }
        float *t = dout;
        dout = dinp;
        dinp = t;
    }
    if (!fused) sgd_update(m->params, m->grads, m->velocity, L->n_params, lr, momentum, weight_decay);
}

mlp_status mlp_train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                           int64_t n_order, int64_t batch_size, float lr, float momentum,
                           float weight_decay, float *batch_losses, double *mean_loss,
                           double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    mlp_status st = mlp_check_train_args(&m->L, data->n, data->d, order, n_order, batch_size,
                                         lr, momentum, weight_decay);
    if (st == MLP_OK) st = check_labels(m, data);
    if (st != MLP_OK) return st;
    const int64_t n = n_order, B_max = batch_size < n ? batch_size : n;
    if ((st = reserve_rows(m, B_max)) != MLP_OK) return st;

    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int64_t start = 0, b = 0; start < n; start += batch_size, b++) {
        const int64_t B = n - start < batch_size ? n - start : batch_size;
        const int64_t *idx = order + start;
        for (int64_t i = 0; i < B; i++) m->ybuf[i] = data->y[idx[i]];
        const double loss = forward(m, data, idx, 0, m->ybuf, B, &correct);
        backward_and_step(m, m->ybuf, B, lr, momentum, weight_decay);
        loss_sum += loss;
        if (batch_losses) batch_losses[b] = (float)(loss / (double)B);
    }
    if (mean_loss) *mean_loss = loss_sum / (double)n;
    if (accuracy) *accuracy = (double)correct / (double)n;
    return MLP_OK;
}

/* Runs forward() over the data set in chunks; copies probs or logits out
 * when `out` is given, sums loss and hits when the data has labels. */
static mlp_status forward_all(mlp_model *m, const mlp_data *data, float *out, int want_logits,
                              double *loss_sum, int64_t *correct) {
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const mlp_layout *L = &m->L;
    if (data->d != L->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)data->d, (long long)L->sizes[0]);
    const int64_t C = L->sizes[L->n_layers];
    const int64_t chunk = m->cap > 0 ? m->cap : (data->n < 1024 ? data->n : 1024);
    mlp_status st = reserve_rows(m, chunk);
    if (st != MLP_OK) return st;
    for (int64_t start = 0; start < data->n; start += chunk) {
        const int64_t B = data->n - start < chunk ? data->n - start : chunk;
        const int32_t *y = data->y ? data->y + start : NULL;
        const double loss = forward(m, data, NULL, start, y, B, correct);
        if (loss_sum) *loss_sum += loss;
        if (out) {
            const float *src = want_logits ? m->acts[L->n_layers - 1] : m->probs;
            memcpy(out + start * C, src, sizeof(float) * (size_t)(B * C));
        }
    }
    return MLP_OK;
}

mlp_status mlp_predict(mlp_model *m, const mlp_data *data, float *out, int want_logits) {
    mlp_clear_error();
    if (!out) return mlp_fail(MLP_ERR_INVALID, "out is NULL");
    return forward_all(m, data, out, want_logits, NULL, NULL);
}

mlp_status mlp_evaluate(mlp_model *m, const mlp_data *data, double *mean_loss, double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    mlp_status st = check_labels(m, data);
    if (st != MLP_OK) return st;
    double loss = 0.0;
    int64_t correct = 0;
    if ((st = forward_all(m, data, NULL, 0, &loss, &correct)) != MLP_OK) return st;
    if (mean_loss) *mean_loss = loss / (double)data->n;
    if (accuracy) *accuracy = (double)correct / (double)data->n;
    return MLP_OK;
}
