/*
 * gemm.cuh - the tuned kernel-per-op path of the CUDA core: one tiled
 * matrix multiply (gemm.cu) serves every linear op, with the pointwise work
 * fused into its loaders and epilogues. It computes the same functions as
 * the readable kernels of ops.cu, to rounding; model.cu picks it for every
 * configuration (mlp_kernel_set "cuda") unless the plain ops are asked for.
 *
 * Shapes: B batch rows, D inputs, H outputs, C outputs of the last layer;
 * row-major float32. Every launcher only enqueues work on `stream`; none
 * synchronizes.
 *
 * Where the C core runs ops back to back, the GPU fuses them, to save passes
 * over memory and, above all, kernel launches (a training step at batch 64
 * is a few microseconds of arithmetic):
 *   gather_batch + linear_forward + activation_forward -> linear_forward
 *   linear_forward (last layer) + softmax_crossentropy_forward/_backward
 *     + linear_backward's dinp + activation_backward   -> head_forward_backward
 *   linear_backward (dinp) + activation_backward       -> linear_backward_input
 *   linear_backward (dW, db) + the optimizer update, every layer in one launch
 *                                                      -> linear_backward_weights_update
 *
 * The flat layout W (D,H) followed by b (H) makes the two one (D+1, H)
 * matrix: the bias is the weight of a constant input 1. The kernels use that
 * "augmented" view throughout.
 */
#ifndef MLP_CUDA_GEMM_CUH
#define MLP_CUDA_GEMM_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "mlp.h"
#include "step.cuh"

