/*
 * fused_rows.cu - the one-kernel epoch for large batches (fused.cuh says
 * when), cut by rows and hidden units rather than by inputs.
 *
 * Why: fused.cu gives each block a few inputs of W1 and every row of the
 * batch, so its forward product leaves one partial sum per tile of inputs
 * for every row and hidden unit (13.6 MB a step for MNIST at batch 1024), and
 * each block streams all rows through a small tile. Here a block takes 128
 * rows and 16 hidden units over all inputs, so h comes out whole; the only
 * thing summed across blocks is the logits, C numbers per row and group.
 *
 * Items: the hidden units fall into groups of NG; a forward item is (a tile
 * of MT rows, a group), an update item (a piece of the inputs, a group). Per
 * step, with three grid barriers:
 *   1. linear_forward + relu_forward per forward item: h (MT, NG) =
 *      relu([X, 1] @ W1[:, group]); its share of the logits,
 *      h @ W2[group] -> zp[group]
 *   -- grid barrier --
 *   2. per forward item: logits = sum over groups of zp + b2;
 *      softmax_crossentropy_forward/_backward -> dlogits (each of a row
 *      tile's items computes the same numbers in the same order);
 *      linear_backward's dinp + relu_backward -> dh (MT, NG);
 *      the item's share of dW2 = h^T @ dlogits -> pw2[row tile]
 *   -- grid barrier --
 *   3. per update item: dW1 (piece, NG) = [X, 1][:, piece]^T @ dh[:, group]
 *      and sgd_update of that piece of W1; the items of the last piece (the
 *      smallest) also update their group's rows of W2 (and b2) from the row
 *      tiles' pw2
 *   -- grid barrier -- (the next forward reads all of W1[:, group])
 * Both products are (128 x K) @ (K x 16) on TF32 tensor cores. The inputs
 * are gathered as raw values with the bias input appended (255 for uint8
 * pixels, whose 1/255 scale is applied to the sums, 1 for float32), so a
 * uint8 input is an exact TF32 number: only the other operand is split in
 * two (2 products instead of 3xTF32's 3), each value then carried to about
 * 2^-21 of itself (float32: 2^-24).
 * benchmarks/RESULTS.md has what this gains over fused.cu.
 * Every sum runs in a fixed order: results are bit-identical run to run.
 */
#include <cooperative_groups.h>
#include <math.h>

#include "fused.cuh"
#include "common.cuh"
#include "tf32.cuh"
#include "pointwise.h"
#include "phase_times.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int THREADS = 256;
constexpr int NG = 16;     /* hidden units per group: two n8 tiles */
constexpr int MT = 128;    /* rows per forward item, most inputs per update item */
/* A product's warps: MH along MT's 8 m16 tiles, MW tiles each, and KR along
 * k, each taking every KR-th k8 step (benchmarks/RESULTS.md: as fast as 16
 * warps of 2 tiles, and faster than 8 warps with the k steps unsplit) */
constexpr int MW = 4;
constexpr int MH = 8 / MW;
constexpr int KR = THREADS / 32 / MH;
constexpr int MAX_CLASSES = 64;
constexpr int SB = NG + 8; /* a chunk of W1 or dh, read as B (k, n) */
__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }

/* The ring of staged chunks, per input type: KC, the K of a chunk (a
 * multiple of 8 * KR); STAGES chunks, about 120 KB (6 stages measured no
 * faster than 4). Row strides in shared memory (elements) are chosen
 * so that a warp's fragment loads hit different banks and every row stays
 * 16-byte aligned: the forward reads inputs as A (row, k), the update as
 * A (input, k = row). */
template <class T> struct Ring;
template <> struct Ring<uint8_t> {
    static constexpr int KC = 128, STAGES = 4, SA_FWD = KC + 16, SA_UPD = MT + 16;
};
template <> struct Ring<float> {
    static constexpr int KC = 64, STAGES = 3, SA_FWD = KC + 4, SA_UPD = MT + 8;
};
template <class T>
__host__ __device__ constexpr int a_bytes() {
    return cmax(MT * Ring<T>::SA_FWD, Ring<T>::KC * Ring<T>::SA_UPD) * (int)sizeof(T);
}
template <class T>
__host__ __device__ constexpr int stage_bytes() {
    return a_bytes<T>() + Ring<T>::KC * SB * 4;
}
constexpr int RING_BYTES = cmax(Ring<uint8_t>::STAGES * stage_bytes<uint8_t>(),
                                Ring<float>::STAGES * stage_bytes<float>());

/* Shared memory between products (floats): the KR parts of a product, h
 * (MT, HS), the group's W2 rows, b2, the logits (MT, C), then as many
 * groups' shares of the logits (MT, CP) as fit */
