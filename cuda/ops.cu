/*
 * ops.cu - the lecture's operations as CUDA kernels; see ops.cuh.
 *
 * One tiled matrix-multiply kernel serves every linear op: it reads its two
 * operands through small loader objects (plain, transposed, gathered rows of
 * the data set) and hands each finished sum to an epilogue object (bias is
 * already in, ReLU, ReLU mask, SGD update). Every output element is summed
 * by one thread in a fixed order, and split-K partial sums are added in a
 * fixed order by a second kernel: no atomics, so results are bit-identical
 * from run to run.
 */
#include <math.h>

#include "ops.cuh"

namespace {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int THREADS = (BM / TM) * (BN / TN); /* 256 */
constexpr int64_t TARGET_BLOCKS = 256;          /* about two waves of 132 SMs */

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- operand loaders: A(m, k) and B(k, n) ------------------------------- */

/* [in, 1] as (B, D+1): row m of the layer input, and the constant 1 that
 * multiplies the bias row of W_aug. */
struct InputRows {
    LayerInput in;
    int64_t D;
    static constexpr bool k_contig = true;
    __device__ float operator()(int64_t m, int64_t k) const {
        if (k == D) return 1.0f;
        if (in.act) return in.act[m * D + k];
        const int64_t r = in.order ? in.order[in.start + m] : in.start + m;
        if (in.dtype == MLP_UINT8)
            return (float)((const uint8_t *)in.X)[r * D + k] * (1.0f / 255.0f);
        return ((const float *)in.X)[r * D + k];
    }
};

/* [in, 1]^T as (D+1, B) */
struct InputRowsT {
    InputRows rows;
    static constexpr bool k_contig = false;
    __device__ float operator()(int64_t m, int64_t k) const { return rows(k, m); }
};

/* A (M, K) row-major with leading dimension ld */
struct MatA {
    const float *p;
    int64_t ld;
    static constexpr bool k_contig = true;
    __device__ float operator()(int64_t m, int64_t k) const { return p[m * ld + k]; }
};

/* B (K, N) row-major */
struct MatB {
    const float *p;
    int64_t ld;
    static constexpr bool n_contig = true;
    __device__ float operator()(int64_t k, int64_t n) const { return p[k * ld + n]; }
};

/* B = P^T where P is (N, K) row-major: W^T for the input gradient */
struct MatBT {
    const float *p;
    int64_t ld;
    static constexpr bool n_contig = false;
    __device__ float operator()(int64_t k, int64_t n) const { return p[n * ld + k]; }
};

/* ---- epilogues: what happens to a finished sum v at (m, n) ------------- */

struct StoreForward { /* linear_forward (+ relu_forward) */
    float *out;
    int64_t N;
    bool relu;
    __device__ void operator()(int64_t m, int64_t n, float v) const {
        out[m * N + n] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
};

struct StoreMasked { /* linear_backward's dinp (+ relu_backward) */
    float *out;
    const float *act;
    int64_t N;
    __device__ void operator()(int64_t m, int64_t n, float v) const {
        const int64_t i = m * N + n;
        out[i] = act[i] > 0.0f ? v : 0.0f;
    }
};

struct SgdUpdate { /* linear_backward's dW, db (+ sgd_update) */
    float *P, *V;
    int64_t N;
    float lr, momentum, weight_decay;
    __device__ void operator()(int64_t m, int64_t n, float g) const {
        const int64_t i = m * N + n;
        g += weight_decay * P[i];
        if (momentum != 0.0f) {
            V[i] = momentum * V[i] + g;
            g = V[i];
        }
        P[i] -= lr * g;
    }
};

struct StorePartial { /* split-K: slice blockIdx.z of the sum */
    float *p;
    int64_t M, N;
    __device__ void operator()(int64_t m, int64_t n, float v) const {
        p[((int64_t)blockIdx.z * M + m) * N + n] = v;
    }
};

/* ---- the matrix multiply --------------------------------------------- */

/* C (M,N) = A (M,K) @ B (K,N), slice blockIdx.z of K, handed to epi */
template <class LA, class LB, class Epi>
__global__ void __launch_bounds__(THREADS)
gemm_kernel(int64_t M, int64_t N, int64_t K, int64_t k_per_split, LA a, LB b, Epi epi) {
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    const int64_t m0 = (int64_t)blockIdx.y * BM, n0 = (int64_t)blockIdx.x * BN;
    const int64_t kbeg = (int64_t)blockIdx.z * k_per_split;
    const int64_t kend = kbeg + k_per_split < K ? kbeg + k_per_split : K;
    float acc[TM][TN] = {};
    for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
        for (int i = threadIdx.x; i < BM * BK; i += THREADS) {
            const int m = LA::k_contig ? i / BK : i % BM;
            const int k = LA::k_contig ? i % BK : i / BM;
            const int64_t gm = m0 + m, gk = k0 + k;
            As[k][m] = (gm < M && gk < kend) ? a(gm, gk) : 0.0f;
        }
        for (int i = threadIdx.x; i < BK * BN; i += THREADS) {
            const int n = LB::n_contig ? i % BN : i / BK;
            const int k = LB::n_contig ? i / BN : i % BK;
            const int64_t gn = n0 + n, gk = k0 + k;
            Bs[k][n] = (gn < N && gk < kend) ? b(gk, gn) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; k++) {
            float av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) av[i] = As[k][ty + i * (BM / TM)];
#pragma unroll
            for (int j = 0; j < TN; j++) bv[j] = Bs[k][tx + j * (BN / TN)];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) {
            const int64_t gm = m0 + ty + i * (BM / TM), gn = n0 + tx + j * (BN / TN);
            if (gm < M && gn < N) epi(gm, gn, acc[i][j]);
        }
}

/* adds the split-K slices in order, then applies epi */
template <class Epi>
__global__ void split_reduce_kernel(const float *partial, int splits, int64_t M, int64_t N,
                                    Epi epi) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * N) return;
    float v = 0.0f;
    for (int s = 0; s < splits; s++) v += partial[s * M * N + i];
    epi(i / N, i % N, v);
}

