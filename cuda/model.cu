/*
 * model.cu - the CUDA core: mlp.h implemented with the kernels of ops.cu
 * (the readable plain path), gemm.cu (the tuned kernel-per-op path) and the
 * one-kernel epochs of fused.cu and fused_rows.cu, mirroring csrc/model.c
 * step for step.
 *
 * The data set is copied to the GPU once, uint8 staying uint8, unless it
 * is larger than the GPU's share for it (MLP_CUDA_DATA_LIMIT) or is for
 * prediction only: then its rows stay in the caller's memory and stream to
 * the GPU in chunks (host_rows.cuh), a training epoch chunk by chunk, each
 * chunk's rows gathered in the epoch's order and trained on like a data set
 * of its own while the next one travels. An epoch of
 * the kernel-per-op paths is enqueued as one CUDA graph (every step's
 * kernels, recorded once per data set and batch size, then replayed), so the
 * host neither launches nor waits per step; the optimizer constants of each
 * step (learning rate, Adam's step count, the batch's weight) are read by
 * the kernels from device memory (StepInfo), written before each epoch, so
 * the graph stays valid across epochs. Per-row losses and hits stay on the
 * GPU until one reduction at the end of the epoch.
 *
 * Networks with one hidden layer whose configuration the fused kernels
 * support (fused_supports) train through fused.cu or fused_rows.cu instead:
 * the whole epoch is one persistent kernel.
 */
#include <atomic>
#include <new>
#include <thread>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fused.cuh"
#include "gemm.cuh"
#include "host_rows.cuh"
#include "mlp.h"
#include "ops.cuh"
#include "pointwise.h"
#include "status.cuh"

struct mlp_data {
    void *X; /* device, (n, d); NULL when the rows stay in host memory */
    mlp_dtype dtype;
    int32_t *labels; /* device, (n) or NULL */
    float *values;   /* device, (n, n_outputs) or NULL */
    float *weights;  /* device, (n) or NULL */
    float *host_weights; /* a host copy, for each batch's weight */
    /* the caller's rows and targets, read in place when X is NULL, and
     * MLP_CUDA_DATA_LIMIT as it was at binding (data_limit_bytes) */
    const void *host_X;
    const int32_t *host_labels;
    const float *host_values;
    int64_t limit;
    mlp_target_info info;
    int64_t n, d;
};

/* Epochs of more steps are launched kernel by kernel. */
static const int64_t MAX_GRAPH_STEPS = 4096;

/* What a recorded epoch graph depends on besides the model's own buffers. */
struct GraphKey {
    const mlp_data *data;
    const void *X;
    int64_t n, batch_size;
    bool plain, penalty;
};

struct mlp_model {
    mlp_layout L;
    mlp_activation act;
    mlp_loss loss;
    float input_scale;
    float *params, *m, *v, *grads; /* device, n_params each */
    int64_t steps;
    std::atomic<int> stop;
    /* the stop flag as the fused kernels see it: the flag and the steps an
     * epoch did before it stopped in mapped host memory (no copies, no
     * waits), the flag's copy that the blocks read on the GPU */
    struct StopFlags {
        int stop;
        int64_t done; /* -1 while the epoch runs to its end */
    } *flags;
    int *stop_dev;
    cudaStream_t stream;
    /* workspace for up to cap rows: every layer's output (after the
     * activation), its input when the activation's backward needs it, and
     * the gradient with respect to it; the model's outputs */
    int64_t cap;
    float **acts, **pre, **douts;
    float *xbatch; /* the training batch's input rows as floats, (cap, D) */
    float *out;    /* (cap, C) */
    int32_t *classes; /* (cap): each row's largest output, for mlp_predict_classes */
    gemm::Scratch scratch;
    /* per-row statistics for up to rows_cap rows, the order of an epoch */
    int64_t rows_cap;
    float *row_loss;
    int32_t *row_hit;
    int64_t *order;
    double *loss_sum;
    int64_t *hits;
    /* per-step constants and results for up to batches_cap steps */
    int64_t batches_cap;
    StepInfo *steps_host, *steps_dev;
    float *batch_loss;
    double *penalty; /* the sum of squared weights before each step (scikit-learn's L2) */
    /* the recorded epoch */
    cudaGraphExec_t graph;
    GraphKey key;
    /* the fused epoch kernels: whether they are off (plain ops), the plan for
     * batch size plan_batch (with tensor cores allowed: plan_tensor), and
     * their workspace */
    bool plain;
    const char *last_kernels; /* what the last epoch ran; see mlp_kernel_set */
    FusedPlan plan;
    int64_t plan_batch;
    bool plan_tensor;
    mlp_dtype plan_dtype; /* of the data it was planned for */
    float *partial;
    int64_t partial_cap;
    double *penalty_parts; /* FusedEpoch's, 2 per block */
    int64_t penalty_parts_cap;
    float *targets; /* the element-wise losses' targets in the epoch's order */
    int64_t targets_cap;
    uint8_t *gathered; /* the epoch's rows in order, gathered_cap bytes */
    int64_t gathered_cap;
    int32_t *labels;   /* their labels, rows_cap */
    RowStream rows;    /* how rows in host memory reach the GPU */
};

/* ---- errors ------------------------------------------------------------ */

#define CUDA_TRY(call)                                              \
    do {                                                            \
        cudaError_t e_ = (call);                                    \
        if (e_ != cudaSuccess) return cuda_fail(e_, #call);         \
    } while (0)

#define TRY(call)                                                   \
    do {                                                            \
        mlp_status s_ = (call);                                     \
        if (s_ != MLP_OK) return s_;                                \
    } while (0)

extern "C" const char *mlp_backend_name(void) { return "cuda"; }

extern "C" mlp_status mlp_device_check(void) {
    mlp_clear_error();
    /* the first check starts the CUDA runtime in this process; a child forked
     * after that cannot use it (CUDA does not survive fork) */
    mlp_watch_forks();
    if (mlp_forked)
        return mlp_fail(MLP_ERR_NO_DEVICE, "this process was forked from one that had started "
                        "CUDA, which a forked child cannot use (start worker processes with "
                        "the 'spawn' method to use the GPU in them)");
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver) {
        int driver = 0;
        cudaDriverGetVersion(&driver);
        cudaGetLastError();
        if (driver == 0)
            return mlp_fail(MLP_ERR_NO_DEVICE, "no NVIDIA driver is installed (no GPU here?)");
        return mlp_fail(MLP_ERR_NO_DEVICE,
                        "the NVIDIA driver is too old: it supports CUDA %d.%d, this build needs "
                        "%d.%d; update the driver",
                        driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000,
                        CUDART_VERSION % 1000 / 10);
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
        cudaGetLastError();
        return mlp_fail(MLP_ERR_NO_DEVICE, "no CUDA GPU is visible");
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlp_fail(MLP_ERR_NO_DEVICE, "the CUDA runtime cannot start: %s",
                        cudaGetErrorString(e));
    }
    return MLP_OK;
}

/* ---- buffers ----------------------------------------------------------- */

/* Makes *p hold at least `need` elements (*cap of them now), replacing it
 * when it is smaller; its contents are not kept. */
template <class T>
static mlp_status grow(T **p, int64_t *cap, int64_t need, const char *what) {
    if (need <= *cap) return MLP_OK;
    cudaFree(*p);
    *cap = 0;
    TRY(device_alloc(p, need, what));
    *cap = need;
    return MLP_OK;
}

static void drop_graph(mlp_model *m) {
    if (m->graph) cudaGraphExecDestroy(m->graph);
    m->graph = NULL;
}

