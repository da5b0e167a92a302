/*
 * mlp.h - the contract between Python and the compute cores.
 *
 * Two libraries implement every function declared here: the C core (csrc/)
 * and the CUDA core (cuda/). The Cython wrapper (mlp/_core.pxi) is written
 * once against this header and compiled against each library in turn, so
 * nothing outside this file may be assumed about either core.
 *
 * The network is a stack of fully connected layers (mlp_config below).
 * Parameters live in one flat float32 buffer, layer after layer:
 *
 *   W1 (D,H1), b1 (H1), W2 (H1,H2), b2 (H2), ..., W_last (Hk,C), b_last (C)
 *
 * each W row-major (fan_in, fan_out). Gradients and the optimizer state use
 * the same layout, so the optimizer is one loop and a checkpoint one copy.
 *
 * Rules every implementation keeps: no printing, no exit(), no abort();
 * every failure is a status code, with a human-readable detail available
 * from mlp_last_error() on the same thread.
 */
#ifndef MLP_H
#define MLP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLP_ABI_VERSION 4

typedef enum mlp_status {
    MLP_OK = 0,
    MLP_ERR_NOMEM = 1,     /* host or device allocation failed */
    MLP_ERR_INVALID = 2,   /* an argument is out of range */
    MLP_ERR_NO_DEVICE = 3, /* this core cannot run here (no GPU, old driver) */
    MLP_ERR_DEVICE = 4,    /* a device call failed at run time */
    MLP_STOPPED = 5        /* mlp_request_stop ended the epoch early */
} mlp_status;

typedef enum mlp_dtype {
    MLP_UINT8 = 0,  /* read as float(x) * input_scale */
    MLP_FLOAT32 = 1 /* read as x * input_scale */
} mlp_dtype;

/* The activation between layers (csrc/pointwise.h has the math). */
typedef enum mlp_activation {
    MLP_RELU = 0,
    MLP_TANH = 1,
    MLP_LOGISTIC = 2,
    MLP_IDENTITY = 3,
    MLP_GELU = 4 /* the exact form, x * Phi(x) */
} mlp_activation;
#define MLP_ACTIVATION_COUNT 5

/* The output and its loss. */
typedef enum mlp_loss {
    MLP_CROSS_ENTROPY = 0,        /* softmax over C classes; integer labels */
    MLP_SQUARED_ERROR = 1,        /* identity outputs; float targets (n, C) */
    MLP_BINARY_CROSS_ENTROPY = 2, /* a logistic unit per output; 0/1 targets (n, C) */
    MLP_POISSON = 3               /* exp outputs (log link); counts >= 0 (n, C) */
} mlp_loss;
#define MLP_LOSS_COUNT 4

/* The network, fixed at creation:
 *   sizes = {D, H1, ..., Hk, C}   (n_sizes = k + 2 >= 2)
 * fully connected layers with `activation` after each hidden one, and
 * `loss` on the C outputs. Every input x is read as x * input_scale (1/255
 * for pixels, 1 for features), whatever its dtype. */
typedef struct mlp_config {
    int n_sizes;
    const int64_t *sizes;
    mlp_activation activation;
    mlp_loss loss;
    float input_scale;
} mlp_config;

typedef enum mlp_optimizer_kind { MLP_SGD = 0, MLP_ADAM = 1 } mlp_optimizer_kind;

/* Whose rules the optimizer follows (csrc/pointwise.h, mlp_update):
 * MLP_TORCH: PyTorch's SGD / Adam / AdamW; weight_decay is added to the
 *   gradient of every parameter (or, decoupled, shrinks it: AdamW); the
 *   reported loss is the data loss.
 * MLP_SKLEARN: scikit-learn's MLP solvers; weight_decay is alpha, an L2
 *   penalty 0.5 alpha |W|^2 / (batch rows or weight sum) on the weights
 *   only, included in the reported loss; the SGD velocity holds lr; Adam's
 *   eps is added after the bias correction. */
typedef enum mlp_convention { MLP_TORCH = 0, MLP_SKLEARN = 1 } mlp_convention;

typedef struct mlp_optimizer {
    mlp_optimizer_kind kind;
    mlp_convention convention;
    float lr;
    float momentum;     /* SGD */
    int nesterov;       /* SGD */
    float weight_decay; /* see mlp_convention */
    int decoupled;      /* Adam, MLP_TORCH: AdamW */
    float beta1, beta2, eps; /* Adam */
} mlp_optimizer;

/* What a data set holds besides X. For MLP_CROSS_ENTROPY, labels (n) in
 * [0, C); for the other losses, values (n, n_outputs) with n_outputs = C.
 * sample_weight (n), when given, weighs each row in every loss and
 * gradient (non-negative, finite). */
typedef struct mlp_targets {
    const int32_t *labels;
    const float *values;
    int64_t n_outputs;
    const float *sample_weight;
} mlp_targets;

typedef struct mlp_model mlp_model; /* parameters, optimizer state, workspace */
typedef struct mlp_data mlp_data;   /* a data set bound to this core */

/* "cpu" or "cuda". */
const char *mlp_backend_name(void);

/* MLP_OK when this core can run on this machine; otherwise the reason is in
 * mlp_last_error(). The C core always returns MLP_OK. */
mlp_status mlp_device_check(void);

/* Checks this core's division and square root (mlp_div and mlp_sqrt in
 * pointwise.h, which every optimizer step and softmax uses) against the
 * compiler's IEEE float32 operations, on the core's own device, over
 * `samples` inputs (mlp_rounding_case under seed); *mismatches gets the
 * number of results that differ in any bit (NaNs count as equal). */
mlp_status mlp_check_rounding(int64_t samples, uint64_t seed, int64_t *mismatches);

