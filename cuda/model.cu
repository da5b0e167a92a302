/*
 * model.cu - the CUDA core: mlp.h implemented with the kernels of ops.cu,
 * mirroring csrc/model.c step for step.
 *
 * The data set is copied to the GPU once, uint8 staying uint8. An epoch is
 * enqueued as one CUDA graph (every step's kernels, recorded once per
 * data set, batch size and hyperparameters, then replayed), so the host
 * neither launches nor waits per step. Per-row losses and hits stay on the
 * GPU until one reduction at the end of the epoch.
 *
 * Networks with one hidden layer train through fused.cu or fused_rows.cu
 * instead (fused.cuh says which): the whole epoch is one persistent kernel. mlp_use_plain_ops selects the
 * kernel-per-op path for them too, so tests can hold the two together.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "mlp.h"
#include "fused.cuh"
#include "ops.cuh"

struct mlp_data {
    void *X; /* device, (n, d) */
    mlp_dtype dtype;
    int32_t *y; /* device, (n) or NULL */
    int32_t y_lo, y_hi;
    int64_t n, d;
};

/* Epochs of more steps are launched kernel by kernel. */
static const int64_t MAX_GRAPH_STEPS = 4096;

/* What a recorded epoch graph depends on besides the model's own buffers. */
struct GraphKey {
    const void *X;
    const int32_t *y;
    mlp_dtype dtype;
    int64_t n, batch_size;
    float lr, momentum, weight_decay;
};

struct mlp_model {
    mlp_layout L;
    float *params, *velocity; /* device, n_params each */
    cudaStream_t stream;
    /* workspace for up to cap rows: every layer's output and the gradient
     * with respect to it */
    int64_t cap;
    float **acts, **douts;
    float *xbatch; /* the training batch's input rows as floats, (cap, D) */
    Scratch scratch;
    /* per-row statistics for up to rows_cap rows, the order of an epoch */
    int64_t rows_cap;
    float *row_loss, *batch_loss;
    int32_t *row_hit;
    int64_t *order;
    double *loss_sum;
    int64_t *hits;
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
    float *partial;
    int64_t partial_cap;
    uint8_t *gathered; /* the epoch's rows in order, gathered_cap bytes */
    int64_t gathered_cap;
    int32_t *labels;   /* their labels, rows_cap */
};

/* ---- errors ------------------------------------------------------------ */

static mlp_status cuda_fail(cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear a non-sticky error so the process stays usable */
    if (e == cudaErrorMemoryAllocation)
        return mlp_fail(MLP_ERR_NOMEM, "out of GPU memory (%s)", what);
    return mlp_fail(MLP_ERR_DEVICE, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

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

template <class T>
static mlp_status device_alloc(T **p, int64_t count, const char *what) {
    *p = NULL;
    cudaError_t e = cudaMalloc((void **)p, sizeof(T) * (size_t)(count > 0 ? count : 1));
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            return mlp_fail(MLP_ERR_NOMEM, "out of GPU memory for %s (%lld bytes)", what,
                            (long long)(sizeof(T) * (size_t)count));
        return cuda_fail(e, "cudaMalloc");
    }
    return MLP_OK;
}

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
        if (m->douts) cudaFree(m->douts[l]);
    }
    free(m->acts);
    free(m->douts);
    cudaFree(m->xbatch);
    m->xbatch = NULL;
    m->acts = m->douts = NULL;
    m->cap = 0;
}

static void free_rows(mlp_model *m) {
    drop_graph(m);
    cudaFree(m->row_loss);
    cudaFree(m->row_hit);
    cudaFree(m->batch_loss);
    cudaFree(m->order);
    cudaFree(m->labels);
    m->row_loss = m->batch_loss = NULL;
    m->row_hit = m->labels = NULL;
    m->order = NULL;
    m->rows_cap = 0;
}

