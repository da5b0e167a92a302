/*
 * fused.cuh - a whole training epoch of a network with one hidden layer,
 * (B,D) -> linear -> activation -> (B,H) -> linear -> (B,C) -> loss, as one
 * persistent kernel.
 *
 * Why: at batch 64 a step is a few microseconds of arithmetic, and a kernel
 * per op (ops.cu) spends most of each step starting kernels and waiting on
 * memory round trips between them. Here the blocks of one cooperative grid
 * run every step of the epoch, with two grid-wide barriers per step.
 *
 * Each block owns tiles of W1 (KT inputs x NT hidden units) for the whole
 * epoch: it computes those tiles' share of the forward product and, after the
 * head, their gradient and SGD update. Since no other block reads or writes
 * an owned tile, the next step's forward needs no barrier after the update,
 * and where the tiles fit (fused_plan's stationary) a block keeps them, their
 * optimizer state and the step's inputs in shared memory for the epoch.
 * Per step:
 *   1. linear_forward, per owned tile: partial[kt] (B,H) = X[:, tile] @ W1[tile]
 *   -- grid barrier --
 *   2. one warp per row: h = relu(sum_kt partial[kt]); logits = h @ W2 + b2;
 *      softmax_crossentropy_forward/_backward -> dlogits, loss, hit;
 *      linear_backward's dinp + relu_backward -> dh
 *   -- grid barrier --
 *   3. linear_backward's dW + sgd_update: owned W1 tiles (X^T @ dh), and W2 in
 *      slices of KW rows ([h, 1]^T @ dlogits)
 * Every sum runs in a fixed order: results are bit-identical run to run.
 *
 * On GPUs with TF32 tensor cores, steps of many rows for the inputs' width
 * (fused_plan) run as fused_rows.cu's kernel instead, which cuts the work by
 * rows and hidden units (see there). Both take the same FusedEpoch.
 */
#ifndef MLP_CUDA_FUSED_CUH
#define MLP_CUDA_FUSED_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "mlp.h"
#include "pointwise.h"
#include "step.cuh"

struct FusedEpoch {
    /* the data set and the rows of this call, X[order] and its targets
     * [order]: labels y (softmax cross-entropy) or values (n, C) (the
     * element-wise losses) */
    const void *X;
    mlp_dtype dtype;
    mlp_loss loss;
    const int32_t *y;
    const float *values;
    const int64_t *order;
    int64_t n, batch;
    /* workspace: those rows gathered, in order, before the epoch starts, so
     * that no step waits on an index before it can load a row:
     * rows (n, row_stride) in the data's dtype (fused_rows_bytes), labels (n).
     * With row_stride > D (fused_rows.cu), each row is followed by its bias
     * input (255 for uint8, 1 for float32) and zeros. The targets in
     * order: labels (n) or, for the element-wise losses, targets (n, C). */
    void *rows;
    int64_t row_stride;
    int32_t *labels;
    float *targets;
    int64_t D, H, C;
    /* parameters, momentum (or Adam's first moment) and Adam's second
     * moment, the augmented views (D+1,H) and (H+1,C) */
    float *W1, *V1, *S1, *W2, *V2, *S2;
    /* Which code the kernels run (fused_general):
     * general = false: the default recipe's code, ReLU, softmax
     *   cross-entropy and PyTorch's SGD with the same constants every step
     *   (step);
     * general = true: activation act, the loss `loss` and pointwise.h's
     *   mlp_update with each step's constants from steps (device memory, one
     *   per step); except that fused_rows.cu runs tanh and GELU with the
     *   default recipe's loss and optimizer on the default code compiled for
     *   act (FusedPlan's by_act). */
    bool general;
    mlp_activation act;
    mlp_step step;
    const StepInfo *steps;
    /* the input scale (1/255 for uint8) */
    float input_scale;
    /* scikit-learn's L2 in the reported loss (general only; NULL when
     * there is none): penalty[b] = |W|^2 (weights, not biases) before step
     * b. Each block adds up the squares of the weights it updates into
     * penalty_parts[(b % 2) * blocks + block], and the last block sums
     * those in order after the next step's first grid barrier (the last step's
     * after the kernel, fused_train_epoch). */
    double *penalty, *penalty_parts;
    /* the two large products on TF32 tensor cores in 3xTF32 (float32
     * accuracy; sm_80 and newer), or on the float32 units */
    bool tensor_cores;
    /* with tensor_cores: load chunks through cp.async (rows of a multiple of
     * 16 bytes, H a multiple of 4) */
    bool async_copy;
    /* fused.cu on tensor cores: W1 tiles that each block keeps in shared
     * memory for the whole epoch (0: none, the tiles are read from and
     * written to device memory every step), at keep_at floats into shared
     * memory, kept_floats apart, each with the optimizer's kept_moments
     * moments (0, 1 or 2); keep_inputs: each kept tile also holds its inputs
     * of the step (steps of at most one chunk of rows), copied in during
     * the step before */
    int stationary, kept_moments;
    bool keep_inputs;
    int64_t keep_at, kept_floats;
    /* fused_rows.cu: inputs per update item; groups' logits staged at once */
    int64_t in_tile, head_groups;
    /* mlp_request_stop: the host's flag (mapped memory), its copy that every
     * block reads after the same barrier, and the steps done when it stopped
     * (untouched when the epoch ran to its end) */
    const volatile int *stop_host;
    int *stop_dev;
    int64_t *steps_done;
    /* workspace: partial (fused_workspace_floats); h and dh (batch, H);
     * dlogits (batch, C); per-row loss and hit (n) */
    float *partial, *h, *dh, *dlogits;
    float *row_loss;
    int32_t *row_hit;
};

