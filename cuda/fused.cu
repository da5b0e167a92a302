/*
 * fused.cu - a training epoch of a one-hidden-layer network as one
 * persistent kernel; see fused.cuh for the plan of a step.
 */
#include <cooperative_groups.h>
#include <math.h>
#ifdef MLP_FUSED_PROFILE
#include <stdio.h>
#endif

#include "fused.cuh"
#include "warp.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int THREADS = 256, WARPS = THREADS / 32;
constexpr int KT = 64;  /* inputs per W1 tile (the last tile holds the bias row) */
constexpr int NT = 32;  /* hidden units per W1 tile */
constexpr int RT = 64;  /* batch rows staged in shared memory at a time */
constexpr int KW = 16;  /* rows of W2 per slice of the head's update */
constexpr int MAX_CLASSES = 64;
/* Row stride of the staged inputs: even, so a pair of inputs is one 8-byte
 * load, and the rows a warp reads at once land in different banks. */
constexpr int XS = KT + 2;
constexpr int XPT = RT * KT / THREADS; /* staged inputs per thread */
constexpr int DPT = RT * NT / THREADS; /* staged dh per thread */
constexpr int OPT = KW * MAX_CLASSES / THREADS; /* head gradients per thread */
constexpr int FR = RT / (THREADS / (NT / 4));   /* forward: rows per thread */
/* The partial sums the kernel may use (1 GiB): larger shapes take the
 * kernel-per-op path. */
constexpr int64_t MAX_PARTIAL_FLOATS = (int64_t)1 << 28;

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Tiles {
    int64_t k_tiles, n_tiles; /* W1 (D+1, H) in KT x NT tiles */
    int64_t w1, w2;           /* W1 tiles; W2 (H+1, C) slices of KW rows */
};

__host__ __device__ inline Tiles tiles_of(int64_t D, int64_t H) {
    Tiles t;
    t.k_tiles = cdiv(D + 1, KT);
    t.n_tiles = cdiv(H, NT);
    t.w1 = t.k_tiles * t.n_tiles;
    t.w2 = cdiv(H + 1, KW);
    return t;
}

/* sgd_update of N elements P[at[i]] (where ok[i]) with gradients g[i]:
 * g += wd * p; v = momentum * v + g; p -= lr * v. Every load is issued
 * before any store, so the round trips overlap. */
