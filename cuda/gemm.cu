/*
 * gemm.cu - the tuned kernel-per-op path; see gemm.cuh.
 *
 * One tiled matrix multiply (gemm_block) serves every linear op: it reads its
 * two operands through small loader objects (plain, transposed, gathered
 * rows of the data set) and hands each finished sum to an epilogue object
 * (activation, activation backward, optimizer update; the bias is already
 * in). All pointwise math comes from csrc/pointwise.h. Every output element
 * is summed by one thread in a fixed order, and split-K partial sums are
 * added in slice order: no floating-point atomics, so results are
 * bit-identical from run to run.
 */
#include <math.h>

#include <atomic>

#include "gemm.cuh"
#include "common.cuh"
#include "gemm_shape.cuh"
#include "gemm_tensor.cuh"
#include "ops.cuh"
#include "pointwise.h"

namespace gemm {
namespace {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int THREADS = (BM / TM) * (BN / TN); /* 256 */
constexpr int64_t TARGET_BLOCKS = 512; /* most blocks split-K aims for: 4 per SM of 132 */

/* Launches of at most this many multiply-adds are chained to the kernel
 * before them (common.cuh's launch_chained; where the Scratch allows). A
 * chained kernel's blocks are placed while the one before it finishes, on
 * whichever SMs are free then: that saves the gap between short kernels,
 * but a long kernel placed unevenly loses more than the gap
 * (benchmarks/RESULTS.md: up to 10% slower chained, at 784-4096-4096-10 and
 * batch 64, and 100-512-512-2 at 1024). */
constexpr double CHAIN_MAX_WORK = 67108864.0; /* 2^26 */

static bool chain(const Scratch &scratch, double work) {
    return scratch.chained && work <= CHAIN_MAX_WORK;
}

/* ---- operand loaders: A(m, k) and B(k, n) ------------------------------- */

/* [in, 1] as (B, D+1): row m of the layer input, and the constant 1 that
 * multiplies the bias row of W_aug. gemm_block looks each block's rows up
 * once (row), then reads elements (at). When stash is set, the blocks of the
 * first tile column also write the gathered floats there, (B, D), so the
 * weight update of the same step reads a plain matrix. */
struct InputRows {
    LayerInput in;
    int64_t D;
    float *stash;
    static constexpr bool k_contig = true, rowwise = true;
    __device__ int64_t row(int64_t m) const {
        return in.act || !in.order ? (in.act ? m : in.start + m) : in.order[in.start + m];
    }
    __device__ float at(int64_t r, int64_t k) const {
        if (k == D) return 1.0f;
        if (in.act) return in.act[r * D + k];
        if (in.dtype == MLP_UINT8) return (float)((const uint8_t *)in.X)[r * D + k] * in.scale;
        return ((const float *)in.X)[r * D + k] * in.scale;
    }
    __device__ float operator()(int64_t m, int64_t k) const { return at(row(m), k); }
};

/* [in, 1]^T as (D+1, B) */
struct InputRowsT {
    InputRows rows;
    static constexpr bool k_contig = false, rowwise = false;
    __device__ float operator()(int64_t m, int64_t k) const { return rows(k, m); }
};

/* A (M, K) row-major with leading dimension ld */
struct MatA {
    const float *p;
    int64_t ld;
    static constexpr bool k_contig = true, rowwise = false;
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

/* ---- epilogues: what happens to finished sums v[0..count) at (m, n..) --
 * Each takes a thread's run of up to W adjacent columns (TN in gemm_block, 4
 * in the tensor tiles, VEC) in two halves: load, which reads what the epilogue
 * needs (In<W>), and store, which writes. A caller with several runs
 * issues the loads of a group of them before the first store, so that
 * their round trips to memory overlap (the compiler may not move a load
 * above a store to another array that it cannot prove apart). */

/* A run of W floats at p, of which the first `count` are real: with VEC
 * (the tensor tiles' runs, finish_runs), one 16-byte access where the run
 * is four whole floats so aligned; else a float each (zeros past count
 * when loading). */
template <int W, bool VEC>
__device__ inline void load_run(float (&dst)[W], const float *p, int count) {
    if constexpr (VEC && W == 4) {
        if (count == 4 && (uintptr_t)p % 16 == 0) {
            const float4 x = *reinterpret_cast<const float4 *>(p);
            dst[0] = x.x, dst[1] = x.y, dst[2] = x.z, dst[3] = x.w;
            return;
        }
    }
#pragma unroll
    for (int j = 0; j < W; j++) dst[j] = j < count ? p[j] : 0.0f;
}
template <int W, bool VEC>
__device__ inline void store_run(float *p, const float (&src)[W], int count) {
    if constexpr (VEC && W == 4) {
        if (count == 4 && (uintptr_t)p % 16 == 0) {
            *reinterpret_cast<float4 *>(p) = make_float4(src[0], src[1], src[2], src[3]);
            return;
        }
    }
#pragma unroll
    for (int j = 0; j < W; j++)
        if (j < count) p[j] = src[j];
}

struct StoreForward { /* linear_forward (+ activation_forward) */
    float *out, *pre;
    int64_t N;
    mlp_activation act;
    bool activate;
    template <int W>
    struct In {};
    template <int W, bool VEC = false>
    __device__ In<W> load(int64_t, int64_t, int) const {
        return {};
    }
    template <int W, bool VEC = false>
    __device__ void store(int64_t m, int64_t n, const In<W> &, const float (&v)[W],
                          int count) const {
        const int64_t i = m * N + n;
        /* gemm_block's forward keeps its loop of single floats: with the
         * runs' form (fewer registers, other code) 784-512-256-128-10 at
         * batch 64, whose forward runs here, took 72.4 ms an epoch against
         * 68.1 (benchmarks/RESULTS.md, stop 36) */
        if constexpr (!VEC) {
#pragma unroll
            for (int j = 0; j < W; j++) {
                if (j >= count) continue;
                if (pre) pre[i + j] = v[j];
                out[i + j] = activate ? mlp_activation_forward(act, v[j]) : v[j];
            }
        } else {
            if (pre) store_run<W, VEC>(pre + i, v, count);
            float o[W];
#pragma unroll
            for (int j = 0; j < W; j++) o[j] = activate ? mlp_activation_forward(act, v[j]) : v[j];
            store_run<W, VEC>(out + i, o, count);
        }
    }
};

struct StoreBackward { /* linear_backward's dinp (+ activation_backward) */
    float *out;
    const float *act_out, *pre; /* the activation's output and (or NULL) input */
    int64_t N;
    mlp_activation act;
    template <int W>
    struct In {
        float y[W], x[W];
    };
    template <int W, bool VEC = false>
    __device__ In<W> load(int64_t m, int64_t n, int count) const {
        const int64_t i = m * N + n;
        In<W> in;
        load_run<W, VEC>(in.y, act_out + i, count);
        load_run<W, VEC>(in.x, pre ? pre + i : act_out + i, pre ? count : 0);
        return in;
    }
    template <int W, bool VEC = false>
    __device__ void store(int64_t m, int64_t n, const In<W> &in, const float (&v)[W],
                          int count) const {
        float o[W];
#pragma unroll
        for (int j = 0; j < W; j++) o[j] = mlp_activation_backward(act, in.x[j], in.y[j], v[j]);
        store_run<W, VEC>(out + m * N + n, o, count);
    }
};

struct OptimizerUpdate { /* linear_backward's dW, db (+ the optimizer update) */
    float *P, *M, *V;
    int64_t N, bias_row; /* row D of the augmented (D+1, N) view holds the biases */
    const StepInfo *step;
    template <int W>
    struct In {
        float p[W], m[W], v[W];
    };
    template <int W, bool VEC = false>
    __device__ In<W> load(int64_t m, int64_t n, int count) const {
        const mlp_step &s = step->s;
        const bool with_m = s.adam || s.momentum != 0.0f, with_v = s.adam;
        const int64_t i = m * N + n;
        In<W> in;
        /* gemm_block's weight update keeps its loop of single floats: the
         * runs' form cost 29 registers a thread there, and a block an SM */
        if constexpr (!VEC) {
#pragma unroll
            for (int j = 0; j < W; j++) {
                in.p[j] = j < count ? P[i + j] : 0.0f;
                in.m[j] = j < count && with_m ? M[i + j] : 0.0f;
                in.v[j] = j < count && with_v ? V[i + j] : 0.0f;
            }
        } else {
            load_run<W, VEC>(in.p, P + i, count);
            load_run<W, VEC>(in.m, with_m ? M + i : P + i, with_m ? count : 0);
            load_run<W, VEC>(in.v, with_v ? V + i : P + i, with_v ? count : 0);
        }
        return in;
    }
    template <int W, bool VEC = false>
    __device__ void store(int64_t m, int64_t n, In<W> &in, const float (&grad)[W],
                          int count) const {
        const mlp_step s = step->s;
        const bool with_m = s.adam || s.momentum != 0.0f, with_v = s.adam;
        const int64_t i = m * N + n;
        if constexpr (!VEC) {
#pragma unroll
            for (int j = 0; j < W; j++) {
                if (j >= count) continue;
                P[i + j] = mlp_update(&s, in.p[j], grad[j], &in.m[j], &in.v[j], m == bias_row);
                if (with_m) M[i + j] = in.m[j];
                if (with_v) V[i + j] = in.v[j];
            }
        } else {
            float p[W];
#pragma unroll
            for (int j = 0; j < W; j++)
                p[j] = j < count ? mlp_update(&s, in.p[j], grad[j], &in.m[j], &in.v[j],
                                              m == bias_row)
                                 : 0.0f;
            store_run<W, VEC>(P + i, p, count);
            if (with_m) store_run<W, VEC>(M + i, in.m, count);
            if (with_v) store_run<W, VEC>(V + i, in.v, count);
        }
    }
};

/* an epilogue's load and store of one run, one after the other */
template <class Epi, int W>
__device__ inline void finish_run(const Epi &epi, int64_t m, int64_t n, const float (&v)[W],
                                  int count) {
    auto in = epi.template load<W>(m, n, count);
    epi.template store<W>(m, n, in, v, count);
}

/* ---- the matrix multiply --------------------------------------------- */

/* A product on the float32 tiles, `slots` of whose blocks run at once
 * (split_shape). More blocks while each slice of K keeps at least one
 * k-tile. Few tiles (a small batch): aim high, latency is all; many: half,
 * so fewer partial sums are written and read back (benchmarks/RESULTS.md,
 * batch 64 vs 1024). */
Shape float32_shape(int64_t M, int64_t N, int64_t K, bool allow_split, int64_t slots) {
    const int64_t tiles = cdiv(M, BM) * cdiv(N, BN);
    const int64_t target = !allow_split ? 0 : tiles <= 8 ? TARGET_BLOCKS : TARGET_BLOCKS / 2;
    return split_shape(M, N, K, BM, BN, BK, target, slots);
}

/* how many blocks of `kernel` (THREADS threads, no dynamic shared memory)
 * an SM runs at once, or 0 where not known */
template <typename... Params>
int blocks_per_sm(void (*kernel)(Params...)) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return per_sm;
}

__device__ inline float4 add(float4 a, float4 b) {
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

/* The last block's sums of `splits` partials: v[r] = the sum over slices s
 * of the float4 at p + r * row_stride + s * stride, for each of its R rows,
 * added in slice order from zero. Eight loads go out at a time (BATCH
 * slices of every row), then are added in that order: a sum of 32 slices
 * of one row waits for 4 round trips to L2, not 32. Eight, not 16: the
 * loads' registers count towards the kernel's most (with 16, the weight
 * update took 102 registers a thread instead of 75). */
template <int R>
__device__ inline void sum_slices(float4 (&v)[R], const float *p, int64_t row_stride,
                                  int64_t stride, int splits) {
    using V = float4;
    constexpr int BATCH = R < 8 ? 8 / R : 1;
#pragma unroll
    for (int r = 0; r < R; r++) v[r] = V{};
    int s = 0;
    for (; s + BATCH <= splits; s += BATCH) {
        V part[BATCH][R];
#pragma unroll
        for (int j = 0; j < BATCH; j++)
#pragma unroll
            for (int r = 0; r < R; r++)
                part[j][r] = __ldcg(reinterpret_cast<const V *>(p + r * row_stride + (s + j) * stride));
#pragma unroll
        for (int j = 0; j < BATCH; j++)
#pragma unroll
            for (int r = 0; r < R; r++) v[r] = add(v[r], part[j][r]);
    }
    for (; s < splits; s++)
#pragma unroll
        for (int r = 0; r < R; r++)
            v[r] = add(v[r], __ldcg(reinterpret_cast<const V *>(p + r * row_stride + s * stride)));
}

/* Block (tile, split) of a product. With one split, epi gets each sum. With
 * several, each block stores its partial tile; the last block of a tile to
 * finish (counted by an atomic) adds the partials in slice order, so the
 * result does not depend on which block came last. */
template <class LA, class LB, class Epi>
__device__ void gemm_block(const Shape &sh, int64_t tile, int split, const LA &a, const LB &b,
                           const Epi &epi, float *partial, unsigned *counters) {
    __shared__ __align__(16) float As[2][BK][BM + 4];
    __shared__ __align__(16) float Bs[2][BK][BN + 4];
    __shared__ int64_t rows[BM]; /* where each of the block's A rows starts */
    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    const int64_t m0 = tile / sh.tiles_n * BM, n0 = tile % sh.tiles_n * BN;
    if constexpr (LA::rowwise) {
        for (int i = threadIdx.x; i < BM; i += THREADS) rows[i] = m0 + i < sh.M ? a.row(m0 + i) : 0;
        __syncthreads();
    }
    const int64_t kbeg = split * sh.k_per_split;
    const int64_t kend = kbeg + sh.k_per_split < sh.K ? kbeg + sh.k_per_split : sh.K;
    constexpr int LOADS_A = BM * BK / THREADS, LOADS_B = BK * BN / THREADS;
    float ra[LOADS_A], rb[LOADS_B];

    /* global -> registers, for the k-tile at k0 */
    auto fetch = [&](int64_t k0) {
#pragma unroll
        for (int r = 0; r < LOADS_A; r++) {
            const int i = threadIdx.x + r * THREADS;
            const int m = LA::k_contig ? i / BK : i % BM, k = LA::k_contig ? i % BK : i / BM;
            const int64_t gm = m0 + m, gk = k0 + k;
            if constexpr (LA::rowwise) {
                ra[r] = (gm < sh.M && gk < kend) ? a.at(rows[m], gk) : 0.0f;
                if (a.stash && n0 == 0 && gm < sh.M && gk < kend && gk < a.D)
                    a.stash[gm * a.D + gk] = ra[r];
            } else {
                ra[r] = (gm < sh.M && gk < kend) ? a(gm, gk) : 0.0f;
            }
        }
#pragma unroll
        for (int r = 0; r < LOADS_B; r++) {
            const int i = threadIdx.x + r * THREADS;
            const int n = LB::n_contig ? i % BN : i / BK, k = LB::n_contig ? i / BN : i % BK;
            const int64_t gn = n0 + n, gk = k0 + k;
            rb[r] = (gn < sh.N && gk < kend) ? b(gk, gn) : 0.0f;
        }
    };
    /* registers -> shared buffer buf */
    auto stash = [&](int buf) {
#pragma unroll
        for (int r = 0; r < LOADS_A; r++) {
            const int i = threadIdx.x + r * THREADS;
            const int m = LA::k_contig ? i / BK : i % BM, k = LA::k_contig ? i % BK : i / BM;
            As[buf][k][m] = ra[r];
        }
#pragma unroll
        for (int r = 0; r < LOADS_B; r++) {
            const int i = threadIdx.x + r * THREADS;
            const int n = LB::n_contig ? i % BN : i / BK, k = LB::n_contig ? i / BN : i % BK;
            Bs[buf][k][n] = rb[r];
        }
    };

    float acc[TM][TN] = {};
    fetch(kbeg);
    stash(0);
    __syncthreads();
    int buf = 0;
    for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
        const bool more = k0 + BK < kend;
        if (more) fetch(k0 + BK); /* in flight while this tile is multiplied */
#pragma unroll
        for (int k = 0; k < BK; k++) {
            const float4 av = *reinterpret_cast<const float4 *>(&As[buf][k][ty * TM]);
            const float4 bv = *reinterpret_cast<const float4 *>(&Bs[buf][k][tx * TN]);
            const float a4[4] = {av.x, av.y, av.z, av.w}, b4[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a4[i], b4[j], acc[i][j]);
        }
        if (more) stash(buf ^ 1); /* the other buffer: nobody reads it now */
        __syncthreads();
        buf ^= 1;
    }
    chained_next(); /* the products are done: the next kernel may be scheduled */

    /* one row at a time: with the loads of several rows together, the
     * weight update took more registers, ran fewer blocks an SM and was
     * slower (benchmarks/RESULTS.md, "the tensor tiles' epilogue") */
    const int64_t gn = n0 + tx * TN;
    const int count = sh.N - gn < TN ? (int)(sh.N - gn) : TN;
    if (sh.splits == 1) {
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const int64_t gm = m0 + ty * TM + i;
            if (gm < sh.M && count > 0) finish_run(epi, gm, gn, acc[i], count);
        }
        return;
    }
    constexpr int64_t tile_floats = BM * BN;
    float *mine = partial + ((int64_t)split * sh.tiles + tile) * tile_floats;
#pragma unroll
    for (int i = 0; i < TM; i++)
        *reinterpret_cast<float4 *>(&mine[(ty * TM + i) * BN + tx * TN]) =
            make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    if (!last_of_tile(counters, tile, sh.splits)) return;
    float4 sums[TM];
    sum_slices(sums, partial + tile * tile_floats + ty * TM * BN + tx * TN, BN,
               sh.tiles * tile_floats, sh.splits);
#pragma unroll
    for (int i = 0; i < TM; i++) {
        const float4 v = sums[i];
        const float vs[TN] = {v.x, v.y, v.z, v.w};
        const int64_t gm = m0 + ty * TM + i;
        if (gm < sh.M && count > 0) finish_run(epi, gm, gn, vs, count);
    }
    tile_released(counters, tile);
}

template <class LA, class LB, class Epi>
__global__ void __launch_bounds__(THREADS)
gemm_kernel(Shape sh, LA a, LB b, Epi epi, float *partial, unsigned *counters) {
    chained_start();
    gemm_block(sh, blockIdx.x % sh.tiles, (int)(blockIdx.x / sh.tiles), a, b, epi, partial,
               counters);
}

template <class LA, class LB, class Epi>
void gemm(cudaStream_t s, int64_t M, int64_t N, int64_t K, LA a, LB b, Epi epi,
          Scratch scratch) {
    static const int per_sm = blocks_per_sm(gemm_kernel<LA, LB, Epi>);
    Shape sh = float32_shape(M, N, K, true, scratch.sms * per_sm);
    if (partial_floats(sh, BM * BN) > scratch.partial_floats || sh.tiles > scratch.n_counters)
        sh = float32_shape(M, N, K, false, 0); /* cannot happen; see scratch_partial_floats */
    launch_chained(chain(scratch, (double)M * (double)N * (double)K), gemm_kernel<LA, LB, Epi>,
                   dim3((unsigned)(sh.tiles * sh.splits)), dim3(THREADS), 0, s, sh, a, b, epi,
                   scratch.partial, scratch.counters);
}

/* ---- the first layer's batch, gathered ------------------------------- */

/* ops.cu's gather_batch_kernel, 4 inputs a thread (one row lookup, one
 * load and one store for 4): rows of D % 4 == 0 inputs, X and out aligned
 * for the 4-wide loads and stores (4 bytes for uint8, 16 for float32) */
__global__ void gather4_kernel(float *out, LayerInput in, int64_t B, int64_t D) {
    const int64_t i = 4 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= B * D) return;
    const int64_t r = data_row(in.order, in.start, i / D), k = i % D;
    float4 v;
    if (in.dtype == MLP_UINT8) {
        const uchar4 u = *reinterpret_cast<const uchar4 *>((const uint8_t *)in.X + r * D + k);
        v = make_float4((float)u.x * in.scale, (float)u.y * in.scale, (float)u.z * in.scale,
                        (float)u.w * in.scale);
    } else {
        const float4 x = *reinterpret_cast<const float4 *>((const float *)in.X + r * D + k);
        v = make_float4(x.x * in.scale, x.y * in.scale, x.z * in.scale, x.w * in.scale);
    }
    *reinterpret_cast<float4 *>(out + i) = v;
}

