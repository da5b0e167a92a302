/*
 * gemm_tensor.cuh - gemm.cu's large products on tensor cores (compute
 * capability 8.0 and newer): 128 x 128 or 64 x 64 tiles fed by asynchronous copies
 * through four shared-memory stages (at most 96 KB, which every such GPU
 * gives a block; Wide's three, on Hopper only), each float32 operand split into two
 * TF32 parts and multiplied three times (tf32.cuh), which keeps float32's
 * precision as the fused epochs do. gemm.cu's tiling picks it, and which
 * tiles, for products of at least Scratch::tensor_min_work multiply-adds
 * over the step's own matrices; the float32 tiles of gemm_block take the
 * rest.
 *
 * An operand is a row-major matrix as it lies in device memory; its tile is
 * copied into shared memory in the same orientation (a copy moves 16 bytes
 * along the contiguous dimension), and the fragments are read from there in
 * whichever orientation the product needs:
 *   A (M,K): the layer input (B,D), k contiguous (forward); the output
 *            gradient (B,H), k contiguous (input gradient); the layer input
 *            as (D,B), m contiguous (weight gradient);
 *   B (K,N): W_aug (D+1,H), n contiguous (forward); W^T, k contiguous
 *            (input gradient); the output gradient (B,H), n contiguous
 *            (weight gradient).
 * The augmented 1 of [in, 1] is one more column of the stored input.
 *
 * Each output element is summed by one thread in a fixed order, split-K
 * partials added in slice order, as in gemm_block: results are bit-identical
 * from run to run.
 *
 * On Hopper (code built for sm_90a), the large tiles multiply with the
 * warpgroup products (wgmma) instead: Wide below. A stage
 * is copied in as for mma.sync; A's fragments go to registers as for
 * mma.sync, B is split into its TF32 parts once, K-major, where wgmma reads
 * them; the same three products a term.
 */
#ifndef MLP_CUDA_GEMM_TENSOR_CUH
#define MLP_CUDA_GEMM_TENSOR_CUH

#include <stdint.h>

#include "block_times.cuh"
#include "common.cuh"
#include "gemm_shape.cuh"
#include "tf32.cuh"

