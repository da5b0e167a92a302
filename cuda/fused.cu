/*
 * fused.cu - a training epoch of a one-hidden-layer network as one
 * persistent kernel; see fused.cuh for the plan of a step.
 */
#include <cooperative_groups.h>
#include <math.h>

#include "fused.cuh"
#include "common.cuh"
#include "common.h"
#include "tf32.cuh"
#include "pointwise.h"
#include "phase_times.cuh"

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
/* Without TF32 tensor cores (MLP_KERNELS=base, sm_75), larger batches take
 * the kernel-per-op path: this kernel's epoch time stops falling from batch
 * 1024 up (every 64-row chunk waits on its loads), while a kernel per op
 * keeps getting faster; with tensor cores, fused_rows.cu's kernel takes the
 * large batches (fused_by_rows; benchmarks/RESULTS.md has the measurements). */
constexpr int64_t MAX_BATCH = 2048;

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

/* A W1 tile that a block keeps in shared memory for the whole epoch
 * (e.stationary): the weights and the optimizer's e.kept_moments moments
 * (V, S), each (KT, WSF) with zeros past the matrix, and with
 * e.keep_inputs the raw inputs (RT, KT) of the step's one chunk of rows,
 * copied in during the step before. */
struct KeptTile {
    float *base; /* NULL: the tile is not kept */
    __device__ float *W() const;
    __device__ float *V() const;
    __device__ float *S() const;
    __device__ float *X(const FusedEpoch &e) const;
};

/* The general code's constants of the step in hand (e.steps[step].s),
 * copied to shared memory once a step (fused_epoch_kernel) so that no update
 * waits on a round trip to device memory for them. */
__shared__ mlp_step step_constants;

/* Starts copying step `step`'s constants into step_constants: on sm_80 and
 * newer asynchronously, a word a thread, so that no thread waits for them
 * until step_constants_ready; before that, thread 0 at step_constants_ready.
 * The caller makes sure no thread still reads the last step's. */
__device__ inline void fetch_step_constants(const FusedEpoch &e, int64_t step) {
#if MLP_HAVE_TF32
    constexpr int WORDS = sizeof(mlp_step) / 4;
    if (threadIdx.x < WORDS)
        cp_async4((uint32_t *)&step_constants + threadIdx.x,
                  (const uint32_t *)&e.steps[step].s + threadIdx.x, 4);
    cp_async_commit();
#endif
}

/* Step `step`'s constants are in step_constants for every thread after the
 * next block barrier. */
__device__ inline void step_constants_ready(const FusedEpoch &e, int64_t step) {
#if MLP_HAVE_TF32
    cp_async_wait<0>();
#else
    if (threadIdx.x == 0) step_constants = e.steps[step].s;
#endif
}

/* The optimizer update (update_one, fused.cuh) of N elements P[at[i]]
 * (where ok[i]) with gradients g[i] and state in V and S, the elements from
 * bias_at on being biases; the general code's constants are the step's
 * (step_constants). Every load is issued before any store, so the round
 * trips overlap. */
template <bool SHARED>
__device__ inline float load_param(const float *p) {
    return SHARED ? *p : __ldcg(p);
}

/* SHARED: P, V and S are a kept tile's (shared memory, fused_plan's
 * stationary) instead of device memory. */