/* A plan for a model's shape on the current GPU: whether the fused kernel
 * takes it, and how many blocks to launch. */
struct FusedPlan {
    bool ok;
    bool tensor_cores;   /* the products run on TF32 tensor cores */
    bool async_copy;     /* fused.cu: FusedEpoch's async_copy */
    bool by_rows;        /* fused_rows.cu's kernel (always on tensor cores) */
    int blocks;          /* the cooperative grid, all resident at once */
    size_t smem_bytes;   /* dynamic shared memory per block */
    int64_t row_stride;  /* elements per gathered row */
    int64_t in_tile;     /* fused_rows.cu: inputs per update item */
    int64_t head_groups; /* fused_rows.cu: groups' logits staged at once */
    int64_t workspace_floats; /* e.partial */
    int stationary, kept_moments; /* fused.cu: FusedEpoch's fields of the same names */
    bool keep_inputs;
    int64_t keep_at, kept_floats;
    bool general;        /* planned for the general code */
    bool by_act;         /* planned with fused_rows.cu's default-recipe kernel
                          * for the model's activation allowed
                          * (fused_rows_by_activation) */
};

/* Quotients of the kernels' indices, in 32 bits. The one-kernel epochs run
 * on fewer than 2^31 rows, inputs and hidden units (train_resident), so
 * every index they divide fits. A 64-bit division is a call to a
 * subroutine; in fused_rows.cu its call sites cost about 6% of a step at
 * batch 1024 (benchmarks/RESULTS.md). fused.cu keeps its 64-bit divisions:
 * there the change moved registers and made Adam's step slower. */
__device__ inline int64_t div32(int64_t a, int64_t b) {
    return (int64_t)((uint32_t)a / (uint32_t)b);
}
__device__ inline int64_t rem32(int64_t a, int64_t b) {
    return (int64_t)((uint32_t)a % (uint32_t)b);
}

/* The stop request, polled every STOP_POLL steps: as a step starts, one
 * thread of block 0 copies the host's flag to the GPU; after the
 * step's first grid barrier every block reads the same copy, and all of
 * them leave together, so none waits at a barrier that the others skipped.
 * The step stopped in has run its forward product only: the parameters are
 * those of the steps before it. */