static void gather(cudaStream_t s, float *out, const LayerInput &in, int64_t B, int64_t D,
                   const Scratch &scratch) {
    const uintptr_t align = in.dtype == MLP_UINT8 ? 4 : 16;
    if (!scratch.gather4 || D % 4 != 0 || (uintptr_t)in.X % align != 0 ||
        (uintptr_t)out % 16 != 0) {
        gather_batch(s, out, in, B, D);
        return;
    }
    const int64_t threads = B * D / 4;
    gather4_kernel<<<(unsigned)cdiv(threads > 0 ? threads : 1, 256), 256, 0, s>>>(out, in, B, D);
}

/* ---- the same products on tensor cores (gemm_tensor.cuh) ------------- */

/* Split K until a product has this many blocks: as many as 128 SMs run at
 * once (132 on an H100 or H200). */
template <class T>
constexpr int64_t tensor_target_blocks() { return 128 * T::MIN_BLOCKS; }

/* A product on tensor-core tiles T */
template <class T>
Shape tensor_shape(const Scratch &scratch, int64_t M, int64_t N, int64_t K, bool allow_split) {
    return split_shape(M, N, K, T::BM, T::BN, tensor::BK,
                       allow_split ? tensor_target_blocks<T>() : 0, scratch.sms * T::MIN_BLOCKS);
}