template <bool GENERAL, bool SHARED, int N>
__device__ inline void update_with(const mlp_step &s, float *P, float *V, float *S,
                                   const int64_t (&at)[N], const bool (&ok)[N],
                                   const float (&g)[N], bool penalty, int64_t bias_at,
                                   double &pen) {
    const bool first = uses_first_moment<GENERAL>(s), second = uses_second_moment<GENERAL>(s);
    float p[N], m[N], v[N];
#pragma unroll
    for (int i = 0; i < N; i++) {
        p[i] = ok[i] ? load_param<SHARED>(P + at[i]) : 0.0f;
        m[i] = ok[i] && first ? load_param<SHARED>(V + at[i]) : 0.0f;
        v[i] = ok[i] && second ? load_param<SHARED>(S + at[i]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < N; i++) {
        if (!ok[i]) continue;
        P[at[i]] = update_one<GENERAL>(s, p[i], g[i], &m[i], &v[i], at[i] >= bias_at, penalty, pen);
        if (first) V[at[i]] = m[i];
        if (second) S[at[i]] = v[i];
    }
}

template <bool GENERAL, bool SHARED = false, int N>
__device__ inline void update(float *P, float *V, float *S, const int64_t (&at)[N],
                              const bool (&ok)[N], const float (&g)[N], const FusedEpoch &e,
                              int64_t bias_at, double &pen) {
    const mlp_step s = GENERAL ? step_constants : e.step;
    const bool penalty = GENERAL && e.penalty;
    if (GENERAL && s.adam) { /* Adam's N updates as one run without branches between them */
        mlp_step adam = s;
        adam.adam = 1;
        update_with<GENERAL, SHARED>(adam, P, V, S, at, ok, g, penalty, bias_at, pen);
    } else {
        update_with<GENERAL, SHARED>(s, P, V, S, at, ok, g, penalty, bias_at, pen);
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

__device__ inline void stage_inputs(float *Xs, int stride, const uint32_t (&raw)[XPT],
                                    const FusedEpoch &e, int64_t r0, int64_t B, int64_t k0) {
#pragma unroll
    for (int q = 0; q < XPT; q++) {
        const int idx = threadIdx.x + q * THREADS;
        const int r = idx / KT, k = idx % KT;
        const int64_t gk = k0 + k;
        float x = 0.0f;
        if (r0 + r < B && gk < e.D)
            x = e.dtype == MLP_UINT8 ? (float)raw[q] * e.input_scale : __uint_as_float(raw[q]);
        else if (r0 + r < B && gk == e.D)
            x = 1.0f; /* the input that multiplies the bias row */
        Xs[r * stride + k] = x;
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

/* The W1 tile (KT, NT) at inputs k0.., hidden units j0.. into Ws, row
 * stride `stride`, zeros past the matrix. */
__device__ inline void load_w1_tile(float *Ws, int stride, const FusedEpoch &e, int64_t k0,
                                    int64_t j0) {
    for (int idx = threadIdx.x; idx < KT * NT; idx += THREADS) {
        const int64_t gk = k0 + idx / NT, gj = j0 + idx % NT;
        Ws[idx / NT * stride + idx % NT] =
            gk <= e.D && gj < e.H ? __ldcg(e.W1 + gk * e.H + gj) : 0.0f;
    }
}


/* ---- phase 1: linear_forward, one W1 tile ------------------------------
 * (B, KT) @ (KT, NT) -> partial[kt] (B, NT); thread (tr, tc) sums rows
 * tr*FR.. and columns tc*4.. of each chunk of RT rows. */
__device__ void forward_tile_fp32(const FusedEpoch &e, const Tiles &t, int64_t item, int64_t start,
                             int64_t B, float *smem) {
    const int64_t kt = item / t.n_tiles, k0 = kt * KT, j0 = item % t.n_tiles * NT;
    float *Ws = smem, *Xs = smem + KT * NT;
    const int tr = threadIdx.x / (NT / 4), tc = threadIdx.x % (NT / 4);
    uint32_t raw[XPT];
    fetch_inputs(raw, e, start, 0, B, k0);
    __syncthreads(); /* shared memory is free: the last phase is done with it */
    load_w1_tile(Ws, NT, e, k0, j0);
    for (int64_t r0 = 0; r0 < B; r0 += RT) {
        if (r0 > 0) __syncthreads();
        stage_inputs(Xs, XS, raw, e, r0, B, k0);
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
 * Each block takes a run of rows, up to WARPS at a time, and spreads every
 * stage of them over all its threads: the partial sums (every load in flight
 * at once), the logits (a warp per row and class), softmax (a warp per row),
 * dh (a thread per element). */
constexpr int KMAX = 16; /* partial sums loaded at once per element */

template <bool GENERAL>
__device__ void head_rows(const FusedEpoch &e, const Tiles &t, int64_t start, int64_t B,
                          float *smem) {
    const int64_t H = e.H, C = e.C;
    const int64_t per = cdiv(B, gridDim.x), first = blockIdx.x * per;
    const int64_t last = first + per < B ? first + per : B;
    if (first >= last) return; /* no row for this block */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *W2s = smem, *hs = smem + (H + 1) * C, *zs = hs + WARPS * H;
    __shared__ int32_t labels[WARPS];
    __syncthreads();
    /* W2 comes in while the partial sums load (the wait is before the block
     * barrier after them), in 16-byte copies that skip the L1 cache, as
     * __ldcg does: other blocks wrote it during the last step */
    const int64_t w2n = (H + 1) * C;
    int64_t i0 = 0;
#if MLP_HAVE_TF32
    if ((uintptr_t)e.W2 % 16 == 0) {
        i0 = w2n / 4 * 4;
        for (int64_t i = 4 * threadIdx.x; i < i0; i += 4 * THREADS)
            cp_async16(W2s + i, e.W2 + i, 16);
        cp_async_commit();
    }
#endif
    for (int64_t i = i0 + threadIdx.x; i < w2n; i += THREADS) W2s[i] = __ldcg(e.W2 + i);
    const float scale = mlp_div(1.0f, (float)B);
    for (int64_t g0 = first; g0 < last; g0 += WARPS) {
        const int R = last - g0 < WARPS ? (int)(last - g0) : WARPS;
        if (threadIdx.x < R && e.loss == MLP_CROSS_ENTROPY)
            labels[threadIdx.x] = __ldg(e.labels + start + g0 + threadIdx.x);
        /* the activation's forward of the summed partial products (the bias
         * is in); where its backward needs its input, the input waits in dh */
        const bool keep_input = GENERAL && mlp_activation_needs_input(e.act);
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
            hs[idx] = mlp_activation_forward(GENERAL ? e.act : MLP_RELU, s);
            if (keep_input) e.dh[g0 * H + idx] = s;
        }
#if MLP_HAVE_TF32
        cp_async_wait<0>();
#endif
        __syncthreads();
        for (int64_t idx = threadIdx.x; idx < R * H; idx += THREADS) e.h[g0 * H + idx] = hs[idx];
        /* linear_forward of the last layer (32-bit indices: a few instructions) */
        for (int task = warp; task < R * (int)C; task += WARPS) {
            const int r = task / (int)C, c = task - r * (int)C;
            float s = 0.0f;
            for (int j = lane; j < (int)H; j += 32) s = fmaf(hs[r * H + j], W2s[j * C + c], s);
            s = warp_sum(s);
            if (lane == 0) zs[task] = s + W2s[H * C + c];
        }
        __syncthreads();
        /* the loss's forward and backward: an element-wise loss (general
         * code only), a lane per output */
        if (GENERAL && e.loss != MLP_CROSS_ENTROPY && warp < R) {
            const int64_t r = g0 + warp;
            float *zr = zs + warp * C;
            const float *t = e.targets + (start + r) * C;
            float loss = 0.0f;
            bool hit = e.loss == MLP_BINARY_CROSS_ENTROPY;
            for (int64_t c = lane; c < C; c += 32) {
                const float z = zr[c], y = __ldg(t + c);
                loss += mlp_elementwise_loss(e.loss, z, y);
                hit = hit && mlp_binary_hit(z, y);
                zr[c] = mlp_elementwise_grad(e.loss, z, y, scale);
                e.dlogits[r * C + c] = zr[c];
            }
            loss = warp_sum(loss);
            hit = __all_sync(0xffffffffu, hit);
            if (lane == 0) {
                e.row_loss[start + r] = loss;
                e.row_hit[start + r] = hit;
            }
        } else if (warp < R) { /* softmax_crossentropy_forward and _backward */
            const int64_t r = g0 + warp;
            float *zr = zs + warp * C;
            const int32_t label = labels[warp];
            const RowStats st = row_stats(zr, C);
            if (lane == 0) {
                e.row_loss[start + r] = mlp_cross_entropy_loss(st.zmax, st.sum, zr[label]);
                e.row_hit[start + r] = st.argmax == label;
            }
            __syncwarp();
            const float inv = mlp_div(1.0f, st.sum);
            for (int64_t c = lane; c < C; c += 32) {
                const float p = mlp_softmax_prob(zr[c], st.zmax, inv);
                zr[c] = mlp_cross_entropy_grad(p, c == label, scale);
                e.dlogits[r * C + c] = zr[c];
            }
        }
        __syncthreads();
        /* linear_backward's dinp, then the activation's backward (ReLU's
         * skips the sum of a blocked unit); each thread reads back the
         * inputs it kept above */
        const bool relu = !GENERAL || e.act == MLP_RELU;
        for (int idx = threadIdx.x; idx < R * (int)H; idx += THREADS) {
            const int r = idx / (int)H, j = idx - r * (int)H; /* 32-bit: a few instructions */
            float s = 0.0f;
            if (!relu || mlp_relu_passes(hs[idx]))
                for (int c = 0; c < (int)C; c++) s = fmaf(zs[r * C + c], W2s[j * C + c], s);
            if (GENERAL) {
                const float x = keep_input ? e.dh[g0 * H + idx] : 0.0f;
                s = mlp_activation_backward(e.act, x, hs[idx], s);
            }
            e.dh[g0 * H + idx] = s;
        }
        __syncthreads();
    }
}

/* ---- phase 3: linear_backward's dW and sgd_update ------------------------ */

/* One W1 tile: dW (KT, NT) = X[:, tile]^T @ dh[:, tile]; thread (tk, tc)
 * sums inputs tk*2.. and hidden units tc*4.. over every row. */
template <bool GENERAL>
__device__ void weights_tile_fp32(const FusedEpoch &e, const Tiles &t, int64_t item, int64_t start,
                                  int64_t B, float *smem, double &pen) {
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
        stage_inputs(Xs, XS, raw, e, r0, B, k0);
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
    update<GENERAL>(e.W1, e.V1, e.S1, at, ok, g, e, e.D * e.H, pen);
}

/* ---- the same two products on tensor cores (sm_80 and newer) -------------
 * mma.sync m16n8k8 in TF32, three products per product ("3xTF32": each
 * operand split into a TF32 head and a TF32 remainder, the remainders'
 * product dropped), which keeps float32 accuracy. Each of the 8 warps takes
 * a 16 x 16 block of the tile's outputs, two m16n8 accumulators.
 * Shared strides are chosen so that a warp's fragment loads hit 32
 * different banks. */
constexpr int XSF = KT + 4; /* inputs, read as A (row, k) */
constexpr int WSF = NT + 8; /* W1 tile, read as B (k, n) */
constexpr int XSW = KT + 8; /* inputs, read as A^T (k, row) */
constexpr int DSW = NT + 8; /* dh, read as B (row, n) */
constexpr int STAGES = 3;           /* chunks in the ring of asynchronous copies */
constexpr int RAW_FLOATS = RT * KT; /* one chunk of raw inputs, float32 or uint8 */

/* Floats of one chunk of raw inputs, (RT, KT) elements of esize bytes. */
__host__ __device__ inline int64_t raw_floats(int64_t esize) { return RT * KT * esize / 4; }

/* Shared memory of a kept tile. */
__host__ __device__ inline int64_t kept_floats(int moments, bool keep_inputs, int64_t esize) {
    return (1 + moments) * KT * WSF + (keep_inputs ? raw_floats(esize) : 0);
}

__device__ inline float *KeptTile::W() const { return base; }
__device__ inline float *KeptTile::V() const { return base + KT * WSF; }
__device__ inline float *KeptTile::S() const { return base + 2 * KT * WSF; }
__device__ inline float *KeptTile::X(const FusedEpoch &e) const {
    return base + (1 + e.kept_moments) * KT * WSF;
}

/* The block's j-th W1 tile (item blockIdx.x + j * gridDim.x), when kept. */
__device__ inline KeptTile kept_tile(const FusedEpoch &e, float *smem, int64_t j) {
    return KeptTile{e.stationary ? smem + e.keep_at + j * e.kept_floats : NULL};
}

#if MLP_HAVE_TF32
/* ---- asynchronous copies into shared memory (sm_80 and newer) ----------
 * With e.async_copy (rows of 16-byte multiples, H a multiple of 4), the
 * chunks of inputs and dh come through a ring of STAGES buffers filled by
 * cp.async, STAGES - 1 chunks ahead of the one being multiplied, so that no
 * chunk waits on a round trip to memory. */
__device__ inline void cp_async_wait_ahead() { /* all but the newest STAGES - 2 groups */
    cp_async_wait<STAGES - 2>();
}

/* Copies the raw inputs of rows r0.. (zeros past B and past D) into stage. */
__device__ inline void copy_inputs(void *stage, const FusedEpoch &e, int64_t start, int64_t r0,
                                   int64_t B, int64_t k0) {
    const int esize = e.dtype == MLP_UINT8 ? 1 : 4;
    const int per_row = KT * esize / 16;
    for (int sgm = threadIdx.x; sgm < RT * per_row; sgm += THREADS) {
        const int r = sgm / per_row, part = sgm % per_row;
        const int64_t k = k0 + part * 16 / esize;
        const bool valid = r0 + r < B && k < e.D;
        const char *src = (const char *)e.rows + (valid ? ((start + r0 + r) * e.D + k) * esize : 0);
        cp_async16((char *)stage + sgm * 16, src, valid ? 16 : 0);
    }
}

/* Copies dh of rows r0.., columns j0.. into stage, (RT, DSW). */
__device__ inline void copy_dh(float *stage, const FusedEpoch &e, int64_t r0, int64_t B,
                               int64_t j0, int stride) {
    for (int sgm = threadIdx.x; sgm < RT * NT / 4; sgm += THREADS) {
        const int r = sgm / (NT / 4), part = sgm % (NT / 4);
        const bool valid = r0 + r < B && j0 + part * 4 < e.H;
        const float *src = e.dh + (valid ? (r0 + r) * e.H + j0 + part * 4 : 0);
        cp_async16(stage + r * stride + part * 4, src, valid ? 16 : 0);
    }
}

/* Raw inputs of a stage -> floats in Xs (row stride `stride`), the bias
 * input 1 at column D. */
__device__ inline void convert_inputs(float *Xs, int stride, const void *stage,
                                      const FusedEpoch &e, int64_t k0) {
#pragma unroll
    for (int q = 0; q < XPT; q++) {
        const int idx = threadIdx.x + q * THREADS;
        const int r = idx / KT, k = idx % KT;
        float x = e.dtype == MLP_UINT8 ? (float)((const uint8_t *)stage)[idx] * e.input_scale
                                       : ((const float *)stage)[idx];
        if (k0 + k == e.D) x = 1.0f;
        Xs[r * stride + k] = x;
    }
}

/* The ring of one W1 tile's chunks of rows: raw inputs, and dh when dring
 * is given. Chunk c lives in slot c % STAGES. */
struct ChunkRing {
    float *ring, *dring;
    const FusedEpoch *e;
    int64_t start, B, k0, j0, chunks;

    /* queues the copies of chunk c (none past the last chunk) as one group */
    __device__ void queue(int64_t c) const {
        if (c < chunks) {
            copy_inputs(inputs(c), *e, start, c * RT, B, k0);
            if (dring) copy_dh(dh(c), *e, c * RT, B, j0, DSW);
        }
        cp_async_commit();
    }
    __device__ void begin() const {
        for (int c = 0; c < STAGES - 1; c++) queue(c);
    }
    /* waits until chunk c has landed for the whole block, and the block is
     * done with chunk c - 1, whose slot then takes chunk c + STAGES - 1 */
    __device__ void advance(int64_t c) const {
        cp_async_wait_ahead();
        __syncthreads();
        queue(c + STAGES - 1);
    }
    __device__ float *inputs(int64_t c) const { return ring + c % STAGES * RAW_FLOATS; }
    __device__ float *dh(int64_t c) const { return dring + c % STAGES * RT * DSW; }
};

/* kept: the block's kept copy of this tile (kept.base NULL where none) */
__device__ void forward_tile_mma(const FusedEpoch &e, const Tiles &t, int64_t item,
                                 int64_t start, int64_t B, float *smem, KeptTile kept) {
    const int64_t kt = item / t.n_tiles, k0 = kt * KT, j0 = item % t.n_tiles * NT;
    float *Ws = kept.base ? kept.W() : smem, *Xs = smem + KT * WSF;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, q = lane % 4;
    const int m0 = warp % 4 * 16, n0 = warp / 4 * 16; /* the warp's block of the tile */
    const bool kept_x = kept.base && e.keep_inputs;
    uint32_t raw[XPT];
    if (!e.async_copy) fetch_inputs(raw, e, start, 0, B, k0);
    __syncthreads(); /* shared memory is free: the last phase is done with it */
    if (!kept.base) load_w1_tile(Ws, WSF, e, k0, j0);
    const int64_t chunks = cdiv(B, RT);
    /* with e.async_copy, STAGES chunks of raw inputs after Xs */
    const ChunkRing ring = {Xs + RT * XSF, NULL, &e, start, B, k0, j0, chunks};
    if (e.async_copy && !kept_x) ring.begin();
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t r0 = c * RT;
        if (kept_x) { /* the step's one chunk, copied in during the last step */
            cp_async_wait<0>();
            __syncthreads();
            convert_inputs(Xs, XSF, kept.X(e), e, k0);
            __syncthreads();
        } else if (e.async_copy) {
            ring.advance(c);
            convert_inputs(Xs, XSF, ring.inputs(c), e, k0);
            __syncthreads();
        } else {
            if (r0 > 0) __syncthreads();
            stage_inputs(Xs, XSF, raw, e, r0, B, k0);
            __syncthreads();
            if (r0 + RT < B) fetch_inputs(raw, e, start, r0 + RT, B, k0);
        }
        if (r0 + m0 >= B) continue;
        float acc[2][4] = {};
#pragma unroll 2
        for (int k = 0; k < KT; k += 8) {
            const float *x = Xs + (m0 + g) * XSF + k + q;
            const float a[4] = {x[0], x[8 * XSF], x[4], x[8 * XSF + 4]};
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float *w = Ws + (k + q) * WSF + n0 + n * 8 + g;
                const float b[2] = {w[0], w[4 * WSF]};
                mma_3xtf32(acc[n], a, b);
            }
        }
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int64_t row = r0 + m0 + g + (i / 2) * 8, col = j0 + n0 + n * 8 + 2 * q + i % 2;
                if (row < B && col < e.H) e.partial[(kt * B + row) * e.H + col] = acc[n][i];
            }
    }
}

template <bool GENERAL>
__device__ void weights_tile_mma(const FusedEpoch &e, const Tiles &t, int64_t item,
                                 int64_t start, int64_t B, float *smem, KeptTile kept,
                                 double &pen) {
    const int64_t kt = item / t.n_tiles, k0 = kt * KT, j0 = item % t.n_tiles * NT;
    float *Xs = smem, *Ds = smem + RT * XSW;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, q = lane % 4;
    const int m0 = warp % 4 * 16, n0 = warp / 4 * 16; /* inputs m0.., hidden units n0.. */
    const bool kept_x = kept.base && e.keep_inputs;
    uint32_t raw[XPT];
    float draw[DPT];
    if (!e.async_copy) {
        fetch_inputs(raw, e, start, 0, B, k0);
        fetch_dh(draw, e, 0, B, j0);
    }
    float acc[2][4] = {};
    __syncthreads();
    const int64_t chunks = cdiv(B, RT);
    /* with e.async_copy, STAGES chunks of raw inputs, then STAGES of dh,
     * where the synchronous path keeps Ds */
    const ChunkRing ring = {Ds, Ds + STAGES * RAW_FLOATS, &e, start, B, k0, j0, chunks};
    if (kept_x) { /* the step's one chunk of inputs is still in kept.X */
        copy_dh(Ds, e, 0, B, j0, DSW);
        cp_async_commit();
        convert_inputs(Xs, XSW, kept.X(e), e, k0);
        cp_async_wait<0>();
        __syncthreads();
        /* kept.X is free: the next step's inputs fly while this one ends (a
         * second slot filled a phase earlier was slower: RESULTS.md) */
        const int64_t next = start + e.batch;
        if (next < e.n)
            copy_inputs(kept.X(e), e, next, 0, e.n - next < e.batch ? e.n - next : e.batch, k0);
        cp_async_commit();
    } else if (e.async_copy) {
        ring.begin();
    }
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t r0 = c * RT;
        if (kept_x) {
            /* staged before the loop: such a step has one chunk */
        } else if (e.async_copy) {
            ring.advance(c);
            convert_inputs(Xs, XSW, ring.inputs(c), e, k0);
            Ds = ring.dh(c);
            __syncthreads();
        } else {
            if (r0 > 0) __syncthreads();
            stage_inputs(Xs, XSW, raw, e, r0, B, k0);
#pragma unroll
            for (int i = 0; i < DPT; i++) {
                const int idx = threadIdx.x + i * THREADS;
                Ds[idx / NT * DSW + idx % NT] = draw[i];
            }
            __syncthreads();
            if (r0 + RT < B) {
                fetch_inputs(raw, e, start, r0 + RT, B, k0);
                fetch_dh(draw, e, r0 + RT, B, j0);
            }
        }
        const int rows = B - r0 < RT ? (int)(B - r0) : RT;
        for (int r = 0; r < rows; r += 8) { /* rows past B are staged as zeros */
            const float *x = Xs + (r + q) * XSW + m0 + g;
            const float a[4] = {x[0], x[8], x[4 * XSW], x[4 * XSW + 8]};
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float *d = Ds + (r + q) * DSW + n0 + n * 8 + g;
                const float b[2] = {d[0], d[4 * DSW]};
                mma_3xtf32(acc[n], a, b);
            }
        }
    }
    int64_t at[8];
    bool ok[8];
    float grad[8];
#pragma unroll
    for (int n = 0; n < 2; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t gk = k0 + m0 + g + (i / 2) * 8, gj = j0 + n0 + n * 8 + 2 * q + i % 2;
            at[n * 4 + i] = gk * e.H + gj;
            ok[n * 4 + i] = gk <= e.D && gj < e.H;
            grad[n * 4 + i] = acc[n][i];
        }
    if (kept.base) { /* the same elements of the kept tile, the bias row at D - k0 */
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                at[n * 4 + i] = (m0 + g + (i / 2) * 8) * WSF + n0 + n * 8 + 2 * q + i % 2;
        update<GENERAL, true>(kept.W(), kept.V(), kept.S(), at, ok, grad, e, (e.D - k0) * WSF,
                              pen);
        return;
    }
    update<GENERAL>(e.W1, e.V1, e.S1, at, ok, grad, e, e.D * e.H, pen);
}
#endif

/* The two W1-tile phases: on tensor cores when asked and compiled for
 * (kept tiles only there). */
__device__ inline void forward_tile(const FusedEpoch &e, const Tiles &t, int64_t item,
                                    int64_t start, int64_t B, float *smem, KeptTile kept) {
#if MLP_HAVE_TF32
    if (e.tensor_cores) return forward_tile_mma(e, t, item, start, B, smem, kept);
#endif
    forward_tile_fp32(e, t, item, start, B, smem);
}

template <bool GENERAL>
__device__ inline void weights_tile(const FusedEpoch &e, const Tiles &t, int64_t item,
                                    int64_t start, int64_t B, float *smem, KeptTile kept,
                                    double &pen) {
#if MLP_HAVE_TF32
    if (e.tensor_cores) return weights_tile_mma<GENERAL>(e, t, item, start, B, smem, kept, pen);
#endif
    weights_tile_fp32<GENERAL>(e, t, item, start, B, smem, pen);
}

/* One slice of W2: dW (KW, C) = [h, 1][:, slice]^T @ dlogits; thread
 * handles outputs threadIdx.x, + THREADS, ... */
template <bool GENERAL>
__device__ void head_weights_slice(const FusedEpoch &e, int64_t slice, int64_t start, int64_t B,
                                   float *smem, double &pen) {
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
    update<GENERAL>(e.W2, e.V2, e.S2, at, ok, acc, e, e.H * e.C, pen);
}

/* ---- the epoch ------------------------------------------------------------ */

/* The block's kept W1 tiles (e.stationary) and their optimizer state: in
 * from device memory before the first step (and, with e.keep_inputs, the
 * first step's inputs queued), or back out after the last step the epoch
 * ran. */
template <bool GENERAL>
__device__ void move_kept(const FusedEpoch &e, const Tiles &t, float *smem, bool in) {
    const bool first = e.kept_moments >= 1, second = e.kept_moments >= 2;
#if MLP_HAVE_TF32
    if (!in) cp_async_wait<0>(); /* a copy of inputs may still fly */
#endif
    __syncthreads(); /* the last step's updates are done */
    for (int64_t i = blockIdx.x, j = 0; i < t.w1; i += gridDim.x, j++) {
        const KeptTile k = kept_tile(e, smem, j);
        const int64_t k0 = i / t.n_tiles * KT, j0 = i % t.n_tiles * NT;
        for (int idx = threadIdx.x; idx < KT * NT; idx += THREADS) {
            const int r = idx / NT, c = idx % NT;
            const int64_t gk = k0 + r, gj = j0 + c, at = gk * e.H + gj;
            const bool ok = gk <= e.D && gj < e.H;
            const int local = r * WSF + c;
            if (in) { /* a tile has only the moments that the optimizer uses */
                k.W()[local] = ok ? __ldcg(e.W1 + at) : 0.0f;
                if (first) k.V()[local] = ok ? __ldcg(e.V1 + at) : 0.0f;
                if (second) k.S()[local] = ok ? __ldcg(e.S1 + at) : 0.0f;
            } else if (ok) {
                e.W1[at] = k.W()[local];
                if (first) e.V1[at] = k.V()[local];
                if (second) e.S1[at] = k.S()[local];
            }
        }
#if MLP_HAVE_TF32
        if (in && e.keep_inputs) {
            copy_inputs(k.X(e), e, 0, 0, e.n < e.batch ? e.n : e.batch, k0);
            cp_async_commit();
        }
#endif
    }
    __syncthreads();
}

template <bool GENERAL>
__global__ void __launch_bounds__(THREADS) fused_epoch_kernel(FusedEpoch e) {
    extern __shared__ __align__(16) float smem[];
    cg::grid_group grid = cg::this_grid();
    const Tiles t = tiles_of(e.D, e.H);
    const bool penalty = GENERAL && e.penalty;
    if (e.stationary) move_kept<GENERAL>(e, t, smem, true);
    if (GENERAL) fetch_step_constants(e, 0);
    PHASE_CLOCK(clk);
    for (int64_t start = 0; start < e.n; start += e.batch) {
        const int64_t B = e.n - start < e.batch ? e.n - start : e.batch;
        stop_poll(e, start);
        for (int64_t i = blockIdx.x; i < t.w1; i += gridDim.x)
            forward_tile(e, t, i, start, B, smem, kept_tile(e, smem, (i - blockIdx.x) / gridDim.x));
        PHASE_MARK(clk, 0);
        grid.sync();
        PHASE_MARK(clk, 1);
        if (penalty && start > 0) penalty_total(e, start / e.batch - 1);
        if (stop_now(e, start)) break;
        /* fetched during the last step's updates (or before the first); each
         * update of this step comes after a block barrier */
        if (GENERAL) step_constants_ready(e, start / e.batch);
        head_rows<GENERAL>(e, t, start, B, smem);
        PHASE_MARK(clk, 2);
        grid.sync();
        PHASE_MARK(clk, 3);
        /* The next step's forward reads only this block's own W1 tiles, which
         * it updates here: no grid barrier until after that forward. */
        double pen = 0.0;
        for (int64_t i = blockIdx.x; i < t.w1 + t.w2; i += gridDim.x) {
            if (i < t.w1)
                weights_tile<GENERAL>(e, t, i, start, B, smem,
                                      kept_tile(e, smem, (i - blockIdx.x) / gridDim.x), pen);
            else
                head_weights_slice<GENERAL>(e, i - t.w1, start, B, smem, pen);
        }
        if (penalty) penalty_part(e, start / e.batch, pen);
        if (GENERAL && start + e.batch < e.n) { /* every update has read this step's */
            __syncthreads();
            fetch_step_constants(e, start / e.batch + 1);
        }
        PHASE_MARK(clk, 4);
    }
#if MLP_HAVE_TF32
    cp_async_wait<0>(); /* nothing in flight as the kernel ends */
#endif
    if (e.stationary) move_kept<GENERAL>(e, t, smem, false);
    PHASE_FLUSH(clk);
}

/* rows (n, stride) = X[order], a warp per row: each row's d elements (esize
 * bytes each), then, when stride > d, the bias input (255 for uint8, 1.0f
 * for float32) and zeros; labels (n) = y[order] or, with values, targets
 * (n, C) = values[order]. */
__global__ void gather_rows_kernel(uint8_t *rows, int32_t *labels, float *targets,
                                   const uint8_t *X, const int32_t *y, const float *values,
                                   int64_t C, const int64_t *order, int64_t n, int64_t d,
                                   int64_t stride, int esize) {
    const int lane = threadIdx.x % 32;
    const int64_t in_bytes = d * esize, out_bytes = stride * esize;
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; i < n;
         i += (int64_t)gridDim.x * blockDim.x / 32) {
        const int64_t src = __ldg(order + i);
        if (values)
            for (int64_t c = lane; c < C; c += 32) targets[i * C + c] = __ldg(values + src * C + c);
        else if (lane == 0)
            labels[i] = __ldg(y + src);
        uint8_t *to = rows + i * out_bytes;
        if (in_bytes % 16 == 0 && out_bytes % 16 == 0) { /* rows stay 16-byte aligned */
            const uint4 *from = (const uint4 *)(X + src * in_bytes);
            for (int64_t k = lane; k < in_bytes / 16; k += 32) ((uint4 *)to)[k] = __ldg(from + k);
        } else {
            for (int64_t k = lane; k < in_bytes; k += 32) to[k] = __ldg(X + src * in_bytes + k);
        }
        for (int64_t k = d + lane; k < stride; k += 32) {
            if (esize == 1)
                to[k] = k == d ? 255 : 0;
            else
                ((float *)to)[k] = k == d ? 1.0f : 0.0f;
        }
    }
}