namespace gemm {
namespace tensor {

constexpr int BK = 16, STAGES = 4;
/* Row padding (floats) of a stage's tiles, so that the 32 lanes of a
 * fragment read fall in different banks and rows stay 16-byte aligned for
 * the copies: rows of BK floats get 8 (a stride of 24: conflict-free for
 * the 8-byte reads below); rows of BM or BN floats get 8 (stride 8 mod 32
 * banks) where the four k of a lane group are rows q, and 4 where they are
 * rows 2q (the order of k below). */
constexpr int PAD_K = 8;
__host__ __device__ constexpr int pad_mn(bool paired) { return paired ? 4 : 8; }

/* The tile shapes: a block of WARPS_M x WARPS_N warps computes BM x BN,
 * each warp (BM / WARPS_M) x (BN / WARPS_N) in m16n8 pieces. Large: fewer
 * bytes moved per product, for products of many tiles; small: more blocks,
 * for the others. */
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int MIN_BLOCKS_, int STAGES_ = STAGES>
struct Tiles {
    static constexpr int BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
    static constexpr int STAGES = STAGES_;
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N, MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    static constexpr int MI = WM / 16, NI = WN / 8;
    /* the larger of the two layouts of each operand, padded both ways */
    static constexpr int A_FLOATS = (BM * (BK + PAD_K) > BK * (BM + 8)) ? BM * (BK + PAD_K)
                                                                        : BK * (BM + 8);
    static constexpr int B_FLOATS = (BN * (BK + PAD_K) > BK * (BN + 8)) ? BN * (BK + PAD_K)
                                                                        : BK * (BN + 8);
    static constexpr int STAGE_FLOATS = A_FLOATS + B_FLOATS;
    static constexpr int STAGES_BYTES = STAGES * STAGE_FLOATS * (int)sizeof(float);
    static constexpr int SMEM_BYTES = STAGES_BYTES;
    static constexpr bool WGMMA = false;
};
using Large = Tiles<128, 128, 2, 4, 2>; /* 256 threads, warps of 64 x 32; 96 KB; two an SM */
using Small = Tiles<64, 64, 2, 2, 4>;   /* 128 threads, warps of 32 x 32; 48 KB; four an SM */

/* Large's tiles on wgmma (sm_90a): two warpgroups of 64 rows x 128
 * columns. A's fragments are read from the stage into registers as for
 * mma.sync; B is split into two parts (high and rest), each 128 rows of BK
 * floats, K-major, 64-byte rows swizzled as the wgmma descriptors' 64-byte
 * mode reads them; two sets of parts, so that one stage's split overlaps
 * the products of the stage before. Every product on wgmma takes them:
 * three stages, 105 KB, two blocks an SM, so that one block's split,
 * barriers and epilogue overlap the other's products (faster than one
 * block of four stages: benchmarks/RESULTS.md; the weight gradients too,
 * since their epilogue's loads go out in groups: "the tensor tiles'
 * epilogue" there). */
struct Wide : Tiles<128, 128, 2, 4, 2, 3> {
    static constexpr bool WGMMA = true;
    static constexpr int PART_BYTES = 128 * BK * (int)sizeof(float); /* 8 KB */
    /* the parts start at the first 1024-byte boundary after the stages */
    static constexpr int SMEM_BYTES = STAGES_BYTES + 1024 + 2 * 2 * PART_BYTES;
};

/* A stored row-major matrix of `rows` x `cols` (leading dimension ld), and
 * when `ones`, one more column of constant 1 after the last. `vec`: p and
 * ld allow 16-byte copies. */
struct Stored {
    const float *p;
    int64_t ld, rows, cols;
    bool ones, vec;
};

__device__ inline void zero4(float *dst) {
    *reinterpret_cast<float4 *>(dst) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

/* Which row of an m16 piece of the product holds a lane's (g, h) values
 * (the m16n8k8 product's rows g and g + 8, h = 0 or 1): see Layout. */
template <bool A_K>
__device__ inline int piece_row(int g, int h) {
    return A_K ? g + 8 * h : 2 * g + h;
}

#if MLP_HAVE_TF32
/* Copies one chunk, the stored matrix's row r0 + r and columns c0 + c ..
 * c0 + c + 4, into tile (rows of TC + PAD floats), zeros outside rows <
 * row_end and columns < col_end (the product's edges and the split's slice
 * of K), and the column of ones where the chunk holds it. */
template <int TC, int PAD>
__device__ void copy_chunk(float *tile, const Stored &s, int r, int c, int64_t r0, int64_t c0,
                           int64_t row_end, int64_t col_end) {
    float *dst = tile + r * (TC + PAD) + c;
    const int64_t gr = r0 + r, gc = c0 + c;
    if (gr >= row_end || gc >= col_end) {
        zero4(dst);
        return;
    }
    const int64_t real_end = col_end < s.cols ? col_end : s.cols;
    const float *src = s.p + gr * s.ld + gc;
    if (s.vec && gc + 4 <= real_end) {
        cp_async16(dst, src, 16);
        return;
    }
    const bool one_here = s.ones && s.cols < col_end;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        if (gc + j < real_end) cp_async4(dst + j, src + j, 4);
        else dst[j] = one_here && gc + j == s.cols ? 1.0f : 0.0f;
    }
}

/* Which way the stored matrices lie: A_K, A stored (M, K), else (K, M);
 * B_N, B stored (K, N), else (N, K). The order of an m16n8k8 product's
 * rows and k is ours to choose as long as the fragments of A, B and the
 * sums agree, so each is chosen for 8-byte reads:
 * - A_K: a lane group's four k are taken as 2q and 2q + 1 instead of q and
 *   q + 4 (the same order for A and B; a sum over k does not depend on
 *   which k the hardware calls which): a k-contiguous operand gives each
 *   lane its two values of a row in one read (PAIRED).
 * - otherwise (A m-contiguous): a lane's rows g and g + 8 are taken as the
 *   piece's rows 2g and 2g + 1 (piece_row; the sums lie there too), which
 *   gives it its two rows' values of one k in one read. */
template <class T, bool A_K, bool B_N>
struct Layout {
    static constexpr bool PAIRED = A_K;
    static constexpr int A_LD = A_K ? BK + PAD_K : T::BM + pad_mn(PAIRED);
    static constexpr int B_LD = B_N ? T::BN + pad_mn(PAIRED) : BK + PAD_K;
    /* the A fragment of lane (g, q) at k-step kk of the m16 piece from row
     * m0: (row g, k0), (g + 8, k0), (g, k1), (g + 8, k1) in the hardware's
     * names; k0, k1 = kk + 2q, + 1 when PAIRED, else kk + q, + 4 */
    __device__ static void a_frag(const float *As, int m0, int kk, int g, int q, float (&af)[4]) {
        if (A_K) {
            const float2 lo = *reinterpret_cast<const float2 *>(&As[(m0 + g) * A_LD + kk + 2 * q]);
            const float2 hi =
                *reinterpret_cast<const float2 *>(&As[(m0 + g + 8) * A_LD + kk + 2 * q]);
            af[0] = lo.x;
            af[1] = hi.x;
            af[2] = lo.y;
            af[3] = hi.y;
            return;
        }
        const int m = m0 + piece_row<A_K>(g, 0); /* and m + 1 */
        const float2 k0 = *reinterpret_cast<const float2 *>(&As[(kk + q) * A_LD + m]);
        const float2 k1 = *reinterpret_cast<const float2 *>(&As[(kk + q + 4) * A_LD + m]);
        af[0] = k0.x;
        af[1] = k0.y;
        af[2] = k1.x;
        af[3] = k1.y;
    }
    __device__ static float2 b_pair(const float *Bs, int n, int kk, int q) {
        const int k0 = PAIRED ? kk + 2 * q : kk + q, k1 = PAIRED ? k0 + 1 : k0 + 4;
        if (!B_N && PAIRED) return *reinterpret_cast<const float2 *>(&Bs[n * B_LD + k0]);
        if (!B_N) return make_float2(Bs[n * B_LD + k0], Bs[n * B_LD + k1]);
        return make_float2(Bs[k0 * B_LD + n], Bs[k1 * B_LD + n]);
    }
};

/* One thread's chunks of one operand's tiles, worked out once a block: the
 * source of each chunk at the block's first k-tile and whether the chunk is
 * a plain 16-byte copy wherever the k-tile lies inside K (its row or
 * columns inside the product, no column of ones, copies allowed). Each
 * k-tile then moves them by one step along K; the k-tile at the end of K,
 * and every chunk that is not plain, take copy_chunk's general path.
 * K_COLS: K runs along the stored matrix's columns (A stored (M, K), B
 * stored (N, K)), else along its rows (A stored (K, M), B stored (K, N)). */
template <int TR, int TC, int PAD, int THREADS, bool K_COLS>
struct TileCopy {
    static constexpr int PER = TR * TC / 4 / THREADS;
    static_assert(PER * THREADS * 4 == TR * TC, "a tile is whole chunks for every thread");
    /* each chunk's source at the block's first k-tile, in floats from s.p
     * (32 bits: registers are what the kernel is short of), or -1 where the
     * chunk is not plain */
    int32_t off[PER];
    int32_t step; /* floats from one k-tile's chunk to the next's */

