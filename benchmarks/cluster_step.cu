/*
 * cluster_step.cu - a measurement, not part of the package: how long a
 * training step of a one-hidden-layer network takes when the whole model
 * lives in the shared memory of one thread-block cluster (Hopper, sm_90)
 * and the blocks meet at cluster barriers instead of grid barriers.
 *
 * Why: the one-kernel epochs of cuda/ spread a step over every SM and pay
 * three grid barriers a step; at scikit-learn's batch of 200 rows the
 * tabular set (100 inputs, 256 hidden units) takes 22-25 us a step there
 * (benchmarks/RESULTS.md), mostly waiting, where issue 12's GPU bar needs
 * about 10. Here a cluster of H / 16 blocks each keeps 16 hidden units' weights,
 * Adam moments and the step's inputs in shared memory; per step:
 *   1. each block: h (B,16) = relu([X, 1] @ W1[:, units]) on its units, and
 *      its share of the logits h @ W2[units] (+ b2 in block 0)
 *   -- cluster barrier --
 *   2. each block sums the shares of its rows of the batch (in rank order),
 *      then the loss and its gradient dlogits of those rows
 *   -- cluster barrier --
 *   3. each block reads every row's dlogits from its peers (distributed
 *      shared memory): dW2 and its W2 rows' update, dh (B,16), dW1 =
 *      [X, 1]^T @ dh and its W1 columns' update (pointwise.h's mlp_update)
 * The next step's rows stream in (cp.async) during this one. The two
 * products run on the float32 units (or, with -DTENSOR_PRODUCTS, on TF32
 * tensor cores). Every sum has a fixed order.
 *
 * The program checks its parameters after a few steps against a host
 * reference in double precision that takes the same steps, then times
 * whole epochs:
 *
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Icsrc -Icuda benchmarks/cluster_step.cu -o cluster_step
 *   ./cluster_step [D H C B [STEPS]]   (defaults: 100 256 1 200 5000, the tabular set)
 *
 * (-DPHASES adds block 0's time in each phase.) Random data of STEPS whole
 * batches; D a multiple of 4; H a multiple of 16 up to 256 (clusters of up
 * to 16 blocks); C up to 16; B small enough that two steps' rows fit in
 * shared memory beside the weights (about 200 rows at D = 100). The program
 * returns 1 when the check fails, 2 when it cannot take the sizes.
 *
 * C = 1 is a logistic output with binary cross-entropy (scikit-learn's
 * binary case), C >= 2 softmax cross-entropy. The optimizer is
 * scikit-learn's Adam (lr 1e-3, alpha 1e-4).
 */
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "pointwise.h"
#include "tf32.cuh"

/* the products on the float32 units, or with -DTENSOR_PRODUCTS on TF32
 * tensor cores (each operand split in two TF32 parts, three products a
 * term: float32's accuracy), which measured no faster (RESULTS.md) */
#if MLP_HAVE_TF32 && defined(TENSOR_PRODUCTS)
#define USE_TENSOR 1
#else
#define USE_TENSOR 0
#endif

namespace cg = cooperative_groups;

constexpr int U = 16;         /* hidden units per block */
constexpr int THREADS = 512;
constexpr int MAXC = 16;      /* outputs the head handles */
constexpr int HS = U + 4;     /* row stride of h and dh: rows 16-byte aligned, a warp's rows in distinct banks */

/* tf32.cuh's asynchronous copies global -> shared; the host pass, which
 * has none (MLP_HAVE_TF32 is 0 there), compiles no device code */
__device__ inline void copy16_async(void *dst, const void *src) {
#if MLP_HAVE_TF32
    cp_async16(dst, src, 16);
#endif
}
__device__ inline void copy4_async(void *dst, const void *src) {
#if MLP_HAVE_TF32
    cp_async4(dst, src, 4);
#endif
}
__device__ inline void copies_commit() {
#if MLP_HAVE_TF32
    cp_async_commit();
#endif
}
template <int N> __device__ inline void copies_wait() {
#if MLP_HAVE_TF32
    cp_async_wait<N>();
#endif
}