constexpr int RED_FLOATS = KR * MT * NG;
constexpr int HS = NG + 4; /* rows 16-byte aligned */
/* the head keeps the labels (MT) and the activation's inputs (MT, NG) in red */
static_assert(MT + MT * NG <= RED_FLOATS, "red holds the head's labels and inputs");
constexpr int HEAD_FLOATS = RED_FLOATS + MT * HS + NG * MAX_CLASSES + MAX_CLASSES + MT * MAX_CLASSES;
/* After the ring, what an item's epilogue needs, fetched while its product
 * runs: the old W1 piece, its momentum and its second moment (update), the
 * group's W2 rows (forward, after the first two). */
constexpr int PRE_FLOATS = 3 * MT * NG + NG * MAX_CLASSES;
/* shared memory asked for: up to this much, at least the ring and room for one group */
constexpr int SMEM_WANT = 200 * 1024;

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) {
#ifdef __CUDA_ARCH__
    return div32(a + b - 1, b); /* the kernels' sizes fit in 32 bits */
#else
    return (a + b - 1) / b;
#endif
}
__host__ __device__ inline int64_t padded_classes(int64_t C) { return cdiv(C, 4) * 4; }

/* Where the workspace's parts start (floats), for at most `rows` rows a step:
 * zp (G, rows, CP), h and dh (G, rows, NG), pw2 (row tiles, H+1, C); CP is
 * C rounded up to 4, so that every part is copied in 16-byte pieces. */
struct Workspace {
    int64_t zp, h, dh, pw2, total;
};

__host__ __device__ inline Workspace workspace_of(int64_t H, int64_t C, int64_t rows) {
    const int64_t G = cdiv(H, NG);
    Workspace w;
    w.zp = 0;
    w.h = G * rows * padded_classes(C);
    w.dh = w.h + G * rows * NG;
    w.pw2 = w.dh + G * rows * NG;
    w.total = w.pw2 + cdiv(rows, MT) * (H + 1) * C;
    return w;
}

#if MLP_HAVE_TF32

/* The tensors of one step, as the phases see them. */
struct Step {
    const FusedEpoch *e;
    int64_t start, B, rows; /* first row of the step in the epoch, its rows, rows of a full step */
    int64_t G;              /* hidden groups */
    int64_t pieces;         /* of the inputs, in_tile each (the last one less) */
    float *zp, *h, *dh, *pw2;
    float xscale;           /* 1/255 for uint8 inputs */
};

/* ---- staging chunks of the two products --------------------------------
 * A source queues chunk c of A and B into a ring stage with cp.async and
 * reads A fragments from it. */

/* x = hi + lo in TF32: hi, x with its mantissa cut to TF32's 10 bits (no
 * conversion needed); lo, the exact rest, rounded to TF32. */
template <int N>
__device__ inline void split_cut(const float (&x)[N], uint32_t (&hi)[N], uint32_t (&lo)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        hi[i] = __float_as_uint(x[i]) & 0xffffe000u;
        lo[i] = rest_to_tf32(x[i] - __uint_as_float(hi[i]));
    }
}

/* forward: A = the inputs of rows r0.. (MT, K = D+1), B = W1[:, j0..j0+NG) */
template <class T>
struct ForwardSource {
    static constexpr int SA = Ring<T>::SA_FWD, KC = Ring<T>::KC;
    const FusedEpoch *e;
    int64_t row0, nrows, j0;

    __device__ int64_t K() const { return e->D + 1; }
    __device__ void copy(char *A, float *Bs, int64_t c) const {
        constexpr int per = 16 / sizeof(T), segs = KC / per; /* 16-byte pieces of a row */
        const T *rows = (const T *)e->rows;
        for (int s = threadIdx.x; s < MT * segs; s += THREADS) {
            const int r = s / segs, part = s % segs;
            const int64_t col = c * KC + part * per;
            const bool ok = r < nrows && col < e->row_stride;
            cp_async16(A + (r * SA + part * per) * sizeof(T),
                       ok ? rows + (row0 + r) * e->row_stride + col : rows, ok ? 16 : 0);
        }
        if (e->H % 4 == 0) { /* W1's rows are 16-byte aligned */
            for (int s = threadIdx.x; s < KC * NG / 4; s += THREADS) {
                const int kk = s / (NG / 4), j = s % (NG / 4) * 4;
                const int64_t k = c * KC + kk;
                const bool ok = k <= e->D && j0 + j < e->H;
                cp_async16(Bs + kk * SB + j, ok ? e->W1 + k * e->H + j0 + j : e->W1, ok ? 16 : 0);
            }
        } else {
            for (int s = threadIdx.x; s < KC * NG; s += THREADS) {
                const int kk = s / NG, j = s % NG;
                const int64_t k = c * KC + kk;
                const bool ok = k <= e->D && j0 + j < e->H;
                cp_async4(Bs + kk * SB + j, ok ? e->W1 + k * e->H + j0 + j : e->W1, ok ? 4 : 0);
            }
        }
    }
    __device__ float a(const char *A, int m, int k) const {
        return (float)((const T *)A)[m * SA + k];
    }
};

