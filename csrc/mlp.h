/*
 * mlp.h - the contract between Python and the compute cores.
 *
 * Two libraries implement every function declared here: the C core (csrc/)
 * and the CUDA core (cuda/). The Cython wrapper (mlp/_core.pxi) is written
 * once against this header and compiled against each library in turn, so
 * nothing outside this file may be assumed about either core.
 *
 * The network is a stack of fully connected layers with ReLU between them
 * and softmax cross-entropy on top:
 *
 *   sizes = {D, H1, ..., Hk, C}   (n_sizes = k + 2 >= 2)
 *
 * Parameters live in one flat float32 buffer, layer after layer:
 *
 *   W1 (D,H1), b1 (H1), W2 (H1,H2), b2 (H2), ..., W_last (Hk,C), b_last (C)
 *
 * each W row-major (fan_in, fan_out). Gradients and the momentum buffer use
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

#define MLP_ABI_VERSION 1

typedef enum mlp_status {
    MLP_OK = 0,
    MLP_ERR_NOMEM = 1,     /* host or device allocation failed */
    MLP_ERR_INVALID = 2,   /* an argument is out of range */
    MLP_ERR_NO_DEVICE = 3, /* this core cannot run here (no GPU, old driver) */
    MLP_ERR_DEVICE = 4     /* a device call failed at run time */
} mlp_status;

typedef enum mlp_dtype {
    MLP_UINT8 = 0,  /* pixels: scaled by 1/255 as they are read */
    MLP_FLOAT32 = 1
} mlp_dtype;

typedef struct mlp_model mlp_model; /* parameters, optimizer state, workspace */
typedef struct mlp_data mlp_data;   /* a data set bound to this core */

/* "cpu" or "cuda". */
const char *mlp_backend_name(void);

/* MLP_OK when this core can run on this machine; otherwise the reason is in
 * mlp_last_error(). The C core always returns MLP_OK. */
mlp_status mlp_device_check(void);

/* Detail of the last failure on this thread ("" when none). */
const char *mlp_last_error(void);

/* Layer sizes as above; parameters start at zero, momentum at zero. */
mlp_status mlp_create(mlp_model **model, int n_sizes, const int64_t *sizes);
void mlp_free(mlp_model *model);
int64_t mlp_num_params(const mlp_model *model);

/* Run the plain, readable ops of the lecture instead of the fast paths
 * (on != 0), or go back to the fast paths. The same function either way, to
 * rounding. C core: csrc/ops.c instead of fast.c. CUDA core: a kernel per op
 * (ops.cu) instead of the one-kernel epoch of fused.cu. */
mlp_status mlp_use_plain_ops(mlp_model *model, int on);

/* Which code runs this model's arithmetic. C core: "plain" (the ops of
 * ops.c) or the instruction set of the fast paths ("base", "avx2"; the
 * environment variable MLP_KERNELS=base forces the baseline). CUDA core:
 * "plain" (a kernel per op, chosen), "fused-rows" (the last epoch ran as
 * one kernel cut by rows, fused_rows.cu, on TF32 tensor cores: batches from
 * 256 rows), "fused-tensor" or "fused" (one kernel cut by inputs, fused.cu,
 * its large products on TF32 tensor cores in 3xTF32 or, on GPUs without them
 * or with MLP_KERNELS=base, on the float32 units), "cuda" (a kernel per op:
 * not trained yet, or a shape that the fused kernels do not take). */
const char *mlp_kernel_set(const mlp_model *model);

/* Copy all parameters in or out (mlp_num_params floats). Setting the
 * parameters also clears the momentum buffer. */
mlp_status mlp_set_params(mlp_model *model, const float *params);
mlp_status mlp_get_params(mlp_model *model, float *params);

/* Bind n rows of d features (row-major, dtype as given) and optional labels
 * y (class indices in [0, C), or NULL for prediction only). The C core reads
 * X and y in place, so the caller keeps them alive until mlp_data_free; the
 * CUDA core copies them to the GPU once. */
mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype,
                           const int32_t *y, int64_t n, int64_t d);
void mlp_data_free(mlp_data *data);

/* Minibatch SGD over the rows order[0 .. n_order) of data (each index in
 * [0, n)), in batches of batch_size, the last one possibly partial: a whole
 * epoch when order is a permutation of the n rows, or a part of one, so a
 * caller can report progress between parts. The loss is the batch mean; SGD
 * follows PyTorch's conventions:
 *   g = grad + weight_decay * p;  v = momentum * v + g;  p -= lr * v
 * Outputs (each may be NULL): batch_losses (ceil(n_order / batch_size)
 * floats), mean_loss and accuracy over the rows trained on, computed as they
 * were trained on. */
mlp_status mlp_train_epoch(mlp_model *model, const mlp_data *data,
                           const int64_t *order, int64_t n_order,
                           int64_t batch_size, float lr,
                           float momentum, float weight_decay,
                           float *batch_losses, double *mean_loss,
                           double *accuracy);

/* Class probabilities (or raw logits when want_logits != 0), (n, C). */
mlp_status mlp_predict(mlp_model *model, const mlp_data *data, float *out,
                       int want_logits);

/* Mean cross-entropy loss and accuracy over a labelled data set. */
mlp_status mlp_evaluate(mlp_model *model, const mlp_data *data,
                        double *mean_loss, double *accuracy);

#ifdef __cplusplus
}
#endif

#endif /* MLP_H */