constexpr uint64_t STOP_POLL = 32;

/* the poll itself, at step `step` */
__device__ inline void poll_at(const FusedEpoch &e, int64_t step) {
    if (((uint64_t)step & (STOP_POLL - 1)) == 0 && blockIdx.x == 0 && threadIdx.x == 0)
        *e.stop_dev = *e.stop_host;
}
/* start: the step's first row (the step, start / batch, is worked out where
 * it is needed, not kept in a register across the step; and the poll is not
 * inlined: its division needed a register more, which spilled in fused.cu) */
static __device__ __noinline__ void stop_poll(const FusedEpoch &e, int64_t start) {
    poll_at(e, start / e.batch);
}

/* after the barrier: true in every block alike when the epoch stops at
 * step `step` */
__device__ inline bool stop_now_at(const FusedEpoch &e, int64_t step) {
    if (((uint64_t)step & (STOP_POLL - 1)) != 0 || !*(volatile int *)e.stop_dev) return false;
    if (blockIdx.x == 0 && threadIdx.x == 0) *e.steps_done = step;
    return true;
}

/* the same from the step's first row */
__device__ inline bool stop_now(const FusedEpoch &e, int64_t start) {
    return stop_now_at(e, start / e.batch);
}

/* stop_poll and stop_now from the step's number (fused_rows.cu, which
 * divides in 32 bits: div32) */
static __device__ __noinline__ void stop_poll_at(const FusedEpoch &e, int64_t step) {
    poll_at(e, step);
}

/* ---- the optimizer's update of one parameter ------------------------------
 * GENERAL = false: the default recipe's rule, PyTorch's SGD with the
 * epoch's constants (e.step), whose only state is the momentum in V;
 * GENERAL = true: pointwise.h's mlp_update with the step's constants s,
 * state in V (momentum or Adam's first moment) and S (Adam's second
 * moment), and each old weight's square added to pen (scikit-learn's
 * penalty). Both kernels load and store the state that the rule uses. */

template <bool GENERAL> __device__ inline bool uses_first_moment(const mlp_step &s) {
    return (GENERAL && s.adam) || s.momentum != 0.0f;
}
template <bool GENERAL> __device__ inline bool uses_second_moment(const mlp_step &s) {
    return GENERAL && s.adam;
}

/* The new value of parameter p with gradient g and state m, v. */
template <bool GENERAL>
__device__ inline float update_one(const mlp_step &s, float p, float g, float *m, float *v,
                                   bool bias, bool penalty, double &pen) {
    if (!GENERAL) return mlp_torch_sgd(&s, p, mlp_l2_grad(&s, p, g, 0), m);
    if (penalty && !bias) pen += (double)p * p;
    return mlp_update(&s, p, g, m, v, bias);
}

/* ---- scikit-learn's penalty in the reported loss (e.penalty) ------------- */

/* sum of the blocks' parts at parts[0..blocks), in a fixed order, by one warp */
__device__ inline double penalty_sum(const double *parts, int blocks) {
    double s = 0.0;
    for (int i = threadIdx.x % 32; i < blocks; i += 32) s += __ldcg(parts + i);
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    return s;
}

/* After a step's updates: this block's part of penalty[step], from each
 * thread's sum of the squares of the old weights it updated. */
__device__ inline void penalty_part(const FusedEpoch &e, int64_t step, double mine) {
    __shared__ double warps[32];
    for (int off = 16; off > 0; off /= 2) mine += __shfl_xor_sync(0xffffffffu, mine, off);
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = mine;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) s += warps[w];
        e.penalty_parts[(step & 1) * gridDim.x + blockIdx.x] = s;
    }
}

/* After the grid barrier that follows step `step`'s updates: the last block
 * adds up that step's parts (the last, as the first blocks take the head's
 * rows, which would wait for these loads). */