template <int N>
__device__ inline void sgd(float *P, float *V, const int64_t (&at)[N], const bool (&ok)[N],
                           const float (&g)[N], const FusedEpoch &e) {
    float p[N], v[N];
#pragma unroll
    for (int i = 0; i < N; i++) {
        p[i] = ok[i] ? __ldcg(P + at[i]) : 0.0f;
        v[i] = ok[i] && e.momentum != 0.0f ? __ldcg(V + at[i]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < N; i++) {
        if (!ok[i]) continue;
        float gi = g[i] + e.weight_decay * p[i];
        if (e.momentum != 0.0f) {
            gi = e.momentum * v[i] + gi;
            V[at[i]] = gi;
        }
        P[at[i]] = p[i] - e.lr * gi;
    }
}

/* ---- staging the inputs [X, 1] of rows r0.. and inputs k0.. -------------
 * fetch_inputs issues the loads into registers and returns at once;
 * stage_inputs, later, converts and stores them to shared memory, so the
 * loads of the next chunk fly while the block multiplies this one. */

__device__ inline void fetch_inputs(uint32_t (&raw)[XPT], const FusedEpoch &e, int64_t start,
                                    int64_t r0, int64_t B, int64_t k0) {
#pragma unroll
    for (int q = 0; q < XPT; q++) {
        const int idx = threadIdx.x + q * THREADS;
        const int r = idx / KT, k = idx % KT;
        const int64_t gk = k0 + k;
        uint32_t v = 0;
        if (r0 + r < B && gk < e.D) {
            const int64_t at = (start + r0 + r) * e.D + gk;
            v = e.dtype == MLP_UINT8 ? (uint32_t)__ldg((const uint8_t *)e.rows + at)
                                     : __float_as_uint(__ldg((const float *)e.rows + at));
        }
        raw[q] = v;
    }
}

__device__ inline void stage_inputs(float *Xs, const uint32_t (&raw)[XPT], const FusedEpoch &e,
                                    int64_t r0, int64_t B, int64_t k0) {
#pragma unroll
    for (int q = 0; q < XPT; q++) {
        const int idx = threadIdx.x + q * THREADS;
        const int r = idx / KT, k = idx % KT;
        const int64_t gk = k0 + k;
        float x = 0.0f;
        if (r0 + r < B && gk < e.D)
            x = e.dtype == MLP_UINT8 ? (float)raw[q] * (1.0f / 255.0f) : __uint_as_float(raw[q]);
        else if (r0 + r < B && gk == e.D)
            x = 1.0f; /* the input that multiplies the bias row */
        Xs[r * XS + k] = x;
    }
}

__device__ inline void fetch_dh(float (&v)[DPT], const FusedEpoch &e, int64_t r0, int64_t B,
                                int64_t j0) {
#pragma unroll
    for (int q = 0; q < DPT; q++) {
        const int idx = threadIdx.x + q * THREADS;
        const int r = idx / NT, j = idx % NT;
        v[q] = r0 + r < B && j0 + j < e.H ? __ldcg(e.dh + (r0 + r) * e.H + j0 + j) : 0.0f;
    }
}

/* ---- phase 1: linear_forward, one W1 tile ------------------------------
 * (B, KT) @ (KT, NT) -> partial[kt] (B, NT); thread (tr, tc) sums rows
 * tr*FR.. and columns tc*4.. of each chunk of RT rows. */
__device__ void forward_tile(const FusedEpoch &e, const Tiles &t, int64_t item, int64_t start,
                             int64_t B, float *smem) {
    const int64_t kt = item / t.n_tiles, k0 = kt * KT, j0 = item % t.n_tiles * NT;
    float *Ws = smem, *Xs = smem + KT * NT;
    const int tr = threadIdx.x / (NT / 4), tc = threadIdx.x % (NT / 4);
    uint32_t raw[XPT];
    fetch_inputs(raw, e, start, 0, B, k0);
    __syncthreads(); /* shared memory is free: the last phase is done with it */
    for (int idx = threadIdx.x; idx < KT * NT; idx += THREADS) {
        const int64_t gk = k0 + idx / NT, gj = j0 + idx % NT;
        Ws[idx] = gk <= e.D && gj < e.H ? __ldcg(e.W1 + gk * e.H + gj) : 0.0f;
    }
    for (int64_t r0 = 0; r0 < B; r0 += RT) {
        if (r0 > 0) __syncthreads();
        stage_inputs(Xs, raw, e, r0, B, k0);
        __syncthreads();
        if (r0 + RT < B) fetch_inputs(raw, e, start, r0 + RT, B, k0);
        if (r0 + tr * FR >= B) continue;
        float acc[FR][4] = {};
#pragma unroll 8
        for (int k = 0; k < KT; k++) {
            const float4 w = *reinterpret_cast<const float4 *>(Ws + k * NT + tc * 4);
            const float wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int i = 0; i < FR; i++) {
                const float x = Xs[(tr * FR + i) * XS + k];
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(x, wv[j], acc[i][j]);
            }
        }
#pragma unroll
        for (int i = 0; i < FR; i++) {
            const int64_t row = r0 + tr * FR + i;
            if (row >= B) break;
            float *out = e.partial + (kt * B + row) * e.H + j0 + tc * 4;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (j0 + tc * 4 + j < e.H) out[j] = acc[i][j];
        }
    }
}

/* ---- phase 2: the head ------------------------------------------------
 * Each block takes a run of rows, WARPS at a time: first the whole block
 * sums their partial products (every load in flight at once), then one warp
 * per row does the rest. */
constexpr int KMAX = 16; /* partial sums loaded at once per element */