static void free_workspace(mlp_model *m) {
    drop_graph(m);
    for (int l = 0; l < m->L.n_layers; l++) {
        if (m->acts) cudaFree(m->acts[l]);
        if (m->pre) cudaFree(m->pre[l]);
        if (m->douts) cudaFree(m->douts[l]);
    }
    free(m->acts);
    free(m->pre);
    free(m->douts);
    cudaFree(m->xbatch);
    cudaFree(m->out);
    cudaFree(m->classes);
    m->xbatch = m->out = NULL;
    m->classes = NULL;
    m->acts = m->pre = m->douts = NULL;
    m->cap = 0;
}

static void free_rows(mlp_model *m) {
    drop_graph(m);
    cudaFree(m->row_loss);
    cudaFree(m->row_hit);
    cudaFree(m->order);
    cudaFree(m->labels);
    m->row_loss = NULL;
    m->row_hit = m->labels = NULL;
    m->order = NULL;
    m->rows_cap = 0;
}

static void free_steps(mlp_model *m) {
    drop_graph(m);
    free(m->steps_host);
    cudaFree(m->steps_dev);
    cudaFree(m->batch_loss);
    cudaFree(m->penalty);
    m->steps_host = m->steps_dev = NULL;
    m->batch_loss = NULL;
    m->penalty = NULL;
    m->batches_cap = 0;
}

/* Grows the per-batch workspace to `rows` rows. */
static mlp_status reserve_rows(mlp_model *m, int64_t rows) {
    if (rows <= m->cap) return MLP_OK;
    free_workspace(m);
    const int n_layers = m->L.n_layers;
    m->acts = (float **)calloc((size_t)n_layers, sizeof(float *));
    m->pre = (float **)calloc((size_t)n_layers, sizeof(float *));
    m->douts = (float **)calloc((size_t)n_layers, sizeof(float *));
    if (!m->acts || !m->pre || !m->douts) {
        free_workspace(m);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    }
    mlp_status st = device_alloc(&m->xbatch, rows * m->L.sizes[0], "the input batch");
    if (st == MLP_OK) st = device_alloc(&m->out, rows * m->L.sizes[n_layers], "outputs");
    if (st == MLP_OK) st = device_alloc(&m->classes, rows, "classes");
    const bool keep_pre = mlp_activation_needs_input(m->act);
    for (int l = 0; st == MLP_OK && l < n_layers; l++) {
        const int64_t width = m->L.sizes[l + 1];
        st = device_alloc(&m->acts[l], rows * width, "activations");
        if (st == MLP_OK) st = device_alloc(&m->douts[l], rows * width, "gradients");
        if (st == MLP_OK && keep_pre && l + 1 < n_layers)
            st = device_alloc(&m->pre[l], rows * width, "activation inputs");
    }
    if (st != MLP_OK) {
        free_workspace(m);
        return st;
    }
    m->cap = rows;
    return MLP_OK;
}

/* Grows the per-row statistics and the order buffer to n rows. */
static mlp_status reserve_epoch(mlp_model *m, int64_t n) {
    if (n <= m->rows_cap) return MLP_OK;
    free_rows(m);
    mlp_status st = device_alloc(&m->row_loss, n, "losses");
    if (st == MLP_OK) st = device_alloc(&m->row_hit, n, "hits");
    if (st == MLP_OK) st = device_alloc(&m->order, n, "the batch order");
    if (st == MLP_OK) st = device_alloc(&m->labels, n, "labels");
    if (st != MLP_OK) {
        free_rows(m);
        return st;
    }
    m->rows_cap = n;
    return MLP_OK;
}

/* Grows the per-step buffers to `batches` steps. */
static mlp_status reserve_steps(mlp_model *m, int64_t batches) {
    if (batches <= m->batches_cap) return MLP_OK;
    free_steps(m);
    m->steps_host = (StepInfo *)calloc((size_t)batches, sizeof(StepInfo));
    if (!m->steps_host) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    mlp_status st = device_alloc(&m->steps_dev, batches, "step constants");
    if (st == MLP_OK) st = device_alloc(&m->batch_loss, batches, "batch losses");
    if (st == MLP_OK) st = device_alloc(&m->penalty, batches, "penalties");
    if (st != MLP_OK) {
        free_steps(m);
        return st;
    }
    m->batches_cap = batches;
    return MLP_OK;
}

/* ---- create, free, parameters ------------------------------------------ */

/* gemm::Scratch's chained: gemm::chaining_supported, and MLP_CUDA_CHAINED
 * is not "0" (which launches each kernel after the one before it has
 * finished, as on older GPUs; the results are the same either way) */
static bool chaining_wanted(void) {
    const char *want = getenv("MLP_CUDA_CHAINED");
    if (want && strcmp(want, "0") == 0) return false;
    return gemm::chaining_supported();
}

/* gemm::Scratch's tensor_min_work: MLP_TENSOR_MIN_WORK where
 * gemm::tensor_supported; MLP_CUDA_TENSOR=0 keeps every product on the
 * float32 tiles, and a number sets the smallest product (in multiply-adds)
 * that runs on tensor cores. */
static double tensor_min_work(void) {
    if (!gemm::tensor_supported()) return 0.0;
    const char *want = getenv("MLP_CUDA_TENSOR");
    if (!want || !*want) return MLP_TENSOR_MIN_WORK;
    char *end = NULL;
    const double v = strtod(want, &end);
    if (*end || !(v >= 0.0)) return MLP_TENSOR_MIN_WORK;
    return v;
}

/* gemm::Scratch's wgmma: gemm::wgmma_supported, and MLP_CUDA_WGMMA is not
 * "0" (which keeps the large tiles on mma.sync, for measuring and testing
 * both) */
static bool wgmma_wanted(double tensor_work) {
    const char *want = getenv("MLP_CUDA_WGMMA");
    if (!(tensor_work > 0.0) || (want && strcmp(want, "0") == 0)) return false;
    return gemm::wgmma_supported();
}

/* A switch of gemm::Scratch that is on unless its variable (name) is "0":
 * narrow (MLP_CUDA_NARROW), join_small (MLP_CUDA_JOIN_SMALL), gather4
 * (MLP_CUDA_GATHER4), head_pairs (MLP_CUDA_HEAD_PAIRS) */
static bool switched_on(const char *name) {
    const char *want = getenv(name);
    return !(want && strcmp(want, "0") == 0);
}

/* gemm::Scratch's tensor_tiles: MLP_CUDA_TENSOR_TILES=small or large
 * forces one tiling on every product that runs on tensor cores (for
 * measuring them); otherwise gemm.cu's tiling picks. */
static int tensor_tiles(void) {
    const char *want = getenv("MLP_CUDA_TENSOR_TILES");
    if (want && strcmp(want, "small") == 0) return 1;
    if (want && strcmp(want, "large") == 0) return 2;
    return 0;
}