/* Which tiles multiply a product of M x N x K: the float32 ones of
 * gemm_block, or on tensor cores large tiles where there are enough of them
 * for every SM, small ones where there are at least 16 of them and the
 * product gives each SM enough tile k-steps (small tiles times k-tiles of
 * BK) to amortize splitting K, and the float32 tiles otherwise and for
 * short K. On wgmma (Scratch::wgmma), a forward or input-gradient product
 * takes the large tiles from half as many of them; a weight gradient
 * (`weights`) does not (at 72 tiles its small tiles were faster). Measured
 * product by product (benchmarks/RESULTS.md, "the tensor tiles'
 * epilogue"; benchmarks/results/cuda-h200-2026-11-27-stop31-products.txt):
 * a K of 64 (the weight gradient at batch 64) or short products of a few
 * hundred columns are faster on the float32 tiles; since the epilogue's
 * loads go out in groups, a few small tiles over a long K are not (w 101 x
 * 512 x 8192: 80 against 90 us). Since the tiles' epilogue takes runs of
 * four columns (finish_runs), a weight gradient of enough large tiles
 * takes them from a K of 64 (w 4097 x 4096 x 64: 106 us on wgmma against
 * 198 on the float32 tiles; "the tiles' sums in runs" there). */
enum class Tiling { FLOAT32, SMALL, LARGE };

constexpr int64_t TENSOR_MIN_K = 96, WEIGHTS_LARGE_MIN_K = 64;
constexpr int64_t SMALL_MIN_TILES = 16;
constexpr int64_t SMALL_MIN_STEPS = 3000; /* about 23 an SM of 132 */

/* the tiles of T that cover an M x N product */
template <class T>
static int64_t tile_count(int64_t M, int64_t N) {
    return cdiv(M, T::BM) * cdiv(N, T::BN);
}

static Tiling tiling(const Scratch &scratch, int64_t M, int64_t N, int64_t K, bool weights) {
    if (!(scratch.tensor_min_work > 0.0) ||
        (double)M * (double)N * (double)K < scratch.tensor_min_work)
        return Tiling::FLOAT32;
    if (scratch.tensor_tiles == 1) return Tiling::SMALL;
    if (scratch.tensor_tiles == 2) return Tiling::LARGE;
    const int64_t large = tile_count<tensor::Large>(M, N);
    const int64_t large_min =
        tensor_target_blocks<tensor::Large>() / (scratch.wgmma && !weights ? 4 : 2);
    if (K < TENSOR_MIN_K)
        return weights && K >= WEIGHTS_LARGE_MIN_K && large >= large_min ? Tiling::LARGE
                                                                         : Tiling::FLOAT32;
    if (large >= large_min) return Tiling::LARGE;
    const int64_t small = tile_count<tensor::Small>(M, N);
    return small >= SMALL_MIN_TILES && small * cdiv(K, tensor::BK) >= SMALL_MIN_STEPS
               ? Tiling::SMALL
               : Tiling::FLOAT32;
}

/* A stored float32 matrix for gemm_tensor.cuh; 16-byte copies where its
 * start and rows allow them. Only matrices of the step (activations,
 * gradients, the gathered batch, parameters), never rows looked up in a
 * data set: TileCopy's 32-bit offsets count on every row read lying within
 * `rows`, which a row of a large data set need not. */
static tensor::Stored stored(const float *p, int64_t ld, int64_t rows, int64_t cols, bool ones) {
    const bool vec = ((uintptr_t)p % 16 == 0) && ld % 4 == 0;
    return tensor::Stored{p, ld, rows, cols, ones, vec};
}

template <class T, bool A_K, bool B_N, class Epi>
__global__ void __launch_bounds__(T::THREADS, T::MIN_BLOCKS)
tensor_kernel(Shape sh, tensor::Stored a, tensor::Stored b, Epi epi, float *partial,
              unsigned *counters) {
    chained_start();
    tensor::tensor_block<T, A_K, B_N>(sh, blockIdx.x % sh.tiles, (int)(blockIdx.x / sh.tiles), a,
                                      b, epi, partial, counters);
}

template <class T, bool A_K, bool B_N, class Epi>
void tensor_gemm_as(cudaStream_t s, int64_t M, int64_t N, int64_t K, tensor::Stored a,
                    tensor::Stored b, Epi epi, Scratch scratch) {
    Shape sh = tensor_shape<T>(scratch, M, N, K, true);
    if (partial_floats(sh, T::BM * T::BN) > scratch.partial_floats ||
        sh.tiles > scratch.n_counters)
        sh = tensor_shape<T>(scratch, M, N, K, false); /* cannot happen; see scratch_partial_floats */
    launch_chained(chain(scratch, (double)M * (double)N * (double)K),
                   tensor_kernel<T, A_K, B_N, Epi>, dim3((unsigned)(sh.tiles * sh.splits)),
                   dim3(T::THREADS), T::SMEM_BYTES, s, sh, a, b, epi, scratch.partial,
                   scratch.counters);
}