__device__ void head_rows(const FusedEpoch &e, const Tiles &t, int64_t start, int64_t B,
                          float *smem) {
    const int64_t H = e.H, C = e.C;
    const int64_t per = cdiv(B, gridDim.x), first = blockIdx.x * per;
    const int64_t last = first + per < B ? first + per : B;
    if (first >= last) return; /* no row for this block */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *W2s = smem, *hs = smem + (H + 1) * C, *zs = hs + WARPS * H;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < (H + 1) * C; i += THREADS) W2s[i] = __ldcg(e.W2 + i);
    const float scale = 1.0f / (float)B;
    for (int64_t g0 = first; g0 < last; g0 += WARPS) {
        const int R = last - g0 < WARPS ? (int)(last - g0) : WARPS;
        const int32_t label = warp < R ? __ldg(e.labels + start + g0 + warp) : 0;
        /* relu_forward of the summed partial products (the bias is in) */
        for (int64_t idx = threadIdx.x; idx < R * H; idx += THREADS) {
            const float *p = e.partial + g0 * H + idx;
            float s = 0.0f;
            for (int64_t kt0 = 0; kt0 < t.k_tiles; kt0 += KMAX) {
                float v[KMAX];
#pragma unroll
                for (int q = 0; q < KMAX; q++)
                    v[q] = kt0 + q < t.k_tiles ? __ldcg(p + (kt0 + q) * B * H) : 0.0f;
#pragma unroll
                for (int q = 0; q < KMAX; q++) s += v[q];
            }
            hs[idx] = s > 0.0f ? s : 0.0f;
        }
        __syncthreads();
        for (int64_t idx = threadIdx.x; idx < R * H; idx += THREADS) e.h[g0 * H + idx] = hs[idx];
        if (warp < R) {
            const int64_t r = g0 + warp;
            const float *hr = hs + warp * H;
            float *zr = zs + warp * C;
            /* linear_forward of the last layer */
            for (int64_t c = 0; c < C; c++) {
                float s = 0.0f;
                for (int64_t j = lane; j < H; j += 32) s = fmaf(hr[j], W2s[j * C + c], s);
                s = warp_sum(s);
                if (lane == 0) zr[c] = s + W2s[H * C + c];
            }
            __syncwarp();
            /* softmax_crossentropy_forward and _backward */
            const RowStats st = row_stats(zr, C);
            if (lane == 0) {
                e.row_loss[start + r] = logf(st.sum) - (zr[label] - st.zmax);
                e.row_hit[start + r] = st.argmax == label;
            }
            __syncwarp();
            const float inv = 1.0f / st.sum;
            for (int64_t c = lane; c < C; c += 32) {
                const float p = expf(zr[c] - st.zmax) * inv;
                zr[c] = (p - (c == label ? 1.0f : 0.0f)) * scale;
                e.dlogits[r * C + c] = zr[c];
            }
            __syncwarp();
            /* linear_backward's dinp, then relu_backward */
            for (int64_t j = lane; j < H; j += 32) {
                float s = 0.0f;
                if (hr[j] > 0.0f)
                    for (int64_t c = 0; c < C; c++) s = fmaf(zr[c], W2s[j * C + c], s);
                e.dh[r * H + j] = s;
            }
        }
        __syncthreads();
    }
}

/* ---- phase 3: linear_backward's dW and sgd_update ------------------------ */

/* One W1 tile: dW (KT, NT) = X[:, tile]^T @ dh[:, tile]; thread (tk, tc)
 * sums inputs tk*2.. and hidden units tc*4.. over every row. */
__device__ void weights_tile(const FusedEpoch &e, const Tiles &t, int64_t item, int64_t start,
                             int64_t B, float *smem) {
    const int64_t kt = item / t.n_tiles, k0 = kt * KT, j0 = item % t.n_tiles * NT;
    float *Xs = smem, *Ds = smem + RT * XS;
    const int tk = threadIdx.x / (NT / 4), tc = threadIdx.x % (NT / 4);
    uint32_t raw[XPT];
    float draw[DPT];
    fetch_inputs(raw, e, start, 0, B, k0);
    fetch_dh(draw, e, 0, B, j0);
    float acc[2][4] = {};
    __syncthreads();
    for (int64_t r0 = 0; r0 < B; r0 += RT) {
        if (r0 > 0) __syncthreads();
        stage_inputs(Xs, raw, e, r0, B, k0);
#pragma unroll
        for (int q = 0; q < DPT; q++) Ds[threadIdx.x + q * THREADS] = draw[q];
        __syncthreads();
        if (r0 + RT < B) {
            fetch_inputs(raw, e, start, r0 + RT, B, k0);
            fetch_dh(draw, e, r0 + RT, B, j0);
        }
        const int rows = B - r0 < RT ? (int)(B - r0) : RT;
#pragma unroll 4
        for (int r = 0; r < rows; r++) {
            const float2 x = *reinterpret_cast<const float2 *>(Xs + r * XS + tk * 2);
            const float4 d = *reinterpret_cast<const float4 *>(Ds + r * NT + tc * 4);
            const float dv[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                acc[0][j] = fmaf(x.x, dv[j], acc[0][j]);
                acc[1][j] = fmaf(x.y, dv[j], acc[1][j]);
            }
        }
    }
    int64_t at[8];
    bool ok[8];
    float g[8];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t gk = k0 + tk * 2 + i, gj = j0 + tc * 4 + j;
            at[i * 4 + j] = gk * e.H + gj;
            ok[i * 4 + j] = gk <= e.D && gj < e.H;
            g[i * 4 + j] = acc[i][j];
        }
    sgd(e.W1, e.V1, at, ok, g, e);
}