#define CHECK(x)                                                                       \
    do {                                                                               \
        cudaError_t err_ = (x);                                                        \
        if (err_ != cudaSuccess) {                                                     \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x,                  \
                    cudaGetErrorString(err_));                                         \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* -DPHASES: block 0's time in each phase of a step (globaltimer), summed */
#ifdef PHASES
__device__ unsigned long long phase_ns[10];
__device__ inline unsigned long long now_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#define MARK(i)                                                                        \
    do {                                                                               \
        if (r == 0 && tid == 0) {                                                      \
            const unsigned long long t_ = now_ns();                                    \
            phase_ns[i] += t_ - last_ns;                                               \
            last_ns = t_;                                                              \
        }                                                                              \
    } while (0)
#else
#define MARK(i) ((void)0)
#endif

struct Args {
    const float *X;       /* (n, D) rows in step order, D a multiple of 4 */
    const int32_t *y;     /* labels (C >= 2) */
    const float *t;       /* targets 0/1 (C == 1) */
    int n, B, D, H, C, XS; /* XS: row stride of the staged inputs */
    float *W1, *M1, *V1;  /* (D+1, H), the bias row last */
    float *W2, *M2, *V2;  /* (H+1, C) */
    const mlp_step *steps;
    float *row_loss;      /* (n) */
};

/* shared memory, in floats */
struct Layout {
    int w1, m1, v1, w2, m2, v2, xs, hd, zp, dl, dla, total;
};

__host__ __device__ inline Layout layout_of(int D, int B, int C, int XS) {
    Layout l;
    const int w1 = (D + 8) / 8 * 8 * U, w2 = (U + 1) * C; /* W1's rows past D are zeros; block 0's extra W2 row: b2 */
    int at = 0;
    l.w1 = at; at += w1;
    l.m1 = at; at += w1;
    l.v1 = at; at += w1;
    l.w2 = at; at += w2;
    l.m2 = at; at += w2;
    l.v2 = at; at += w2;
    at = (at + 3) / 4 * 4;
    l.xs = at; at += 2 * B * XS;
    l.hd = at; at += B * HS;
    l.zp = at; at += 2 * B * C;
    l.dl = at; at += 2 * B * C;
    l.dla = at; at += B * C;
    l.total = at;
    return l;
}

/* the first of the B rows that block q of CS handles in the head */
__device__ inline int head_row(int q, int B, int CS) { return q * B / CS; }

/* the block whose head rows hold row b */
__device__ inline int owner_of(int b, int B, int CS) {
    int q = b * CS / B;
    while (q + 1 < CS && head_row(q + 1, B, CS) <= b) q++;
    while (head_row(q, B, CS) > b) q--;
    return q;
}

__global__ void __launch_bounds__(THREADS, 1) cluster_epoch(Args a) {
    extern __shared__ __align__(16) float sm[];
    __shared__ mlp_step sc2[2]; /* the step's constants, the next step's fetched with its rows */
    cg::cluster_group cluster = cg::this_cluster();
    const int CS = (int)cluster.num_blocks(), r = (int)cluster.block_rank();
    const int D = a.D, B = a.B, C = a.C, XS = a.XS, H = a.H, tid = threadIdx.x;
    const Layout L = layout_of(D, B, C, XS);
    float *w1 = sm + L.w1, *m1 = sm + L.m1, *v1 = sm + L.v1;
    float *w2 = sm + L.w2, *m2 = sm + L.m2, *v2 = sm + L.v2;
    float *hd = sm + L.hd, *dla = sm + L.dla;
    const int j0 = r * U;

    /* the block's weights and moments in */
    for (int i = (D + 1) * U + tid; i < (D + 8) / 8 * 8 * U; i += THREADS) w1[i] = m1[i] = v1[i] = 0.0f;
    for (int i = tid; i < (D + 1) * U; i += THREADS) {
        const int k = i / U, u = i % U;
        w1[i] = a.W1[(size_t)k * H + j0 + u];
        m1[i] = a.M1[(size_t)k * H + j0 + u];
        v1[i] = a.V1[(size_t)k * H + j0 + u];
    }
    for (int i = tid; i < (U + 1) * C; i += THREADS) {
        const int u = i / C, c = i % C;
        const int row = u < U ? j0 + u : H; /* row U: b2 (block 0 updates it) */
        w2[i] = a.W2[(size_t)row * C + c];
        m2[i] = a.M2[(size_t)row * C + c];
        v2[i] = a.V2[(size_t)row * C + c];
    }
    /* the bias input 1 at column D of every staged row, zeros past it */
    for (int i = tid; i < 2 * B; i += THREADS)
        for (int k = D; k < XS; k++) sm[L.xs + i * XS + k] = k == D ? 1.0f : 0.0f;

    const int steps = a.n / a.B;
    auto stage = [&](int s) { /* step s's rows and constants into buffer s % 2 */
        constexpr int WORDS = sizeof(mlp_step) / 4;
        if (tid < WORDS) copy4_async((float *)&sc2[s & 1] + tid, (const float *)&a.steps[s] + tid);
        float *dst = sm + L.xs + (s & 1) * B * XS;
        const float *src = a.X + (size_t)s * B * D;
        const int per_row = D / 4;
        for (int i = tid; i < B * per_row; i += THREADS) {
            const int b = i / per_row, q = i % per_row;
            copy16_async(dst + b * XS + 4 * q, src + (size_t)b * D + 4 * q);
        }
        copies_commit();
    };
    stage(0);
#ifdef PHASES
    unsigned long long last_ns = now_ns();
#endif
    const int KG = (D + 4) / 4; /* groups of 4 inputs, the bias input included */
    const int KP = (D + 8) / 8 * 8; /* the inputs and the bias input, padded with zeros to the k of an MMA */
    (void)KG, (void)KP;
    for (int s = 0; s < steps; s++) {
        const int par = s & 1;
        if (s + 1 < steps) {
            stage(s + 1);
            copies_wait<1>();
        } else {
            copies_wait<0>();
        }
        __syncthreads();
        const mlp_step &sc = sc2[par];
        MARK(0);
        const float *xs = sm + L.xs + par * B * XS;
        float *zp = sm + L.zp + par * B * C, *dl = sm + L.dl + par * B * C;

#if USE_TENSOR
        /* 1. forward on tensor cores: a warp per 16 rows, both 8-unit
         * halves, [X, 1] and W1 each split in two TF32 parts; then the
         * rows' shares of the logits from h in shared memory */
        {
            const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
            for (int mt = warp; mt < (B + 15) / 16; mt += THREADS / 32) {
                const int ra = mt * 16 + g, rb = ra + 8;
                const float *xa = xs + (ra < B ? ra : B - 1) * XS, *xb = xs + (rb < B ? rb : B - 1) * XS;
                float d[2][4] = {};
                for (int k0 = 0; k0 < KP; k0 += 8) {
                    const float av[4] = {xa[k0 + q], xb[k0 + q], xa[k0 + q + 4], xb[k0 + q + 4]};
                    uint32_t ah[4], al[4]; /* split once for both halves */
                    split_tf32(av, ah, al);
#pragma unroll
                    for (int n = 0; n < 2; n++) {
                        const float bv[2] = {w1[(k0 + q) * U + 8 * n + g], w1[(k0 + q + 4) * U + 8 * n + g]};
                        uint32_t bh[2], bl[2];
                        split_tf32(bv, bh, bl);
                        mma_tf32(d[n], al, bh);
                        mma_tf32(d[n], ah, bl);
                        mma_tf32(d[n], ah, bh);
                    }
                }
#pragma unroll
                for (int n = 0; n < 2; n++) {
                    const int u = 8 * n + 2 * q;
                    if (ra < B) {
                        hd[ra * HS + u] = mlp_activation_forward(MLP_RELU, d[n][0]);
                        hd[ra * HS + u + 1] = mlp_activation_forward(MLP_RELU, d[n][1]);
                    }
                    if (rb < B) {
                        hd[rb * HS + u] = mlp_activation_forward(MLP_RELU, d[n][2]);
                        hd[rb * HS + u + 1] = mlp_activation_forward(MLP_RELU, d[n][3]);
                    }
                }
            }
        }
        __syncthreads();
        for (int i = tid; i < B * C; i += THREADS) {
            const int b = i / C, c = i % C;
            float z = r == 0 ? w2[U * C + c] : 0.0f;
#pragma unroll
            for (int u = 0; u < U; u++) z += hd[b * HS + u] * w2[u * C + c];
            zp[i] = z;
        }
#else
        /* 1. forward: a row a thread, its 16 units in registers: four
         * inputs of the row in one load, W1's rows the same for the whole
         * warp (broadcast); then the row's share of the logits. (Two
         * threads a row, 8 units each, measured slower at batch 64 and no
         * faster at 200.) */
        for (int b = tid; b < B; b += THREADS) {
            float acc[U] = {};
            const float *xb = xs + b * XS;
            for (int k = 0; k < KG * 4; k += 4) {
                const float4 x4 = *(const float4 *)(xb + k);
                const float xv[4] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
                for (int p = 0; p < 4; p++) {
                    const float4 *wr = (const float4 *)(w1 + (k + p) * U);
#pragma unroll
                    for (int q = 0; q < U / 4; q++) {
                        const float4 w = wr[q];
                        acc[4 * q] += xv[p] * w.x, acc[4 * q + 1] += xv[p] * w.y;
                        acc[4 * q + 2] += xv[p] * w.z, acc[4 * q + 3] += xv[p] * w.w;
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) acc[u] = mlp_activation_forward(MLP_RELU, acc[u]);
#pragma unroll
            for (int q = 0; q < U / 4; q++)
                *(float4 *)(hd + b * HS + 4 * q) = make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
            for (int c = 0; c < C; c++) {
                float z = r == 0 ? w2[U * C + c] : 0.0f;
#pragma unroll
                for (int u = 0; u < U; u++) z += acc[u] * w2[u * C + c];
                zp[b * C + c] = z;
            }
        }
#endif
        MARK(1);
        cluster.sync();
        MARK(2);

        /* 2. the head, this block's rows */
        {
            const int b = head_row(r, B, CS) + tid;
            if (b < head_row(r + 1, B, CS)) {
                float z[MAXC];
                for (int c = 0; c < C; c++) {
                    float part[16]; /* every share's load in flight at once, then summed in order */
#pragma unroll
                    for (int q = 0; q < 16; q++)
                        part[q] = q < CS ? cluster.map_shared_rank(zp, q)[b * C + c] : 0.0f;
                    float v = 0.0f;
#pragma unroll
                    for (int q = 0; q < 16; q++) v += part[q];
                    z[c] = v;
                }
                const float scale = 1.0f / (float)B;
                const int row = s * B + b;
                if (C == 1) {
                    const float t = a.t[row];
                    a.row_loss[row] = mlp_binary_cross_entropy_loss(z[0], t);
                    dl[b] = mlp_binary_cross_entropy_grad(z[0], t, scale);
                } else {
                    const int label = a.y[row];
                    float zmax = z[0];
                    for (int c = 1; c < C; c++) zmax = fmaxf(zmax, z[c]);
                    float sum = 0.0f;
                    for (int c = 0; c < C; c++) sum += mlp_softmax_term(z[c], zmax);
                    a.row_loss[row] = mlp_cross_entropy_loss(zmax, sum, z[label]);
                    const float inv = 1.0f / sum;
                    for (int c = 0; c < C; c++)
                        dl[b * C + c] =
                            mlp_cross_entropy_grad(mlp_softmax_prob(z[c], zmax, inv), c == label, scale);
                }
            }
        }
        MARK(3);
        cluster.sync();
        MARK(4);

        /* 3. backward */
        for (int i = tid; i < B * C; i += THREADS)
            dla[i] = cluster.map_shared_rank(dl, owner_of(i / C, B, CS))[i];
        __syncthreads();
        MARK(8);
        /* W2's gradient (row U: b2's): L neighbouring lanes per output, each
         * over every L-th row, then added across those lanes by shuffles,
         * which leave every one of them the same sum */
        const int O = (U + 1) * C;
        int L = 32;
        while (L > 1 && O * L > THREADS) L >>= 1;
        const int o2 = tid / L, l2 = tid % L;
        float g2 = 0.0f;
        if (o2 < O) {
            const int u = o2 / C, c = o2 % C;
            for (int b = l2; b < B; b += L) g2 += (u < U ? hd[b * HS + u] : 1.0f) * dla[b * C + c];
        }
        for (int off = L / 2; off > 0; off >>= 1) g2 += __shfl_xor_sync(0xffffffffu, g2, off);
        __syncthreads(); /* dh below overwrites h */
        MARK(5);
        for (int i = tid; i < B * U; i += THREADS) {
            const int b = i / U, u = i % U;
            float g = 0.0f;
            for (int c = 0; c < C; c++) g += dla[b * C + c] * w2[u * C + c];
            hd[b * HS + u] = mlp_activation_backward(MLP_RELU, 0.0f, hd[b * HS + u], g);
        }
        __syncthreads(); /* dh has read W2 */
        if (l2 == 0 && (o2 < U * C || (r == 0 && o2 < O)))
            w2[o2] = mlp_update(&sc, w2[o2], g2, &m2[o2], &v2[o2], o2 >= U * C);
        MARK(6);
#if USE_TENSOR
        /* dW1 on tensor cores: a warp per 16 inputs x 8 units, over the
         * whole batch in steps of 8 rows; each lane then updates the four
         * weights its accumulators hold */
        {
            const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
            MARK(9);
            for (int pr = warp; pr < (KP + 15) / 16 * 2; pr += THREADS / 32) {
                const int n = pr & 1, ka = (pr >> 1) * 16 + g, kb = ka + 8;
                float d[4] = {};
                for (int b0 = 0; b0 < B; b0 += 8) {
                    const int r0 = b0 + q, r1 = b0 + q + 4;
                    const float av[4] = {r0 < B && ka < KP ? xs[r0 * XS + ka] : 0.0f,
                                         r0 < B && kb < KP ? xs[r0 * XS + kb] : 0.0f,
                                         r1 < B && ka < KP ? xs[r1 * XS + ka] : 0.0f,
                                         r1 < B && kb < KP ? xs[r1 * XS + kb] : 0.0f};
                    const float bv[2] = {r0 < B ? hd[r0 * HS + 8 * n + g] : 0.0f,
                                         r1 < B ? hd[r1 * HS + 8 * n + g] : 0.0f};
                    mma_3xtf32(d, av, bv);
                }
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int k = i < 2 ? ka : kb, u = 8 * n + 2 * q + (i & 1);
                    if (k > D) continue;
                    const int at = k * U + u;
                    w1[at] = mlp_update(&sc, w1[at], d[i], &m1[at], &v1[at], k == D);
                }
            }
        }
        __syncthreads();
#else
        /* dW1: 4 inputs x 4 units a thread over a quarter of the rows; the
         * four quarters (lanes l, l^8, l^16, l^24) added by shuffles, which
         * leave every one of those lanes the same sums, each then updating
         * one of the four inputs */
        {
            const int lane = tid & 31, quarter = lane >> 3;
            const int b0 = quarter * B / 4, b1 = (quarter + 1) * B / 4;
            for (int base = 0; base < KG * 4; base += THREADS / 4) {
                const int it = base + (tid >> 5) * 8 + (lane & 7), kg = it >> 2, ug = it & 3;
                const bool on = it < KG * 4;
                const float *xk = xs + 4 * (on ? kg : 0), *gu = hd + 4 * ug;
                float acc[4][4] = {};
#pragma unroll 4
                for (int b = b0; b < b1; b++) {
                    const float4 x = *(const float4 *)(xk + b * XS);
                    const float4 g = *(const float4 *)(gu + b * HS);
                    const float xv[4] = {x.x, x.y, x.z, x.w}, gv[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
                    for (int p = 0; p < 4; p++)
#pragma unroll
                        for (int j = 0; j < 4; j++) acc[p][j] += xv[p] * gv[j];
                }
#pragma unroll
                for (int p = 0; p < 4; p++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        acc[p][j] += __shfl_xor_sync(0xffffffffu, acc[p][j], 8);
                        acc[p][j] += __shfl_xor_sync(0xffffffffu, acc[p][j], 16);
                    }
                if (base == 0) MARK(9);
                const int k = 4 * kg + quarter;
                if (on && k <= D) {
                    float g[4];
#pragma unroll
                    for (int p = 0; p < 4; p++)
                        if (p == quarter)
#pragma unroll
                            for (int j = 0; j < 4; j++) g[j] = acc[p][j];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const int at = k * U + 4 * ug + j;
                        w1[at] = mlp_update(&sc, w1[at], g[j], &m1[at], &v1[at], k == D);
                    }
                }
            }
        }
        __syncthreads();
#endif
        MARK(7);
    }
    cluster.sync(); /* no block leaves while a peer may read its shared memory */
    for (int i = tid; i < (D + 1) * U; i += THREADS) {
        const int k = i / U, u = i % U;
        a.W1[(size_t)k * H + j0 + u] = w1[i];
        a.M1[(size_t)k * H + j0 + u] = m1[i];
        a.V1[(size_t)k * H + j0 + u] = v1[i];
    }
    for (int i = tid; i < (U + 1) * C; i += THREADS) {
        const int u = i / C, c = i % C;
        if (u == U && r != 0) continue;
        const int row = u < U ? j0 + u : H;
        a.W2[(size_t)row * C + c] = w2[i];
        a.M2[(size_t)row * C + c] = m2[i];
        a.V2[(size_t)row * C + c] = v2[i];
    }
}

/* ---- the host reference: the same steps in double precision ------------- */

static void reference_steps(int steps, int B, int D, int H, int C, const std::vector<float> &X,
                            const std::vector<int32_t> &y, const std::vector<float> &t,
                            std::vector<float> &W1, std::vector<float> &M1, std::vector<float> &V1,
                            std::vector<float> &W2, std::vector<float> &M2, std::vector<float> &V2,
                            const std::vector<mlp_step> &sts) {
    std::vector<double> h((size_t)B * H), dh((size_t)B * H), dl((size_t)B * C);
    for (int s = 0; s < steps; s++) {
        const float *x = X.data() + (size_t)s * B * D;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) {
                double z = W1[(size_t)D * H + j];
                for (int k = 0; k < D; k++) z += (double)x[b * D + k] * W1[(size_t)k * H + j];
                h[(size_t)b * H + j] = z > 0 ? z : 0;
            }
        for (int b = 0; b < B; b++) {
            double z[MAXC];
            for (int c = 0; c < C; c++) {
                z[c] = W2[(size_t)H * C + c];
                for (int j = 0; j < H; j++) z[c] += h[(size_t)b * H + j] * W2[(size_t)j * C + c];
            }
            const int row = s * B + b;
            if (C == 1) {
                const double p = 1.0 / (1.0 + exp(-z[0]));
                dl[b] = (p - t[row]) / B;
            } else {
                double zmax = z[0], sum = 0;
                for (int c = 1; c < C; c++) zmax = fmax(zmax, z[c]);
                for (int c = 0; c < C; c++) sum += exp(z[c] - zmax);
                for (int c = 0; c < C; c++)
                    dl[(size_t)b * C + c] = (exp(z[c] - zmax) / sum - (c == y[row])) / B;
            }
        }
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) {
                double g = 0;
                for (int c = 0; c < C; c++) g += dl[(size_t)b * C + c] * W2[(size_t)j * C + c];
                dh[(size_t)b * H + j] = h[(size_t)b * H + j] > 0 ? g : 0;
            }
        const mlp_step &st = sts[s];
        for (int j = 0; j <= H; j++)
            for (int c = 0; c < C; c++) {
                double g = 0;
                for (int b = 0; b < B; b++) g += (j < H ? h[(size_t)b * H + j] : 1.0) * dl[(size_t)b * C + c];
                const size_t at = (size_t)j * C + c;
                W2[at] = mlp_update(&st, W2[at], (float)g, &M2[at], &V2[at], j == H);
            }
        for (int k = 0; k <= D; k++)
            for (int j = 0; j < H; j++) {
                double g = 0;
                for (int b = 0; b < B; b++) g += (k < D ? x[b * D + k] : 1.0) * dh[(size_t)b * H + j];
                const size_t at = (size_t)k * H + j;
                W1[at] = mlp_update(&st, W1[at], (float)g, &M1[at], &V1[at], k == D);
            }
    }
}