template <bool A_K, bool B_N, class Epi>
void tensor_gemm(Tiling t, cudaStream_t s, int64_t M, int64_t N, int64_t K, tensor::Stored a,
                 tensor::Stored b, Epi epi, Scratch scratch) {
    if (t == Tiling::LARGE && scratch.wgmma)
        tensor_gemm_as<tensor::Wide, A_K, B_N>(s, M, N, K, a, b, epi, scratch);
    else if (t == Tiling::LARGE)
        tensor_gemm_as<tensor::Large, A_K, B_N>(s, M, N, K, a, b, epi, scratch);
    else
        tensor_gemm_as<tensor::Small, A_K, B_N>(s, M, N, K, a, b, epi, scratch);
}


#ifdef MLP_BLOCK_TIMES
} // namespace
void block_times_read(unsigned long long *host) {
    cudaMemcpyFromSymbol(host, block_times, sizeof(block_times));
}
void block_times_clear() {
    static unsigned long long zero[4 * BLOCK_TIMES_MAX];
    cudaMemcpyToSymbol(block_times, zero, sizeof zero);
}
namespace {
#endif

/* ---- every layer's weight update in one launch ----------------------- */

/* Several layers' weight gradients and updates in one launch: job j's
 * blocks are first_block[j] .. first_block[j + 1], its partial sums and
 * counters at partial_off[j] and counter_off[j] of the scratch. LA and LB:
 * how the tiles read the layer input and dout. */
template <class LA, class LB, int64_t TILE_FLOATS>
struct WeightsBatch {
    int count;
    Shape shape[MLP_MAX_FUSED_LAYERS];
    LA a[MLP_MAX_FUSED_LAYERS];
    LB b[MLP_MAX_FUSED_LAYERS];
    OptimizerUpdate epi[MLP_MAX_FUSED_LAYERS];
    int64_t first_block[MLP_MAX_FUSED_LAYERS + 1];
    int64_t partial_off[MLP_MAX_FUSED_LAYERS], counter_off[MLP_MAX_FUSED_LAYERS];
    int64_t partial, counters; /* scratch taken so far */
    double work;               /* multiply-adds so far */

    __host__ void clear() {
        count = 0;
        first_block[0] = partial = counters = 0;
        work = 0.0;
    }
    /* one more job, cut as `split`, or as `whole` (unsplit) where the
     * partial sums would not fit in the scratch after those before */
    __host__ void add(Shape split, const Shape &whole, LA a_j, LB b_j, OptimizerUpdate epi_j,
                      const Scratch &scratch) {
        const int j = count++;
        const Shape sh = partial + partial_floats(split, TILE_FLOATS) > scratch.partial_floats ||
                                 counters + split.tiles > scratch.n_counters
                             ? whole
                             : split;
        shape[j] = sh;
        a[j] = a_j;
        b[j] = b_j;
        epi[j] = epi_j;
        partial_off[j] = partial;
        counter_off[j] = counters;
        first_block[j + 1] = first_block[j] + sh.tiles * sh.splits;
        partial += partial_floats(sh, TILE_FLOATS);
        if (sh.splits > 1) counters += sh.tiles;
        work += (double)sh.M * (double)sh.N * (double)sh.K;
    }
    __host__ int64_t blocks() const { return first_block[count]; }
    /* Block blockIdx.x's part of the launch: its job's tile and slice, by
     * `block` (gemm_block or a tensor_block), with the job's operands,
     * update and scratch. */
    template <class Block>
    __device__ void run(Block block, float *partial_base, unsigned *counters_base) const {
        int j = 0;
        while (j + 1 < count && (int64_t)blockIdx.x >= first_block[j + 1]) j++;
        const int64_t at = blockIdx.x - first_block[j];
        const Shape &sh = shape[j];
        block(sh, at % sh.tiles, (int)(at / sh.tiles), a[j], b[j], epi[j],
              partial_base + partial_off[j], counters_base + counter_off[j]);
    }
};

using Float32Weights = WeightsBatch<InputRowsT, MatB, BM * BN>;
template <class T>
using TensorWeights = WeightsBatch<tensor::Stored, tensor::Stored, T::BM * T::BN>;

__global__ void __launch_bounds__(THREADS)
weights_kernel(Float32Weights wb, float *partial, unsigned *counters) {
    chained_start();
    wb.run([](const Shape &sh, int64_t tile, int slice, const InputRowsT &a, const MatB &b,
              const OptimizerUpdate &epi, float *p, unsigned *c) {
        gemm_block(sh, tile, slice, a, b, epi, p, c);
    }, partial, counters);
}

/* The layers whose weight gradient runs on tensor cores in tiles T: A =
 * [in, 1]^T stored as in (B, D) and one more column of ones, B = dout. */
template <class T>
__global__ void __launch_bounds__(T::THREADS, T::MIN_BLOCKS)
tensor_weights_kernel(TensorWeights<T> wb, float *partial, unsigned *counters) {
    chained_start();
    wb.run([](const Shape &sh, int64_t tile, int slice, const tensor::Stored &a,
              const tensor::Stored &b, const OptimizerUpdate &epi, float *p, unsigned *c) {
        tensor::tensor_block<T, false, true>(sh, tile, slice, a, b, epi, p, c);
    }, partial, counters);
}

/* ---- kernels that sum over the batch's rows in slices ---------------- */

/* How the B rows of a step are cut for `groups` blocks of a kernel that
 * sums over rows (narrow_weights_kernel, bias_kernel): slices until there
 * are about four blocks an SM, each of at least min_rows rows and at most
 * max_splits of them, rounded to whole warps' worth (warps); unsplit where
 * the slices' partial sums (floats_per_group a group) or their counters
 * would not fit in the scratch after the partial_used floats and
 * counters_used counters taken before. */
struct RowSlices {
    int64_t rows_per_split;
    int splits;
};

static RowSlices row_slices(const Scratch &scratch, int64_t B, int64_t groups, int64_t min_rows,
                            int64_t max_splits, int64_t floats_per_group, int64_t partial_used,
                            int64_t counters_used, int warps) {
    int64_t sp = cdiv(scratch.sms > 0 ? 4 * scratch.sms : TARGET_BLOCKS, groups);
    if (sp > B / min_rows) sp = B / min_rows;
    if (sp > max_splits) sp = max_splits;
    if (sp > 1 && (partial_used + sp * groups * floats_per_group > scratch.partial_floats ||
                   counters_used + groups > scratch.n_counters))
        sp = 1;
    if (sp < 1) sp = 1;
    RowSlices r;
    r.rows_per_split = cdiv(cdiv(B, sp), warps) * warps;
    r.splits = B > 0 ? (int)cdiv(B, r.rows_per_split) : 1;
    return r;
}

/* ---- the weight gradient of a layer of few outputs (the head's) ------ */

/* A layer of at most NARROW_MAX outputs (the last layer: C classes or
 * targets) has a weight gradient (D+1, C) of few columns over a long K, the
 * batch. The 64 x 64 float32 tiles leave most of each tile empty there and
 * split K into many slices, whose whole partial tiles the last block then
 * reads back: the head's weight update took longer than products of a
 * hundred times its work (benchmarks/RESULTS.md). Here a block takes a
 * group of rows of W_aug (the layer's inputs and the bias row: narrow_ipl
 * of them a lane, read together where the width allows) and a slice of the
 * batch, each warp every NARROW_WARPS-th row of it; a lane keeps its sums in
 * registers, the block adds its warps' sums in warp order, and where the
 * batch is split, the last block of a group adds the slices' sums in slice
 * order: bit-identical run to run. */
constexpr int NARROW_MAX = 16, NARROW_WARPS = 8;
constexpr int NARROW_THREADS = 32 * NARROW_WARPS;
constexpr int64_t NARROW_MIN_ROWS = 64;    /* the fewest rows a slice takes */
constexpr int64_t NARROW_MIN_BATCH = 1024; /* below, the float32 tiles' launch is cheaper */

/* inputs a lane takes for NP sums each: 16 sums a lane in all, which leaves
 * registers for four rows' loads in flight */
__host__ __device__ constexpr int narrow_ipl(int np) {
    return np >= 16 ? 1 : 16 / np > 4 ? 4 : 16 / np;
}
__host__ __device__ constexpr int narrow_cols(int np) { return 32 * narrow_ipl(np); }

struct NarrowWeights {
    const float *in, *dout; /* (B, D), (B, N) */
    int64_t D, N, B;
    int64_t groups;         /* of narrow_cols rows of W_aug */
    int64_t rows_per_split; /* a multiple of NARROW_WARPS */
    int splits;
    bool vec;               /* in and D allow loads of narrow_ipl floats */
    OptimizerUpdate epi;
};

/* inputs d .. d + IPL - 1 of row r of [in, 1], zeros past the bias column */
template <int IPL>
__device__ inline void narrow_inputs(const NarrowWeights &j, int64_t r, int64_t d,
                                     float (&x)[IPL]) {
    const float *p = j.in + r * j.D + d;
    if (IPL == 4 && j.vec && d + 4 <= j.D) {
        const float4 v = *reinterpret_cast<const float4 *>(p);
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
        return;
    }
    if (IPL == 2 && j.vec && d + 2 <= j.D) {
        const float2 v = *reinterpret_cast<const float2 *>(p);
        x[0] = v.x, x[1] = v.y;
        return;
    }
#pragma unroll
    for (int i = 0; i < IPL; i++) x[i] = d + i < j.D ? p[i] : d + i == j.D ? 1.0f : 0.0f;
}

/* NP: N rounded up to a power of two, the sums a lane keeps per input */
template <int NP>
__global__ void __launch_bounds__(NARROW_THREADS)
narrow_weights_kernel(NarrowWeights j, float *partial, unsigned *counters) {
    constexpr int IPL = narrow_ipl(NP), COLS = narrow_cols(NP);
    constexpr int ENTRIES = NP * COLS, PER = ENTRIES / NARROW_THREADS;
    static_assert(PER * NARROW_THREADS == ENTRIES, "whole entries a thread");
    __shared__ float sums[ENTRIES]; /* entry (c, l) at c * COLS + l */
    chained_start();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t group = blockIdx.x % j.groups;
    const int split = (int)(blockIdx.x / j.groups);
    const int64_t d = group * COLS + IPL * lane;
    const int64_t r1 = (split + 1) * j.rows_per_split < j.B ? (split + 1) * j.rows_per_split : j.B;
    float acc[IPL][NP];
#pragma unroll
    for (int i = 0; i < IPL; i++)
#pragma unroll
        for (int c = 0; c < NP; c++) acc[i][c] = 0.0f;
#pragma unroll 4
    for (int64_t r = split * j.rows_per_split + warp; r < r1; r += NARROW_WARPS) {
        float x[IPL];
        narrow_inputs<IPL>(j, r, d, x);
        const float *g = j.dout + r * j.N;
#pragma unroll
        for (int c = 0; c < NP; c++) {
            if (c >= j.N) continue;
            const float gc = __ldg(g + c);
#pragma unroll
            for (int i = 0; i < IPL; i++) acc[i][c] = fmaf(x[i], gc, acc[i][c]);
        }
    }
    chained_next();
    /* the warps' sums added in warp order */
    for (int w = 0; w < NARROW_WARPS; w++) {
        if (warp == w)
#pragma unroll
            for (int i = 0; i < IPL; i++)
#pragma unroll
                for (int c = 0; c < NP; c++) {
                    float &e = sums[c * COLS + IPL * lane + i];
                    e = w == 0 ? acc[i][c] : e + acc[i][c];
                }
        __syncthreads();
    }
    if (j.splits > 1) {
        float *mine = partial + ((int64_t)split * j.groups + group) * ENTRIES;
#pragma unroll
        for (int i = 0; i < PER; i++)
            mine[threadIdx.x + i * NARROW_THREADS] = sums[threadIdx.x + i * NARROW_THREADS];
        if (!last_of_tile(counters, group, j.splits)) return;
        float v[PER];
#pragma unroll
        for (int i = 0; i < PER; i++) v[i] = 0.0f;
#pragma unroll 8
        for (int sp = 0; sp < j.splits; sp++) {
            const float *slice = partial + ((int64_t)sp * j.groups + group) * ENTRIES;
#pragma unroll
            for (int i = 0; i < PER; i++) v[i] += __ldcg(slice + threadIdx.x + i * NARROW_THREADS);
        }
        tile_released(counters, group);
#pragma unroll
        for (int i = 0; i < PER; i++) sums[threadIdx.x + i * NARROW_THREADS] = v[i];
        __syncthreads();
    }
    /* the update, thread by thread along W_aug's rows of N floats */
    for (int64_t idx = threadIdx.x; idx < COLS * j.N; idx += NARROW_THREADS) {
        const int l = (int)(idx / j.N), c = (int)(idx % j.N);
        const int64_t m = group * COLS + l;
        if (m > j.D) continue;
        const float g[1] = {sums[c * COLS + l]};
        finish_run(j.epi, m, c, g, 1);
    }
}

/* ---- the bias rows of weight gradients, apart ------------------------- */

/* W_aug's last row, the biases, has the gradient sum over rows of dout.
 * Where a layer's D inputs fill whole tiles of rows, the bias row alone
 * would take one more row of tiles on tensor cores (D = 512 on the small
 * tiles: 9 rows of tiles instead of 8); where that row is much work, the
 * product stops at D and bias_kernel sums dout's columns. A block takes 32 columns (a lane each)
 * and a slice of the rows (each warp every BIAS_WARPS-th row); the block
 * adds its warps' sums in warp order and the last block of a group of
 * columns adds the slices' sums in slice order: bit-identical run to run. */
constexpr int BIAS_WARPS = 8, BIAS_THREADS = 32 * BIAS_WARPS;
constexpr int64_t BIAS_MIN_ROWS = 64, BIAS_MAX_SPLITS = 32;
/* Only where the row of tiles saved is at least this many multiply-adds
 * (tabular 100-512-512-2: yes at batch 8192, 2^28; at 1024, 2^25, the
 * product took as long without its bias row and bias_kernel's launch came
 * on top; benchmarks/RESULTS.md) */
constexpr double BIAS_APART_MIN_WORK = 134217728.0; /* 2^27 */

struct BiasBatch {
    int count;
    const float *dout[MLP_MAX_FUSED_LAYERS];
    int64_t N[MLP_MAX_FUSED_LAYERS];
    OptimizerUpdate epi[MLP_MAX_FUSED_LAYERS]; /* its bias_row: D */
    int64_t groups[MLP_MAX_FUSED_LAYERS], rows_per_split[MLP_MAX_FUSED_LAYERS];
    int splits[MLP_MAX_FUSED_LAYERS];
    int64_t first_block[MLP_MAX_FUSED_LAYERS + 1];
    int64_t partial_off[MLP_MAX_FUSED_LAYERS], counter_off[MLP_MAX_FUSED_LAYERS];
    int64_t partial, counters, B;