    /* mn0, mn_end: where the block's rows (K_COLS) or columns start and end
     * along M or N; kbeg: the block's first k */
    __device__ void init(const Stored &s, int64_t mn0, int64_t mn_end, int64_t kbeg) {
        const bool fits = s.vec && s.rows * s.ld < INT32_MAX - 4 * BK * s.ld;
        step = fits ? (int32_t)(K_COLS ? BK : BK * s.ld) : 0;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int idx = threadIdx.x + i * THREADS;
            const int r = idx / (TC / 4), c = (idx % (TC / 4)) * 4;
            off[i] = -1;
            if (!fits) continue;
            if (K_COLS) {
                const int64_t gr = mn0 + r;
                if (gr < mn_end) off[i] = (int32_t)(gr * s.ld + kbeg + c);
            } else {
                const int64_t gc = mn0 + c;
                const int64_t end = mn_end < s.cols ? mn_end : s.cols;
                if (gc + 4 <= end) off[i] = (int32_t)((kbeg + r) * s.ld + gc);
            }
        }
    }

    /* the chunks of k-tile kt (from the block's first), whole inside K
     * (`inside`) or not */
    __device__ void copy(float *tile, const Stored &s, int64_t kt, bool inside, int64_t r0,
                         int64_t c0, int64_t row_end, int64_t col_end) const {
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int idx = threadIdx.x + i * THREADS;
            const int r = idx / (TC / 4), c = (idx % (TC / 4)) * 4;
            if (inside && off[i] >= 0)
                cp_async16(tile + r * (TC + PAD) + c, s.p + off[i] + (int32_t)kt * step, 16);
            else
                copy_chunk<TC, PAD>(tile, s, r, c, r0, c0, row_end, col_end);
        }
    }
};