__device__ inline void penalty_total(const FusedEpoch &e, int64_t step) {
    if (blockIdx.x != gridDim.x - 1 || threadIdx.x >= 32) return;
    const double s = penalty_sum(e.penalty_parts + (step & 1) * gridDim.x, (int)gridDim.x);
    if (threadIdx.x == 0) e.penalty[step] = s;
}

/* Whether the fused kernels take this configuration: one hidden layer
 * (checked by the caller), any activation, loss and optimizer, no sample
 * weights, and the inputs' usual scale (1/255 for uint8, 1 for float32).
 * Anything else trains on the kernel-per-op paths. */
bool fused_supports(bool has_weights, mlp_dtype dtype, float input_scale);

/* Whether a supported configuration needs the kernels' general code (any
 * activation, loss and optimizer rule, each step's own constants) rather
 * than the default recipe's (ReLU, softmax cross-entropy, PyTorch's SGD
 * without Nesterov), which is kept apart so that the default recipe runs
 * the code it was tuned with. */
bool fused_general(mlp_activation act, mlp_loss loss, const mlp_optimizer &opt);

/* Whether fused_rows.cu runs a recipe that needs the general code only for
 * its activation (tanh or GELU, and otherwise the default recipe) on the
 * default recipe's kernel compiled for that activation. */
bool fused_rows_by_activation(mlp_activation act, mlp_loss loss, const mlp_optimizer &opt);

/* Which kernel takes a step of `batch` rows of D inputs, where the GPU has
 * TF32 tensor cores: each block of fused.cu streams every row of the step
 * through its tile, in chunks of 64 rows, while each item of fused_rows.cu
 * streams every input, in chunks of fused_rows_input_chunks. Measured on an
 * H200 (benchmarks/RESULTS.md), fused_rows.cu is the faster one from 64 rows
 * a step once a step has at least half as many row chunks as an item has
 * input chunks: MNIST's 784 inputs from 256 rows as uint8 and from 512 as
 * float32, 100 inputs from 64. */
constexpr int64_t ROWS_MIN_BATCH = 64;
bool fused_by_rows(int64_t D, mlp_dtype dtype, int64_t batch);
int64_t fused_rows_input_chunks(int64_t D, mlp_dtype dtype);

/* Plan for sizes D, H, C at batch size `batch` (rows per step) of inputs of
 * type dtype, on tensor cores when `tensor_cores` and the GPU has them, for
 * the general code or the default recipe's (fused_general), for an
 * optimizer with `moments` (fused_moments). Returns ok =
 * false (and the caller uses the kernel-per-op path) when the GPU cannot
 * launch cooperative grids, the shape does not fit in shared memory, or the
 * batch is past what the fused kernels are faster at. */
FusedPlan fused_plan(int64_t D, int64_t H, int64_t C, int64_t batch, mlp_dtype dtype,
                     bool tensor_cores, bool general, bool by_act, mlp_activation act,
                     int moments);

/* The optimizer's state a parameter has: 0, 1 (momentum or Adam's first
 * moment) or 2 (Adam's second moment too). */
int fused_moments(const mlp_optimizer &opt);

/* fused_rows.cu's part of fused_plan: fills plan's by_rows, blocks,
 * smem_bytes, in_tile, row_stride and workspace_floats; false when the
 * shape does not fit. */
bool fused_rows_plan(FusedPlan &plan, int64_t D, int64_t H, int64_t C, int64_t batch, int sms,
                     bool general, bool by_act, mlp_activation act);

/* Bytes of the gathered rows of an epoch of n rows. */
int64_t fused_rows_bytes(const FusedPlan &plan, int64_t n, mlp_dtype dtype);

/* Enqueues the epoch on stream s. */
cudaError_t fused_train_epoch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e);

/* Launches fused_rows.cu's kernel (the rows already gathered). */
cudaError_t fused_rows_launch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e);

#endif /* MLP_CUDA_FUSED_CUH */