    __host__ void clear(int64_t rows) {
        count = 0;
        first_block[0] = partial = counters = 0;
        B = rows;
    }
    /* one more layer's biases, the batch cut into slices of at least
     * BIAS_MIN_ROWS rows until there are about four blocks an SM */
    __host__ void add(const float *dout_j, int64_t N_j, OptimizerUpdate epi_j,
                      const Scratch &scratch) {
        const int j = count++;
        dout[j] = dout_j;
        N[j] = N_j;
        epi[j] = epi_j;
        groups[j] = cdiv(N_j, 32);
        const RowSlices r = row_slices(scratch, B, groups[j], BIAS_MIN_ROWS, BIAS_MAX_SPLITS, 32,
                                       partial, counters, BIAS_WARPS);
        rows_per_split[j] = r.rows_per_split;
        splits[j] = r.splits;
        partial_off[j] = partial;
        counter_off[j] = counters;
        if (splits[j] > 1) {
            partial += splits[j] * groups[j] * 32;
            counters += groups[j];
        }
        first_block[j + 1] = first_block[j] + groups[j] * splits[j];
    }
    __host__ int64_t blocks() const { return first_block[count]; }
};

__global__ void __launch_bounds__(BIAS_THREADS)
bias_kernel(BiasBatch bb, float *partial, unsigned *counters) {
    __shared__ float red[BIAS_WARPS][32];
    chained_start();
    int j = 0;
    while (j + 1 < bb.count && (int64_t)blockIdx.x >= bb.first_block[j + 1]) j++;
    const int64_t at = blockIdx.x - bb.first_block[j];
    const int64_t group = at % bb.groups[j];
    const int split = (int)(at / bb.groups[j]);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t N = bb.N[j], n = group * 32 + lane;
    const float *dout = bb.dout[j];
    const int64_t r0 = split * bb.rows_per_split[j];
    const int64_t r1 = r0 + bb.rows_per_split[j] < bb.B ? r0 + bb.rows_per_split[j] : bb.B;
    float sum = 0.0f;
    if (n < N) {
#pragma unroll 8
        for (int64_t r = r0 + warp; r < r1; r += BIAS_WARPS) sum += dout[r * N + n];
    }
    chained_next();
    red[warp][lane] = sum;
    __syncthreads();
    float v = 0.0f;
    if (warp == 0)
#pragma unroll
        for (int w = 0; w < BIAS_WARPS; w++) v += red[w][lane];
    const int splits = bb.splits[j];
    if (splits > 1) {
        float *p = partial + bb.partial_off[j];
        if (warp == 0) p[((int64_t)split * bb.groups[j] + group) * 32 + lane] = v;
        if (!last_of_tile(counters + bb.counter_off[j], group, splits)) return;
        v = 0.0f;
        if (warp == 0)
#pragma unroll 8
            for (int sp = 0; sp < splits; sp++)
                v += __ldcg(p + ((int64_t)sp * bb.groups[j] + group) * 32 + lane);
        tile_released(counters + bb.counter_off[j], group);
    }
    if (warp == 0 && n < N) {
        const float g[1] = {v};
        finish_run(bb.epi[j], bb.epi[j].bias_row, n, g, 1);
    }
}

/* ---- the head: last layer, softmax cross-entropy, back to dh ---------- */

constexpr int HEAD_WARPS = 8;

/* shared memory: the row h (H), its logits then dlogits (C) */
int64_t head_smem_floats(int64_t H, int64_t C) { return H + C; }

/* One block per row; warp w computes the logits c = w, w + 8, ...; then
 * every thread takes inputs k of the row for dh. */
__global__ void __launch_bounds__(32 * HEAD_WARPS)
head_kernel(float *logits, float *dlogits, float *dh, const float *h, const float *W_aug,
            int64_t B, int64_t H, int64_t C, mlp_activation act, Targets t,
            const int64_t *order, int64_t start, const StepInfo *step, float *row_loss,
            int32_t *row_hit) {
    chained_start();
    extern __shared__ float smem[];
    float *hs = smem, *zs = smem + H;
    const int64_t row = blockIdx.x;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __shared__ int32_t label;
    __shared__ float weight;
    if (threadIdx.x == 0) {
        const int64_t r = data_row(order, start, row);
        label = t.labels[r];
        weight = t.weights ? t.weights[r] : 1.0f;
    }
    for (int64_t k = threadIdx.x; k < H; k += blockDim.x) hs[k] = h[row * H + k];
    __syncthreads();
    for (int64_t c = warp; c < C; c += HEAD_WARPS) {
        float s = 0.0f;
        for (int64_t k = lane; k < H; k += 32) s = fmaf(hs[k], W_aug[k * C + c], s);
        s = warp_sum(s);
        if (lane == 0) zs[c] = s + W_aug[H * C + c];
    }
    __syncthreads();
    if (warp == 0) {
        const RowStats st = row_stats(zs, C);
        const float inv = mlp_div(1.0f, st.sum), scale = weight * step->inv_wsum;
        if (lane == 0) {
            row_loss[start + row] = weight * mlp_cross_entropy_loss(st.zmax, st.sum, zs[label]);
            row_hit[start + row] = st.argmax == label;
        }
        __syncwarp();
        for (int64_t c = lane; c < C; c += 32) {
            logits[row * C + c] = zs[c];
            const float p = mlp_softmax_prob(zs[c], st.zmax, inv);
            zs[c] = mlp_cross_entropy_grad(p, c == label, scale); /* now dlogits */
            dlogits[row * C + c] = zs[c];
        }
    }
    __syncthreads();
    chained_next();
    for (int64_t k = threadIdx.x; k < H; k += blockDim.x) {
        float s = 0.0f;
        if (act != MLP_RELU || mlp_relu_passes(hs[k]))
            for (int64_t c = 0; c < C; c++) s = fmaf(zs[c], W_aug[k * C + c], s);
        dh[row * H + k] = mlp_activation_backward(act, 0.0f, hs[k], s);
    }
}

/* The same for at most HEAD_FEW_MAX classes, each thread keeping its
 * share of every logit in registers: a team of TEAM threads a row (a warp
 * up to the whole block) reads each row of W_aug (C contiguous floats) once
 * for the logits and once for dh, every load of a thread independent of the
 * others. head_kernel's warp per logit reads 32 rows' values of one class
 * a load, ten cache lines at C = 10, and each lane waits on its loads one
 * row after another: 53 us a step at batch 64 and H = 4096
 * (benchmarks/RESULTS.md). What the kernel before does not write (the
 * row's label and weight, the biases, the step's constants) is read before
 * chained_start, while that kernel ends. A team of one warp sums the logits
 * in head_kernel's order; a larger team adds its warps' sums in warp order. */
constexpr int HEAD_FEW_MAX = 16;

template <int CP, int TEAM>
__global__ void __launch_bounds__(32 * HEAD_WARPS, 4) /* four an SM: see head_forward_backward */
head_few_kernel(float *logits, float *dlogits, float *dh, const float *h, const float *W_aug,
                int64_t B, int64_t H, int64_t C, mlp_activation act, Targets t,
                const int64_t *order, int64_t start, const StepInfo *step, float *row_loss,
                int32_t *row_hit, bool pairs) {
    constexpr int ROWS = 32 * HEAD_WARPS / TEAM, TEAM_WARPS = TEAM / 32;
    __shared__ float part[HEAD_WARPS][CP]; /* each warp's sums */
    __shared__ float zs[ROWS][CP];         /* a row's logits, then dlogits */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int team = threadIdx.x / TEAM, tt = threadIdx.x % TEAM;
    const int64_t row = blockIdx.x * ROWS + team;
    const bool live = row < B; /* every thread still meets the block's barriers */
    int32_t label = 0;
    float weight = 1.0f, bias = 0.0f, inv_wsum = 0.0f;
    if (live && tt < 32) {
        const int64_t r = data_row(order, start, row);
        label = t.labels[r];
        weight = t.weights ? t.weights[r] : 1.0f;
        inv_wsum = step->inv_wsum;
        if (lane < C) bias = W_aug[H * C + lane];
    }
    chained_start();
    const float *hr = h + (live ? row : 0) * H;
    float z[CP];
#pragma unroll
    for (int c = 0; c < CP; c++) z[c] = 0.0f;
    if (live && pairs) {
#pragma unroll 4
        for (int64_t k = tt; k < H; k += TEAM) {
            const float x = hr[k];
            const float2 *w = reinterpret_cast<const float2 *>(W_aug + k * C);
#pragma unroll
            for (int c = 0; c < CP; c += 2)
                if (c < C) {
                    const float2 v = w[c / 2];
                    z[c] = fmaf(x, v.x, z[c]);
                    z[c + 1] = fmaf(x, v.y, z[c + 1]);
                }
        }
    } else if (live) {
#pragma unroll 4
        for (int64_t k = tt; k < H; k += TEAM) {
            const float x = hr[k];
            const float *w = W_aug + k * C;
#pragma unroll
            for (int c = 0; c < CP; c++)
                if (c < C) z[c] = fmaf(x, w[c], z[c]);
        }
    }
#pragma unroll
    for (int c = 0; c < CP; c++) z[c] = warp_sum(z[c]);
    if (TEAM_WARPS > 1) {
        if (lane == 0)
#pragma unroll
            for (int c = 0; c < CP; c++) part[warp][c] = z[c];
        __syncthreads();
#pragma unroll
        for (int c = 0; c < CP; c++) {
            z[c] = 0.0f;
#pragma unroll
            for (int w = 0; w < TEAM_WARPS; w++) z[c] += part[team * TEAM_WARPS + w][c];
        }
    }
    float *zr = zs[team];
    if (tt < 32) { /* the team's first warp: softmax cross-entropy */
#pragma unroll
        for (int c = 0; c < CP; c++)
            if (lane == c && c < C) zr[c] = z[c] + bias;
        __syncwarp();
        if (live) {
            const RowStats st = row_stats(zr, C);
            const float inv = mlp_div(1.0f, st.sum), scale = weight * inv_wsum;
            if (lane == 0) {
                row_loss[start + row] =
                    weight * mlp_cross_entropy_loss(st.zmax, st.sum, zr[label]);
                row_hit[start + row] = st.argmax == label;
            }
            __syncwarp();
            if (lane < C) {
                const float zc = zr[lane];
                logits[row * C + lane] = zc;
                const float p = mlp_softmax_prob(zc, st.zmax, inv);
                const float g = mlp_cross_entropy_grad(p, lane == label, scale);
                dlogits[row * C + lane] = g;
                zr[lane] = g; /* now dlogits */
            }
        }
    }
    if (TEAM_WARPS > 1) __syncthreads();
    else __syncwarp();
    chained_next();
    if (!live) return;
    float g[CP];
#pragma unroll
    for (int c = 0; c < CP; c++) g[c] = c < C ? zr[c] : 0.0f;
#pragma unroll 4
    for (int64_t k = tt; k < H; k += TEAM) {
        const float x = hr[k];
        float s = 0.0f;
        if (pairs && (act != MLP_RELU || mlp_relu_passes(x))) {
            const float2 *w = reinterpret_cast<const float2 *>(W_aug + k * C);
#pragma unroll
            for (int c = 0; c < CP; c += 2)
                if (c < C) {
                    const float2 v = w[c / 2];
                    s = fmaf(g[c], v.x, s);
                    s = fmaf(g[c + 1], v.y, s);
                }
        } else if (act != MLP_RELU || mlp_relu_passes(x)) {
            const float *w = W_aug + k * C;
#pragma unroll
            for (int c = 0; c < CP; c++)
                if (c < C) s = fmaf(g[c], w[c], s);
        }
        dh[row * H + k] = mlp_activation_backward(act, 0.0f, x, s);
    }
}

} // namespace