int64_t smem_floats(int64_t H, int64_t C) {
    int64_t f = KT * WSF + RT * XSF;                         /* forward */
    if (KT * NT + RT * XS > f) f = KT * NT + RT * XS;
    if (RT * XSW + RT * DSW > f) f = RT * XSW + RT * DSW;     /* W1 update */
    if (RT * XS + RT * NT > f) f = RT * XS + RT * NT;
    /* the async copies' rings (uint8 rows use a quarter of theirs) */
    if (KT * WSF + RT * XSF + STAGES * RAW_FLOATS > f) f = KT * WSF + RT * XSF + STAGES * RAW_FLOATS;
    if (RT * XSW + STAGES * (RAW_FLOATS + RT * DSW) > f) f = RT * XSW + STAGES * (RAW_FLOATS + RT * DSW);
    if (RT * (KW + 1) + RT * C > f) f = RT * (KW + 1) + RT * C; /* W2 update */
    if ((H + 1) * C + WARPS * (H + C) > f) f = (H + 1) * C + WARPS * (H + C); /* head */
    return f;
}

} // namespace

bool fused_supports(bool has_weights, mlp_dtype dtype, float input_scale) {
    const float usual = dtype == MLP_UINT8 ? 1.0f / 255.0f : 1.0f;
    return !has_weights && input_scale == usual;
}

