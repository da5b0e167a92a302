/*
 * common.h - host-side helpers shared by the C and CUDA cores: the error
 * message of the calling thread, the parameter layout, argument checks.
 */
#ifndef MLP_COMMON_H
#define MLP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mlp.h"
#include "pointwise.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Set in a child process forked after this library was loaded: the C core
 * then runs on one thread (results do not depend on the thread count). */
extern volatile int mlp_forked;

/* Registers the fork handler that sets mlp_forked (once; any thread). */
void mlp_watch_forks(void);

/* Host buffers that the loops read a vector register at a time: on a
 * 64-byte boundary, a cache line's. malloc's 16 bytes left the rows of W,
 * the hidden layer and its gradient on or across cache-line boundaries by
 * where the heap happened to be (about 20% of an epoch on the development
 * machine: benchmarks/RESULTS.md). Freed with free(); NULL when memory is
 * short or the size overflows. */
#define MLP_ALIGN 64
void *mlp_alloc(size_t bytes);
void *mlp_alloc_array(size_t count, size_t size); /* count elements of size bytes */
void *mlp_alloc_zeroed(size_t count, size_t size);

/* Records a printf-style detail for mlp_last_error(); returns status. */
mlp_status mlp_fail(mlp_status status, const char *fmt, ...);
void mlp_clear_error(void);

/* Bytes of one element of X. */
static inline int64_t mlp_dtype_bytes(mlp_dtype dtype) { return dtype == MLP_UINT8 ? 1 : 4; }

/* Where each layer's W and b start in the flat parameter buffer. */
typedef struct mlp_layout {
    int n_layers;     /* n_sizes - 1 */
    int64_t *sizes;   /* n_layers + 1 entries: D, H1, ..., C */
    int64_t *w_off;   /* n_layers entries */
    int64_t *b_off;   /* n_layers entries */
    int64_t n_params;
    int64_t max_width; /* widest layer output (H or C) */
} mlp_layout;

mlp_status mlp_layout_init(mlp_layout *layout, int n_sizes, const int64_t *sizes);

/* The checks of mlp_create's config that every core makes alike. */
mlp_status mlp_check_config(const mlp_config *config);
void mlp_layout_free(mlp_layout *layout);

/* The arguments of mlp_data_create that every core checks alike (the
 * sample weights: finite, non-negative); sets *data to NULL first. */
mlp_status mlp_check_data_args(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                               int64_t d, const mlp_targets *targets);

/* What every core records of a data set's targets when it is bound. */
typedef struct mlp_target_info {
    int has_labels, has_values;
    int32_t y_lo, y_hi; /* label range, checked against the class count */
    int64_t n_outputs;
} mlp_target_info;

mlp_target_info mlp_target_info_of(const mlp_targets *targets, int64_t n);

/* A bound data set's targets against the model's loss and outputs. */
mlp_status mlp_check_targets(const mlp_target_info *info, mlp_loss loss, int64_t n_outputs);

/* The optimizer settings every core checks alike. */
mlp_status mlp_check_optimizer(const mlp_optimizer *opt);

/* The arguments of mlp_train_epoch that every core checks alike. */
mlp_status mlp_check_train_args(const mlp_layout *layout, int64_t n, int64_t d,
                                const int64_t *order, int64_t n_order, int64_t batch_size,
                                const mlp_optimizer *opt);

/* The L2 term of a full-batch loss and gradient (mlp_loss_and_grad), as
 * step s's optimizer would apply it: adds l2_weight * p to the gradient of
 * each weight and l2_bias * p to each bias (grad may be NULL), and returns
 * what the loss reports for it (0.5 * l2_weight * |W|^2 in scikit-learn's
 * convention, 0 in PyTorch's). */
double mlp_l2_terms(const mlp_layout *L, const mlp_step *s, const float *params, float *grad);

#ifdef __cplusplus
}
#endif

#endif /* MLP_COMMON_H */