/* Which way the stored matrices lie: A_K, A stored (M, K), else (K, M);
 * B_N, B stored (K, N), else (N, K). */
template <class T, bool A_K, bool B_N>
struct StageCopy {
    using L = Layout<T, A_K, B_N>;
    TileCopy<A_K ? T::BM : BK, A_K ? BK : T::BM, L::A_LD - (A_K ? BK : T::BM), T::THREADS, A_K> a;
    TileCopy<B_N ? BK : T::BN, B_N ? T::BN : BK, L::B_LD - (B_N ? T::BN : BK), T::THREADS, !B_N> b;
};

/* Stage k-tile kt (from the block's first, kbeg) of the block's tile (m0,
 * n0) into stage `st`. */
template <class T, bool A_K, bool B_N>
__device__ inline void load_stage(float *st, const StageCopy<T, A_K, B_N> &cp, const Stored &a,
                                  const Stored &b, int64_t m0, int64_t n0, int64_t kbeg,
                                  int64_t kt, int64_t kend, int64_t M, int64_t N) {
    float *As = st, *Bs = st + T::A_FLOATS;
    const int64_t k0 = kbeg + kt * BK;
    /* inside K: no slice end, no column of ones, no stored edge in the k-tile */
    const bool a_in = k0 + BK <= kend && (!A_K || k0 + BK <= a.cols);
    const bool b_in = k0 + BK <= kend && (B_N || k0 + BK <= b.cols);
    if (A_K) cp.a.copy(As, a, kt, a_in, m0, k0, M, kend);
    else cp.a.copy(As, a, kt, a_in, k0, m0, kend, M);
    if (B_N) cp.b.copy(Bs, b, kt, b_in, k0, n0, kend, N);
    else cp.b.copy(Bs, b, kt, b_in, n0, k0, N, kend);
}

/* acc += this stage's A (warp rows wm..) @ B (warp columns wn..), three
 * TF32 products a term, the small ones first. */
template <class T, bool A_K, bool B_N>
__device__ inline void multiply_stage(float (&acc)[T::MI][T::NI][4], const float *st, int wm,
                                      int wn) {
    using L = Layout<T, A_K, B_N>;
    const float *As = st, *Bs = st + T::A_FLOATS;
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
        float af[T::MI][4], bf[T::NI][2];
#pragma unroll
        for (int mi = 0; mi < T::MI; mi++) L::a_frag(As, wm + mi * 16, kk, g, q, af[mi]);
#pragma unroll
        for (int ni = 0; ni < T::NI; ni++) {
            const float2 v = L::b_pair(Bs, wn + ni * 8 + g, kk, q);
            bf[ni][0] = v.x;
            bf[ni][1] = v.y;
        }
        uint32_t ah[T::MI][4], al[T::MI][4], bh[T::NI][2], bl[T::NI][2];
#pragma unroll
        for (int mi = 0; mi < T::MI; mi++) split_tf32(af[mi], ah[mi], al[mi]);
#pragma unroll
        for (int ni = 0; ni < T::NI; ni++) split_tf32(bf[ni], bh[ni], bl[ni]);
#pragma unroll
        for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
            for (int ni = 0; ni < T::NI; ni++) mma_tf32(acc[mi][ni], al[mi], bh[ni]);
#pragma unroll
        for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
            for (int ni = 0; ni < T::NI; ni++) mma_tf32(acc[mi][ni], ah[mi], bl[ni]);
#pragma unroll
        for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
            for (int ni = 0; ni < T::NI; ni++) mma_tf32(acc[mi][ni], ah[mi], bh[ni]);
    }
}
#endif

/* Whether this compilation has wgmma (sm_90a code). */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MLP_HAVE_WGMMA 1
#else
#define MLP_HAVE_WGMMA 0
#endif

#if MLP_HAVE_WGMMA
/* A part's (row r, 16-byte chunk c of its 64-byte row): the 64-byte
 * swizzle, which XORs the chunk with bits 1-2 of the row so that the eight
 * rows of a core matrix fall in different banks. */
__device__ inline uint32_t part_offset(int r, int c) {
    return (uint32_t)(r * 64 + ((c ^ ((r >> 1) & 3)) << 4));
}