extern "C" mlp_status mlp_create(mlp_model **model, const mlp_config *config) {
    mlp_clear_error();
    if (!model) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    *model = NULL;
    TRY(mlp_check_config(config));
    TRY(mlp_device_check());
    mlp_model *m = (mlp_model *)calloc(1, sizeof *m);
    if (!m) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    new (&m->stop) std::atomic<int>(0);
    m->act = config->activation;
    m->loss = config->loss;
    m->input_scale = config->input_scale;
    mlp_status st = mlp_layout_init(&m->L, config->n_sizes, config->sizes);
    if (st != MLP_OK) {
        free(m);
        return st;
    }
    const int64_t n = m->L.n_params;
    cudaError_t e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        mlp_free(m);
        return cuda_fail(e, "cudaStreamCreate");
    }
    if ((st = device_alloc(&m->params, n, "parameters")) != MLP_OK ||
        (st = device_alloc(&m->m, n, "optimizer state")) != MLP_OK ||
        (st = device_alloc(&m->v, n, "optimizer state")) != MLP_OK ||
        (st = device_alloc(&m->grads, n, "gradients")) != MLP_OK ||
        (st = device_alloc(&m->scratch.partial, gemm::scratch_partial_floats(), "scratch")) !=
            MLP_OK ||
        (st = device_alloc(&m->scratch.counters, gemm::scratch_counters(), "scratch")) != MLP_OK ||
        (st = device_alloc(&m->loss_sum, 1, "totals")) != MLP_OK ||
        (st = device_alloc(&m->hits, 1, "totals")) != MLP_OK ||
        (st = device_alloc(&m->stop_dev, 1, "the stop flag")) != MLP_OK) {
        mlp_free(m);
        return st;
    }
    e = cudaHostAlloc((void **)&m->flags, sizeof *m->flags, cudaHostAllocMapped);
    if (e != cudaSuccess) {
        m->flags = NULL;
        mlp_free(m);
        return cuda_fail(e, "cudaHostAlloc");
    }
    m->flags->stop = 0;
    m->flags->done = -1;
    m->scratch.partial_floats = gemm::scratch_partial_floats();
    m->scratch.n_counters = gemm::scratch_counters();
    m->scratch.chained = chaining_wanted();
    m->scratch.sms = gemm::scratch_sms();
    m->scratch.tensor_min_work = tensor_min_work();
    m->scratch.tensor_tiles = tensor_tiles();
    m->scratch.wgmma = wgmma_wanted(m->scratch.tensor_min_work);
    m->scratch.narrow = switched_on("MLP_CUDA_NARROW");
    m->scratch.join_small = switched_on("MLP_CUDA_JOIN_SMALL");
    m->scratch.gather4 = switched_on("MLP_CUDA_GATHER4");
    m->scratch.head_pairs = switched_on("MLP_CUDA_HEAD_PAIRS");
    const size_t bytes = sizeof(float) * (size_t)n;
    e = cudaMemsetAsync(m->params, 0, bytes, m->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(m->scratch.counters, 0, sizeof(unsigned) * (size_t)m->scratch.n_counters,
                            m->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(m->m, 0, bytes, m->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(m->v, 0, bytes, m->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
    if (e != cudaSuccess) {
        mlp_free(m);
        return cuda_fail(e, "cudaMemset");
    }
    *model = m;
    return MLP_OK;
}

extern "C" void mlp_free(mlp_model *m) {
    if (!m) return;
    if (m->stream) cudaStreamSynchronize(m->stream);
    free_workspace(m);
    free_rows(m);
    free_steps(m);
    cudaFree(m->params);
    cudaFree(m->m);
    cudaFree(m->v);
    cudaFree(m->grads);
    cudaFree(m->scratch.partial);
    cudaFree(m->scratch.counters);
    cudaFree(m->partial);
    cudaFree(m->penalty_parts);
    cudaFree(m->targets);
    cudaFree(m->gathered);
    cudaFree(m->loss_sum);
    cudaFree(m->hits);
    cudaFree(m->stop_dev);
    if (m->flags) cudaFreeHost(m->flags);
    row_stream_free(&m->rows);
    if (m->stream) cudaStreamDestroy(m->stream);
    mlp_layout_free(&m->L);
    m->stop.~atomic<int>();
    free(m);
}

extern "C" int64_t mlp_num_params(const mlp_model *m) { return m ? m->L.n_params : 0; }

extern "C" const char *mlp_kernel_set(const mlp_model *m) {
    if (!m) return "";
    return m->plain ? "plain" : m->last_kernels ? m->last_kernels : "cuda";
}

extern "C" mlp_status mlp_set_threads(mlp_model *m, int n_threads) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    if (n_threads < 0) return mlp_fail(MLP_ERR_INVALID, "n_threads must be >= 0");
    row_stream_set_threads(&m->rows, n_threads); /* the threads that copy rows to the GPU */
    return MLP_OK;
}

extern "C" mlp_status mlp_use_plain_ops(mlp_model *m, int on) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    if (m->plain != (on != 0)) drop_graph(m);
    m->plain = on != 0;
    return MLP_OK;
}

extern "C" mlp_status mlp_set_params(mlp_model *m, const float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const size_t bytes = sizeof(float) * (size_t)m->L.n_params;
    CUDA_TRY(cudaMemcpyAsync(m->params, params, bytes, cudaMemcpyHostToDevice, m->stream));
    CUDA_TRY(cudaMemsetAsync(m->m, 0, bytes, m->stream));
    CUDA_TRY(cudaMemsetAsync(m->v, 0, bytes, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    m->steps = 0;
    return MLP_OK;
}

extern "C" mlp_status mlp_get_params(mlp_model *m, float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    CUDA_TRY(cudaMemcpyAsync(params, m->params, sizeof(float) * (size_t)m->L.n_params,
                             cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    return MLP_OK;
}

extern "C" mlp_status mlp_get_state(mlp_model *m, float *state, int64_t *steps) {
    mlp_clear_error();
    if (!m || !state || !steps) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const size_t n = (size_t)m->L.n_params;
    CUDA_TRY(cudaMemcpyAsync(state, m->m, sizeof(float) * n, cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaMemcpyAsync(state + n, m->v, sizeof(float) * n, cudaMemcpyDeviceToHost,
                             m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    *steps = m->steps;
    return MLP_OK;
}

extern "C" mlp_status mlp_set_state(mlp_model *m, const float *state, int64_t steps) {
    mlp_clear_error();
    if (!m || !state) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    if (steps < 0) return mlp_fail(MLP_ERR_INVALID, "steps must be >= 0");
    const size_t n = (size_t)m->L.n_params;
    CUDA_TRY(cudaMemcpyAsync(m->m, state, sizeof(float) * n, cudaMemcpyHostToDevice, m->stream));
    CUDA_TRY(cudaMemcpyAsync(m->v, state + n, sizeof(float) * n, cudaMemcpyHostToDevice,
                             m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    m->steps = steps;
    return MLP_OK;
}

extern "C" void mlp_request_stop(mlp_model *m) {
    if (!m) return;
    m->stop.store(1);
    if (m->flags) *(volatile int *)&m->flags->stop = 1; /* what a running fused kernel polls */
}

/* Uses up a stop request: true when there was one. */
static bool take_stop(mlp_model *m) {
    const bool requested = m->stop.exchange(0) != 0;
    if (requested && m->flags) *(volatile int *)&m->flags->stop = 0;
    return requested;
}

/* ---- data sets ---------------------------------------------------------- */

template <class T>
static mlp_status upload(T **dev, const T *host, int64_t count, const char *what) {
    TRY(device_alloc(dev, count, what));
    CUDA_TRY(cudaMemcpy(*dev, host, sizeof(T) * (size_t)count, cudaMemcpyHostToDevice));
    return MLP_OK;
}

extern "C" mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                                      int64_t d, const mlp_targets *targets) {
    mlp_clear_error();
    TRY(mlp_check_data_args(data, X, dtype, n, d, targets));
    TRY(mlp_device_check());
    int64_t limit = 0;
    TRY(data_limit_bytes(&limit));
    mlp_data *p = (mlp_data *)calloc(1, sizeof *p);
    if (!p) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    const int64_t bytes = n * d * mlp_dtype_bytes(dtype);
    /* prediction reads each row once: a copy of the whole set first would
     * only add its time */
    mlp_status st = MLP_OK;
    if (targets && bytes <= limit) {
        st = upload((uint8_t **)&p->X, (const uint8_t *)X, bytes, "the data set");
        if (st == MLP_ERR_NOMEM) { /* the GPU had less room than it said: stream */
            mlp_clear_error();
            st = MLP_OK;
        }
    }
    if (!p->X) {
        p->host_X = X;
        p->host_labels = targets ? targets->labels : NULL;
        p->host_values = targets ? targets->values : NULL;
    }
    if (st == MLP_OK && targets && targets->labels)
        st = upload(&p->labels, targets->labels, n, "the labels");
    if (st == MLP_OK && targets && targets->values)
        st = upload(&p->values, targets->values, n * targets->n_outputs, "the targets");
    if (st == MLP_OK && targets && targets->sample_weight) {
        st = upload(&p->weights, targets->sample_weight, n, "the sample weights");
        p->host_weights = (float *)malloc(sizeof(float) * (size_t)n);
        if (st == MLP_OK && !p->host_weights) st = mlp_fail(MLP_ERR_NOMEM, "out of host memory");
        if (st == MLP_OK) memcpy(p->host_weights, targets->sample_weight, sizeof(float) * (size_t)n);
    }
    /* a pageable copy may return before its DMA lands; models use other streams */
    if (st == MLP_OK) {
        const cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) st = cuda_fail(e, "copying the data set to the GPU");
    }
    if (st != MLP_OK) {
        mlp_data_free(p);
        return st;
    }
    p->dtype = dtype;
    p->limit = limit;
    p->info = mlp_target_info_of(targets, n);
    p->n = n;
    p->d = d;
    *data = p;
    return MLP_OK;
}

extern "C" int mlp_data_on_host(const mlp_data *data) { return data && !data->X; }

extern "C" void mlp_data_free(mlp_data *data) {
    if (!data) return;
    cudaFree(data->X);
    cudaFree(data->labels);
    cudaFree(data->values);
    cudaFree(data->weights);
    free(data->host_weights);
    free(data);
}

static mlp_status check_targets(const mlp_model *m, const mlp_data *data) {
    return mlp_check_targets(&data->info, m->loss, m->L.sizes[m->L.n_layers]);
}

static Targets targets_of(const mlp_model *m, const mlp_data *data) {
    return Targets{m->loss, data->labels, data->values, data->weights};
}

/* The total weight of rows order[start .. start + B) (or start.. without an
 * order): their count, or the sum of their sample weights. */
static double weight_of(const mlp_data *data, const int64_t *order, int64_t start, int64_t B) {
    if (!data->host_weights) return (double)B;
    double s = 0.0;
    for (int64_t i = 0; i < B; i++) s += data->host_weights[data_row(order, start, i)];
    return s;
}

/* ---- forward and backward ----------------------------------------------- */

static LayerInput act_input(const float *act) {
    return LayerInput{act, NULL, MLP_FLOAT32, 1.0f, NULL, 0};
}

/* Forward through every layer; the last layer's raw values land in
 * acts[last]. Training on the tuned path: the input rows also land in
 * xbatch, and the last layer is left out when `head` (head_forward_backward
 * computes it). */
static void forward(mlp_model *m, LayerInput in, int64_t B, bool training, bool head) {
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    if (m->plain) {
        gather_batch(m->stream, m->xbatch, in, B, L->sizes[0]);
        const float *inp = m->xbatch;
        for (int l = 0; l <= last; l++) {
            const int64_t out = L->sizes[l + 1];
            float *z = l < last && m->pre[l] ? m->pre[l] : m->acts[l];
            linear_forward(m->stream, z, inp, m->params + L->w_off[l], m->params + L->b_off[l],
                           B, L->sizes[l], out);
            if (l < last) activation_forward(m->stream, m->act, m->acts[l], z, B * out);
            inp = m->acts[l];
        }
        return;
    }
    const int layers = head ? last : last + 1;
    for (int l = 0; l < layers; l++) {
        gemm::linear_forward(m->stream, m->acts[l], l < last ? m->pre[l] : NULL, in,
                             m->params + L->w_off[l], B, L->sizes[l], L->sizes[l + 1], m->act,
                             l < last, l == 0 && training ? m->xbatch : NULL, m->scratch);
        in = act_input(m->acts[l]);
    }
}

/* One optimizer step on rows order[start .. start + B) of the data set, the
 * step's constants at step (device): at batch 64 a step is a few
 * microseconds of arithmetic, so on the tuned path it is three launches for
 * one hidden layer (first layer, head, every weight update). */
static void train_step(mlp_model *m, const mlp_data *data, int64_t start, int64_t B,
                       const StepInfo *step, double *penalty) {
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    const int64_t C = L->sizes[last + 1];
    const Targets t = targets_of(m, data);
    const LayerInput in0 = {NULL, data->X, data->dtype, m->input_scale, m->order, start};
    const bool head = !m->plain && last >= 1 && gemm::head_fits(L->sizes[last], C, m->loss, m->act);
    forward(m, in0, B, true, head);
    if (head) {
        gemm::head_forward_backward(m->stream, m->acts[last], m->douts[last], m->douts[last - 1],
                                    m->acts[last - 1], m->params + L->w_off[last], B,
                                    L->sizes[last], C, m->act, t, m->order, start, step,
                                    m->row_loss, m->row_hit, m->scratch);
    } else {
        loss_forward(m->stream, NULL, m->acts[last], &t, m->order, start, B, C, m->row_loss,
                     m->row_hit);
        loss_backward(m->stream, m->douts[last], m->acts[last], t, m->order, start, B, C, step);
    }
    if (penalty) l2_sum(m->stream, L, m->params, penalty); /* the weights before the update */
    if (m->plain) {
        for (int l = last; l >= 0; l--) {
            const int64_t in = L->sizes[l], out = L->sizes[l + 1];
            const float *inp = l == 0 ? m->xbatch : m->acts[l - 1];
            float *dinp = l == 0 ? NULL : m->douts[l - 1];
            linear_backward(m->stream, dinp, m->grads + L->w_off[l], m->grads + L->b_off[l],
                            m->douts[l], inp, m->params + L->w_off[l], B, in, out, false);
            if (l > 0)
                activation_backward(m->stream, m->act, dinp, m->pre[l - 1], m->acts[l - 1], dinp,
                                    B * in);
        }
        optimizer_update(m->stream, L, step, m->params, m->grads, m->m, m->v);
        return;
    }
    /* the other input gradients, each before its layer's weights change */
    for (int l = head ? last - 1 : last; l >= 1; l--)
        gemm::linear_backward_input(m->stream, m->douts[l - 1], m->douts[l],
                                    m->params + L->w_off[l], m->act, m->pre[l - 1],
                                    m->acts[l - 1], B, L->sizes[l], L->sizes[l + 1], m->scratch);
    /* every layer's weights, MLP_MAX_FUSED_LAYERS per launch */
    gemm::WeightsJob jobs[MLP_MAX_FUSED_LAYERS];
    int n_jobs = 0;
    for (int l = 0; l <= last; l++) {
        jobs[n_jobs++] = gemm::WeightsJob{m->params + L->w_off[l], m->m + L->w_off[l],
                                          m->v + L->w_off[l], m->douts[l],
                                          act_input(l == 0 ? m->xbatch : m->acts[l - 1]),
                                          L->sizes[l], L->sizes[l + 1]};
        if (n_jobs == MLP_MAX_FUSED_LAYERS || l == last) {
            gemm::linear_backward_weights_update(m->stream, jobs, n_jobs, B, step, m->scratch);
            n_jobs = 0;
        }
    }
}

static void enqueue_epoch(mlp_model *m, const mlp_data *data, int64_t first, int64_t last,
                          int64_t n, int64_t batch_size, bool penalty) {
    for (int64_t b = first; b < last; b++) {
        const int64_t start = b * batch_size;
        const int64_t B = n - start < batch_size ? n - start : batch_size;
        train_step(m, data, start, B, m->steps_dev + b, penalty ? m->penalty + b : NULL);
    }
}

/* Steps enqueued between two looks at the stop flag when an epoch is not one
 * graph (a graph cannot be interrupted): about 1e11 floating-point
 * operations, a fraction of a second; an epoch of no more steps is one graph. */
static int64_t steps_per_check(const mlp_layout *L, int64_t batch) {
    double flops = 0.0;
    for (int l = 0; l < L->n_layers; l++)
        flops += 6.0 * (double)batch * (double)L->sizes[l] * (double)L->sizes[l + 1];
    const double steps = 1e11 / (flops > 1.0 ? flops : 1.0);
    return steps < 1.0 ? 1 : steps > (double)MAX_GRAPH_STEPS ? MAX_GRAPH_STEPS : (int64_t)steps;
}

static bool same_key(const GraphKey &a, const GraphKey &b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Records every step over n rows of the order into m->graph. */
static mlp_status record_epoch(mlp_model *m, const mlp_data *data, int64_t n, int64_t batch_size,
                               const GraphKey &key) {
    drop_graph(m);
    CUDA_TRY(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
    enqueue_epoch(m, data, 0, (n + batch_size - 1) / batch_size, n, batch_size, key.penalty);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(m->stream, &g);
    if (e != cudaSuccess) return cuda_fail(e, "recording the epoch");
    e = cudaGraphInstantiate(&m->graph, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        m->graph = NULL;
        return cuda_fail(e, "cudaGraphInstantiate");
    }
    m->key = key;
    return MLP_OK;
}

/* Whether a one-hidden-layer net trains faster one kernel per op at this
 * batch size: a fused epoch's time grows with the hidden units and hardly
 * falls with the batch, while the kernel-per-op path's large products on
 * Hopper's warpgroup tiles (gemm_tensor.cuh's Wide) fill the GPU at large
 * batches. Measured on an H200 (benchmarks/RESULTS.md, "one kernel per op
 * for wide layers at large batches", and since the tiles' epilogue takes
 * runs of four columns, "the tiles' sums in runs"): from 2^21 hidden values
 * a step, every shape measured of 256 units or more was faster one kernel
 * per op (1.11x to 2.35x); at 2^20, some were slower (to 0.95x). */
static bool wide_products_win(const mlp_model *m, int64_t batch) {
    const int64_t H = m->L.sizes[1];
    return m->scratch.wgmma && H >= 256 && H * batch >= ((int64_t)1 << 21);
}

/* The fused kernel's plan for this model at a batch size (rows per step):
 * ok = false when the model takes a kernel-per-op path. */
static FusedPlan plan_for(mlp_model *m, const mlp_data *data, const mlp_optimizer &opt,
                          int64_t batch) {
    const mlp_layout *L = &m->L;
    if (m->plain || L->n_layers != 2 ||
        !fused_supports(data->weights != NULL, data->dtype, m->input_scale))
        return FusedPlan{};
    const bool general = fused_general(m->act, m->loss, opt);
    /* MLP_CUDA_ROWS_ACT=0: tanh and GELU on fused_rows.cu's general kernel,
     * for measuring */
    const bool by_act =
        fused_rows_by_activation(m->act, m->loss, opt) && switched_on("MLP_CUDA_ROWS_ACT");
    /* MLP_KERNELS=base: the float32 units only, as in the C core's baseline;
     * MLP_KERNELS=gemm: the tuned kernel-per-op path; MLP_KERNELS=fused: the
     * one-kernel epoch even where wide_products_win (benchmarks) */
    const char *kernels = getenv("MLP_KERNELS");
    if (kernels && strcmp(kernels, "gemm") == 0) return FusedPlan{};
    if (!(kernels && strcmp(kernels, "fused") == 0) && wide_products_win(m, batch))
        return FusedPlan{};
    const bool tensor = !(kernels && strcmp(kernels, "base") == 0);
    /* plan_batch 0 until the first plan */
    const int moments = fused_moments(opt);
    if (m->plan_batch != batch || m->plan_tensor != tensor || m->plan.general != general ||
        m->plan.by_act != by_act || m->plan_dtype != data->dtype ||
        m->plan.kept_moments != moments) {
        m->plan = fused_plan(L->sizes[0], L->sizes[1], L->sizes[2], batch, data->dtype, tensor,
                             general, by_act, m->act, moments);
        m->plan_dtype = data->dtype;
        m->plan_batch = batch;
        m->plan_tensor = tensor;
    }
    return m->plan;
}

/* The epoch through a fused kernel; its rows' losses and hits land in row_loss
 * and row_hit like the other paths'. */
static mlp_status train_fused(mlp_model *m, const mlp_data *data, const FusedPlan &plan,
                              int64_t n, int64_t batch_size, const mlp_optimizer &opt,
                              bool penalty) {
    const mlp_layout *L = &m->L;
    TRY(grow(&m->partial, &m->partial_cap, plan.workspace_floats, "the fused workspace"));
    if (penalty)
        TRY(grow(&m->penalty_parts, &m->penalty_parts_cap, 2 * (int64_t)plan.blocks,
                 "the penalty's parts"));
    if (m->loss != MLP_CROSS_ENTROPY)
        TRY(grow(&m->targets, &m->targets_cap, n * L->sizes[2], "the epoch's targets"));
    TRY(grow(&m->gathered, &m->gathered_cap, fused_rows_bytes(plan, n, data->dtype),
             "the epoch's rows"));
    FusedEpoch e;
    e.n = n;
    e.D = L->sizes[0];
    e.dtype = data->dtype;
    e.rows = m->gathered;
    e.row_stride = plan.row_stride;
    e.in_tile = plan.in_tile;
    e.head_groups = plan.head_groups;
    e.stationary = plan.stationary;
    e.kept_moments = plan.kept_moments;
    e.keep_inputs = plan.keep_inputs;
    e.keep_at = plan.keep_at;
    e.kept_floats = plan.kept_floats;
    e.labels = m->labels;
    e.targets = m->targets;
    e.X = data->X;
    e.loss = m->loss;
    e.y = data->labels;
    e.values = data->values;
    e.order = m->order;
    e.batch = batch_size;
    e.H = L->sizes[1];
    e.C = L->sizes[2];
    e.W1 = m->params + L->w_off[0];
    e.V1 = m->m + L->w_off[0];
    e.S1 = m->v + L->w_off[0];
    e.W2 = m->params + L->w_off[1];
    e.V2 = m->m + L->w_off[1];
    e.S2 = m->v + L->w_off[1];
    e.general = plan.general;
    e.act = m->act;
    e.step = mlp_step_init(&opt, 1, 1.0); /* the default recipe's: the same every step */
    e.steps = m->steps_dev;
    e.penalty = penalty ? m->penalty : NULL;
    e.penalty_parts = m->penalty_parts;
    e.input_scale = m->input_scale;
    e.tensor_cores = plan.tensor_cores;
    e.async_copy = plan.async_copy;
    e.partial = m->partial;
    e.h = m->acts[0];
    e.dh = m->douts[0];
    e.dlogits = m->douts[1];
    e.row_loss = m->row_loss;
    e.row_hit = m->row_hit;
    e.stop_host = &m->flags->stop;
    e.stop_dev = m->stop_dev; /* written at step 0 before any block reads it */
    e.steps_done = &m->flags->done;
    *(volatile int64_t *)&m->flags->done = -1;
    CUDA_TRY(fused_train_epoch(m->stream, plan, e));
    m->last_kernels = plan.by_rows ? "fused-rows" : e.tensor_cores ? "fused-tensor" : "fused";
    return MLP_OK;
}

/* Each step's constants of an epoch of n rows, into steps_host and on the
 * GPU; returns the total weight, and each batch's weight in *weights. */
static mlp_status write_steps(mlp_model *m, const mlp_data *data, const int64_t *order, int64_t n,
                              int64_t batch_size, const mlp_optimizer &opt, double *total) {
    const int64_t batches = (n + batch_size - 1) / batch_size;
    *total = 0.0;
    for (int64_t b = 0; b < batches; b++) {
        const int64_t start = b * batch_size, B = n - start < batch_size ? n - start : batch_size;
        const double w = weight_of(data, order, start, B);
        StepInfo &s = m->steps_host[b];
        s.s = mlp_step_init(&opt, m->steps + b + 1, w);
        s.inv_wsum = w > 0.0 ? (float)(1.0 / w) : 0.0f;
        s.l2_half = opt.convention == MLP_SKLEARN ? 0.5f * s.s.l2_weight : 0.0f;
        s.loss_scale = mlp_reported_loss_scale(opt.convention, m->loss, m->L.sizes[m->L.n_layers]);
        *total += w;
    }
    CUDA_TRY(cudaMemcpyAsync(m->steps_dev, m->steps_host, sizeof(StepInfo) * (size_t)batches,
                             cudaMemcpyHostToDevice, m->stream));
    return MLP_OK;
}

/* The epoch's mean loss, batch losses and accuracy, from the GPU's totals. */
static mlp_status epoch_results(mlp_model *m, int64_t n, int64_t batch_size, bool penalty,
                                bool weighted, double total, float *batch_losses,
                                double *mean_loss, double *accuracy) {
    const int64_t batches = (n + batch_size - 1) / batch_size;
    reduce_epoch(m->stream, m->row_loss, m->row_hit, n, batch_size, m->steps_dev,
                 penalty ? m->penalty : NULL, m->batch_loss, m->loss_sum, m->hits);
    CUDA_TRY(cudaGetLastError());
    float *losses = (float *)malloc(sizeof(float) * (size_t)batches);
    if (!losses) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    double loss_sum = 0.0;
    int64_t hits = 0;
    cudaError_t e = cudaMemcpyAsync(losses, m->batch_loss, sizeof(float) * (size_t)batches,
                                    cudaMemcpyDeviceToHost, m->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(&loss_sum, m->loss_sum, sizeof loss_sum, cudaMemcpyDeviceToHost,
                            m->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(&hits, m->hits, sizeof hits, cudaMemcpyDeviceToHost, m->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
    if (e != cudaSuccess) {
        free(losses);
        return cuda_fail(e, "reading the epoch's results");
    }
    if (batch_losses) memcpy(batch_losses, losses, sizeof(float) * (size_t)batches);
    double mean = loss_sum / (double)n; /* every row weighs 1, no penalty */
    if (weighted || penalty) { /* each batch's loss weighs its weight */
        mean = 0.0;
        for (int64_t b = 0; b < batches; b++) {
            const double inv = m->steps_host[b].inv_wsum;
            mean += inv > 0.0 ? (double)losses[b] / inv : 0.0;
        }
        mean = total > 0.0 ? mean / total : 0.0;
    }
    free(losses);
    if (mean_loss) *mean_loss = mean;
    if (accuracy) *accuracy = (double)hits / (double)n;
    return MLP_OK;
}

/* An epoch over data on the GPU (mlp_train_epoch, its arguments checked). */
static mlp_status train_resident(mlp_model *m, const mlp_data *data, const int64_t *order,
                                 int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                                 float *batch_losses, double *mean_loss, double *accuracy) {
    if (take_stop(m)) return mlp_fail(MLP_STOPPED, "stopped at the caller's request after 0 rows");
    const int64_t n = n_order, batches = (n + batch_size - 1) / batch_size;
    TRY(reserve_rows(m, batch_size < n ? batch_size : n));
    TRY(reserve_epoch(m, n));
    TRY(reserve_steps(m, batches));
    CUDA_TRY(cudaMemcpyAsync(m->order, order, sizeof(int64_t) * (size_t)n,
                             cudaMemcpyHostToDevice, m->stream));
    double total = 0.0;
    TRY(write_steps(m, data, order, n, batch_size, *opt, &total));
    const bool penalty = opt->convention == MLP_SKLEARN && opt->weight_decay > 0.0f;
    if (penalty)
        CUDA_TRY(cudaMemsetAsync(m->penalty, 0, sizeof(double) * (size_t)batches, m->stream));
    const FusedPlan plan = plan_for(m, data, *opt, batch_size < n ? batch_size : n);
    bool fused = false;
    /* the one-kernel epochs divide their indices in 32 bits (div32 in fused.cuh) */
    const bool small = n < INT32_MAX && m->L.sizes[0] < INT32_MAX && m->L.sizes[1] < INT32_MAX;
    if (plan.ok && small) {
        const mlp_status st = train_fused(m, data, plan, n, batch_size, *opt, penalty);
        if (st == MLP_ERR_NOMEM)
            mlp_clear_error(); /* no room for its workspace: the kernel-per-op path */
        else if (st != MLP_OK)
            return st;
        fused = st == MLP_OK;
    }
    int64_t done = batches;
    if (!fused)
        m->last_kernels = m->plain ? "plain"
                          : gemm::any_on_tensor(m->scratch, m->L.sizes, m->L.n_layers,
                                                batch_size < n ? batch_size : n)
                              ? "cuda-tensor"
                              : "cuda";
    const int64_t chunk = steps_per_check(&m->L, batch_size < n ? batch_size : n);
    if (!fused && batches > chunk) { /* enqueued in chunks, the stop flag between them */
        drop_graph(m);
        for (int64_t b = 0; b < batches; b += chunk) {
            if (b > 0 && take_stop(m)) {
                done = b;
                break;
            }
            const int64_t end = b + chunk < batches ? b + chunk : batches;
            enqueue_epoch(m, data, b, end, n, batch_size, penalty);
            CUDA_TRY(cudaStreamSynchronize(m->stream));
        }
    } else if (!fused) {
        GraphKey key;
        memset(&key, 0, sizeof key); /* padding too: keys are compared bytewise */
        key.data = data;
        key.X = data->X;
        key.n = n;
        key.batch_size = batch_size;
        key.plain = m->plain;
        key.penalty = penalty;
        if (!m->graph || !same_key(m->key, key)) TRY(record_epoch(m, data, n, batch_size, key));
        CUDA_TRY(cudaGraphLaunch(m->graph, m->stream));
    }
    if (fused) { /* the epoch's results wait for the kernel; then, whether it stopped */
        const bool scaled = m->steps_host[0].loss_scale != 1.0f;
        TRY(epoch_results(m, n, batch_size, penalty, data->weights != NULL || scaled, total,
                          batch_losses, mean_loss, accuracy));
        const int64_t stopped_at = *(volatile int64_t *)&m->flags->done;
        if (stopped_at < 0) {
            m->steps += batches;
            return MLP_OK;
        }
        take_stop(m);
        done = stopped_at;
    }
    m->steps += done;
    const int64_t rows = done == batches ? n : done * batch_size;
    if (done < batches) total = weight_of(data, order, 0, rows);
    const bool scaled = m->steps_host[0].loss_scale != 1.0f;
    if (rows > 0)
        TRY(epoch_results(m, rows, batch_size, penalty, data->weights != NULL || scaled, total,
                          batch_losses, mean_loss, accuracy));
    if (done < batches)
        return mlp_fail(MLP_STOPPED, "stopped at the caller's request after %lld rows",
                        (long long)rows);
    return MLP_OK;
}

/* Bytes of rows a chunk streamed from host memory holds: an eighth of the
 * data's limit, at most `most`. */
static int64_t chunk_bytes(const mlp_data *data, int64_t most) {
    return data->limit / 8 < most ? data->limit / 8 : most;
}

static HostRows host_rows_of(const mlp_data *data) {
    return HostRows{(const uint8_t *)data->host_X, data->host_labels, data->host_values,
                    data->host_weights, data->d * mlp_dtype_bytes(data->dtype),
                    data->info.n_outputs};
}

/* An epoch over data in host memory: chunks of whole batches (about 64 MiB
 * of rows, an eighth of MLP_CUDA_DATA_LIMIT where that is less, at least one
 * batch; the last takes the partial batch too, so that no chunk is planned
 * for fewer rows than the epoch's batches have), each gathered in the
 * epoch's order into a slot and trained on as a data set of its own, while a
 * helper thread gathers and sends the next. The steps are those of the whole
 * epoch on the GPU, batch for batch, bit for bit. */
static mlp_status train_streamed(mlp_model *m, const mlp_data *data, const int64_t *order,
                                 int64_t n, int64_t batch_size, const mlp_optimizer *opt,
                                 float *batch_losses, double *mean_loss, double *accuracy) {
    const HostRows host = host_rows_of(data);
    int64_t chunk = chunk_bytes(data, (int64_t)64 << 20) / (batch_size * host.x_bytes) * batch_size;
    if (chunk < batch_size) chunk = batch_size;
    if (chunk > n) chunk = n;
    /* rows of the chunk from `start`: a partial batch left over joins it */
    auto rows_from = [&](int64_t start) {
        const int64_t rest = n - start;
        return rest - chunk < batch_size ? rest : chunk;
    };
    const int64_t most = chunk + batch_size < n ? chunk + batch_size : n;
    TRY(row_stream_reserve(&m->rows, most,
                           RowParts{host.x_bytes, host.labels != NULL,
                                    host.values ? host.n_values : 0, host.weights != NULL, 0}));
    int64_t *identity = (int64_t *)malloc(sizeof(int64_t) * (size_t)most);
    if (!identity) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    for (int64_t i = 0; i < most; i++) identity[i] = i;
    mlp_data view[2];
    for (int k = 0; k < 2; k++) {
        const RowSlot &slot = m->rows.slot[k];
        memset(&view[k], 0, sizeof view[k]);
        view[k].X = slot.dev_x;
        view[k].dtype = data->dtype;
        view[k].labels = host.labels ? slot.dev_labels : NULL;
        view[k].values = host.values ? slot.dev_values : NULL;
        view[k].weights = host.weights ? slot.dev_weights : NULL;
        view[k].host_weights = host.weights ? slot.host_weights : NULL;
        view[k].info = data->info;
        view[k].d = data->d;
    }
    mlp_status st = MLP_OK;
    cudaError_t e = row_stream_stage(&m->rows, 0, host, order, 0, rows_from(0));
    if (e != cudaSuccess) st = cuda_fail(e, "streaming rows to the GPU");
    double loss_sum = 0.0, weight = 0.0, hits = 0.0;
    int64_t rows_done = 0;
    for (int64_t start = 0, k = 0, rows = 0; start < n && st == MLP_OK; start += rows, k ^= 1) {
        rows = rows_from(start);
        const int64_t next = start + rows, next_rows = next < n ? rows_from(next) : 0;
        cudaError_t next_e = cudaSuccess;
        std::thread helper;
        if (next < n) {
            try {
                helper = std::thread([&, next, next_rows, k] {
                    next_e = row_stream_stage(&m->rows, (int)(k ^ 1), host, order, next, next_rows);
                });
            } catch (...) { /* no thread: the next chunk is staged after this one */
            }
        }
        view[k].n = rows;
        drop_graph(m); /* the slots' buffers are not part of a graph's key */
        const int64_t steps_before = m->steps;
        double mean = 0.0, acc = 0.0;
        e = cudaStreamWaitEvent(m->stream, m->rows.slot[k].copied, 0);
        st = e != cudaSuccess ? cuda_fail(e, "streaming rows to the GPU")
                              : train_resident(m, &view[k], identity, rows, batch_size, opt,
                                               batch_losses ? batch_losses + start / batch_size
                                                            : NULL,
                                               &mean, &acc);
        e = cudaEventRecord(m->rows.slot[k].consumed, m->stream);
        if (helper.joinable())
            helper.join();
        else if (next < n && st == MLP_OK)
            next_e = row_stream_stage(&m->rows, (int)(k ^ 1), host, order, next, next_rows);
        int64_t done = st == MLP_OK ? rows : (m->steps - steps_before) * batch_size;
        if (done > rows) done = rows;
        if (st == MLP_OK || st == MLP_STOPPED) {
            const double w = weight_of(&view[k], identity, 0, done);
            loss_sum += mean * w;
            weight += w;
            hits += acc * (double)done;
            rows_done += done;
        }
        if (st == MLP_OK && e != cudaSuccess) st = cuda_fail(e, "cudaEventRecord");
        if (st == MLP_OK && next_e != cudaSuccess) st = cuda_fail(next_e, "streaming rows to the GPU");
    }
    drop_graph(m);
    free(identity);
    if (st != MLP_OK && st != MLP_STOPPED) return st;
    if (mean_loss) *mean_loss = weight > 0.0 ? loss_sum / weight : 0.0;
    if (accuracy) *accuracy = rows_done > 0 ? hits / (double)rows_done : 0.0;
    if (st == MLP_STOPPED)
        return mlp_fail(MLP_STOPPED, "stopped at the caller's request after %lld rows",
                        (long long)rows_done);
    return MLP_OK;
}

extern "C" mlp_status mlp_train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                                      int64_t n_order, int64_t batch_size,
                                      const mlp_optimizer *opt, float *batch_losses,
                                      double *mean_loss, double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    TRY(mlp_check_train_args(&m->L, data->n, data->d, order, n_order, batch_size, opt));
    TRY(check_targets(m, data));
    if (!data->X)
        return train_streamed(m, data, order, n_order, batch_size, opt, batch_losses, mean_loss,
                              accuracy);
    return train_resident(m, data, order, n_order, batch_size, opt, batch_losses, mean_loss,
                          accuracy);
}

/* Rows per chunk of a pass over a data set: a workspace of about 128 MiB,
 * and for rows streamed from host memory a slot of at most 32 MiB (an
 * eighth of MLP_CUDA_DATA_LIMIT where that is less), in whole 256-row
 * pieces, no more than the data has. */
static int64_t pass_rows(const mlp_model *m, const mlp_data *data) {
    const mlp_layout *L = &m->L;
    int64_t per_row = L->sizes[0] + L->sizes[L->n_layers]; /* xbatch and out */
    for (int l = 0; l < L->n_layers; l++) per_row += 3 * L->sizes[l + 1];
    int64_t rows = ((int64_t)128 << 20) / (4 * per_row);
    if (!data->X) {
        const int64_t slot_rows = chunk_bytes(data, (int64_t)32 << 20) / host_rows_of(data).x_bytes;
        if (slot_rows < rows) rows = slot_rows;
    }
    rows = rows / 256 * 256;
    if (rows < 256) rows = 256;
    if (rows > 65536) rows = 65536;
    return rows < data->n ? rows : data->n;
}

/* Runs the forward pass over the data set in chunks; copies the outputs or
 * the last layer's values out when `out` is given, each row's class (its
 * largest value) when `classes` is; each row's weighted loss
 * and hit when the data has targets. With grad: also each chunk's gradient,
 * every row weighing its weight * step->inv_wsum, added into m->grads (the
 * plain ops). Rows in host memory come through the row stream's two slots,
 * the next chunk's copy under this one's compute; the outputs go back
 * through pinned memory, so no copy makes the host wait for the GPU. */
static mlp_status forward_all(mlp_model *m, const mlp_data *data, float *out, int want_logits,
                              int32_t *classes, bool with_targets, const StepInfo *grad_step) {
    const mlp_layout *L = &m->L;
    if (data->d != L->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)data->d, (long long)L->sizes[0]);
    const int64_t C = L->sizes[L->n_layers];
    const int last = L->n_layers - 1;
    const bool streamed = data->X == NULL;
    const int64_t chunk = pass_rows(m, data);
    TRY(reserve_rows(m, chunk));
    if (with_targets) TRY(reserve_epoch(m, data->n));
    const HostRows host = host_rows_of(data);
    /* what goes back per row: C floats, or one int32 */
    uint8_t *back = out ? (uint8_t *)out : (uint8_t *)classes;
    const int64_t back_bytes = out ? 4 * C : classes ? 4 : 0;
    if (streamed || back)
        TRY(row_stream_reserve(&m->rows, chunk,
                               RowParts{streamed ? host.x_bytes : 0, false, 0, false,
                                        back_bytes / 4}));
    const Targets t = with_targets ? targets_of(m, data) : Targets{m->loss, NULL, NULL, NULL};
    const bool plain = m->plain;
    if (grad_step) {
        m->plain = true; /* the readable ops accumulate over chunks */
        CUDA_TRY(cudaMemsetAsync(m->grads, 0, sizeof(float) * (size_t)L->n_params, m->stream));
    }
    int64_t waiting[2] = {-1, -1}; /* the first row of the outputs each slot holds */
    auto copy_back = [&](int64_t k) { /* slot k's outputs, landed, to the caller's memory */
        const int64_t rows = data->n - waiting[k] < chunk ? data->n - waiting[k] : chunk;
        row_stream_copy_out(&m->rows, back + waiting[k] * back_bytes, m->rows.slot[k].host_out,
                            rows * back_bytes);
        waiting[k] = -1;
    };
    mlp_status st = MLP_OK;
    for (int64_t start = 0, k = 0; start < data->n && st == MLP_OK; start += chunk, k ^= 1) {
        const int64_t B = data->n - start < chunk ? data->n - start : chunk;
        RowSlot &slot = m->rows.slot[k];
        if (back && waiting[k] >= 0) { /* the slot's outputs from two chunks ago */
            cudaError_t e = cudaEventSynchronize(slot.out_ready);
            if (e != cudaSuccess) {
                st = cuda_fail(e, "copying outputs back");
                break;
            }
            copy_back(k);
        }
        LayerInput in{NULL, data->X, data->dtype, m->input_scale, NULL, start};
        if (streamed) {
            cudaError_t e = row_stream_stage(&m->rows, k, host, NULL, start, B);
            if (e == cudaSuccess) e = cudaStreamWaitEvent(m->stream, slot.copied, 0);
            if (e != cudaSuccess) {
                st = cuda_fail(e, "streaming rows to the GPU");
                break;
            }
            in = LayerInput{NULL, slot.dev_x, data->dtype, m->input_scale, NULL, 0};
        }
        forward(m, in, B, grad_step != NULL, false);
        float *outputs = out && !want_logits ? m->out : NULL;
        if (outputs || with_targets)
            loss_forward(m->stream, outputs, m->acts[last], &t, NULL, start, B, C, m->row_loss,
                         m->row_hit);
        if (grad_step) {
            loss_backward(m->stream, m->douts[last], m->acts[last], t, NULL, start, B, C,
                          grad_step);
            for (int l = last; l >= 0; l--) {
                const int64_t in_w = L->sizes[l], outw = L->sizes[l + 1];
                float *dinp = l == 0 ? NULL : m->douts[l - 1];
                linear_backward(m->stream, dinp, m->grads + L->w_off[l], m->grads + L->b_off[l],
                                m->douts[l], l == 0 ? m->xbatch : m->acts[l - 1],
                                m->params + L->w_off[l], B, in_w, outw, true);
                if (l > 0)
                    activation_backward(m->stream, m->act, dinp, m->pre[l - 1], m->acts[l - 1],
                                        dinp, B * in_w);
            }
        }
        if (classes) rows_argmax(m->stream, m->classes, m->acts[last], B, C);
        cudaError_t e = cudaGetLastError();
        if (e == cudaSuccess && streamed) e = cudaEventRecord(slot.consumed, m->stream);
        if (e == cudaSuccess && back) {
            const void *src = classes ? (const void *)m->classes
                                      : want_logits ? m->acts[last] : outputs;
            e = cudaMemcpyAsync(slot.host_out, src, (size_t)(B * back_bytes),
                                cudaMemcpyDeviceToHost, m->stream);
            if (e == cudaSuccess) e = cudaEventRecord(slot.out_ready, m->stream);
            waiting[k] = start;
        }
        if (e != cudaSuccess) st = cuda_fail(e, "the forward pass");
    }
    m->plain = plain;
    const cudaError_t e = cudaStreamSynchronize(m->stream);
    if (st != MLP_OK) return st;
    if (e != cudaSuccess) return cuda_fail(e, "the forward pass");
    for (int j = 0; j < 2; j++) /* the last chunks' outputs, landed now */
        if (back && waiting[j] >= 0) copy_back(j);
    return MLP_OK;
}

extern "C" mlp_status mlp_predict(mlp_model *m, const mlp_data *data, float *out,
                                  int want_logits) {
    mlp_clear_error();
    if (!m || !data || !out) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    return forward_all(m, data, out, want_logits, NULL, false, NULL);
}

extern "C" mlp_status mlp_predict_classes(mlp_model *m, const mlp_data *data, int32_t *out) {
    mlp_clear_error();
    if (!m || !data || !out) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    return forward_all(m, data, NULL, 0, out, false, NULL);
}

/* The sum of the rows' weighted losses and the hits, after forward_all. */
static mlp_status totals(mlp_model *m, int64_t n, double *loss_sum, int64_t *hits) {
    reduce_epoch(m->stream, m->row_loss, m->row_hit, n, n, NULL, NULL, NULL, m->loss_sum, m->hits);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpyAsync(loss_sum, m->loss_sum, sizeof *loss_sum, cudaMemcpyDeviceToHost,
                             m->stream));
    CUDA_TRY(cudaMemcpyAsync(hits, m->hits, sizeof *hits, cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    return MLP_OK;
}

extern "C" mlp_status mlp_evaluate(mlp_model *m, const mlp_data *data, double *mean_loss,
                                   double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    TRY(check_targets(m, data));
    TRY(forward_all(m, data, NULL, 0, NULL, true, NULL));
    double loss_sum = 0.0;
    int64_t hits = 0;
    TRY(totals(m, data->n, &loss_sum, &hits));
    const double weight = weight_of(data, NULL, 0, data->n);
    if (mean_loss) *mean_loss = weight > 0.0 ? loss_sum / weight : 0.0;
    if (accuracy) *accuracy = (double)hits / (double)data->n;
    return MLP_OK;
}

extern "C" mlp_status mlp_loss_and_grad(mlp_model *m, const mlp_data *data,
                                        const mlp_optimizer *opt, double *loss, float *grad) {
    mlp_clear_error();
    if (!m || !data || !loss) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    TRY(mlp_check_optimizer(opt));
    TRY(check_targets(m, data));
    TRY(reserve_steps(m, 1));
    const double total = weight_of(data, NULL, 0, data->n);
    StepInfo &s = m->steps_host[0];
    s.s = mlp_step_init(opt, 1, total);
    s.inv_wsum = total > 0.0 ? (float)(1.0 / total) : 0.0f;
    CUDA_TRY(cudaMemcpyAsync(m->steps_dev, &s, sizeof s, cudaMemcpyHostToDevice, m->stream));
    TRY(forward_all(m, data, NULL, 0, NULL, true, grad ? m->steps_dev : NULL));
    double loss_sum = 0.0;
    int64_t hits = 0;
    TRY(totals(m, data->n, &loss_sum, &hits));
    const int64_t n = m->L.n_params;
    float *params = (float *)malloc(sizeof(float) * (size_t)n);
    if (!params) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    mlp_status st = mlp_get_params(m, params);
    if (st == MLP_OK && grad) {
        const cudaError_t e = cudaMemcpy(grad, m->grads, sizeof(float) * (size_t)n,
                                         cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) st = cuda_fail(e, "reading the gradient");
    }
    if (st != MLP_OK) {
        free(params);
        return st;
    }
    const double penalty = mlp_l2_terms(&m->L, &s.s, params, grad);
    free(params);
    *loss = (total > 0.0 ? loss_sum / total : 0.0) *
                mlp_reported_loss_scale(opt->convention, m->loss, m->L.sizes[m->L.n_layers]) +
            penalty;
    return MLP_OK;
}