/* One slice of W2: dW (KW, C) = [h, 1][:, slice]^T @ dlogits; thread
 * handles outputs threadIdx.x, + THREADS, ... */
__device__ void head_weights_slice(const FusedEpoch &e, int64_t slice, int64_t B, float *smem) {
    const int64_t H = e.H, C = e.C, k0 = slice * KW;
    const int outs = (int)(KW * C);
    float *Hs = smem, *Zs = smem + RT * (KW + 1);
    float acc[OPT] = {};
    __syncthreads();
    for (int64_t r0 = 0; r0 < B; r0 += RT) {
        if (r0 > 0) __syncthreads();
        for (int idx = threadIdx.x; idx < RT * KW; idx += THREADS) {
            const int64_t row = r0 + idx / KW, gk = k0 + idx % KW;
            float v = 0.0f;
            if (row < B) v = gk < H ? __ldcg(e.h + row * H + gk) : (gk == H ? 1.0f : 0.0f);
            Hs[idx / KW * (KW + 1) + idx % KW] = v;
        }
        for (int64_t idx = threadIdx.x; idx < RT * C; idx += THREADS)
            Zs[idx] = r0 + idx / C < B ? __ldcg(e.dlogits + r0 * C + idx) : 0.0f;
        __syncthreads();
        const int rows = B - r0 < RT ? (int)(B - r0) : RT;
#pragma unroll
        for (int q = 0; q < OPT; q++) {
            const int o = threadIdx.x + q * THREADS;
            if (o >= outs) break;
            const int kk = o / (int)C, c = o % (int)C;
            float s = acc[q];
            for (int r = 0; r < rows; r++) s = fmaf(Hs[r * (KW + 1) + kk], Zs[r * C + c], s);
            acc[q] = s;
        }
    }
    int64_t at[OPT];
    bool ok[OPT];
#pragma unroll
    for (int q = 0; q < OPT; q++) {
        const int o = threadIdx.x + q * THREADS;
        at[q] = k0 * C + o;
        ok[q] = o < outs && k0 + o / C <= H;
    }
    sgd(e.W2, e.V2, at, ok, acc, e);
}

/* ---- the epoch ------------------------------------------------------------ */

#ifdef MLP_FUSED_PROFILE
__device__ unsigned long long fused_prof[6];
#define PROF_MARK(i)                                  \
    if (threadIdx.x == 0) {                           \
        const long long now = clock64();              \
        tp[i] += now - last;                          \
        last = now;                                   \
    }
#else
#define PROF_MARK(i)
#endif

__global__ void __launch_bounds__(THREADS) fused_epoch_kernel(FusedEpoch e) {
    extern __shared__ __align__(16) float smem[];
    cg::grid_group grid = cg::this_grid();
    const Tiles t = tiles_of(e.D, e.H);
#ifdef MLP_FUSED_PROFILE
    long long last = clock64(), tp[5] = {};
#endif
    for (int64_t start = 0; start < e.n; start += e.batch) {
        const int64_t B = e.n - start < e.batch ? e.n - start : e.batch;
        for (int64_t i = blockIdx.x; i < t.w1; i += gridDim.x) forward_tile(e, t, i, start, B, smem);
        PROF_MARK(0)
        grid.sync();
        PROF_MARK(1)
        head_rows(e, t, start, B, smem);
        PROF_MARK(2)
        grid.sync();
        PROF_MARK(3)
        /* The next step's forward reads only this block's own W1 tiles, which
         * it updates here: no grid barrier until after that forward. */
        for (int64_t i = blockIdx.x; i < t.w1 + t.w2; i += gridDim.x) {
            if (i < t.w1)
                weights_tile(e, t, i, start, B, smem);
            else
                head_weights_slice(e, i - t.w1, B, smem);
        }
        PROF_MARK(4)
    }
#ifdef MLP_FUSED_PROFILE
    if (threadIdx.x == 0) {
        for (int i = 0; i < 5; i++) atomicAdd(&fused_prof[i], (unsigned long long)tp[i]);
        atomicAdd(&fused_prof[5], 1ull);
    }
#endif
}