/* ---- launchers ------------------------------------------------------- */

int64_t scratch_partial_floats(void) {
    /* when splits > 1, splits * tiles < 2 * TARGET_BLOCKS, so one product
     * always fits; two, for the fused weight update (layers that do not fit
     * are not split) */
    return 2 * 2 * TARGET_BLOCKS * BM * BN;
}

int64_t scratch_counters(void) { return (int64_t)MLP_MAX_FUSED_LAYERS * TARGET_BLOCKS; }

int64_t scratch_sms(void) {
    int sms = 0;
    return device_attribute(cudaDevAttrMultiProcessorCount, &sms) ? sms : 0;
}

/* Whether the current GPU's compute capability is at least `major_min`.0
 * and `kernel` was loaded from code for at least that (PTX version
 * ptx_min): a build whose newest code is older runs through the driver's
 * compiler as that older GPU's code. */
template <typename... Params>
static bool runs_as(int major_min, int ptx_min, void (*kernel)(Params...)) {
    int major = 0;
    cudaFuncAttributes attr;
    return device_attribute(cudaDevAttrComputeCapabilityMajor, &major) && major >= major_min &&
           cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.ptxVersion >= ptx_min;
}

bool chaining_supported(void) { return runs_as(9, 90, weights_kernel); }

/* Whether the GPU lets `kernel` have `bytes` of dynamic shared memory. */
template <typename... Params>
static bool allow_smem(void (*kernel)(Params...), int bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) ==
           cudaSuccess;
}