int64_t choose_splits(int64_t M, int64_t N, int64_t K) {
    const int64_t tiles = cdiv(M, BM) * cdiv(N, BN), ktiles = cdiv(K, BK);
    int64_t splits = 1;
    /* more blocks while each slice keeps at least two k-tiles */
    while (tiles * splits < TARGET_BLOCKS && ktiles >= 4 * splits) splits *= 2;
    return splits;
}

template <class LA, class LB, class Epi>
void gemm(cudaStream_t s, int64_t M, int64_t N, int64_t K, LA a, LB b, Epi epi,
          Scratch scratch) {
    int64_t splits = choose_splits(M, N, K);
    if (splits * M * N > scratch.floats) splits = 1; /* cannot happen; see gemm_scratch_floats */
    const int64_t k_per_split = cdiv(cdiv(K, BK), splits) * BK;
    splits = cdiv(K, k_per_split);
    dim3 grid((unsigned)cdiv(N, BN), (unsigned)cdiv(M, BM), (unsigned)splits);
    if (splits == 1) {
        gemm_kernel<<<grid, THREADS, 0, s>>>(M, N, K, k_per_split, a, b, epi);
        return;
    }
    gemm_kernel<<<grid, THREADS, 0, s>>>(M, N, K, k_per_split, a, b,
                                         StorePartial{scratch.ptr, M, N});
    split_reduce_kernel<<<(unsigned)cdiv(M * N, 256), 256, 0, s>>>(scratch.ptr, (int)splits, M,
                                                                    N, epi);
}

/* ---- softmax cross-entropy: one warp per row ------------------------- */

struct RowStats {
    float zmax;
    int64_t argmax;
    float sum;
};

/* max, first index of the max, and sum of exp(z - max) of one row */
__device__ RowStats row_stats(const float *z, int64_t C) {
    const int lane = threadIdx.x % 32;
    float best = -INFINITY;
    int64_t arg = C;
    for (int64_t c = lane; c < C; c += 32)
        if (z[c] > best || arg == C) {
            best = z[c];
            arg = c;
        }
    for (int off = 16; off > 0; off /= 2) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, off);
        const int64_t oa = __shfl_xor_sync(0xffffffffu, arg, off);
        if (ob > best || (ob == best && oa < arg)) {
            best = ob;
            arg = oa;
        }
    }
    float sum = 0.0f;
    for (int64_t c = lane; c < C; c += 32) sum += expf(z[c] - best);
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    return RowStats{best, arg, sum};
}

__global__ void softmax_ce_forward_backward_kernel(float *dlogits, const float *logits,
                                                  const int32_t *y, const int64_t *order,
                                                  int64_t start, int64_t B, int64_t C,
                                                  float *row_loss, int32_t *row_hit) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= B) return;
    const float *z = logits + row * C;
    const RowStats st = row_stats(z, C);
    const int32_t label = y[order[start + row]];
    const float inv = 1.0f / st.sum, scale = 1.0f / (float)B;
    for (int64_t c = threadIdx.x % 32; c < C; c += 32) {
        const float p = expf(z[c] - st.zmax) * inv;
        dlogits[row * C + c] = (p - (c == label ? 1.0f : 0.0f)) * scale;
    }
    if (threadIdx.x % 32 == 0) {
        row_loss[start + row] = logf(st.sum) - (z[label] - st.zmax);
        row_hit[start + row] = st.argmax == label;
    }
}