/* Detail of the last failure on this thread ("" when none). */
const char *mlp_last_error(void);

/* Parameters start at zero, optimizer state at zero. */
mlp_status mlp_create(mlp_model **model, const mlp_config *config);
void mlp_free(mlp_model *model);
int64_t mlp_num_params(const mlp_model *model);

/* Run the plain, readable ops of the lecture instead of the fast paths
 * (on != 0), or go back to the fast paths. The same function either way, to
 * rounding. C core: csrc/ops.c instead of fast.c. CUDA core: a kernel per op
 * (ops.cu) instead of the tuned GEMM (gemm.cu) and one-kernel epochs. */
mlp_status mlp_use_plain_ops(mlp_model *model, int on);

/* The C core: how many threads this model's work may use (0: OpenMP's
 * default, all cores; results do not depend on it). The CUDA core keeps it
 * and ignores it. */
mlp_status mlp_set_threads(mlp_model *model, int n_threads);

/* Which code ran this model's last epoch (or would run it). C core:
 * "plain" (the ops of ops.c: chosen, or a configuration the fast paths do
 * not support) or the instruction set of the fast paths ("base", "avx2";
 * the environment variable MLP_KERNELS=base forces the baseline). CUDA core:
 * "plain" (a readable kernel per op), "fused-rows" (one kernel per epoch
 * cut by rows, fused_rows.cu, on TF32 tensor cores: batches from 256 rows),
 * "fused-tensor" or "fused" (one kernel cut by inputs, fused.cu, its large
 * products on TF32 tensor cores in 3xTF32 or, on GPUs without them or with
 * MLP_KERNELS=base, on the float32 units), "cuda" (the tuned GEMM, a few
 * kernels per step: configurations the fused kernels do not support, or
 * MLP_KERNELS=gemm), "cuda-tensor" (the same with its large products on
 * TF32 tensor cores in 3xTF32, gemm_tensor.cuh). */
const char *mlp_kernel_set(const mlp_model *model);

/* Copy all parameters in or out (mlp_num_params floats). Setting the
 * parameters also clears the optimizer state. */
mlp_status mlp_set_params(mlp_model *model, const float *params);
mlp_status mlp_get_params(mlp_model *model, float *params);

/* The optimizer state: 2 * mlp_num_params floats (the velocity or first
 * moment, then the second moment, each in the parameters' layout) and the
 * number of steps taken. Set it after the parameters. */
mlp_status mlp_get_state(mlp_model *model, float *state, int64_t *steps);
mlp_status mlp_set_state(mlp_model *model, const float *state, int64_t steps);

/* Bind n rows of d features (row-major, dtype as given) and their targets
 * (NULL for prediction only). The caller keeps X and the targets alive and
 * unchanged until mlp_data_free: the C core reads them in place (its first
 * training epoch keeps each row's nonzero entries for the next ones); the
 * CUDA core copies them to the GPU once, except the rows of prediction-only
 * data and of data sets larger than MLP_CUDA_DATA_LIMIT bytes (unset: 3/4 of
 * the GPU's free memory; read here, at binding), which it reads in place and
 * streams to the GPU in chunks as it goes. */
mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                           int64_t d, const mlp_targets *targets);
void mlp_data_free(mlp_data *data);

/* 1 when the core reads the data's rows from the caller's memory as it
 * trains and predicts (always for the C core), 0 when it holds a copy. */
int mlp_data_on_host(const mlp_data *data);

/* Minibatch training over the rows order[0 .. n_order) of data (each index
 * in [0, n)), in batches of batch_size, the last one possibly partial: a
 * whole epoch when order is a permutation of the n rows, or a part of one,
 * so a caller can report progress between parts. Each batch minimizes the
 * (weighted) batch mean of the loss, one optimizer step per batch.
 * Outputs (each may be NULL): batch_losses (ceil(n_order / batch_size)
 * floats), mean_loss (weighted mean over the rows trained on, with the L2
 * penalty of MLP_SKLEARN) and accuracy (share of rows whose argmax is the
 * label, or all of whose thresholded outputs match: 0 for squared error),
 * computed as they were trained on.
 * When mlp_request_stop was called, the epoch ends after the batch in hand
 * and returns MLP_STOPPED; the outputs then cover the batches done. */
mlp_status mlp_train_epoch(mlp_model *model, const mlp_data *data, const int64_t *order,
                           int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                           float *batch_losses, double *mean_loss, double *accuracy);

/* Asks the epoch running on this model (or the next one) to stop; safe from
 * any thread. The request is used up by the epoch it stops. */
void mlp_request_stop(mlp_model *model);

/* The loss over the whole data set (weighted mean, with the L2 penalty of
 * opt's convention, as one batch) and its gradient with respect to every
 * parameter (mlp_num_params floats; skipped when grad is NULL), for
 * full-batch optimizers such as L-BFGS. The parameters do not change. */
mlp_status mlp_loss_and_grad(mlp_model *model, const mlp_data *data, const mlp_optimizer *opt,
                             double *loss, float *grad);

/* The outputs (n, C): class probabilities (softmax; logistic for binary
 * cross-entropy; the identity for squared error), or the raw last-layer
 * values when want_logits != 0. */
mlp_status mlp_predict(mlp_model *model, const mlp_data *data, float *out,
                       int want_logits);

/* The index of each row's largest output (n values; the first on a tie):
 * a classifier's predicted class, without the outputs' copy and scan. */
mlp_status mlp_predict_classes(mlp_model *model, const mlp_data *data, int32_t *out);

/* Mean loss (weighted) and accuracy over a data set with targets. */
mlp_status mlp_evaluate(mlp_model *model, const mlp_data *data,
                        double *mean_loss, double *accuracy);

#ifdef __cplusplus
}
#endif

#endif /* MLP_H */