/* rows (n, row_bytes) = X[order], labels (n) = y[order]: a warp per row */
__global__ void gather_rows_kernel(uint8_t *rows, int32_t *labels, const uint8_t *X,
                                   const int32_t *y, const int64_t *order, int64_t n,
                                   int64_t row_bytes) {
    const int lane = threadIdx.x % 32;
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; i < n;
         i += (int64_t)gridDim.x * blockDim.x / 32) {
        const int64_t src = __ldg(order + i);
        if (lane == 0) labels[i] = __ldg(y + src);
        if (row_bytes % 16 == 0) { /* rows stay 16-byte aligned */
            const uint4 *from = (const uint4 *)(X + src * row_bytes);
            uint4 *to = (uint4 *)(rows + i * row_bytes);
            for (int64_t k = lane; k < row_bytes / 16; k += 32) to[k] = __ldg(from + k);
        } else {
            for (int64_t k = lane; k < row_bytes; k += 32) rows[i * row_bytes + k] = __ldg(X + src * row_bytes + k);
        }
    }
}

int64_t smem_floats(int64_t H, int64_t C) {
    int64_t f = KT * NT + RT * XS;                           /* forward */
    if (RT * XS + RT * NT > f) f = RT * XS + RT * NT;         /* W1 update */
    if (RT * (KW + 1) + RT * C > f) f = RT * (KW + 1) + RT * C; /* W2 update */
    if ((H + 1) * C + WARPS * (H + C) > f) f = (H + 1) * C + WARPS * (H + C); /* head */
    return f;
}

} // namespace

FusedPlan fused_plan(int64_t D, int64_t H, int64_t C, int64_t batch) {
    FusedPlan plan = {};
    const Tiles t = tiles_of(D, H);
    if (C > MAX_CLASSES || t.k_tiles * batch * H > MAX_PARTIAL_FLOATS) return plan;
    int dev = 0, coop = 0, sms = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess) {
        cudaGetLastError();
        return plan;
    }
    const size_t bytes = sizeof(float) * (size_t)smem_floats(H, C);
    if (!coop || bytes > (size_t)optin) return plan;
    int per_sm = 0;
    /* the most this GPU allows, always the same: models of other shapes, on
     * other threads, share the setting */
    if (cudaFuncSetAttribute(fused_epoch_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             optin) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fused_epoch_kernel, THREADS,
                                                      bytes) != cudaSuccess ||
        per_sm < 1) {
        cudaGetLastError();
        return plan;
    }
    /* a block per W1 tile and W2 slice, or per WARPS rows of the head if
     * that is more, up to what fits on the GPU at once */
    int64_t want = t.w1 + t.w2;
    if (cdiv(batch, WARPS) > want) want = cdiv(batch, WARPS);
    const int64_t most = (int64_t)per_sm * sms;
    plan.ok = true;
    plan.blocks = (int)(want < most ? want : most);
    plan.smem_bytes = bytes;
    plan.k_tiles = t.k_tiles;
    return plan;
}

int64_t fused_partial_floats(const FusedPlan &plan, int64_t batch, int64_t H) {
    return plan.k_tiles * batch * H;
}

int64_t fused_rows_bytes(const FusedEpoch &e) {
    return e.n * e.D * (e.dtype == MLP_UINT8 ? 1 : (int64_t)sizeof(float));
}

cudaError_t fused_train_epoch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e) {
    const int64_t warps = e.n < 4096 * 8 ? e.n : 4096 * 8;
    gather_rows_kernel<<<(unsigned)cdiv(warps, 8), 256, 0, s>>>(
        (uint8_t *)e.rows, e.labels, (const uint8_t *)e.X, e.y, e.order, e.n,
        fused_rows_bytes(e) / e.n);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    FusedEpoch args = e;
    void *argv[] = {&args};
#ifndef MLP_FUSED_PROFILE
    return cudaLaunchCooperativeKernel((const void *)fused_epoch_kernel, dim3(plan.blocks),
                                       dim3(THREADS), argv, plan.smem_bytes, s);
#else
    unsigned long long zero[6] = {}, h[6];
    cudaMemcpyToSymbolAsync(fused_prof, zero, sizeof zero, 0, cudaMemcpyHostToDevice, s);
    err = cudaLaunchCooperativeKernel((const void *)fused_epoch_kernel, dim3(plan.blocks),
                                      dim3(THREADS), argv, plan.smem_bytes, s);
    cudaStreamSynchronize(s);
    cudaMemcpyFromSymbol(h, fused_prof, sizeof h);
    const double steps = (double)cdiv(e.n, e.batch) * (double)h[5];
    FILE *f = fopen("/tmp/fused_prof.txt", "a");
    fprintf(f, "n %lld batch %lld blocks %d | cycles per step, mean over blocks: forward %.0f sync %.0f head %.0f sync %.0f weights %.0f\n",
            (long long)e.n, (long long)e.batch, plan.blocks, h[0] / steps, h[1] / steps,
            h[2] / steps, h[3] / steps, h[4] / steps);
    fclose(f);
    return err;
#endif
}