namespace gemm {
/* Device scratch owned by the model: split-K partial sums, and the counters
 * that let the last block of each tile add them up (zero between uses). */
struct Scratch {
    float *partial;
    int64_t partial_floats;
    unsigned *counters;
    int64_t n_counters;
    /* launch short kernels chained to the one before (common.cuh's
     * launch_chained): chaining_supported, and MLP_CUDA_CHAINED is not 0 */
    bool chained;
    /* products of at least this many multiply-adds run on tensor cores
     * (gemm_tensor.cuh); 0: none (tensor_supported is false, or
     * MLP_CUDA_TENSOR is 0) */
    double tensor_min_work;
    /* which tensor-core tiles: 0 as gemm.cu's tiling picks, 1 small, 2 large
     * (MLP_CUDA_TENSOR_TILES, for measuring them) */
    int tensor_tiles;
    /* the large tiles on Hopper's warpgroup products (gemm_tensor.cuh's
     * Wide): wgmma_supported, and MLP_CUDA_WGMMA is not 0 */
    bool wgmma;
    /* the GPU's multiprocessors, for cutting products into whole waves of
     * blocks (0: not known; K is then split as if waves did not matter) */
    int64_t sms;
    /* a last layer of few outputs on gemm.cu's kernels for them: its
     * weight gradient on narrow_weights_kernel, the head on
     * head_few_kernel (MLP_CUDA_NARROW=0: on the float32 tiles and
     * head_kernel, for measuring both) */
    bool narrow;
    /* the weight gradients that the float32 tiles would take join the small
     * tensor tiles' launch where there is one (MLP_CUDA_JOIN_SMALL=0: they
     * keep their own launch, for measuring) */
    bool join_small;
    /* the first layer's batch gathered 4 inputs a thread where the widths
     * allow (MLP_CUDA_GATHER4=0: one, for measuring) */
    bool gather4;
    /* head_few_kernel reads two classes of W_aug a load where C and W_aug
     * allow (MLP_CUDA_HEAD_PAIRS=0: one, for measuring) */
    bool head_pairs;
};
int64_t scratch_partial_floats(void);
int64_t scratch_counters(void);
int64_t scratch_sms(void); /* the current GPU's multiprocessors, or 0 */

/* Whether the current GPU runs programmatic dependent launch (compute
 * capability 9.0 or more) and the kernels loaded for it were compiled for
 * such a GPU (PTX of 9.0 or more: a build whose newest code is older, run
 * through the driver's compiler, has no chained_start to wait in). */
bool chaining_supported(void);

/* Whether the current GPU has TF32 tensor cores (compute capability 8.0 or
 * more), the loaded tensor kernels were compiled for one, and it gives them
 * the shared memory they ask for. */
bool tensor_supported(void);

/* Whether tensor_supported, the current GPU is compute capability 9.0, the
 * loaded kernels were built for sm_90a (which has wgmma) and it gives the
 * Wide tiles their shared memory. */
bool wgmma_supported(void);

/* The products gemm_tensor.cuh takes by default: at least this many
 * multiply-adds (smaller ones are a few tiles, where the float32 tiles'
 * shorter start wins; benchmarks/RESULTS.md). */
#define MLP_TENSOR_MIN_WORK 16777216.0 /* 2^24 */

/* Whether a training step of B rows through the layers sizes[0..n_layers]
 * runs some of its products on tensor cores (each layer's weight gradient
 * is as large as its forward product; mlp_kernel_set's "cuda-tensor"). */
bool any_on_tensor(const Scratch &scratch, const int64_t *sizes, int n_layers, int64_t B);

/* The most layers one linear_backward_weights_sgd launch updates. */
#define MLP_MAX_FUSED_LAYERS 8

/* Whether head_forward_backward takes a layer of H inputs and C outputs:
 * softmax cross-entropy, an activation whose backward needs only its output,
 * at most MLP_HEAD_MAX_CLASSES classes, and a row h of H floats in shared
 * memory; otherwise the separate kernels do the same work. */
#define MLP_HEAD_MAX_CLASSES 64
bool head_fits(int64_t H, int64_t C, mlp_loss loss, mlp_activation act);

/* (B,D) @ (D,H) + (H) -> (B,H): stored raw into pre when given, and as
 * f(.) into out when activate (else raw). When stash is given, the input
 * rows, as floats, also go there, (B,D): the gathered batch that the weight
 * update of the same step reads. */
void linear_forward(cudaStream_t s, float *out, float *pre, LayerInput in, const float *W_aug,
                    int64_t B, int64_t D, int64_t H, mlp_activation act, bool activate,
                    float *stash, Scratch scratch);

/* The last layer and softmax cross-entropy, forward and backward, one block
 * per row: logits (B,C) = h (B,H) @ W (H,C) + b; dlogits (B,C) of the
 * weighted batch mean; dh (B,H) = activation_backward(dlogits @ W^T); each
 * row's weighted loss and hit go to row_loss[start + row], row_hit[...]. */
void head_forward_backward(cudaStream_t s, float *logits, float *dlogits, float *dh,
                           const float *h, const float *W_aug, int64_t B, int64_t H, int64_t C,
                           mlp_activation act, Targets t, const int64_t *order, int64_t start,
                           const StepInfo *step, float *row_loss, int32_t *row_hit,
                           Scratch scratch);

/* dout (B,H) -> dinp (B,D) = activation_backward(dout @ W^T), from the
 * activation's output act_in and (when it needs it) input pre_in */
void linear_backward_input(cudaStream_t s, float *dinp, const float *dout, const float *W,
                           mlp_activation act, const float *pre_in, const float *act_in,
                           int64_t B, int64_t D, int64_t H, Scratch scratch);

/* One layer's share of linear_backward_weights_update */
struct WeightsJob {
    float *W_aug, *M, *V; /* (D+1, H) parameters and optimizer state */
    const float *dout;    /* (B, H) */
    LayerInput in;        /* (B, D) */
    int64_t D, H;
};

/* For every job at once: dW_aug (D+1,H) = [in, 1]^T @ dout, then the
 * optimizer update (pointwise.h's mlp_update) with the constants *step. */
void linear_backward_weights_update(cudaStream_t s, const WeightsJob *jobs, int n_jobs,
                                    int64_t B, const StepInfo *step, Scratch scratch);

} // namespace gemm

#endif /* MLP_CUDA_GEMM_CUH */