/* wgmma's shared-memory descriptor of a K-major part from byte address
 * `addr` (shared space): 64-byte swizzle, 512 bytes from one group of 8
 * rows to the next. */
__device__ inline uint64_t part_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(512 >> 4) << 32) |
           ((uint64_t)2 << 62);
}

/* Split B of stage st (laid out as Layout says) into its parts at
 * `parts`: high, then rest. A thread takes one group of 8 k of one row of
 * B. Where A's fragments pair their k (Layout::PAIRED: lane q takes k 2q
 * and 2q + 1 of each 8), the group is stored in that order, 0 2 4 6 1 3 5
 * 7, so that B's k meet A's. */
template <class T, bool A_K, bool B_N>
__device__ inline void split_b(const float *st, unsigned char *parts) {
    using L = Layout<T, A_K, B_N>;
    const float *Bs = st + T::A_FLOATS;
    static_assert(T::BN == 128 && T::BN * (BK / 8) == T::THREADS, "Wide's tiles");
    const int r = threadIdx.x % T::BN, grp = threadIdx.x / T::BN;
    float x[8];
    if (!B_N) {
        const float4 u = *reinterpret_cast<const float4 *>(&Bs[r * L::B_LD + 8 * grp]);
        const float4 v = *reinterpret_cast<const float4 *>(&Bs[r * L::B_LD + 8 * grp + 4]);
        x[0] = u.x, x[1] = u.y, x[2] = u.z, x[3] = u.w, x[4] = v.x, x[5] = v.y, x[6] = v.z,
        x[7] = v.w;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) x[e] = Bs[(8 * grp + e) * L::B_LD + r];
    }
    float y[8];
#pragma unroll
    for (int p = 0; p < 8; p++) y[p] = L::PAIRED ? x[p < 4 ? 2 * p : 2 * (p - 4) + 1] : x[p];
    uint32_t hi[8], lo[8];
    split_tf32(y, hi, lo);
#pragma unroll
    for (int h = 0; h < 2; h++) {
        unsigned char *at = parts + part_offset(r, 2 * grp + h);
        *reinterpret_cast<uint4 *>(at) =
            make_uint4(hi[4 * h], hi[4 * h + 1], hi[4 * h + 2], hi[4 * h + 3]);
        *reinterpret_cast<uint4 *>(at + T::PART_BYTES) =
            make_uint4(lo[4 * h], lo[4 * h + 1], lo[4 * h + 2], lo[4 * h + 3]);
    }
}

#define MLP_WG_D8(i)                                                                         \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
        "+f"(d[i + 6]), "+f"(d[i + 7])

/* d (this warpgroup's 64 x 128) = A (64 x 8) @ B (128 x 8)^T, plus d
 * unless `fresh`; A's TF32 fragment in registers (laid out as mma_tf32's,
 * warp w of the warpgroup holding rows 16 w ..), B's part read through the
 * descriptor. (A fresh start instead of zeroed sums: ptxas serializes
 * every wgmma of a kernel where other instructions may write the sums
 * while products are in flight.) */