bool fused_general(mlp_activation act, mlp_loss loss, const mlp_optimizer &opt) {
    return act != MLP_RELU || loss != MLP_CROSS_ENTROPY || opt.kind != MLP_SGD ||
           opt.convention != MLP_TORCH || opt.nesterov;
}

bool fused_rows_by_activation(mlp_activation act, mlp_loss loss, const mlp_optimizer &opt) {
    return (act == MLP_TANH || act == MLP_GELU) && !fused_general(MLP_RELU, loss, opt);
}

/* The kernel of the general code or of the default recipe's. */
static const void *epoch_kernel(bool general) {
    return general ? (const void *)fused_epoch_kernel<true> : (const void *)fused_epoch_kernel<false>;
}

/* One warp: penalty[0] = the sum of the last step's parts (the kernel's
 * last block adds up every other step's). */
static __global__ void penalty_last_kernel(const double *parts, int blocks, double *penalty) {
    const double s = penalty_sum(parts, blocks);
    if (threadIdx.x == 0) *penalty = s;
}

/* Whether each block can keep its W1 tiles (and, for steps of one chunk of
 * rows, their inputs) in shared memory for the epoch: fills plan's
 * stationary, keep_inputs, keep_at, kept_floats and smem_bytes when they
 * fit beside the phases' own shared memory. */