__global__ void softmax_ce_forward_kernel(float *probs, const float *logits, const int32_t *y,
                                          int64_t start, int64_t B, int64_t C, float *row_loss,
                                          int32_t *row_hit) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= B) return;
    const float *z = logits + row * C;
    const RowStats st = row_stats(z, C);
    if (probs) {
        const float inv = 1.0f / st.sum;
        for (int64_t c = threadIdx.x % 32; c < C; c += 32)
            probs[row * C + c] = expf(z[c] - st.zmax) * inv;
    }
    if (y && threadIdx.x % 32 == 0) {
        const int32_t label = y[start + row];
        row_loss[start + row] = logf(st.sum) - (z[label] - st.zmax);
        row_hit[start + row] = st.argmax == label;
    }
}

/* ---- epoch statistics ------------------------------------------------ */

__global__ void batch_loss_kernel(const float *row_loss, int64_t n, int64_t batch_size,
                                  float *batch_loss) {
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t start = b * batch_size;
    if (start >= n) return;
    const int64_t end = start + batch_size < n ? start + batch_size : n;
    double s = 0.0;
    for (int64_t i = start; i < end; i++) s += row_loss[i];
    batch_loss[b] = (float)(s / (double)(end - start));
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

/* ---- launchers ------------------------------------------------------- */

int64_t gemm_scratch_floats(void) {
    /* splits * tiles < 2 * TARGET_BLOCKS whenever splits > 1 */
    return 2 * TARGET_BLOCKS * BM * BN;
}

void linear_forward(cudaStream_t s, float *out, LayerInput in, const float *W_aug, int64_t B,
                    int64_t D, int64_t H, bool relu, Scratch scratch) {
    gemm(s, B, H, D + 1, InputRows{in, D}, MatB{W_aug, H}, StoreForward{out, H, relu}, scratch);
}

void linear_backward_input(cudaStream_t s, float *dinp, const float *dout, const float *W,
                           const float *act_in, int64_t B, int64_t D, int64_t H,
                           Scratch scratch) {
    gemm(s, B, D, H, MatA{dout, H}, MatBT{W, H}, StoreMasked{dinp, act_in, D}, scratch);
}

void linear_backward_weights_sgd(cudaStream_t s, float *W_aug, float *V, const float *dout,
                                 LayerInput in, int64_t B, int64_t D, int64_t H, float lr,
                                 float momentum, float weight_decay, Scratch scratch) {
    gemm(s, D + 1, H, B, InputRowsT{InputRows{in, D}}, MatB{dout, H},
         SgdUpdate{W_aug, V, H, lr, momentum, weight_decay}, scratch);
}

void softmax_crossentropy_forward_backward(cudaStream_t s, float *dlogits, const float *logits,
                                           const int32_t *y, const int64_t *order, int64_t start,
                                           int64_t B, int64_t C, float *row_loss,
                                           int32_t *row_hit) {
    const int rows_per_block = 8;
    softmax_ce_forward_backward_kernel<<<(unsigned)cdiv(B, rows_per_block), 32 * rows_per_block,
                                         0, s>>>(dlogits, logits, y, order, start, B, C,
                                                 row_loss, row_hit);
}

void softmax_crossentropy_forward(cudaStream_t s, float *probs, const float *logits,
                                  const int32_t *y, int64_t start, int64_t B, int64_t C,
                                  float *row_loss, int32_t *row_hit) {
    const int rows_per_block = 8;
    softmax_ce_forward_kernel<<<(unsigned)cdiv(B, rows_per_block), 32 * rows_per_block, 0, s>>>(
        probs, logits, y, start, B, C, row_loss, row_hit);
}

void reduce_epoch(cudaStream_t s, const float *row_loss, const int32_t *row_hit, int64_t n,
                  int64_t batch_size, float *batch_loss, double *loss_sum, int64_t *hits) {
    if (batch_loss) {
        const int64_t batches = cdiv(n, batch_size);
        batch_loss_kernel<<<(unsigned)cdiv(batches, 256), 256, 0, s>>>(row_loss, n, batch_size,
                                                                       batch_loss);
    }
    totals_kernel<<<1, REDUCE_THREADS, 0, s>>>(row_loss, row_hit, n, loss_sum, hits);
}