__device__ inline void wgmma_tf32(float (&d)[64], const uint32_t (&a)[4], uint64_t b, bool fresh) {
    asm volatile("{\n.reg .pred add;\nsetp.eq.u32 add, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
                 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
                 "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
                 "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
                 "{%64,%65,%66,%67}, %68, add, 1, 1;\n}"
                 : MLP_WG_D8(0), MLP_WG_D8(8), MLP_WG_D8(16), MLP_WG_D8(24), MLP_WG_D8(32),
                   MLP_WG_D8(40), MLP_WG_D8(48), MLP_WG_D8(56)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"((uint32_t)fresh));
}
#undef MLP_WG_D8

/* this warpgroup's products of stage st's A (its fragments read and split
 * here) and B's parts at `parts` (shared-space address), the small terms
 * first, as multiply_stage; `first`: the block's first k-tile, whose first
 * product starts the sums. The products of the stage before must be done:
 * this reuses their fragments' registers. */
template <class T, bool A_K, bool B_N>
__device__ inline void wgmma_stage(float (&d)[64], const float *st, uint32_t parts, bool first) {
    using L = Layout<T, A_K, B_N>;
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    const int m0 = (threadIdx.x / 128) * 64 + (threadIdx.x % 128) / 32 * 16;
    uint32_t ah[BK / 8][4], al[BK / 8][4];
#pragma unroll
    for (int kk = 0; kk < BK / 8; kk++) {
        float af[4];
        L::a_frag(st, m0, 8 * kk, g, q, af);
        split_tf32(af, ah[kk], al[kk]);
    }
    const uint32_t b_hi = parts, b_lo = parts + T::PART_BYTES;
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
    for (int kk = 0; kk < BK / 8; kk++) {
        const uint32_t k = kk * 8 * (uint32_t)sizeof(float);
        wgmma_tf32(d, al[kk], part_desc(b_hi + k), first && kk == 0);
        wgmma_tf32(d, ah[kk], part_desc(b_lo + k), false);
        wgmma_tf32(d, ah[kk], part_desc(b_hi + k), false);
    }
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}

/* waits until at most N of this warpgroup's groups of products are in
 * flight; with N = 0 the sums may be read after it */
template <int N>
__device__ inline void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
/* the same for the last: the sums may be read after it */
__device__ inline void wgmma_wait_sums(float (&d)[64]) {
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

/* Where a thread's pair of sums acc[mi][ni][2h], [2h + 1] lies in the
 * block's tile: row lm, columns ln and ln + 1. */
template <class T, bool A_K>
__device__ inline void pair_place(int wm, int wn, int mi, int ni, int h, int &lm, int &ln) {
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    if constexpr (T::WGMMA) {
        /* wgmma's: warp w of warpgroup wg holds the 16 rows from 64 wg +
         * 16 w (its A fragment's rows, as piece_row orders them), the sums
         * of n8 piece i = 4 mi + ni at acc[mi][ni] */
        const int rows = (threadIdx.x / 128) * 64 + (threadIdx.x % 128) / 32 * 16;
        lm = rows + piece_row<A_K>(g, h);
        ln = 8 * (mi * T::NI + ni) + 2 * q;
    } else {
        lm = wm + mi * 16 + piece_row<A_K>(g, h);
        ln = wn + ni * 8 + 2 * q;
    }
}

/* A tile's sums as the epilogue takes them: four adjacent columns of row
 * lm from column ln, the slices' partials added in slice order from zero
 * (the same order wherever a tile is split: results are bit-identical
 * from run to run) or read back from shared memory. */
struct SliceSums {
    const float *slices;
    int64_t slice_stride;
    int splits, ld;
    template <int R>
    __device__ void get(const int (&lm)[R], const int (&ln)[R], float (&v)[R][4]) const {
#pragma unroll
        for (int j = 0; j < R; j++) v[j][0] = v[j][1] = v[j][2] = v[j][3] = 0.0f;
        /* four slices' loads at a time, then their sums in slice order */
        int s = 0;
        for (; s + 4 <= splits; s += 4) {
            float4 part[4][R];
#pragma unroll
            for (int k = 0; k < 4; k++)
#pragma unroll
                for (int j = 0; j < R; j++) part[k][j] = load(s + k, lm[j], ln[j]);
#pragma unroll
            for (int k = 0; k < 4; k++)
#pragma unroll
                for (int j = 0; j < R; j++) add(v[j], part[k][j]);
        }
        for (; s < splits; s++)
#pragma unroll
            for (int j = 0; j < R; j++) add(v[j], load(s, lm[j], ln[j]));
    }
    __device__ float4 load(int s, int lm, int ln) const {
        return __ldcg(
            reinterpret_cast<const float4 *>(slices + (int64_t)s * slice_stride + lm * ld + ln));
    }
    __device__ static void add(float (&v)[4], float4 p) {
        v[0] += p.x;
        v[1] += p.y;
        v[2] += p.z;
        v[3] += p.w;
    }
};
struct SharedSums {
    const float *tile;
    int ld;
    template <int R>
    __device__ void get(const int (&lm)[R], const int (&ln)[R], float (&v)[R][4]) const {
#pragma unroll
        for (int j = 0; j < R; j++) {
            const float4 x = *reinterpret_cast<const float4 *>(&tile[lm[j] * ld + ln[j]]);
            v[j][0] = x.x, v[j][1] = x.y, v[j][2] = x.z, v[j][3] = x.w;
        }
    }
};

/* Row padding (floats) of an unsplit tile's sums in shared memory, so that
 * the pairs a warp writes fall in different banks: its rows are g (A_K,
 * stride 8 apart) or 2g (stride 4) */
__host__ __device__ constexpr int sums_pad(bool a_k) { return a_k ? 8 : 4; }

/* The epilogue of a tile's sums (from `sums`), in runs of four adjacent
 * columns: a warp takes whole rows, so its loads and stores are whole
 * lines, and a thread's R runs' loads go out together before their
 * stores. Pairs of sums straight from the registers instead, each pair a
 * few bytes of eight rows, took tens of microseconds for the last block
 * of a split tile (benchmarks/RESULTS.md, "the tiles' sums in runs"). */
template <class T, class Epi, class Sums>
__device__ inline void finish_runs(const Shape &sh, int64_t m0, int64_t n0, const Epi &epi,
                                   const Sums &sums) {
    constexpr int RUNS_ROW = T::BN / 4, PER = T::BM * RUNS_ROW / T::THREADS;
    /* four runs a group, two where the epilogue reads three arrays (the
     * optimizer's): at four the weight update spilled registers */
    constexpr int WANT = sizeof(typename Epi::template In<4>) > 8 * sizeof(float) ? 2 : 4;
    constexpr int R = PER < WANT ? PER : WANT;
    static_assert(PER % R == 0 && T::BN % 4 == 0, "whole groups of runs");
#pragma unroll 1
    for (int r0 = 0; r0 < PER; r0 += R) {
        int lm[R], ln[R], count[R];
        typename Epi::template In<4> in[R];
        float v[R][4];
#pragma unroll
        for (int j = 0; j < R; j++) {
            const int run = threadIdx.x + (r0 + j) * T::THREADS;
            lm[j] = run / RUNS_ROW;
            ln[j] = run % RUNS_ROW * 4;
            const int64_t gm = m0 + lm[j], gn = n0 + ln[j];
            count[j] = gm >= sh.M || gn >= sh.N ? 0 : sh.N - gn < 4 ? (int)(sh.N - gn) : 4;
            in[j] = epi.template load<4, true>(gm, gn, count[j]); /* nothing where count is 0 */
        }
        sums.get(lm, ln, v);
#pragma unroll
        for (int j = 0; j < R; j++)
            if (count[j] > 0)
                epi.template store<4, true>(m0 + lm[j], n0 + ln[j], in[j], v[j], count[j]);
    }
}

/* A thread's sums, pair by pair, into a tile whose rows lie ld floats
 * apart from dst: a split tile's partials or an unsplit tile's sums in
 * shared memory. */
template <class T, bool A_K>
__device__ inline void write_sums(const float (&acc)[T::MI][T::NI][4], int wm, int wn,
                                  float *dst, int ld) {
#pragma unroll
    for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
        for (int ni = 0; ni < T::NI; ni++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int lm, ln;
                pair_place<T, A_K>(wm, wn, mi, ni, h, lm, ln);
                *reinterpret_cast<float2 *>(&dst[lm * ld + ln]) =
                    make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
            }
}

/* Block (tile, split) of C (M,N) = A @ B, sh cut into tiles of T: as
 * gemm_block, each finished sum goes to epi (four adjacent columns at a
 * time, finish_runs), or with several splits through partial and the last
 * block of the tile. */
template <class T, bool A_K, bool B_N, class Epi>
__device__ void tensor_block(const Shape &sh, int64_t tile, int split, const Stored &a,
                             const Stored &b, const Epi &epi, float *partial,
                             unsigned *counters) {
#if MLP_HAVE_TF32
    constexpr int MI = T::MI, NI = T::NI;
    constexpr int64_t TILE_FLOATS = (int64_t)T::BM * T::BN;
    extern __shared__ __align__(16) float smem[];
    BLOCK_TIME_START();
    const int64_t m0 = tile / sh.tiles_n * T::BM, n0 = tile % sh.tiles_n * T::BN;
    const int64_t kbeg = split * sh.k_per_split;
    const int64_t kend = kbeg + sh.k_per_split < sh.K ? kbeg + sh.k_per_split : sh.K;
    const int warp = threadIdx.x / 32;
    const int wm = (warp / T::WARPS_N) * T::WM, wn = (warp % T::WARPS_N) * T::WN;
    float acc[MI][NI][4];
    /* Wide's first product starts its sums (K > 0: ktiles >= 1), where
     * there are products: a Wide kernel of code without wgmma only traps */
    if constexpr (!T::WGMMA || !MLP_HAVE_WGMMA) {
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int ni = 0; ni < NI; ni++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[mi][ni][j] = 0.0f;
    }

    StageCopy<T, A_K, B_N> cp;
    cp.a.init(a, m0, sh.M, kbeg);
    cp.b.init(b, n0, sh.N, kbeg);
    const int64_t ktiles = (kend - kbeg + BK - 1) / BK;
    constexpr int STAGES = T::STAGES;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ktiles)
            load_stage<T, A_K, B_N>(smem + s * T::STAGE_FLOATS, cp, a, b, m0, n0, kbeg, s, kend,
                                    sh.M, sh.N);
        cp_async_commit();
    }
#if MLP_HAVE_WGMMA
    /* Wide: the parts' two sets, at the first 1024-byte boundary after the
     * stages (the swizzle's pattern repeats every 512 bytes of a part) */
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem);
    const uint32_t parts = (raw + T::STAGES_BYTES + 1023) & ~1023u;
    unsigned char *parts_p = reinterpret_cast<unsigned char *>(smem) + (parts - raw);
    float(&d)[64] = *reinterpret_cast<float(*)[64]>(&acc[0][0][0]);