template <class T>
static bool give_smem(void) {
    return allow_smem(tensor_weights_kernel<T>, T::SMEM_BYTES) &&
           allow_smem(tensor_kernel<T, true, true, StoreForward>, T::SMEM_BYTES) &&
           allow_smem(tensor_kernel<T, true, false, StoreBackward>, T::SMEM_BYTES);
}

bool tensor_supported(void) {
    if (!runs_as(8, 80, tensor_weights_kernel<tensor::Large>)) return false;
    const bool ok = give_smem<tensor::Large>() && give_smem<tensor::Small>();
    if (!ok) (void)cudaGetLastError(); /* a GPU with less shared memory: not an error */
    return ok;
}

/* 1 in a build whose loaded kernels have wgmma (sm_90a code) */
__device__ int wgmma_built;
__global__ void wgmma_built_kernel() { wgmma_built = MLP_HAVE_WGMMA; }

/* Whether the kernels loaded for the current GPU were built with wgmma:
 * asked once a device, on a stream of its own, so that a model created
 * while others train waits for none of their work. */
static bool wgmma_built_here(void) {
    constexpr int MAX_DEVICES = 64;
    static std::atomic<int> known[MAX_DEVICES]; /* 0 not asked, 1 no, 2 yes */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
        (void)cudaGetLastError();
        return false;
    }
    if (dev < MAX_DEVICES && known[dev].load() != 0) return known[dev].load() == 2;
    int built = 0;
    cudaStream_t s = NULL;
    bool ok = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess;
    if (ok) {
        wgmma_built_kernel<<<1, 1, 0, s>>>();
        ok = cudaGetLastError() == cudaSuccess &&
             cudaMemcpyFromSymbolAsync(&built, wgmma_built, sizeof built, 0,
                                       cudaMemcpyDeviceToHost, s) == cudaSuccess &&
             cudaStreamSynchronize(s) == cudaSuccess;
    }
    if (s) (void)cudaStreamDestroy(s);
    if (!ok) {
        (void)cudaGetLastError(); /* no kernel image for this GPU: not an error here */
        return false; /* not remembered: the next model asks again */
    }
    if (dev < MAX_DEVICES) known[dev].store(built == 1 ? 2 : 1);
    return built == 1;
}

bool wgmma_supported(void) {
    int major = 0, minor = 0;
    if (!tensor_supported() || !device_attribute(cudaDevAttrComputeCapabilityMajor, &major) ||
        !device_attribute(cudaDevAttrComputeCapabilityMinor, &minor) || major != 9 ||
        minor != 0 || !wgmma_built_here())
        return false;
    using W = tensor::Wide;
    const bool ok = allow_smem(tensor_kernel<W, true, true, StoreForward>, W::SMEM_BYTES) &&
                    allow_smem(tensor_kernel<W, true, false, StoreBackward>, W::SMEM_BYTES) &&
                    allow_smem(tensor_weights_kernel<W>, W::SMEM_BYTES);
    if (!ok) (void)cudaGetLastError();
    return ok;
}

bool any_on_tensor(const Scratch &scratch, const int64_t *sizes, int n_layers, int64_t B) {
    for (int l = 0; l < n_layers; l++)
        if (tiling(scratch, sizes[l] + 1, sizes[l + 1], B, true) != Tiling::FLOAT32) return true;
    return false;
}

bool head_fits(int64_t H, int64_t C, mlp_loss loss, mlp_activation act) {
    return loss == MLP_CROSS_ENTROPY && !mlp_activation_needs_input(act) &&
           C <= MLP_HEAD_MAX_CLASSES && head_smem_floats(H, C) * (int64_t)sizeof(float) <= 48 * 1024;
}

void linear_forward(cudaStream_t s, float *out, float *pre, LayerInput in, const float *W_aug,
                    int64_t B, int64_t D, int64_t H, mlp_activation act, bool activate,
                    float *stash, Scratch scratch) {
    const Tiling t = tiling(scratch, B, H, D + 1, false);
    if (t != Tiling::FLOAT32) {
        if (stash) { /* the gathered floats, which the weight update reads, first */
            gather(s, stash, in, B, D, scratch);
            in = LayerInput{stash, NULL, MLP_FLOAT32, 1.0f, NULL, 0};
        }
        /* rows of the data set itself (predicting, evaluating) stay on the
         * float32 tiles: see stored() */
        if (in.act) {
            tensor_gemm<true, true>(t, s, B, H, D + 1, stored(in.act, D, B, D, true),
                                    stored(W_aug, H, D + 1, H, false),
                                    StoreForward{out, pre, H, act, activate}, scratch);
            return;
        }
    }
    gemm(s, B, H, D + 1, InputRows{in, D, stash}, MatB{W_aug, H},
         StoreForward{out, pre, H, act, activate}, scratch);
}

void linear_backward_input(cudaStream_t s, float *dinp, const float *dout, const float *W,
                           mlp_activation act, const float *pre_in, const float *act_in,
                           int64_t B, int64_t D, int64_t H, Scratch scratch) {
    const Tiling t = tiling(scratch, B, D, H, false);
    if (t != Tiling::FLOAT32) {
        tensor_gemm<true, false>(t, s, B, D, H, stored(dout, H, B, H, false),
                                 stored(W, H, D, H, false),
                                 StoreBackward{dinp, act_in, pre_in, D, act}, scratch);
        return;
    }
    gemm(s, B, D, H, MatA{dout, H}, MatBT{W, H}, StoreBackward{dinp, act_in, pre_in, D, act},
         scratch);
}

/* Whether a job's weight gradient runs on narrow_weights_kernel: a layer of
 * at most NARROW_MAX outputs whose product the float32 tiles take (t). */
static bool narrow(const Scratch &scratch, const WeightsJob &job, int64_t B, Tiling t) {
    return scratch.narrow && job.in.act && job.H <= NARROW_MAX && B >= NARROW_MIN_BATCH &&
           t == Tiling::FLOAT32;
}

/* One job on narrow_weights_kernel: the batch split into slices of at
 * least NARROW_MIN_ROWS rows until there are about four blocks an SM. */
static void narrow_weights(cudaStream_t s, const WeightsJob &job, int64_t B,
                           const StepInfo *step, const Scratch &scratch) {
    NarrowWeights j;
    j.in = job.in.act;
    j.dout = job.dout;
    j.D = job.D;
    j.N = job.H;
    j.B = B;
    j.epi = OptimizerUpdate{job.W_aug, job.M, job.V, job.H, job.D, step};
    const int np = job.H <= 2 ? 2 : job.H <= 4 ? 4 : job.H <= 8 ? 8 : 16;
    const int ipl = narrow_ipl(np);
    j.groups = cdiv(job.D + 1, narrow_cols(np));
    j.vec = (uintptr_t)job.in.act % (4 * ipl) == 0 && job.D % ipl == 0;
    const RowSlices r = row_slices(scratch, B, j.groups, NARROW_MIN_ROWS, INT64_MAX,
                                   (int64_t)np * narrow_cols(np), 0, 0, NARROW_WARPS);
    j.rows_per_split = r.rows_per_split;
    j.splits = r.splits;
    const dim3 grid((unsigned)(j.groups * j.splits)), block(NARROW_THREADS);
    const bool chained = chain(scratch, (double)(job.D + 1) * (double)job.H * (double)B);
    if (np == 2)
        launch_chained(chained, narrow_weights_kernel<2>, grid, block, 0, s, j, scratch.partial,
                       scratch.counters);
    else if (np == 4)
        launch_chained(chained, narrow_weights_kernel<4>, grid, block, 0, s, j, scratch.partial,
                       scratch.counters);
    else if (np == 8)
        launch_chained(chained, narrow_weights_kernel<8>, grid, block, 0, s, j, scratch.partial,
                       scratch.counters);
    else
        launch_chained(chained, narrow_weights_kernel<16>, grid, block, 0, s, j, scratch.partial,
                       scratch.counters);
}

/* Each job on the tiles `tiling` picks for it: the float32 ones in one
 * launch, each kind of tensor-core tiles in another; a layer of few outputs
 * on narrow_weights_kernel. The launches use the scratch from its start:
 * each waits for the one before to finish. */