/* Grows the per-batch workspace to `rows` rows. */
static mlp_status reserve_rows(mlp_model *m, int64_t rows) {
    if (rows <= m->cap) return MLP_OK;
    free_workspace(m);
    const int n_layers = m->L.n_layers;
    m->acts = (float **)calloc((size_t)n_layers, sizeof(float *));
    m->douts = (float **)calloc((size_t)n_layers, sizeof(float *));
    if (!m->acts || !m->douts) {
        free_workspace(m);
        return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    }
    mlp_status st0 = device_alloc(&m->xbatch, rows * m->L.sizes[0], "the input batch");
    if (st0 != MLP_OK) {
        free_workspace(m);
        return st0;
    }
    for (int l = 0; l < n_layers; l++) {
        const int64_t width = m->L.sizes[l + 1];
        mlp_status st = device_alloc(&m->acts[l], rows * width, "activations");
        if (st == MLP_OK) st = device_alloc(&m->douts[l], rows * width, "gradients");
        if (st != MLP_OK) {
            free_workspace(m);
            return st;
        }
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
    if (st == MLP_OK) st = device_alloc(&m->batch_loss, n, "batch losses");
    if (st == MLP_OK) st = device_alloc(&m->order, n, "the batch order");
    if (st == MLP_OK) st = device_alloc(&m->labels, n, "labels");
    if (st != MLP_OK) {
        free_rows(m);
        return st;
    }
    m->rows_cap = n;
    return MLP_OK;
}

/* ---- create, free, parameters ------------------------------------------ */

extern "C" mlp_status mlp_create(mlp_model **model, int n_sizes, const int64_t *sizes) {
    mlp_clear_error();
    if (!model) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    *model = NULL;
    TRY(mlp_device_check());
    mlp_model *m = (mlp_model *)calloc(1, sizeof *m);
    if (!m) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    mlp_status st = mlp_layout_init(&m->L, n_sizes, sizes);
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
        (st = device_alloc(&m->velocity, n, "momentum")) != MLP_OK ||
            (st = device_alloc(&m->scratch.partial, scratch_partial_floats(), "scratch")) != MLP_OK ||
        (st = device_alloc(&m->scratch.counters, scratch_counters(), "scratch")) != MLP_OK ||
        (st = device_alloc(&m->loss_sum, 1, "totals")) != MLP_OK ||
        (st = device_alloc(&m->hits, 1, "totals")) != MLP_OK) {
        mlp_free(m);
        return st;
    }
    m->scratch.partial_floats = scratch_partial_floats();
    m->scratch.n_counters = scratch_counters();
    e = cudaMemsetAsync(m->params, 0, sizeof(float) * (size_t)n, m->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(m->scratch.counters, 0, sizeof(unsigned) * (size_t)m->scratch.n_counters,
                            m->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(m->velocity, 0, sizeof(float) * (size_t)n, m->stream);
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
    cudaFree(m->params);
    cudaFree(m->velocity);
    cudaFree(m->scratch.partial);
    cudaFree(m->scratch.counters);
    cudaFree(m->partial);
    cudaFree(m->gathered);
    cudaFree(m->loss_sum);
    cudaFree(m->hits);
    if (m->stream) cudaStreamDestroy(m->stream);
    mlp_layout_free(&m->L);
    free(m);
}

extern "C" int64_t mlp_num_params(const mlp_model *m) { return m ? m->L.n_params : 0; }

extern "C" const char *mlp_kernel_set(const mlp_model *m) {
    if (!m) return "";
    return m->plain ? "plain" : m->last_kernels ? m->last_kernels : "cuda";
}

extern "C" mlp_status mlp_use_plain_ops(mlp_model *m, int on) {
    mlp_clear_error();
    if (!m) return mlp_fail(MLP_ERR_INVALID, "model is NULL");
    m->plain = on != 0;
    return MLP_OK;
}

extern "C" mlp_status mlp_set_params(mlp_model *m, const float *params) {
    mlp_clear_error();
    if (!m || !params) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    const size_t bytes = sizeof(float) * (size_t)m->L.n_params;
    CUDA_TRY(cudaMemcpyAsync(m->params, params, bytes, cudaMemcpyHostToDevice, m->stream));
    CUDA_TRY(cudaMemsetAsync(m->velocity, 0, bytes, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
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

/* ---- data sets ---------------------------------------------------------- */

extern "C" mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype,
                                      const int32_t *y, int64_t n, int64_t d) {
    mlp_clear_error();
    TRY(mlp_check_data_args(data, X, dtype, n, d));
    TRY(mlp_device_check());
    mlp_data *p = (mlp_data *)calloc(1, sizeof *p);
    if (!p) return mlp_fail(MLP_ERR_NOMEM, "out of host memory");
    const size_t bytes = (size_t)n * (size_t)d * (dtype == MLP_UINT8 ? 1 : sizeof(float));
    mlp_status st = device_alloc((uint8_t **)&p->X, (int64_t)bytes, "the data set");
    if (st == MLP_OK && y) st = device_alloc(&p->y, n, "the labels");
    if (st != MLP_OK) {
        mlp_data_free(p);
        return st;
    }
    cudaError_t e = cudaMemcpy(p->X, X, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess && y) e = cudaMemcpy(p->y, y, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice);
    /* a pageable copy may return before its DMA lands; models use other streams */
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        mlp_data_free(p);
        return cuda_fail(e, "copying the data set to the GPU");
    }
    p->dtype = dtype;
    mlp_label_range(y, n, &p->y_lo, &p->y_hi);
    p->n = n;
    p->d = d;
    *data = p;
    return MLP_OK;
}

extern "C" void mlp_data_free(mlp_data *data) {
    if (!data) return;
    cudaFree(data->X);
    cudaFree(data->y);
    free(data);
}

static mlp_status check_labels(const mlp_model *m, const mlp_data *data) {
    return mlp_check_labels(data->y != NULL, data->y_lo, data->y_hi, m->L.sizes[m->L.n_layers]);
}

/* ---- forward and backward ----------------------------------------------- */

static LayerInput act_input(const float *act) { return LayerInput{act, NULL, MLP_FLOAT32, NULL, 0}; }

/* Forward through the first `layers` layers (ReLU after each hidden one);
 * the input rows also land in xbatch when training. */
static void forward(mlp_model *m, LayerInput in, int64_t B, int layers, bool training) {
    const mlp_layout *L = &m->L;
    for (int l = 0; l < layers; l++) {
        linear_forward(m->stream, m->acts[l], in, m->params + L->w_off[l], B, L->sizes[l],
                       L->sizes[l + 1], l + 1 < L->n_layers, l == 0 && training ? m->xbatch : NULL,
                       m->scratch);
        in = act_input(m->acts[l]);
    }
}

/* One SGD step on rows order[start .. start + B) of the data set: at batch
 * 64 a step is a few microseconds of arithmetic, so it is three launches for
 * one hidden layer (first layer, head, every weight update). */
static void train_step(mlp_model *m, const mlp_data *data, int64_t start, int64_t B, float lr,
                       float momentum, float weight_decay) {
    const mlp_layout *L = &m->L;
    const int last = L->n_layers - 1;
    const int64_t C = L->sizes[last + 1];
    const LayerInput in0 = {NULL, data->X, data->dtype, m->order, start};
    if (last >= 1 && head_fits(L->sizes[last], C)) {
        forward(m, in0, B, last, true);
        head_forward_backward(m->stream, m->acts[last], m->douts[last], m->douts[last - 1],
                              m->acts[last - 1], m->params + L->w_off[last], B, L->sizes[last],
                              C, data->y, m->order, start, m->row_loss, m->row_hit);
    } else {
        forward(m, in0, B, L->n_layers, true);
        softmax_crossentropy_forward_backward(m->stream, m->douts[last], m->acts[last], data->y,
                                              m->order, start, B, C, m->row_loss, m->row_hit);
        if (last >= 1)
            linear_backward_input(m->stream, m->douts[last - 1], m->douts[last],
                                  m->params + L->w_off[last], m->acts[last - 1], B,
                                  L->sizes[last], C, m->scratch);
    }
    /* the other input gradients, each before its layer's weights change */
    for (int l = last - 1; l >= 1; l--)
        linear_backward_input(m->stream, m->douts[l - 1], m->douts[l], m->params + L->w_off[l],
                              m->acts[l - 1], B, L->sizes[l], L->sizes[l + 1], m->scratch);
    /* every layer's weights, MLP_MAX_FUSED_LAYERS per launch */
    WeightsJob jobs[MLP_MAX_FUSED_LAYERS];
    int n_jobs = 0;
    for (int l = 0; l <= last; l++) {
        jobs[n_jobs++] = WeightsJob{m->params + L->w_off[l], m->velocity + L->w_off[l],
                                    m->douts[l], act_input(l == 0 ? m->xbatch : m->acts[l - 1]),
                                    L->sizes[l], L->sizes[l + 1]};
        if (n_jobs == MLP_MAX_FUSED_LAYERS || l == last) {
            linear_backward_weights_sgd(m->stream, jobs, n_jobs, B, lr, momentum, weight_decay,
                                        m->scratch);
            n_jobs = 0;
        }
    }
}

static bool same_key(const GraphKey &a, const GraphKey &b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Records every step over n rows of the order into m->graph. */
static mlp_status record_epoch(mlp_model *m, const mlp_data *data, int64_t n, int64_t batch_size,
                               float lr, float momentum, float weight_decay, const GraphKey &key) {
    drop_graph(m);
    CUDA_TRY(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
    for (int64_t start = 0; start < n; start += batch_size) {
        const int64_t B = n - start < batch_size ? n - start : batch_size;
        train_step(m, data, start, B, lr, momentum, weight_decay);
    }
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

/* The fused kernel's plan for this model at a batch size (rows per step):
 * ok = false when the model takes the kernel-per-op path. */
static FusedPlan plan_for(mlp_model *m, int64_t batch) {
    const mlp_layout *L = &m->L;
    if (m->plain || L->n_layers != 2) return FusedPlan{};
    /* MLP_KERNELS=base: the float32 units only, as in the C core's baseline */
    const char *kernels = getenv("MLP_KERNELS");
    const bool tensor = !(kernels && strcmp(kernels, "base") == 0);
    if (m->plan_batch != batch || m->plan_tensor != tensor) { /* plan_batch 0 until the first plan */
        m->plan = fused_plan(L->sizes[0], L->sizes[1], L->sizes[2], batch, tensor);
        m->plan_batch = batch;
        m->plan_tensor = tensor;
    }
    return m->plan;
}

/* The epoch through a fused kernel; its rows' losses and hits land in row_loss
 * and row_hit like the other path's. */
static mlp_status train_fused(mlp_model *m, const mlp_data *data, const FusedPlan &plan,
                              int64_t n, int64_t batch_size, float lr, float momentum,
                              float weight_decay) {
    const mlp_layout *L = &m->L;
    TRY(grow(&m->partial, &m->partial_cap, plan.workspace_floats, "the fused workspace"));
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
    e.labels = m->labels;
    e.X = data->X;
    e.y = data->y;
    e.order = m->order;
    e.batch = batch_size;
    e.H = L->sizes[1];
    e.C = L->sizes[2];
    e.W1 = m->params + L->w_off[0];
    e.V1 = m->velocity + L->w_off[0];
    e.W2 = m->params + L->w_off[1];
    e.V2 = m->velocity + L->w_off[1];
    e.lr = lr;
    e.momentum = momentum;
    e.weight_decay = weight_decay;
    e.tensor_cores = plan.tensor_cores;
    e.async_copy = e.tensor_cores && e.D * (e.dtype == MLP_UINT8 ? 1 : 4) % 16 == 0 &&
                   e.H % 4 == 0;
    e.partial = m->partial;
    e.h = m->acts[0];
    e.dh = m->douts[0];
    e.dlogits = m->douts[1];
    e.row_loss = m->row_loss;
    e.row_hit = m->row_hit;
    CUDA_TRY(fused_train_epoch(m->stream, plan, e));
    m->last_kernels = plan.by_rows ? "fused-rows" : e.tensor_cores ? "fused-tensor" : "fused";
    return MLP_OK;
}

extern "C" mlp_status mlp_train_epoch(mlp_model *m, const mlp_data *data, const int64_t *order,
                                      int64_t n_order, int64_t batch_size, float lr, float momentum,
                                      float weight_decay, float *batch_losses, double *mean_loss,
                                      double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    TRY(mlp_check_train_args(&m->L, data->n, data->d, order, n_order, batch_size, lr, momentum,
                             weight_decay));
    TRY(check_labels(m, data));
    const int64_t n = n_order;
    TRY(reserve_rows(m, batch_size < n ? batch_size : n));
    TRY(reserve_epoch(m, n));
    CUDA_TRY(cudaMemcpyAsync(m->order, order, sizeof(int64_t) * (size_t)n,
                             cudaMemcpyHostToDevice, m->stream));
    GraphKey key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared bytewise */
    key.X = data->X;
    key.y = data->y;
    key.dtype = data->dtype;
    key.n = n;
    key.batch_size = batch_size;
    key.lr = lr;
    key.momentum = momentum;
    key.weight_decay = weight_decay;
    const int64_t batches = (n + batch_size - 1) / batch_size;
    const FusedPlan plan = plan_for(m, batch_size < n ? batch_size : n);
    bool fused = false;
    if (plan.ok) {
        const mlp_status st = train_fused(m, data, plan, n, batch_size, lr, momentum,
                                          weight_decay);
        if (st == MLP_ERR_NOMEM)
            mlp_clear_error(); /* no room for its workspace: the kernel-per-op path */
        else if (st != MLP_OK)
            return st;
        fused = st == MLP_OK;
    }
    if (!fused) m->last_kernels = "cuda";
    if (!fused && batches > MAX_GRAPH_STEPS) { /* a graph that large costs more than it saves */
        drop_graph(m);
        for (int64_t start = 0; start < n; start += batch_size)
            train_step(m, data, start, n - start < batch_size ? n - start : batch_size, lr,
                       momentum, weight_decay);
    } else if (!fused) {
        if (!m->graph || !same_key(m->key, key))
            TRY(record_epoch(m, data, n, batch_size, lr, momentum, weight_decay, key));
        CUDA_TRY(cudaGraphLaunch(m->graph, m->stream));
    }
    reduce_epoch(m->stream, m->row_loss, m->row_hit, n, batch_size, m->batch_loss, m->loss_sum,
                 m->hits);
    CUDA_TRY(cudaGetLastError());
    double loss_sum = 0.0;
    int64_t hits = 0;
    if (batch_losses)
        CUDA_TRY(cudaMemcpyAsync(batch_losses, m->batch_loss, sizeof(float) * (size_t)batches,
                                 cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaMemcpyAsync(&loss_sum, m->loss_sum, sizeof loss_sum, cudaMemcpyDeviceToHost,
                             m->stream));
    CUDA_TRY(cudaMemcpyAsync(&hits, m->hits, sizeof hits, cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    if (mean_loss) *mean_loss = loss_sum / (double)n;
    if (accuracy) *accuracy = (double)hits / (double)n;
    return MLP_OK;
}

/* Runs the forward pass over the data set in chunks of the workspace; copies
 * probs or logits out when `out` is given; per-row loss and hits when the
 * data has labels. */
static mlp_status forward_all(mlp_model *m, const mlp_data *data, float *out, int want_logits) {
    const mlp_layout *L = &m->L;
    if (data->d != L->sizes[0])
        return mlp_fail(MLP_ERR_INVALID, "data has %lld features, the model expects %lld",
                        (long long)data->d, (long long)L->sizes[0]);
    const int64_t C = L->sizes[L->n_layers];
    const int last = L->n_layers - 1;
    const int64_t chunk = m->cap > 0 ? m->cap : (data->n < 1024 ? data->n : 1024);
    TRY(reserve_rows(m, chunk));
    if (data->y) TRY(reserve_epoch(m, data->n));
    for (int64_t start = 0; start < data->n; start += chunk) {
        const int64_t B = data->n - start < chunk ? data->n - start : chunk;
        forward(m, LayerInput{NULL, data->X, data->dtype, NULL, start}, B, L->n_layers, false);
        float *probs = out && !want_logits ? m->douts[last] : NULL;
        softmax_crossentropy_forward(m->stream, probs, m->acts[last], data->y, start, B, C,
                                     m->row_loss, m->row_hit);
        CUDA_TRY(cudaGetLastError());
        if (out)
            CUDA_TRY(cudaMemcpyAsync(out + start * C, want_logits ? m->acts[last] : probs,
                                     sizeof(float) * (size_t)(B * C), cudaMemcpyDeviceToHost,
                                     m->stream));
    }
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    return MLP_OK;
}

extern "C" mlp_status mlp_predict(mlp_model *m, const mlp_data *data, float *out,
                                  int want_logits) {
    mlp_clear_error();
    if (!m || !data || !out) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    return forward_all(m, data, out, want_logits);
}

extern "C" mlp_status mlp_evaluate(mlp_model *m, const mlp_data *data, double *mean_loss,
                                   double *accuracy) {
    mlp_clear_error();
    if (!m || !data) return mlp_fail(MLP_ERR_INVALID, "NULL argument");
    TRY(check_labels(m, data));
    TRY(forward_all(m, data, NULL, 0));
    reduce_epoch(m->stream, m->row_loss, m->row_hit, data->n, data->n, NULL, m->loss_sum, m->hits);
    CUDA_TRY(cudaGetLastError());
    double loss_sum = 0.0;
    int64_t hits = 0;
    CUDA_TRY(cudaMemcpyAsync(&loss_sum, m->loss_sum, sizeof loss_sum, cudaMemcpyDeviceToHost,
                             m->stream));
    CUDA_TRY(cudaMemcpyAsync(&hits, m->hits, sizeof hits, cudaMemcpyDeviceToHost, m->stream));
    CUDA_TRY(cudaStreamSynchronize(m->stream));
    if (mean_loss) *mean_loss = loss_sum / (double)data->n;
    if (accuracy) *accuracy = (double)hits / (double)data->n;
    return MLP_OK;
}
