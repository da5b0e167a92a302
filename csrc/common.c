/* common.c - see common.h. */
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[512];

volatile int mlp_forked = 0;

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>

static void in_child(void) { mlp_forked = 1; }

static void watch(void) { pthread_atfork(NULL, NULL, in_child); }

void mlp_watch_forks(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watch);
}
#else
void mlp_watch_forks(void) {}
#endif

void *mlp_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
#if defined(_WIN32)
    return malloc(bytes); /* _aligned_malloc's memory would need _aligned_free */
#else
    void *p = NULL;
    return posix_memalign(&p, MLP_ALIGN, bytes) == 0 ? p : NULL;
#endif
}

void *mlp_alloc_array(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    return mlp_alloc(count * size);
}

void *mlp_alloc_zeroed(size_t count, size_t size) {
    void *p = mlp_alloc_array(count, size);
    if (p) memset(p, 0, count * size);
    return p;
}

const char *mlp_last_error(void) { return last_error; }

void mlp_clear_error(void) { last_error[0] = '\0'; }

mlp_status mlp_fail(mlp_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return status;
}

mlp_status mlp_layout_init(mlp_layout *layout, int n_sizes, const int64_t *sizes) {
    layout->sizes = layout->w_off = layout->b_off = NULL;
    if (n_sizes < 2 || !sizes)
        return mlp_fail(MLP_ERR_INVALID, "need at least 2 layer sizes, got %d", n_sizes);
    /* Keep every count far from int64 overflow, and every buffer addressable. */
    const int64_t limit = (int64_t)1 << 40;
    int64_t total = 0, widest = 0;
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] < 1 || sizes[i] > limit)
            return mlp_fail(MLP_ERR_INVALID, "layer size %d is %lld, outside [1, 2^40]",
                            i, (long long)sizes[i]);
    }
    for (int l = 0; l + 1 < n_sizes; l++) {
        if (sizes[l] > limit / sizes[l + 1])
            return mlp_fail(MLP_ERR_INVALID, "layer %d has too many weights", l + 1);
        total += sizes[l] * sizes[l + 1] + sizes[l + 1];
        if (total > limit) return mlp_fail(MLP_ERR_INVALID, "too many parameters");
        if (sizes[l + 1] > widest) widest = sizes[l + 1];
    }
    layout->n_layers = n_sizes - 1;
    layout->sizes = malloc(sizeof(int64_t) * (size_t)n_sizes);
    layout->w_off = malloc(sizeof(int64_t) * (size_t)layout->n_layers);
    layout->b_off = malloc(sizeof(int64_t) * (size_t)layout->n_layers);
    if (!layout->sizes || !layout->w_off || !layout->b_off) {
        mlp_layout_free(layout);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory for the layer table");
    }
    int64_t off = 0;
    for (int i = 0; i < n_sizes; i++) layout->sizes[i] = sizes[i];
    for (int l = 0; l < layout->n_layers; l++) {
        layout->w_off[l] = off;
        off += sizes[l] * sizes[l + 1];
        layout->b_off[l] = off;
        off += sizes[l + 1];
    }
    layout->n_params = off;
    layout->max_width = widest;
    return MLP_OK;
}

void mlp_layout_free(mlp_layout *layout) {
    free(layout->sizes);
    free(layout->w_off);
    free(layout->b_off);
    layout->sizes = layout->w_off = layout->b_off = NULL;
}

mlp_status mlp_check_config(const mlp_config *config) {
    if (!config) return mlp_fail(MLP_ERR_INVALID, "config is NULL");
    if ((unsigned)config->activation >= MLP_ACTIVATION_COUNT)
        return mlp_fail(MLP_ERR_INVALID, "unknown activation %d", (int)config->activation);
    if ((unsigned)config->loss >= MLP_LOSS_COUNT)
        return mlp_fail(MLP_ERR_INVALID, "unknown loss %d", (int)config->loss);
    if (!(config->input_scale > 0.0f) || !isfinite(config->input_scale))
        return mlp_fail(MLP_ERR_INVALID, "input_scale must be a positive finite number");
    if (config->loss == MLP_CROSS_ENTROPY && config->n_sizes >= 2 && config->sizes &&
        config->sizes[config->n_sizes - 1] < 2)
        return mlp_fail(MLP_ERR_INVALID, "cross-entropy needs at least 2 outputs");
    return MLP_OK;
}

mlp_status mlp_check_data_args(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                               int64_t d, const mlp_targets *t) {
    if (!data) return mlp_fail(MLP_ERR_INVALID, "data is NULL");
    *data = NULL;
    if (!X || n < 1 || d < 1) return mlp_fail(MLP_ERR_INVALID, "empty data set");
    if (dtype != MLP_UINT8 && dtype != MLP_FLOAT32)
        return mlp_fail(MLP_ERR_INVALID, "unknown dtype %d", (int)dtype);
    if (!t) return MLP_OK;
    if (t->values && t->n_outputs < 1)
        return mlp_fail(MLP_ERR_INVALID, "n_outputs must be >= 1 with target values");
    for (int64_t i = 0; t->sample_weight && i < n; i++)
        if (!(t->sample_weight[i] >= 0.0f) || !isfinite(t->sample_weight[i]))
            return mlp_fail(MLP_ERR_INVALID, "sample_weight[%lld] is not a finite number >= 0",
                            (long long)i);
    return MLP_OK;
}