void linear_backward_weights_update(cudaStream_t s, const WeightsJob *jobs, int n_jobs,
                                    int64_t B, const StepInfo *step, Scratch scratch) {
    Float32Weights f32;
    TensorWeights<tensor::Small> small;
    TensorWeights<tensor::Large> large;
    TensorWeights<tensor::Wide> wide;
    f32.clear();
    small.clear();
    large.clear();
    wide.clear();
    /* Each job's split of K is chosen as if it had the GPU to itself, but the
     * jobs of one kind of tiles share a launch: where their tiles unsplit
     * fill most of one wave (three quarters to all of the blocks the GPU
     * runs at once), none is split. */
    Tiling kind[MLP_MAX_FUSED_LAYERS];
    bool apart[MLP_MAX_FUSED_LAYERS]; /* the bias row on bias_kernel */
    int64_t small_tiles = 0, large_tiles = 0;
    for (int i = 0; i < n_jobs; i++) {
        kind[i] = jobs[i].in.act ? tiling(scratch, jobs[i].D + 1, jobs[i].H, B, true)
                                 : Tiling::FLOAT32;
        const int64_t bm = kind[i] == Tiling::SMALL ? tensor::Small::BM : tensor::Large::BM;
        apart[i] = scratch.narrow && kind[i] != Tiling::FLOAT32 && jobs[i].D % bm == 0 &&
                   (double)bm * (double)jobs[i].H * (double)B >= BIAS_APART_MIN_WORK;
        const int64_t M = apart[i] ? jobs[i].D : jobs[i].D + 1, N = jobs[i].H;
        if (kind[i] == Tiling::SMALL) small_tiles += tile_count<tensor::Small>(M, N);
        if (kind[i] == Tiling::LARGE) large_tiles += tile_count<tensor::Large>(M, N);
    }
    auto one_wave = [&](int64_t tiles, int64_t per_sm) {
        const int64_t slots = scratch.sms * per_sm;
        return slots > 0 && 4 * tiles >= 3 * slots && tiles <= slots;
    };
    /* Where there is a launch of small tiles, the jobs the float32 tiles
     * would take (too few tiles or k-steps to launch on tensor cores by
     * themselves) join it, and the launch's jobs are cut into one count of
     * slices that keeps it one wave: a launch less a step, and no job split
     * into tens of slices as if it had the GPU to itself. Both halves are
     * needed, and one count of slices only where a job joined: sharing it
     * among the jobs already there was slower (benchmarks/RESULTS.md,
     * "joined to the small tiles"). */
    bool joined = false;
    if (small_tiles > 0 && scratch.join_small)
        for (int i = 0; i < n_jobs; i++)
            if (kind[i] == Tiling::FLOAT32 && jobs[i].in.act && B >= TENSOR_MIN_K &&
                !narrow(scratch, jobs[i], B, kind[i])) {
                kind[i] = Tiling::SMALL;
                small_tiles += tile_count<tensor::Small>(jobs[i].D + 1, jobs[i].H);
                joined = true;
            }
    const bool split_small = !one_wave(small_tiles, tensor::Small::MIN_BLOCKS);
    const int64_t small_splits =
        joined && split_small
            ? shared_splits(small_tiles, B, tensor::BK, scratch.sms * tensor::Small::MIN_BLOCKS)
            : 0;
    const bool split_large = !one_wave(large_tiles, scratch.wgmma ? tensor::Wide::MIN_BLOCKS
                                                                  : tensor::Large::MIN_BLOCKS);
    BiasBatch bias;
    bias.clear(B);
    for (int i = 0; i < n_jobs; i++) {
        const WeightsJob &job = jobs[i];
        const int64_t M = apart[i] ? job.D : job.D + 1, N = job.H;
        const OptimizerUpdate epi{job.W_aug, job.M, job.V, job.H, job.D, step};
        if (apart[i]) bias.add(job.dout, job.H, epi, scratch);
        const Tiling t = kind[i];
        if (narrow(scratch, job, B, t)) {
            narrow_weights(s, job, B, step, scratch);
            continue;
        }
        if (t == Tiling::FLOAT32) {
            static const int per_sm = blocks_per_sm(weights_kernel);
            f32.add(float32_shape(M, N, B, true, scratch.sms * per_sm),
                    float32_shape(M, N, B, false, 0),
                    InputRowsT{InputRows{job.in, job.D, NULL}}, MatB{job.dout, job.H}, epi,
                    scratch);
            continue;
        }
        const tensor::Stored a = stored(job.in.act, job.D, B, job.D, !apart[i]);
        const tensor::Stored b = stored(job.dout, job.H, B, job.H, false);
        if (t == Tiling::LARGE && scratch.wgmma)
            wide.add(tensor_shape<tensor::Wide>(scratch, M, N, B, split_large),
                     tensor_shape<tensor::Wide>(scratch, M, N, B, false), a, b, epi, scratch);
        else if (t == Tiling::LARGE)
            large.add(tensor_shape<tensor::Large>(scratch, M, N, B, split_large),
                      tensor_shape<tensor::Large>(scratch, M, N, B, false), a, b, epi, scratch);
        else if (small_splits > 0)
            small.add(shape_with_splits(M, N, B, tensor::Small::BM, tensor::Small::BN, tensor::BK,
                                        small_splits),
                      tensor_shape<tensor::Small>(scratch, M, N, B, false), a, b, epi, scratch);
        else
            small.add(tensor_shape<tensor::Small>(scratch, M, N, B, split_small),
                      tensor_shape<tensor::Small>(scratch, M, N, B, false), a, b, epi, scratch);
    }
    using L = tensor::Large;
    using S = tensor::Small;
    using W = tensor::Wide;
    if (bias.count)
        launch_chained(chain(scratch, (double)B * (double)bias.count), bias_kernel,
                       dim3((unsigned)bias.blocks()), dim3(BIAS_THREADS), 0, s, bias,
                       scratch.partial, scratch.counters);
    if (wide.count)
        launch_chained(chain(scratch, wide.work), tensor_weights_kernel<W>,
                       dim3((unsigned)wide.blocks()), dim3(W::THREADS), W::SMEM_BYTES, s, wide,
                       scratch.partial, scratch.counters);
    if (large.count)
        launch_chained(chain(scratch, large.work), tensor_weights_kernel<L>,
                       dim3((unsigned)large.blocks()), dim3(L::THREADS), L::SMEM_BYTES, s, large,
                       scratch.partial, scratch.counters);
    if (small.count)
        launch_chained(chain(scratch, small.work), tensor_weights_kernel<S>,
                       dim3((unsigned)small.blocks()), dim3(S::THREADS), S::SMEM_BYTES, s, small,
                       scratch.partial, scratch.counters);
    if (f32.count)
        launch_chained(chain(scratch, f32.work), weights_kernel, dim3((unsigned)f32.blocks()),
                       dim3(THREADS), 0, s, f32, scratch.partial, scratch.counters);
}

void head_forward_backward(cudaStream_t s, float *logits, float *dlogits, float *dh,
                           const float *h, const float *W_aug, int64_t B, int64_t H, int64_t C,
                           mlp_activation act, Targets t, const int64_t *order, int64_t start,
                           const StepInfo *step, float *row_loss, int32_t *row_hit,
                           Scratch scratch) {
    const bool chained = chain(scratch, 2.0 * (double)B * (double)H * (double)C);
    if (scratch.narrow && C <= HEAD_FEW_MAX) {
        /* rows a block: the fewest (1, 2, 4 or 8) that keep the blocks to
         * one wave of four an SM, which the kernel's registers allow */
        const int64_t slots = scratch.sms > 0 ? 4 * scratch.sms : 512;
        const int rows = B <= slots ? 1 : B <= 2 * slots ? 2 : B <= 4 * slots ? 4 : 8;
        const dim3 grid((unsigned)cdiv(B, rows)), block(32 * HEAD_WARPS);
        /* W_aug's rows read two classes a load where C and W_aug allow:
         * half the loads, each sum in the same order */
        const bool pairs = scratch.head_pairs && C % 2 == 0 && (uintptr_t)W_aug % 8 == 0;
#define MLP_HEAD_FEW(CP, ROWS)                                                              \
    launch_chained(chained, head_few_kernel<CP, 32 * HEAD_WARPS / ROWS>, grid, block, 0, s,    \
                   logits, dlogits, dh, h, W_aug, B, H, C, act, t, order, start, step, row_loss, \
                   row_hit, pairs)
#define MLP_HEAD_FEW_ROWS(CP)                                                               \
    do {                                                                                    \
        if (rows == 1) MLP_HEAD_FEW(CP, 1);                                                 \
        else if (rows == 2) MLP_HEAD_FEW(CP, 2);                                            \
        else if (rows == 4) MLP_HEAD_FEW(CP, 4);                                            \
        else MLP_HEAD_FEW(CP, 8);                                                           \
    } while (0)
        if (C <= 4) MLP_HEAD_FEW_ROWS(4);
        else MLP_HEAD_FEW_ROWS(16);
#undef MLP_HEAD_FEW_ROWS
#undef MLP_HEAD_FEW
        return;
    }
    const size_t smem = sizeof(float) * (size_t)head_smem_floats(H, C);
    launch_chained(chained, head_kernel,
                   dim3((unsigned)B), dim3(32 * HEAD_WARPS), smem, s,
                   logits, dlogits, dh, h, W_aug, B, H, C, act, t, order, start, step, row_loss,
                   row_hit);
}

} // namespace gemm