static void keep_tiles(FusedPlan &plan, const Tiles &t, int64_t batch, mlp_dtype dtype,
                       size_t most_dynamic, const void *kernel, int sms) {
    const int64_t esize = mlp_dtype_bytes(dtype), tiles = cdiv(t.w1, plan.blocks);
    const int64_t at = cdiv((int64_t)(plan.smem_bytes / sizeof(float)), 4) * 4;
    for (int inputs = plan.async_copy && batch <= RT; inputs >= 0; inputs--) {
        const int64_t per = kept_floats(plan.kept_moments, inputs, esize);
        const size_t bytes = sizeof(float) * (size_t)(at + tiles * per);
        int per_sm = 0;
        if (bytes > most_dynamic ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, bytes) !=
                cudaSuccess ||
            (int64_t)per_sm * sms < plan.blocks) {
            cudaGetLastError();
            continue;
        }
        plan.stationary = (int)tiles;
        plan.keep_inputs = inputs;
        plan.keep_at = at;
        plan.kept_floats = per;
        plan.smem_bytes = bytes;
        return;
    }
}

bool fused_by_rows(int64_t D, mlp_dtype dtype, int64_t batch) {
    return batch >= ROWS_MIN_BATCH && 2 * cdiv(batch, RT) >= fused_rows_input_chunks(D, dtype);
}