#endif
    for (int64_t kt = 0; kt < ktiles; kt++) {
        cp_async_wait<STAGES - 2>();
        /* stage kt is in; every warp is done with kt - 1's (Wide: and every
         * warpgroup's products of kt - 2, whose parts kt's split reuses) */
        __syncthreads();
        const int64_t next = kt + STAGES - 1;
        if (next < ktiles)
            load_stage<T, A_K, B_N>(smem + (next % STAGES) * T::STAGE_FLOATS, cp, a, b, m0, n0,
                                    kbeg, next, kend, sh.M, sh.N);
        cp_async_commit();
        if constexpr (T::WGMMA) {
#if MLP_HAVE_WGMMA
            const float *st = smem + (kt % STAGES) * T::STAGE_FLOATS;
            const int set = (int)(kt % 2) * 2 * T::PART_BYTES;
            split_b<T, A_K, B_N>(st, parts_p + set); /* beside kt - 1's products */
            /* the tensor cores read the parts through the async proxy */
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            __syncthreads();
            wgmma_wait<0>(); /* kt - 1's products done: their registers are free */
            wgmma_stage<T, A_K, B_N>(d, st, parts + set, kt == 0);
#else
            __trap(); /* gemm.cu launches Wide only where wgmma_supported */
#endif
        } else {
            multiply_stage<T, A_K, B_N>(acc, smem + (kt % STAGES) * T::STAGE_FLOATS, wm, wn);
        }
    }