/* update: A = the inputs i0.. of all B rows, read transposed (inputs, K = B),
 * B = dh[:, group] */
template <class T>
struct UpdateSource {
    static constexpr int SA = Ring<T>::SA_UPD, KC = Ring<T>::KC;
    const FusedEpoch *e;
    int64_t row0, B, i0, width; /* width: inputs staged, a multiple of 16 */
    const float *dh;            /* (rows, NG) of the group */

    __device__ int64_t K() const { return B; }
    __device__ void copy(char *A, float *Bs, int64_t c) const {
        constexpr int per = 16 / sizeof(T);
        const int segs = (int)width / per;
        const T *rows = (const T *)e->rows;
        for (int s = threadIdx.x; s < KC * segs; s += THREADS) {
            const int rr = s / segs, part = s % segs;
            const int64_t row = c * KC + rr, col = i0 + part * per;
            const bool ok = row < B && col < e->row_stride;
            cp_async16(A + (rr * SA + part * per) * sizeof(T),
                       ok ? rows + (row0 + row) * e->row_stride + col : rows, ok ? 16 : 0);
        }
        for (int s = threadIdx.x; s < KC * NG / 4; s += THREADS) {
            const int rr = s / (NG / 4), part = s % (NG / 4);
            const int64_t row = c * KC + rr;
            const bool ok = row < B;
            cp_async16(Bs + rr * SB + part * 4, ok ? dh + row * NG + part * 4 : dh, ok ? 16 : 0);
        }
    }
    __device__ float a(const char *A, int m, int k) const {
        return (float)((const T *)A)[k * SA + m];
    }
};

/* A fragment as TF32 head and remainder; a uint8 value is exact in TF32. */
template <class T>
__device__ inline void a_fragment(const float (&x)[4], uint32_t (&hi)[4], uint32_t (&lo)[4]) {
    if (sizeof(T) == 1) {
#pragma unroll
        for (int i = 0; i < 4; i++) hi[i] = __float_as_uint(x[i]);
    } else {
        split_cut(x, hi, lo);
    }
}

/* red (KR, MT, NG) = A (mtiles*16 x K) @ B (K x NG) in KR parts, by k8
 * step modulo KR; the caller sums them in order (result()). Warp w takes the
 * MW m16 tiles from (w % MH) * MW and, of every chunk's k8 steps, those
 * equal to w / MH modulo KR. Starts and ends with a block barrier. */
template <class T, class Src>
__device__ void product(const Src &src, int mtiles, char *smem, float *red) {
    constexpr int KC = Ring<T>::KC, STAGES = Ring<T>::STAGES, STAGE = stage_bytes<T>();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, q = lane % 4, mh = warp % MH, kr = warp / MH;
    const int K = (int)src.K(), chunks = (int)cdiv(K, KC);
    float acc[MW][2][4] = {};
    bool on[MW]; /* the warp's m16 tiles that hold data */
#pragma unroll
    for (int mi = 0; mi < MW; mi++) on[mi] = mh * MW + mi < mtiles;
    __syncthreads(); /* shared memory is free */
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < chunks) src.copy(smem + s * STAGE, (float *)(smem + s * STAGE + a_bytes<T>()), s);
        cp_async_commit();
    }
    for (int c = 0; c < chunks; c++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* chunk c is in; everyone is done with chunk c - 1 */
        const int next = c + STAGES - 1;
        if (next < chunks) {
            char *stage = smem + next % STAGES * STAGE;
            src.copy(stage, (float *)(stage + a_bytes<T>()), next);
        }
        cp_async_commit();
        const char *A = smem + c % STAGES * STAGE;
        const float *Bs = (const float *)(A + a_bytes<T>());
        const int steps = ((K - c * KC < KC ? K - c * KC : KC) + 7) / 8; /* k8 steps with data */
        for (int ks = kr; ks < steps; ks += KR) {
            const int k0 = ks * 8;
            uint32_t bh[2][2], bl[2][2];
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float b[2] = {Bs[(k0 + q) * SB + n * 8 + g], Bs[(k0 + q + 4) * SB + n * 8 + g]};
                split_cut(b, bh[n], bl[n]);
            }
            uint32_t ah[MW][4], al[MW][4];
#pragma unroll
            for (int mi = 0; mi < MW; mi++) {
                if (!on[mi]) continue;
                const int m0 = (mh * MW + mi) * 16;
                const float x[4] = {src.a(A, m0 + g, k0 + q), src.a(A, m0 + g + 8, k0 + q),
                                    src.a(A, m0 + g, k0 + q + 4), src.a(A, m0 + g + 8, k0 + q + 4)};
                a_fragment<T>(x, ah[mi], al[mi]);
            }
            /* the small products first, each accumulator's next product
             * several instructions later, so that none waits on the last */
            if (sizeof(T) != 1)
#pragma unroll
                for (int mi = 0; mi < MW; mi++)
#pragma unroll
                    for (int n = 0; n < 2; n++)
                        if (on[mi]) mma_tf32(acc[mi][n], al[mi], bh[n]);
#pragma unroll
            for (int mi = 0; mi < MW; mi++)
#pragma unroll
                for (int n = 0; n < 2; n++)
                    if (on[mi]) mma_tf32(acc[mi][n], ah[mi], bl[n]);
#pragma unroll
            for (int mi = 0; mi < MW; mi++)
#pragma unroll
                for (int n = 0; n < 2; n++)
                    if (on[mi]) mma_tf32(acc[mi][n], ah[mi], bh[n]);
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the ring is free for red */
#pragma unroll
    for (int mi = 0; mi < MW; mi++) {
        if (mh * MW + mi >= mtiles) break;
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = (mh * MW + mi) * 16 + g + i / 2 * 8, col = n * 8 + 2 * q + i % 2;
                red[(kr * MT + m) * NG + col] = acc[mi][n][i];
            }
    }
    __syncthreads();
}