mlp_target_info mlp_target_info_of(const mlp_targets *t, int64_t n) {
    mlp_target_info info = {0, 0, 0, 0, 0};
    if (!t) return info;
    info.has_labels = t->labels != NULL;
    info.has_values = t->values != NULL;
    info.n_outputs = t->values ? t->n_outputs : 0;
    if (t->labels && n > 0) {
        info.y_lo = info.y_hi = t->labels[0];
        for (int64_t i = 1; i < n; i++) {
            if (t->labels[i] < info.y_lo) info.y_lo = t->labels[i];
            if (t->labels[i] > info.y_hi) info.y_hi = t->labels[i];
        }
    }
    return info;
}

mlp_status mlp_check_targets(const mlp_target_info *info, mlp_loss loss, int64_t n_outputs) {
    if (loss == MLP_CROSS_ENTROPY) {
        if (!info->has_labels) return mlp_fail(MLP_ERR_INVALID, "the data set has no labels");
        if (info->y_lo < 0 || info->y_hi >= n_outputs)
            return mlp_fail(MLP_ERR_INVALID, "labels span [%d, %d], outside [0, %lld)",
                            (int)info->y_lo, (int)info->y_hi, (long long)n_outputs);
        return MLP_OK;
    }
    if (!info->has_values) return mlp_fail(MLP_ERR_INVALID, "the data set has no target values");
    if (info->n_outputs != n_outputs)
        return mlp_fail(MLP_ERR_INVALID, "the targets have %lld outputs, the model %lld",
                        (long long)info->n_outputs, (long long)n_outputs);
    return MLP_OK;
}

static int finite_in(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

mlp_status mlp_check_optimizer(const mlp_optimizer *o) {
    if (!o) return mlp_fail(MLP_ERR_INVALID, "optimizer is NULL");
    if (o->kind != MLP_SGD && o->kind != MLP_ADAM)
        return mlp_fail(MLP_ERR_INVALID, "unknown optimizer kind %d", (int)o->kind);
    if (o->convention != MLP_TORCH && o->convention != MLP_SKLEARN)
        return mlp_fail(MLP_ERR_INVALID, "unknown convention %d", (int)o->convention);
    if (!(o->lr > 0.0f) || !isfinite(o->lr))
        return mlp_fail(MLP_ERR_INVALID, "lr must be a positive finite number");
    if (!finite_in(o->momentum, 0.0f, INFINITY))
        return mlp_fail(MLP_ERR_INVALID, "momentum must be >= 0");
    if (!finite_in(o->weight_decay, 0.0f, INFINITY))
        return mlp_fail(MLP_ERR_INVALID, "weight_decay must be >= 0");
    if (o->kind == MLP_ADAM &&
        (!finite_in(o->beta1, 0.0f, 1.0f) || !finite_in(o->beta2, 0.0f, 1.0f) ||
         o->beta1 >= 1.0f || o->beta2 >= 1.0f))
        return mlp_fail(MLP_ERR_INVALID, "Adam's betas must be in [0, 1)");
    if (o->kind == MLP_ADAM && !(o->eps > 0.0f && isfinite(o->eps)))
        return mlp_fail(MLP_ERR_INVALID, "Adam's eps must be a positive finite number");
    return MLP_OK;
}

mlp_status mlp_check_train_args(const mlp_layout *layout, int64_t n, int64_t d,
                                const int64_t *order, int64_t n_order, int64_t batch_size,
                                const mlp_optimizer *opt) {
    if (d != layout->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)d, (long long)layout->sizes[0]);
    if (batch_size < 1)
        return mlp_fail(MLP_ERR_INVALID, "batch_size must be >= 1, got %lld", (long long)batch_size);
    mlp_status st = mlp_check_optimizer(opt);
    if (st != MLP_OK) return st;
    if (!order || n_order < 1) return mlp_fail(MLP_ERR_INVALID, "order is empty");
    for (int64_t i = 0; i < n_order; i++)
        if (order[i] < 0 || order[i] >= n)
            return mlp_fail(MLP_ERR_INVALID, "order[%lld] = %lld is outside [0, %lld)",
                            (long long)i, (long long)order[i], (long long)n);
    return MLP_OK;
}

double mlp_l2_terms(const mlp_layout *L, const mlp_step *s, const float *params, float *grad) {
    double squares = 0.0;
    for (int l = 0; l < L->n_layers; l++) {
        const int64_t w0 = L->w_off[l], b0 = L->b_off[l], b1 = b0 + L->sizes[l + 1];
        for (int64_t i = w0; i < b0; i++) {
            squares += (double)params[i] * params[i];
            if (grad) grad[i] += s->l2_weight * params[i];
        }
        for (int64_t i = b0; grad && i < b1; i++) grad[i] += s->l2_bias * params[i];
    }
    return s->sklearn ? 0.5 * (double)s->l2_weight * squares : 0.0;
}