#if MLP_HAVE_WGMMA
    if constexpr (T::WGMMA) wgmma_wait_sums(d);
#endif
    cp_async_wait<0>();
    BLOCK_TIME_LOOP(sh.splits > 1);
    chained_next(); /* the products are done: the next kernel may be scheduled */

    /* The sums leave the tile in runs of four columns (finish_runs): a
     * split tile's from every slice's partials, by the last of its blocks;
     * an unsplit tile's through shared memory, free once every warp is
     * done with the stages. */
    if (sh.splits > 1) {
        write_sums<T, A_K>(acc, wm, wn,
                           partial + ((int64_t)split * sh.tiles + tile) * TILE_FLOATS, T::BN);
        if (!last_of_tile(counters, tile, sh.splits)) {
            BLOCK_TIME_END();
            return;
        }
        BLOCK_TIME_FINISHING();
        finish_runs<T>(sh, m0, n0, epi, SliceSums{partial + tile * TILE_FLOATS,
                                                  sh.tiles * TILE_FLOATS, sh.splits, T::BN});
        tile_released(counters, tile);
    } else {
        constexpr int LD = T::BN + sums_pad(A_K);
        static_assert(T::BM * LD <= T::STAGES * T::STAGE_FLOATS, "the sums fit the stages");
        __syncthreads(); /* every warp is done with the stages */
        write_sums<T, A_K>(acc, wm, wn, smem, LD);
        __syncthreads();
        finish_runs<T>(sh, m0, n0, epi, SharedSums{smem, LD});
    }
    BLOCK_TIME_END();
#else
    (void)sh, (void)tile, (void)split, (void)a, (void)b, (void)epi, (void)partial,
        (void)counters;
#endif
}

} // namespace tensor
} // namespace gemm

#endif /* MLP_CUDA_GEMM_TENSOR_CUH */
