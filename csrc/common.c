/* common.c - see common.h. */
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

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

mlp_status mlp_check_data_args(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                               int64_t d) {
    if (!data) return mlp_fail(MLP_ERR_INVALID, "data is NULL");
    *data = NULL;
    if (!X || n < 1 || d < 1) return mlp_fail(MLP_ERR_INVALID, "empty data set");
    if (dtype != MLP_UINT8 && dtype != MLP_FLOAT32)
        return mlp_fail(MLP_ERR_INVALID, "unknown dtype %d", (int)dtype);
    return MLP_OK;
}

void mlp_label_range(const int32_t *y, int64_t n, int32_t *lo, int32_t *hi) {
    *lo = *hi = n > 0 && y ? y[0] : 0;
    for (int64_t i = 1; y && i < n; i++) {
        if (y[i] < *lo) *lo = y[i];
        if (y[i] > *hi) *hi = y[i];
    }
}

mlp_status mlp_check_labels(int has_labels, int32_t lo, int32_t hi, int64_t n_classes) {
    if (!has_labels) return mlp_fail(MLP_ERR_INVALID, "the data set has no labels");
    if (lo < 0 || hi >= n_classes)
        return mlp_fail(MLP_ERR_INVALID, "labels span [%d, %d], outside [0, %lld)", (int)lo,
                        (int)hi, (long long)n_classes);
    return MLP_OK;
}

mlp_status mlp_check_train_args(const mlp_layout *layout, int64_t n, int64_t d,
                                const int64_t *order, int64_t n_order,
                                int64_t batch_size, float lr, float momentum,
                                float weight_decay) {
    if (d != layout->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)d, (long long)layout->sizes[0]);
    if (batch_size < 1)
        return mlp_fail(MLP_ERR_INVALID, "batch_size must be >= 1, got %lld", (long long)batch_size);
    if (!(lr > 0.0f) || !isfinite(lr))
        return mlp_fail(MLP_ERR_INVALID, "lr must be a positive finite number");
    if (!(momentum >= 0.0f) || !isfinite(momentum))
        return mlp_fail(MLP_ERR_INVALID, "momentum must be >= 0");
    if (!(weight_decay >= 0.0f) || !isfinite(weight_decay))
        return mlp_fail(MLP_ERR_INVALID, "weight_decay must be >= 0");
    if (!order || n_order < 1) return mlp_fail(MLP_ERR_INVALID, "order is empty");
    for (int64_t i = 0; i < n_order; i++)
        if (order[i] < 0 || order[i] >= n)
            return mlp_fail(MLP_ERR_INVALID, "order[%lld] = %lld is outside [0, %lld)",
                            (long long)i, (long long)order[i], (long long)n);
    return MLP_OK;
}
