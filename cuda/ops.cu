/*
 * ops.cu - the lecture's operations as readable CUDA kernels; see ops.cuh.
 * One thread per output element (or row), loops written as in csrc/ops.c.
 */
#include <math.h>

#include "ops.cuh"
#include "pointwise.h"

namespace {

constexpr int THREADS = 256;

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline unsigned blocks_for(int64_t n) { return (unsigned)cdiv(n > 0 ? n : 1, THREADS); }

__device__ inline int64_t thread_index() {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__global__ void gather_batch_kernel(float *out, LayerInput in, int64_t B, int64_t D) {
    const int64_t i = thread_index();
    if (i >= B * D) return;
    const int64_t r = data_row(in.order, in.start, i / D), k = i % D;
    out[i] = in.dtype == MLP_UINT8 ? (float)((const uint8_t *)in.X)[r * D + k] * in.scale
                                   : ((const float *)in.X)[r * D + k] * in.scale;
}

/* out[i,j] = b[j] + sum_k inp[i,k] W[k,j] */
__global__ void linear_forward_kernel(float *out, const float *inp, const float *W,
                                      const float *b, int64_t B, int64_t D, int64_t H) {
    const int64_t idx = thread_index();
    if (idx >= B * H) return;
    const int64_t i = idx / H, j = idx % H;
    float sum = b[j];
    for (int64_t k = 0; k < D; k++) sum = fmaf(inp[i * D + k], W[k * H + j], sum);
    out[idx] = sum;
}

__global__ void activation_forward_kernel(mlp_activation act, float *out, const float *inp,
                                          int64_t N) {
    const int64_t i = thread_index();
    if (i < N) out[i] = mlp_activation_forward(act, inp[i]);
}

__global__ void activation_backward_kernel(mlp_activation act, float *dinp, const float *inp,
                                           const float *out, const float *dout, int64_t N) {
    const int64_t i = thread_index();
    if (i < N) dinp[i] = mlp_activation_backward(act, inp ? inp[i] : 0.0f, out[i], dout[i]);
}

/* one thread per row */
__global__ void loss_forward_kernel(float *out, const float *logits, Targets t, bool has_targets,
                                    const int64_t *order, int64_t start, int64_t B, int64_t C,
                                    float *row_loss, int32_t *row_hit) {
    const int64_t row = thread_index();
    if (row >= B) return;
    const float *z = logits + row * C;
    const int64_t r = data_row(order, start, row);
    const float w = has_targets && t.weights ? t.weights[r] : 1.0f;
    if (t.loss == MLP_CROSS_ENTROPY) {
        const int64_t argmax = mlp_argmax(z, C);
        const float zmax = z[argmax];
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) sum += mlp_softmax_term(z[c], zmax);
        if (out) {
            const float inv = mlp_div(1.0f, sum);
            for (int64_t c = 0; c < C; c++) out[row * C + c] = mlp_softmax_prob(z[c], zmax, inv);
        }
        if (has_targets) {
            const int32_t y = t.labels[r];
            row_loss[start + row] = w * mlp_cross_entropy_loss(zmax, sum, z[y]);
            row_hit[start + row] = argmax == y;
        }
        return;
    }
    if (out)
        for (int64_t c = 0; c < C; c++) out[row * C + c] = mlp_output(t.loss, z[c]);
    if (!has_targets) return;
    float loss = 0.0f;
    int hit = t.loss == MLP_BINARY_CROSS_ENTROPY;
    for (int64_t c = 0; c < C; c++) {
        const float y = t.values[r * C + c];
        loss += mlp_elementwise_loss(t.loss, z[c], y);
        hit = hit && mlp_binary_hit(z[c], y);
    }
    row_loss[start + row] = w * loss;
    row_hit[start + row] = hit;
}

/* one thread per row */
__global__ void rows_argmax_kernel(int32_t *classes, const float *logits, int64_t B, int64_t C) {
    const int64_t row = thread_index();
    if (row < B) classes[row] = (int32_t)mlp_argmax(logits + row * C, C);
}

/* one thread per output */
__global__ void loss_backward_kernel(float *dlogits, const float *logits, Targets t,
                                     const int64_t *order, int64_t start, int64_t B, int64_t C,
                                     const StepInfo *step) {
    const int64_t idx = thread_index();
    if (idx >= B * C) return;
    const int64_t row = idx / C, c = idx % C;
    const int64_t r = data_row(order, start, row);
    const float scale = (t.weights ? t.weights[r] : 1.0f) * step->inv_wsum;
    const float *z = logits + row * C;
    if (t.loss != MLP_CROSS_ENTROPY) {
        dlogits[idx] = mlp_elementwise_grad(t.loss, z[c], t.values[r * C + c], scale);
        return;
    }
    float zmax = z[0], sum = 0.0f;
    for (int64_t k = 1; k < C; k++) zmax = z[k] > zmax ? z[k] : zmax;
    for (int64_t k = 0; k < C; k++) sum += mlp_softmax_term(z[k], zmax);
    const float p = mlp_softmax_prob(z[c], zmax, mlp_div(1.0f, sum));
    dlogits[idx] = mlp_cross_entropy_grad(p, c == t.labels[r], scale);
}

/* dW[k,j] = sum_i inp[i,k] dout[i,j]; row k == D is db */
__global__ void linear_backward_weights_kernel(float *dW, float *db, const float *dout,
                                               const float *inp, int64_t B, int64_t D,
                                               int64_t H, bool accumulate) {
    const int64_t idx = thread_index();
    if (idx >= (D + 1) * H) return;
    const int64_t k = idx / H, j = idx % H;
    float sum = 0.0f;
    for (int64_t i = 0; i < B; i++)
        sum = fmaf(k == D ? 1.0f : inp[i * D + k], dout[i * H + j], sum);
    float *g = k == D ? db + j : dW + idx;
    *g = accumulate ? *g + sum : sum;
}

/* dinp[i,k] = sum_j dout[i,j] W[k,j] */
__global__ void linear_backward_input_kernel(float *dinp, const float *dout, const float *W,
                                             int64_t B, int64_t D, int64_t H) {
    const int64_t idx = thread_index();
    if (idx >= B * D) return;
    const int64_t i = idx / D, k = idx % D;
    float sum = 0.0f;
    for (int64_t j = 0; j < H; j++) sum = fmaf(dout[i * H + j], W[k * H + j], sum);
    dinp[idx] = sum;
}

__global__ void optimizer_update_kernel(const StepInfo *step, float *p, const float *g, float *m,
                                        float *v, int64_t n, int is_bias) {
    const int64_t i = thread_index();
    if (i >= n) return;
    const mlp_step s = step->s;
    p[i] = mlp_update(&s, p[i], g[i], &m[i], &v[i], is_bias);
}

/* one block: a fixed summation order, added to *sum by thread 0 */
__global__ void sum_squares_kernel(const float *p, int64_t n, double *sum) {
    __shared__ double part[THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += THREADS) acc += (double)p[i] * p[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *sum += part[0];
}

__global__ void batch_loss_kernel(const float *row_loss, int64_t n, int64_t batch_size,
                                  const StepInfo *steps, const double *penalty,
                                  float *batch_loss) {
    const int64_t b = thread_index();
    const int64_t start = b * batch_size;
    if (start >= n) return;
    const int64_t end = start + batch_size < n ? start + batch_size : n;
    double s = 0.0;
    for (int64_t i = start; i < end; i++) s += row_loss[i];
    s *= (double)steps[b].inv_wsum * steps[b].loss_scale;
    if (penalty) s += (double)steps[b].l2_half * penalty[b];
    batch_loss[b] = (float)s;
}

constexpr int REDUCE_THREADS = 1024;

__global__ void __launch_bounds__(REDUCE_THREADS)
totals_kernel(const float *row_loss, const int32_t *row_hit, int64_t n, double *loss_sum,
              int64_t *hits) {
    __shared__ double ls[REDUCE_THREADS];
    __shared__ int64_t hs[REDUCE_THREADS];
    double l = 0.0;
    int64_t h = 0;
    for (int64_t i = threadIdx.x; i < n; i += REDUCE_THREADS) {
        l += row_loss[i];
        h += row_hit[i];
    }
    ls[threadIdx.x] = l;
    hs[threadIdx.x] = h;
    __syncthreads();
    for (int w = REDUCE_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) {
            ls[threadIdx.x] += ls[threadIdx.x + w];
            hs[threadIdx.x] += hs[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *loss_sum = ls[0];
        *hits = hs[0];
    }
}

} // namespace

void gather_batch(cudaStream_t s, float *out, LayerInput in, int64_t B, int64_t D) {
    gather_batch_kernel<<<blocks_for(B * D), THREADS, 0, s>>>(out, in, B, D);
}

void linear_forward(cudaStream_t s, float *out, const float *inp, const float *W, const float *b,
                    int64_t B, int64_t D, int64_t H) {
    linear_forward_kernel<<<blocks_for(B * H), THREADS, 0, s>>>(out, inp, W, b, B, D, H);
}

void activation_forward(cudaStream_t s, mlp_activation act, float *out, const float *inp,
                        int64_t N) {
    activation_forward_kernel<<<blocks_for(N), THREADS, 0, s>>>(act, out, inp, N);
}

void activation_backward(cudaStream_t s, mlp_activation act, float *dinp, const float *inp,
                         const float *out, const float *dout, int64_t N) {
    activation_backward_kernel<<<blocks_for(N), THREADS, 0, s>>>(act, dinp, inp, out, dout, N);
}

void loss_forward(cudaStream_t s, float *out, const float *logits, const Targets *t,
                  const int64_t *order, int64_t start, int64_t B, int64_t C, float *row_loss,
                  int32_t *row_hit) {
    loss_forward_kernel<<<blocks_for(B), THREADS, 0, s>>>(out, logits, *t, t->labels || t->values,
                                                          order, start, B, C, row_loss, row_hit);
}

void rows_argmax(cudaStream_t s, int32_t *classes, const float *logits, int64_t B, int64_t C) {
    rows_argmax_kernel<<<blocks_for(B), THREADS, 0, s>>>(classes, logits, B, C);
}

void loss_backward(cudaStream_t s, float *dlogits, const float *logits, Targets t,
                   const int64_t *order, int64_t start, int64_t B, int64_t C,
                   const StepInfo *step) {
    loss_backward_kernel<<<blocks_for(B * C), THREADS, 0, s>>>(dlogits, logits, t, order, start,
                                                               B, C, step);
}

void linear_backward(cudaStream_t s, float *dinp, float *dW, float *db, const float *dout,
                     const float *inp, const float *W, int64_t B, int64_t D, int64_t H,
                     bool accumulate) {
    linear_backward_weights_kernel<<<blocks_for((D + 1) * H), THREADS, 0, s>>>(
        dW, db, dout, inp, B, D, H, accumulate);
    if (dinp)
        linear_backward_input_kernel<<<blocks_for(B * D), THREADS, 0, s>>>(dinp, dout, W, B, D, H);
}

void optimizer_update(cudaStream_t s, const mlp_layout *L, const StepInfo *step, float *params,
                      const float *grads, float *m, float *v) {
    for (int l = 0; l < L->n_layers; l++) {
        const int64_t w0 = L->w_off[l], b0 = L->b_off[l];
        const int64_t nw = L->sizes[l] * L->sizes[l + 1], nb = L->sizes[l + 1];
        optimizer_update_kernel<<<blocks_for(nw), THREADS, 0, s>>>(step, params + w0, grads + w0,
                                                                   m + w0, v + w0, nw, 0);
        optimizer_update_kernel<<<blocks_for(nb), THREADS, 0, s>>>(step, params + b0, grads + b0,
                                                                   m + b0, v + b0, nb, 1);
    }
}

void l2_sum(cudaStream_t s, const mlp_layout *L, const float *params, double *sum) {
    for (int l = 0; l < L->n_layers; l++)
        sum_squares_kernel<<<1, THREADS, 0, s>>>(params + L->w_off[l],
                                                 L->sizes[l] * L->sizes[l + 1], sum);
}

void reduce_epoch(cudaStream_t s, const float *row_loss, const int32_t *row_hit, int64_t n,
                  int64_t batch_size, const StepInfo *steps, const double *penalty,
                  float *batch_loss, double *loss_sum, int64_t *hits) {
    if (batch_loss) {
        const int64_t batches = cdiv(n, batch_size);
        batch_loss_kernel<<<blocks_for(batches), THREADS, 0, s>>>(row_loss, n, batch_size, steps,
                                                                  penalty, batch_loss);
    }
    totals_kernel<<<1, REDUCE_THREADS, 0, s>>>(row_loss, row_hit, n, loss_sum, hits);
}