int fused_moments(const mlp_optimizer &opt) {
    return opt.kind == MLP_ADAM ? 2 : opt.momentum != 0.0f ? 1 : 0;
}

FusedPlan fused_plan(int64_t D, int64_t H, int64_t C, int64_t batch, mlp_dtype dtype,
                     bool tensor_cores, bool general, bool by_act, mlp_activation act,
                     int moments) {
    FusedPlan plan = {};
    plan.general = general;
    plan.by_act = by_act;
    plan.kept_moments = moments;
    const Tiles t = tiles_of(D, H);
    int coop = 0, sms = 0, optin = 0, major = 0;
    if (!device_attribute(cudaDevAttrCooperativeLaunch, &coop) ||
        !device_attribute(cudaDevAttrMultiProcessorCount, &sms) ||
        !device_attribute(cudaDevAttrComputeCapabilityMajor, &major) ||
        !device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, &optin))
        return plan;
    if (!coop) return plan;
    plan.tensor_cores = tensor_cores && major >= 8;
    plan.async_copy = plan.tensor_cores && D * mlp_dtype_bytes(dtype) % 16 == 0 && H % 4 == 0;
    if (plan.tensor_cores && fused_by_rows(D, dtype, batch) &&
        fused_rows_plan(plan, D, H, C, batch, sms, general, by_act, act)) {
        plan.ok = true;
        return plan;
    }
    if (C > MAX_CLASSES || batch > MAX_BATCH || t.k_tiles * batch * H > MAX_PARTIAL_FLOATS)
        return plan;
    cudaFuncAttributes attr;
    const void *kernel = epoch_kernel(general);
    if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
        cudaGetLastError();
        return plan;
    }
    const size_t most_dynamic = (size_t)optin - attr.sharedSizeBytes;
    const size_t bytes = sizeof(float) * (size_t)smem_floats(H, C);
    if (bytes > most_dynamic) return plan;
    int per_sm = 0;
    /* the most this GPU allows, always the same: models of other shapes, on
     * other threads, share the setting */
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)most_dynamic) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, bytes) !=
            cudaSuccess ||
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
    if (plan.tensor_cores) keep_tiles(plan, t, batch, dtype, most_dynamic, kernel, sms);
    plan.row_stride = D;
    plan.workspace_floats = t.k_tiles * batch * H;
    return plan;
}