static float uniform(uint64_t &state) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((state >> 40) & 0xFFFFFF) / 16777216.0f;
}

struct Run {
    int D, H, C, B, n;
    std::vector<float> X, t, W1, W2;
    std::vector<int32_t> y;
};

static float *to_device(const std::vector<float> &v) {
    float *d;
    CHECK(cudaMalloc(&d, v.size() * sizeof(float) + 16));
    CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

/* runs `steps` steps on the GPU from the initial parameters, `repeats`
 * times from the same start; returns the median time in ms */
static float gpu_steps(const Run &R, int steps, std::vector<float> &W1, std::vector<float> &W2,
                       std::vector<float> &M1, std::vector<float> &V1, std::vector<float> &M2,
                       std::vector<float> &V2, const std::vector<mlp_step> &sts, int repeats) {
    const int XS0 = (R.D + 1 + 3) / 4 * 4 + 4;
    const int XS = (XS0 / 4) % 2 == 0 ? XS0 + 4 : XS0; /* an odd number of 16-byte units */
    const Layout L = layout_of(R.D, R.B, R.C, XS);
    const size_t bytes = sizeof(float) * (size_t)L.total;
    const int CS = R.H / U;
    float *dX = to_device(R.X), *dt = to_device(R.t), *dloss;
    int32_t *dy;
    CHECK(cudaMalloc(&dy, R.y.size() * 4 + 16));
    CHECK(cudaMemcpy(dy, R.y.data(), R.y.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMalloc(&dloss, (size_t)R.n * 4));
    mlp_step *dsteps;
    CHECK(cudaMalloc(&dsteps, sts.size() * sizeof(mlp_step)));
    CHECK(cudaMemcpy(dsteps, sts.data(), sts.size() * sizeof(mlp_step), cudaMemcpyHostToDevice));
    int optin = 0;
    CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    if (bytes > (size_t)optin) {
        fprintf(stderr, "needs %zu bytes of shared memory a block, the GPU gives %d\n", bytes, optin);
        exit(2);
    }
    CHECK(cudaFuncSetAttribute(cluster_epoch, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    CHECK(cudaFuncSetAttribute(cluster_epoch, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(CS);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = bytes;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = CS;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    CHECK(cudaOccupancyMaxActiveClusters(&clusters, cluster_epoch, &cfg));
    std::vector<float> times, w1, w2, m1, v1, m2, v2;
    for (int rep = 0; rep < repeats; rep++) {
        float *dW1 = to_device(W1), *dW2 = to_device(W2), *dM1 = to_device(M1), *dV1 = to_device(V1),
              *dM2 = to_device(M2), *dV2 = to_device(V2);
        Args a = {dX, dy, dt, steps * R.B, R.B, R.D, R.H, R.C, XS, dW1, dM1, dV1, dW2, dM2, dV2,
                  dsteps, dloss};
        cudaEvent_t e0, e1;
        CHECK(cudaEventCreate(&e0));
        CHECK(cudaEventCreate(&e1));
        CHECK(cudaEventRecord(e0));
        CHECK(cudaLaunchKernelEx(&cfg, cluster_epoch, a));
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaGetLastError());
        float ms;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        times.push_back(ms);
        if (rep == 0) {
            printf("  cluster of %d blocks, %zu bytes of shared memory each, %d such clusters fit; "
                   "run %d: %.3f ms\n", CS, bytes, clusters, rep, ms);
        } else {
            printf("  run %d: %.3f ms\n", rep, ms);
        }
        w1 = W1, w2 = W2, m1 = M1, v1 = V1, m2 = M2, v2 = V2;
        CHECK(cudaMemcpy(w1.data(), dW1, w1.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(w2.data(), dW2, w2.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(m1.data(), dM1, m1.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(v1.data(), dV1, v1.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(m2.data(), dM2, m2.size() * 4, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(v2.data(), dV2, v2.size() * 4, cudaMemcpyDeviceToHost));
        for (float *p : {dW1, dW2, dM1, dV1, dM2, dV2}) CHECK(cudaFree(p));
    }
    W1 = w1, W2 = w2, M1 = m1, V1 = v1, M2 = m2, V2 = v2;
    std::sort(times.begin(), times.end());
    for (void *p : {(void *)dX, (void *)dt, (void *)dy, (void *)dloss, (void *)dsteps}) CHECK(cudaFree(p));
    return times[times.size() / 2]; /* the median */
}

int main(int argc, char **argv) {
    Run R;
    R.D = argc > 1 ? atoi(argv[1]) : 100;
    R.H = argc > 2 ? atoi(argv[2]) : 256;
    R.C = argc > 3 ? atoi(argv[3]) : 1;
    R.B = argc > 4 ? atoi(argv[4]) : 200;
    const int epoch_steps = argc > 5 ? atoi(argv[5]) : 5000;
    if (R.D % 4 || R.H % U || R.H / U > 16 || R.C < 1 || R.C > MAXC || R.B < 2) {
        fprintf(stderr, "needs D a multiple of 4, H a multiple of 16 up to 256, 1 <= C <= 16\n");
        return 2;
    }
    R.n = epoch_steps * R.B;
    uint64_t st = 12345;
    R.X.resize((size_t)R.n * R.D);
    for (auto &v : R.X) v = 2.0f * uniform(st) - 1.0f;
    R.y.resize(R.n);
    R.t.resize(R.n);
    for (int i = 0; i < R.n; i++) {
        const float s = R.X[(size_t)i * R.D] + R.X[(size_t)i * R.D + 1];
        R.t[i] = s > 0 ? 1.0f : 0.0f;
        R.y[i] = R.C > 1 ? (int)(uniform(st) * R.C) % R.C : 0;
    }
    const float b1 = sqrtf(6.0f / (R.D + R.H)), b2 = sqrtf(6.0f / (R.H + R.C));
    R.W1.resize((size_t)(R.D + 1) * R.H);
    for (auto &v : R.W1) v = b1 * (2.0f * uniform(st) - 1.0f);
    R.W2.resize((size_t)(R.H + 1) * R.C);
    for (auto &v : R.W2) v = b2 * (2.0f * uniform(st) - 1.0f);
    mlp_optimizer opt = {};
    opt.kind = MLP_ADAM;
    opt.convention = MLP_SKLEARN;
    opt.lr = 1e-3f;
    opt.weight_decay = 1e-4f;
    opt.beta1 = 0.9f;
    opt.beta2 = 0.999f;
    opt.eps = 1e-8f;
    std::vector<mlp_step> sts(epoch_steps);
    for (int s = 0; s < epoch_steps; s++) sts[s] = mlp_step_init(&opt, s + 1, R.B);
    printf("D %d H %d C %d batch %d\n", R.D, R.H, R.C, R.B);

    /* 1. the parameters after a few steps against the host reference */
    const int check = epoch_steps < 8 ? epoch_steps : 8;
    std::vector<float> W1 = R.W1, W2 = R.W2, M1(W1.size()), V1(W1.size()), M2(W2.size()), V2(W2.size());
    std::vector<float> rW1 = W1, rW2 = W2, rM1 = M1, rV1 = V1, rM2 = M2, rV2 = V2;
    gpu_steps(R, check, W1, W2, M1, V1, M2, V2, sts, 1);
    reference_steps(check, R.B, R.D, R.H, R.C, R.X, R.y, R.t, rW1, rM1, rV1, rW2, rM2, rV2, sts);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < W1.size(); i++) {
        worst = fmax(worst, fabs((double)W1[i] - rW1[i]));
        scale = fmax(scale, fabs((double)rW1[i] - R.W1[i]));
    }
    for (size_t i = 0; i < W2.size(); i++) {
        worst = fmax(worst, fabs((double)W2[i] - rW2[i]));
        scale = fmax(scale, fabs((double)rW2[i] - R.W2[i]));
    }
    /* Adam moves each weight by about lr a step; the float32 sums move the
     * moments' ratio a little, so the bar is a small share of the change */
    const bool ok = worst <= 1e-3 * scale + 1e-6;
    printf("check after %d steps: largest difference %.3g, largest change %.3g: %s\n", check,
           worst, scale, ok ? "ok" : "MISMATCH");

    /* 2. whole epochs */
    W1 = R.W1, W2 = R.W2;
    std::fill(M1.begin(), M1.end(), 0.0f), std::fill(V1.begin(), V1.end(), 0.0f);
    std::fill(M2.begin(), M2.end(), 0.0f), std::fill(V2.begin(), V2.end(), 0.0f);
    const float ms = gpu_steps(R, epoch_steps, W1, W2, M1, V1, M2, V2, sts, 5);
    printf("epoch of %d steps: median of 5 %.3f ms, %.2f us a step\n", epoch_steps, ms,
           1000.0 * ms / epoch_steps);
#ifdef PHASES
    unsigned long long ns[10];
    CHECK(cudaMemcpyFromSymbol(ns, phase_ns, sizeof ns));
    const char *names[10] = {"stage+wait", "forward+shares", "cluster barrier 1", "head",
                             "cluster barrier 2", "dW2", "dh+W2 update", "W1 update (and what follows)",
                             "dlogits gathered", "dW1 sums"};
    const int order[10] = {0, 1, 2, 3, 4, 8, 5, 6, 9, 7};
    double total = 0;
    for (int i = 0; i < 10; i++) total += ns[i];
    const double runs_steps = (double)(check + 5 * epoch_steps);
    for (int j = 0; j < 10; j++) {
        const int i = order[j];
        printf("  %-30s %6.2f us a step\n", names[i], ns[i] / 1000.0 / runs_steps);
    }
    printf("  %-30s %6.2f us a step\n", "all", total / 1000.0 / runs_steps);
#endif
    return ok ? 0 : 1;
}