__device__ inline float result(const float *red, int m, int j) {
    float s = red[m * NG + j];
#pragma unroll
    for (int k = 1; k < KR; k++) s += red[(k * MT + m) * NG + j];
    return s;
}

/* Shared memory between products: red, then h, the group's W2 rows, b2 and
 * the logits. */
struct HeadSmem {
    float *red, *hs, *W2s, *b2s, *zs, *zbuf;
    int32_t *labels; /* in the head, where the products keep red */
    __device__ explicit HeadSmem(char *smem) {
        red = (float *)smem;
        labels = (int32_t *)smem;
        hs = red + RED_FLOATS;
        W2s = hs + MT * HS;
        b2s = W2s + NG * MAX_CLASSES;
        zs = b2s + MAX_CLASSES;
        zbuf = zs + MT * MAX_CLASSES;
    }
};

/* Queues the copy of W2[group] (NG, C), zeros past H, into W2s; it lands
 * with the caller's next cp.async group. */
__device__ inline void copy_w2_group(float *W2s, const FusedEpoch &e, int64_t j0) {
    const int C = (int)e.C;
    for (int i = threadIdx.x; i < NG * C; i += THREADS) {
        const bool ok = j0 + div32(i, C) < e.H;
        cp_async4(W2s + i, e.W2 + (ok ? j0 * C + i : 0), ok ? 4 : 0);
    }
}

/* ---- phase 1: linear_forward and relu_forward, h @ W2[group] ------------ */
/* ACT: the activation compiled into the default recipe's code (ReLU, or
 * tanh or GELU where only the activation differs from the default recipe:
 * fused_rows_by_activation); the general code reads e.act. */
template <class T, bool GENERAL, mlp_activation ACT>
__device__ void forward_item(const Step &st, int64_t rt, int64_t g, char *smem) {
    const FusedEpoch &e = *st.e;
    const int64_t r0 = rt * MT, nrows = st.B - r0 < MT ? st.B - r0 : MT, j0 = g * NG, C = e.C;
    const HeadSmem sm(smem);
    const ForwardSource<T> src = {&e, st.start + r0, nrows, j0};
    float *W2s = (float *)(smem + RING_BYTES) + 3 * MT * NG;
    __syncthreads(); /* the last item's epilogue is done with W2s */
    copy_w2_group(W2s, e, j0); /* lands with the product's first chunk */
    product<T>(src, (int)cdiv(nrows, 16), smem, sm.red);
    /* where the activation's backward needs its input (GELU), its slope
     * waits in dh for the head (head_item), worked out here from the same
     * Phi as the output: the head's chain then has no erf in it */
    const mlp_activation act = GENERAL ? e.act : ACT;
    const bool keep_slope = mlp_activation_needs_input(act);
    for (int i = threadIdx.x; i < nrows * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        const float v = result(sm.red, m, j) * st.xscale;
        float hv;
        if (keep_slope) {
            const float cdf = mlp_gelu_cdf(v);
            hv = v * cdf;
            st.dh[(g * st.rows + r0 + m) * NG + j] = mlp_gelu_slope(v, cdf);
        } else {
            hv = mlp_activation_forward(act, v);
        }
        sm.hs[m * HS + j] = hv;
        st.h[(g * st.rows + r0 + m) * NG + j] = hv;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < (int)(nrows * C); i += THREADS) {
        const int m = i / (int)C, c = i % (int)C;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < NG; j++) s = fmaf(sm.hs[m * HS + j], W2s[j * C + c], s);
        st.zp[(g * st.rows + r0 + m) * padded_classes(C) + c] = s;
    }
}