int64_t fused_rows_bytes(const FusedPlan &plan, int64_t n, mlp_dtype dtype) {
    return n * plan.row_stride * mlp_dtype_bytes(dtype);
}

cudaError_t fused_train_epoch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e) {
    const int64_t warps = e.n < 4096 * 8 ? e.n : 4096 * 8;
    gather_rows_kernel<<<(unsigned)cdiv(warps, 8), 256, 0, s>>>(
        (uint8_t *)e.rows, e.labels, e.targets, (const uint8_t *)e.X, e.y,
        e.loss == MLP_CROSS_ENTROPY ? NULL : e.values, e.C, e.order, e.n, e.D, e.row_stride,
        (int)mlp_dtype_bytes(e.dtype));
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    if (plan.by_rows) {
        err = fused_rows_launch(s, plan, e);
    } else {
        FusedEpoch args = e;
        void *argv[] = {&args};
        err = cudaLaunchCooperativeKernel(epoch_kernel(e.general), dim3(plan.blocks),
                                          dim3(THREADS), argv, plan.smem_bytes, s);
    }
    if (!plan.by_rows) phase_report(s, "fused", plan.blocks, cdiv(e.n, e.batch));
    if (err != cudaSuccess || !e.general || !e.penalty) return err;
    const int64_t last = cdiv(e.n, e.batch) - 1;
    penalty_last_kernel<<<1, 32, 0, s>>>(e.penalty_parts + (last & 1) * plan.blocks, plan.blocks,
                                         e.penalty + last);
    return cudaGetLastError();
}