/* ---- phase 2: the head, dh and the share of dW2 ------------------------- */

/* Sum of n products a[i * sa] * b[i * sb], as four interleaved sums added
 * in a fixed order: a quarter of the dependent chain. */
__device__ inline float dot4(const float *a, int sa, const float *b, int sb, int n) {
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int i = 0;
#pragma unroll 4
    for (; i + 4 <= n; i += 4)
#pragma unroll
        for (int u = 0; u < 4; u++) s[u] = fmaf(a[(i + u) * sa], b[(i + u) * sb], s[u]);
    for (; i < n; i++) s[0] = fmaf(a[i * sa], b[i * sb], s[0]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

template <bool GENERAL, mlp_activation ACT>
__device__ void head_item(const Step &st, int64_t rt, int64_t g, char *smem) {
    const FusedEpoch &e = *st.e;
    const int64_t r0 = rt * MT, nrows = st.B - r0 < MT ? st.B - r0 : MT, j0 = g * NG;
    const int64_t C = e.C, CP = padded_classes(C), H = e.H;
    const HeadSmem sm(smem);
    __syncthreads(); /* shared memory is free */
    /* h of the item, then the logits' shares of the groups, as many groups
     * at a time as zbuf holds, each summed in group order */
    for (int i = threadIdx.x; i < nrows * NG / 4; i += THREADS)
        cp_async16(sm.hs + i / (NG / 4) * HS + i % (NG / 4) * 4,
                   st.h + (g * st.rows + r0) * NG + i * 4, 16);
    /* the activation's slopes, where its backward needs its input
     * (forward_item left them in dh), in red past the labels */
    const mlp_activation act = GENERAL ? e.act : ACT;
    const bool keep_slope = mlp_activation_needs_input(act);
    float *slopes = sm.red + MT;
    for (int i = threadIdx.x; keep_slope && i < nrows * NG / 4; i += THREADS)
        cp_async16(slopes + i * 4, st.dh + (g * st.rows + r0) * NG + i * 4, 16);
    copy_w2_group(sm.W2s, e, j0);
    for (int64_t c = threadIdx.x; c < C; c += THREADS) sm.b2s[c] = __ldcg(e.W2 + H * C + c);
    if (e.loss == MLP_CROSS_ENTROPY)
        for (int m = threadIdx.x; m < (int)nrows; m += THREADS)
            sm.labels[m] = __ldg(e.labels + st.start + r0 + m);
    for (int64_t i = threadIdx.x; i < nrows * C; i += THREADS) sm.zs[i] = 0.0f;
    const int per = (int)(nrows * CP / 4); /* 16-byte pieces of a group's share */
    for (int64_t g0 = 0; g0 < st.G; g0 += e.head_groups) {
        const int64_t gn = st.G - g0 < e.head_groups ? st.G - g0 : e.head_groups;
        for (int i = threadIdx.x; i < (int)gn * per; i += THREADS) {
            const int gi = i / per, at = i % per * 4;
            cp_async16(sm.zbuf + gi * MT * CP + at, st.zp + ((g0 + gi) * st.rows + r0) * CP + at, 16);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        for (int i = threadIdx.x; i < (int)(nrows * C); i += THREADS) {
            const int m = i / (int)C, c = i % (int)C;
            float s = sm.zs[i];
            for (int gi = 0; gi < (int)gn; gi++) s += sm.zbuf[(gi * MT + m) * CP + c];
            sm.zs[i] = s;
        }
        __syncthreads();
    }
    /* the loss's forward and backward, a thread per row: softmax
     * cross-entropy, or an element-wise loss (general code only) */
    const float scale = mlp_div(1.0f, (float)st.B);
    for (int m = threadIdx.x; GENERAL && e.loss != MLP_CROSS_ENTROPY && m < (int)nrows;
         m += THREADS) {
        float *z = sm.zs + m * C;
        const float *t = e.targets + (st.start + r0 + m) * C;
        float loss = 0.0f;
        int hit = e.loss == MLP_BINARY_CROSS_ENTROPY;
        for (int c = 0; c < (int)C; c++) {
            const float zc = z[c] + sm.b2s[c], y = __ldg(t + c);
            loss += mlp_elementwise_loss(e.loss, zc, y);
            hit = hit && mlp_binary_hit(zc, y);
            z[c] = mlp_elementwise_grad(e.loss, zc, y, scale);
        }
        if (g == 0) {
            e.row_loss[st.start + r0 + m] = loss;
            e.row_hit[st.start + r0 + m] = hit;
        }
    }
    for (int m = threadIdx.x; (!GENERAL || e.loss == MLP_CROSS_ENTROPY) && m < (int)nrows;
         m += THREADS) {
        float *z = sm.zs + m * C;
        const int label = sm.labels[m];
        float zmax = -INFINITY;
        int arg = 0;
        for (int c = 0; c < (int)C; c++) {
            z[c] += sm.b2s[c];
            if (z[c] > zmax || c == 0) {
                zmax = z[c];
                arg = c;
            }
        }
        const float zlabel = z[label];
        float sum = 0.0f;
        for (int c = 0; c < (int)C; c++) {
            z[c] = mlp_softmax_term(z[c], zmax);
            sum += z[c];
        }
        if (g == 0) {
            e.row_loss[st.start + r0 + m] = mlp_cross_entropy_loss(zmax, sum, zlabel);
            e.row_hit[st.start + r0 + m] = arg == label;
        }
        const float inv = mlp_div(1.0f, sum);
        for (int c = 0; c < (int)C; c++) z[c] = mlp_cross_entropy_grad(z[c] * inv, c == label, scale);
    }
    __syncthreads();
    /* linear_backward's dinp, then the activation's backward (ReLU's skips
     * the sum of a blocked unit) */
    const bool relu = act == MLP_RELU;
    for (int i = threadIdx.x; i < nrows * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        float s = 0.0f;
        if (!relu || mlp_relu_passes(sm.hs[m * HS + j])) {
#pragma unroll 4
            for (int c = 0; c < (int)C; c++) s = fmaf(sm.zs[m * C + c], sm.W2s[j * C + c], s);
        }
        float *at = st.dh + (g * st.rows + r0) * NG + i;
        if (keep_slope)
            s = s * slopes[i]; /* mlp_activation_backward's GELU: dy * slope */
        else if (GENERAL || ACT != MLP_RELU)
            s = mlp_activation_backward(act, 0.0f, sm.hs[m * HS + j], s);
        *at = s;
    }
    /* this row tile's share of dW2 (and of db2, in the first group) */
    float *pw2 = st.pw2 + rt * (H + 1) * C;
    const int w2_outs = (int)((j0 + NG < H ? NG : H - j0) * C); /* the group's rows of W2 */
    const int outs = w2_outs + (g == 0 ? (int)C : 0);
    for (int i = threadIdx.x; i < outs; i += THREADS) {
        const int c = i % (int)C;
        if (i < w2_outs) {
            const int j = i / (int)C;
            pw2[(j0 + j) * C + c] = dot4(sm.hs + j, HS, sm.zs + c, (int)C, (int)nrows);
        } else {
            float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            int64_t m = 0;
            for (; m + 4 <= nrows; m += 4)
#pragma unroll
                for (int u = 0; u < 4; u++) s[u] += sm.zs[(m + u) * C + c];
            for (; m < nrows; m++) s[0] += sm.zs[m * C + c];
            pw2[H * C + c] = (s[0] + s[1]) + (s[2] + s[3]);
        }
    }
}

constexpr int ZMAX = 16; /* row tiles' shares of dW2 loaded at once */

/* ---- phase 3: linear_backward's dW and the optimizer's update ---------- */

/* The optimizer's update of the piece of W1 (inputs i0.., the group's units
 * from j0) from its gradient in red, its old values in Wp and its state in
 * Vp and Sp. */
template <bool GENERAL>
__device__ void update_piece(const Step &st, const mlp_step &s, const float *red, const float *Wp,
                             const float *Vp, const float *Sp, int64_t i0, int64_t width,
                             int64_t j0, bool penalty, double &pen) {
    const FusedEpoch &e = *st.e;
    const int64_t H = e.H;
    const bool first = uses_first_moment<GENERAL>(s), second = uses_second_moment<GENERAL>(s);
    for (int i = threadIdx.x; i < (int)width * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        if (j0 + j >= H) continue;
        const int64_t at = (i0 + m) * H + j0 + j;
        const float grad = result(red, m, j) * st.xscale;
        float v = first ? Vp[i] : 0.0f, v2 = second ? Sp[i] : 0.0f;
        e.W1[at] = update_one<GENERAL>(s, Wp[i], grad, &v, &v2, i0 + m == e.D, penalty, pen);
        if (first) e.V1[at] = v;
        if (second) e.S1[at] = v2;
    }
}

template <class T, bool GENERAL>
__device__ void update_item(const Step &st, int64_t p, int64_t g, char *smem, double &pen) {
    const FusedEpoch &e = *st.e;
    const int64_t i0 = p * e.in_tile, j0 = g * NG, H = e.H, C = e.C;
    const int64_t width = e.D + 1 - i0 < e.in_tile ? e.D + 1 - i0 : e.in_tile;
    const HeadSmem sm(smem);
    const UpdateSource<T> src = {&e, st.start, st.B, i0, cdiv(width, 16) * 16,
                                 st.dh + g * st.rows * NG};
    float *Wp = (float *)(smem + RING_BYTES), *Vp = Wp + MT * NG, *Sp = Vp + MT * NG;
    const mlp_step s = GENERAL ? e.steps[div32(st.start, e.batch)].s : e.step;
    const bool first = uses_first_moment<GENERAL>(s), second = uses_second_moment<GENERAL>(s);
    const bool penalty = GENERAL && e.penalty;
    __syncthreads(); /* the last item's epilogue is done with Wp, Vp and Sp */
    for (int i = threadIdx.x; i < (int)width * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        const bool ok = j0 + j < H;
        const int64_t at = ok ? (i0 + m) * H + j0 + j : 0;
        cp_async4(Wp + i, e.W1 + at, ok ? 4 : 0);
        if (first) cp_async4(Vp + i, e.V1 + at, ok ? 4 : 0);
        if (second) cp_async4(Sp + i, e.S1 + at, ok ? 4 : 0);
    }
    product<T>(src, (int)cdiv(width, 16), smem, sm.red);
    /* PyTorch's SGD, with or without momentum and weight decay, is the
     * default code's update (update_one<false>): the same arithmetic
     * without the general code's branches between elements */
    if (GENERAL && !s.adam && !s.sklearn)
        update_piece<false>(st, s, sm.red, Wp, Vp, Sp, i0, width, j0, penalty, pen);
    else
        update_piece<GENERAL>(st, s, sm.red, Wp, Vp, Sp, i0, width, j0, penalty, pen);
    /* the last piece, the smallest, also updates the group's rows of W2 */
    if (p != st.pieces - 1) return;
    /* (and b2 with the first group) */
    const int64_t tiles = cdiv(st.B, MT), last = g == 0 ? NG + 1 : NG;
    for (int i = threadIdx.x; i < (int)(last * C); i += THREADS) {
        const int64_t row = i < NG * C ? j0 + i / (int)C : H, c = i % (int)C;
        if (row >= H && i < NG * C) continue;
        float grad = 0.0f;
        for (int64_t t0 = 0; t0 < tiles; t0 += ZMAX) { /* ZMAX loads in flight */
            float v[ZMAX];
#pragma unroll
            for (int u = 0; u < ZMAX; u++)
                v[u] = t0 + u < tiles ? __ldcg(st.pw2 + ((t0 + u) * (H + 1) + row) * C + c) : 0.0f;
#pragma unroll
            for (int u = 0; u < ZMAX; u++) grad += v[u];
        }
        const int64_t at = row * C + c;
        float v = first ? __ldcg(e.V2 + at) : 0.0f, v2 = second ? __ldcg(e.S2 + at) : 0.0f;
        const float w = __ldcg(e.W2 + at);
        e.W2[at] = update_one<GENERAL>(s, w, grad, &v, &v2, row == H, penalty, pen);
        if (first) e.V2[at] = v;
        if (second) e.S2[at] = v2;
    }
}

template <class T, bool GENERAL, mlp_activation ACT>
__device__ void epoch(const FusedEpoch &e, char *smem) {
    cg::grid_group grid = cg::this_grid();
    Step st;
    st.e = &e;
    st.rows = e.n < e.batch ? e.n : e.batch;
    st.G = cdiv(e.H, NG);
    const Workspace w = workspace_of(e.H, e.C, st.rows);
    st.zp = e.partial + w.zp;
    st.h = e.partial + w.h;
    st.dh = e.partial + w.dh;
    st.pw2 = e.partial + w.pw2;
    st.xscale = sizeof(T) == 1 ? e.input_scale : 1.0f; /* fused_supports: floats at scale 1 */
    st.pieces = cdiv(e.D + 1, e.in_tile);
    const bool penalty = GENERAL && e.penalty;
    PHASE_CLOCK(clk);
    for (st.start = 0; st.start < e.n; st.start += e.batch) {
        st.B = e.n - st.start < e.batch ? e.n - st.start : e.batch;
        const int64_t items = cdiv(st.B, MT) * st.G;
        stop_poll_at(e, div32(st.start, e.batch));
        for (int64_t i = blockIdx.x; i < items; i += gridDim.x)
            forward_item<T, GENERAL, ACT>(st, div32(i, st.G), rem32(i, st.G), smem);
        PHASE_MARK(clk, 0);
        grid.sync();
        PHASE_MARK(clk, 1);
        if (penalty && st.start > 0) penalty_total(e, div32(st.start, e.batch) - 1);
        if (stop_now_at(e, div32(st.start, e.batch))) return;
        for (int64_t i = blockIdx.x; i < items; i += gridDim.x)
            head_item<GENERAL, ACT>(st, div32(i, st.G), rem32(i, st.G), smem);
        PHASE_MARK(clk, 2);
        grid.sync();
        PHASE_MARK(clk, 3);
        double pen = 0.0;
        for (int64_t i = blockIdx.x; i < st.pieces * st.G; i += gridDim.x)
            update_item<T, GENERAL>(st, div32(i, st.G), rem32(i, st.G), smem, pen);
        if (penalty) penalty_part(e, div32(st.start, e.batch), pen);
        PHASE_MARK(clk, 4);
        if (st.start + e.batch < e.n) grid.sync(); /* the next forward reads all of W1[:, group] */
        PHASE_MARK(clk, 5);
    }
    PHASE_FLUSH(clk);
}
#endif

template <bool GENERAL, mlp_activation ACT>
__global__ void __launch_bounds__(THREADS, 1) fused_rows_kernel(FusedEpoch e) {
#if MLP_HAVE_TF32
    extern __shared__ __align__(16) char smem[];
    if (e.dtype == MLP_UINT8)
        epoch<uint8_t, GENERAL, ACT>(e, smem);
    else
        epoch<float, GENERAL, ACT>(e, smem);
#endif
}

/* The kernel of the general code, or the default recipe's for ReLU, tanh or
 * GELU (by_act: fused_rows_by_activation). The general kernel runs tanh and
 * GELU too, but its larger code, for every activation, loss and optimizer,
 * misses the instruction cache more often and makes every phase of a step
 * slower (benchmarks/RESULTS.md, stop 35). */
const void *rows_kernel(bool general, bool by_act, mlp_activation act) {
    if (by_act && act == MLP_TANH) return (const void *)fused_rows_kernel<false, MLP_TANH>;
    if (by_act && act == MLP_GELU) return (const void *)fused_rows_kernel<false, MLP_GELU>;
    return general ? (const void *)fused_rows_kernel<true, MLP_RELU>
                   : (const void *)fused_rows_kernel<false, MLP_RELU>;
}

} // namespace

int64_t fused_rows_input_chunks(int64_t D, mlp_dtype dtype) {
    const int64_t stride = cdiv(D + 1, 16) * 16; /* plan.row_stride */
    return cdiv(stride, dtype == MLP_UINT8 ? Ring<uint8_t>::KC : Ring<float>::KC);
}

bool fused_rows_plan(FusedPlan &plan, int64_t D, int64_t H, int64_t C, int64_t batch, int sms,
                     bool general, bool by_act, mlp_activation act) {
    const void *kernel = rows_kernel(general, by_act, act);
    if (C > MAX_CLASSES) return false;
    int optin = 0, per_sm = 0;
    cudaFuncAttributes attr;
    if (!device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, &optin)) return false;
    if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    /* the most the GPU gives, up to SMEM_WANT; at least the ring, and the
     * head with room for one group's logits */
    const int64_t group_bytes = 4 * MT * padded_classes(C);
    int64_t bytes = (int64_t)optin - (int64_t)attr.sharedSizeBytes;
    if (bytes > SMEM_WANT) bytes = SMEM_WANT;
    if (bytes < RING_BYTES + 4 * PRE_FLOATS || bytes < 4 * HEAD_FLOATS + group_bytes) return false;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, (size_t)bytes) !=
            cudaSuccess ||
        per_sm < 1) {
        cudaGetLastError();
        return false;
    }
    const int64_t most = (int64_t)per_sm * sms, G = cdiv(H, NG);
    /* inputs per update item: a multiple of 16, at most MT, cut so that the
     * update has about as many items as the GPU has blocks */
    int64_t pieces = most / G > 1 ? most / G : 1;
    int64_t width = cdiv(cdiv(D + 1, pieces), 16) * 16;
    if (width > MT) width = MT;
    pieces = cdiv(D + 1, width);
    int64_t want = cdiv(batch, MT) * G;
    if (pieces * G > want) want = pieces * G;
    plan.by_rows = true;
    plan.blocks = (int)(want < most ? want : most);
    plan.smem_bytes = (size_t)bytes;
    plan.in_tile = width;
    plan.head_groups = (bytes - 4 * HEAD_FLOATS) / group_bytes;
    plan.row_stride = cdiv(D + 1, 16) * 16; /* 16-byte rows for either dtype */
    plan.workspace_floats = workspace_of(H, C, batch).total;
    return true;
}

cudaError_t fused_rows_launch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e) {
    FusedEpoch args = e;
    void *argv[] = {&args};
    cudaError_t err = cudaLaunchCooperativeKernel(rows_kernel(plan.general, plan.by_act, e.act),
                                                  dim3(plan.blocks),
                                                  dim3(THREADS), argv, plan.smem_bytes, s);
    phase_report(s, "rows", plan.blocks, cdiv(e.n, e.batch));
    return err;
}
