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
 *      and sgd_update of that piece of W1; the items of the first piece also
 *      update their group's rows of W2 (and b2) from the row tiles' pw2
 *   -- grid barrier --
 * Both products are (128 x K) @ (K x 16) on TF32 tensor cores. The inputs
 * are gathered as raw values with the bias input appended (255 for uint8
 * pixels, whose 1/255 scale is applied to the sums, 1 for float32), so a
 * uint8 input is an exact TF32 number: only the other operand is split in
 * two (2 products instead of 3xTF32's 3), at float32 accuracy.
 * Every sum runs in a fixed order: results are bit-identical run to run.
 */
#include <cooperative_groups.h>
#include <math.h>

#include "fused.cuh"
#include "common.cuh"
#include "tf32.cuh"

namespace cg = cooperative_groups;

namespace {

constexpr int THREADS = 256;
constexpr int NG = 16;     /* hidden units per group: two n8 tiles */
constexpr int MT = 128;    /* rows per forward item, most inputs per update item */
constexpr int KC = 64;     /* the K of one staged chunk: 8 k8 steps */
constexpr int STAGES = 3;  /* chunks in the ring of asynchronous copies */
constexpr int MAX_CLASSES = 64;
/* Row strides in shared memory, in elements, chosen so that a warp's
 * fragment loads hit different banks and every row stays 16-byte aligned:
 * the forward reads inputs as A (row, k), the update as A (input, k = row). */
template <class T> struct Strides;
template <> struct Strides<uint8_t> { static constexpr int fwd = KC + 16, upd = MT + 16; };
template <> struct Strides<float> { static constexpr int fwd = KC + 4, upd = MT + 8; };
constexpr int SB = NG + 8; /* W1 chunk or dh chunk, read as B (k, n) */
constexpr int cmax(int a, int b) { return a > b ? a : b; }
template <class T>
constexpr int a_bytes() { /* a chunk of A in either product */
    return cmax(MT * Strides<T>::fwd, KC * Strides<T>::upd) * (int)sizeof(T);
}
constexpr int A_BYTES = cmax(a_bytes<uint8_t>(), a_bytes<float>());
constexpr int STAGE_BYTES = A_BYTES + KC * SB * 4;
/* the rest of shared memory, used between products */
constexpr int RED_FLOATS = 4 * MT * NG; /* the four warp pairs' sums */
constexpr int HS = NG + 1;              /* h (MT, HS) */
constexpr int SMEM_BYTES_HEAD =
    4 * (RED_FLOATS + MT * HS + NG * MAX_CLASSES + MAX_CLASSES + MT * MAX_CLASSES);
constexpr int SMEM_BYTES = cmax(STAGES * STAGE_BYTES, SMEM_BYTES_HEAD);

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Where the workspace's parts start (floats), for at most `rows` rows a step:
 * zp (G, rows, C), h and dh (G, rows, NG), pw2 (row tiles, H+1, C). */
struct Workspace {
    int64_t zp, h, dh, pw2, total;
};

__host__ __device__ inline Workspace workspace_of(int64_t H, int64_t C, int64_t rows) {
    const int64_t G = cdiv(H, NG);
    Workspace w;
    w.zp = 0;
    w.h = cdiv(G * rows * C, 4) * 4; /* 16-byte aligned, for cp.async */
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
    float *zp, *h, *dh, *pw2;
    float xscale;           /* 1/255 for uint8 inputs */
};

/* ---- staging chunks of the two products --------------------------------
 * A source queues chunk c of A and B into a ring stage with cp.async and
 * reads A fragments from it. */

/* forward: A = the inputs of rows r0.. (MT, K = D+1), B = W1[:, j0..j0+NG) */
template <class T>
struct ForwardSource {
    static constexpr int SA = Strides<T>::fwd;
    const FusedEpoch *e;
    int64_t row0, nrows, j0;

    __device__ int64_t chunks() const { return cdiv(e->D + 1, KC); }
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
    static constexpr int SA = Strides<T>::upd;
    const FusedEpoch *e;
    int64_t row0, B, i0, width; /* width: inputs staged, a multiple of 16 */
    const float *dh;            /* (rows, NG) of the group */

    __device__ int64_t chunks() const { return cdiv(B, KC); }
    __device__ void copy(char *A, float *Bs, int64_t c) const {
        constexpr int per = 16 / sizeof(T);
        const int segs = (int)(width / per);
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
        split_tf32(x, hi, lo);
    }
}

/* red (4, MT, NG) = the four warp pairs' shares of A (mtiles*16 x K) @ B
 * (K x NG); the caller sums them in order (result()). Warp w takes the
 * m16 tiles (w % 2) * 4.. and, of every chunk's 8 k8 steps, steps w / 2 and
 * w / 2 + 4. Starts and ends with a block barrier. */
template <class T, class Src>
__device__ void product(const Src &src, int mtiles, char *smem, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, q = lane % 4, mh = warp % 2, kr = warp / 2;
    const int64_t chunks = src.chunks();
    float acc[4][2][4] = {};
    __syncthreads(); /* shared memory is free */
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < chunks) src.copy(smem + s * STAGE_BYTES, (float *)(smem + s * STAGE_BYTES + A_BYTES), s);
        cp_async_commit();
    }
    for (int64_t c = 0; c < chunks; c++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* chunk c is in; everyone is done with chunk c - 1 */
        const int64_t next = c + STAGES - 1;
        if (next < chunks) {
            char *stage = smem + next % STAGES * STAGE_BYTES;
            src.copy(stage, (float *)(stage + A_BYTES), next);
        }
        cp_async_commit();
        const char *A = smem + c % STAGES * STAGE_BYTES;
        const float *Bs = (const float *)(A + A_BYTES);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int k0 = (kr + half * 4) * 8;
            uint32_t bh[2][2], bl[2][2];
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float b[2] = {Bs[(k0 + q) * SB + n * 8 + g], Bs[(k0 + q + 4) * SB + n * 8 + g]};
                split_tf32(b, bh[n], bl[n]);
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                const int m0 = (mh * 4 + mi) * 16;
                if (mh * 4 + mi >= mtiles) break;
                const float x[4] = {src.a(A, m0 + g, k0 + q), src.a(A, m0 + g + 8, k0 + q),
                                    src.a(A, m0 + g, k0 + q + 4), src.a(A, m0 + g + 8, k0 + q + 4)};
                uint32_t ah[4], al[4];
                a_fragment<T>(x, ah, al);
#pragma unroll
                for (int n = 0; n < 2; n++) {
                    if (sizeof(T) != 1) mma_tf32(acc[mi][n], al, bh[n]);
                    mma_tf32(acc[mi][n], ah, bl[n]);
                    mma_tf32(acc[mi][n], ah, bh[n]);
                }
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the ring is free for red */
#pragma unroll
    for (int mi = 0; mi < 4; mi++) {
        if (mh * 4 + mi >= mtiles) break;
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = (mh * 4 + mi) * 16 + g + i / 2 * 8, col = n * 8 + 2 * q + i % 2;
                red[(kr * MT + m) * NG + col] = acc[mi][n][i];
            }
    }
    __syncthreads();
}

__device__ inline float result(const float *red, int m, int j) {
    return ((red[m * NG + j] + red[(MT + m) * NG + j]) + red[(2 * MT + m) * NG + j]) +
           red[(3 * MT + m) * NG + j];
}

/* Shared memory between products: red, then h, the group's W2 rows, b2 and
 * the logits. */
struct HeadSmem {
    float *red, *hs, *W2s, *b2s, *zs;
    __device__ explicit HeadSmem(char *smem) {
        red = (float *)smem;
        hs = red + RED_FLOATS;
        W2s = hs + MT * HS;
        b2s = W2s + NG * MAX_CLASSES;
        zs = b2s + MAX_CLASSES;
    }
};

/* W2[group] (NG, C), zeros past H, into W2s */
__device__ inline void load_w2_group(float *W2s, const FusedEpoch &e, int64_t j0) {
    for (int64_t i = threadIdx.x; i < NG * e.C; i += THREADS)
        W2s[i] = j0 + i / e.C < e.H ? __ldcg(e.W2 + j0 * e.C + i) : 0.0f;
}

/* ---- phase 1: linear_forward and relu_forward, h @ W2[group] ------------ */
template <class T>
__device__ void forward_item(const Step &st, int64_t rt, int64_t g, char *smem) {
    const FusedEpoch &e = *st.e;
    const int64_t r0 = rt * MT, nrows = st.B - r0 < MT ? st.B - r0 : MT, j0 = g * NG, C = e.C;
    const HeadSmem sm(smem);
    const ForwardSource<T> src = {&e, st.start + r0, nrows, j0};
    product<T>(src, (int)cdiv(nrows, 16), smem, sm.red);
    for (int i = threadIdx.x; i < nrows * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        const float v = result(sm.red, m, j) * st.xscale;
        const float hv = v > 0.0f ? v : 0.0f;
        sm.hs[m * HS + j] = hv;
        st.h[(g * st.rows + r0 + m) * NG + j] = hv;
    }
    load_w2_group(sm.W2s, e, j0);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < nrows * C; i += THREADS) {
        const int64_t m = i / C, c = i % C;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < NG; j++) s = fmaf(sm.hs[m * HS + j], sm.W2s[j * C + c], s);
        st.zp[(g * st.rows + r0) * C + i] = s;
    }
}

/* ---- phase 2: the head, dh and the share of dW2 ------------------------- */
constexpr int ZMAX = 8; /* groups' logits loaded at once per element */

__device__ void head_item(const Step &st, int64_t rt, int64_t g, char *smem) {
    const FusedEpoch &e = *st.e;
    const int64_t r0 = rt * MT, nrows = st.B - r0 < MT ? st.B - r0 : MT, j0 = g * NG;
    const int64_t C = e.C, H = e.H;
    const HeadSmem sm(smem);
    __syncthreads(); /* shared memory is free */
    load_w2_group(sm.W2s, e, j0);
    for (int64_t c = threadIdx.x; c < C; c += THREADS) sm.b2s[c] = __ldcg(e.W2 + H * C + c);
    for (int i = threadIdx.x; i < nrows * NG; i += THREADS)
        sm.hs[i / NG * HS + i % NG] = __ldcg(st.h + (g * st.rows + r0) * NG + i);
    /* the logits: every group's share, in group order */
    for (int64_t i = threadIdx.x; i < nrows * C; i += THREADS) {
        const float *p = st.zp + r0 * C + i;
        float s = 0.0f;
        for (int64_t g0 = 0; g0 < st.G; g0 += ZMAX) {
            float v[ZMAX];
#pragma unroll
            for (int u = 0; u < ZMAX; u++)
                v[u] = g0 + u < st.G ? __ldcg(p + (g0 + u) * st.rows * C) : 0.0f;
#pragma unroll
            for (int u = 0; u < ZMAX; u++) s += v[u];
        }
        sm.zs[i] = s;
    }
    __syncthreads();
    /* softmax_crossentropy_forward and _backward, a thread per row */
    const float scale = 1.0f / (float)st.B;
    for (int64_t m = threadIdx.x; m < nrows; m += THREADS) {
        float *z = sm.zs + m * C;
        const int32_t label = __ldg(e.labels + st.start + r0 + m);
        float zmax = -INFINITY;
        int64_t arg = 0;
        for (int64_t c = 0; c < C; c++) {
            z[c] += sm.b2s[c];
            if (z[c] > zmax || c == 0) {
                zmax = z[c];
                arg = c;
            }
        }
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) sum += expf(z[c] - zmax);
        if (g == 0) {
            e.row_loss[st.start + r0 + m] = logf(sum) - (z[label] - zmax);
            e.row_hit[st.start + r0 + m] = arg == label;
        }
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < C; c++)
            z[c] = (expf(z[c] - zmax) * inv - (c == label ? 1.0f : 0.0f)) * scale;
    }
    __syncthreads();
    /* linear_backward's dinp, then relu_backward */
    for (int i = threadIdx.x; i < nrows * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        float s = 0.0f;
        if (sm.hs[m * HS + j] > 0.0f)
            for (int64_t c = 0; c < C; c++) s = fmaf(sm.zs[m * C + c], sm.W2s[j * C + c], s);
        st.dh[(g * st.rows + r0) * NG + i] = s;
    }
    /* this row tile's share of dW2 (and of db2, in the first group) */
    float *pw2 = st.pw2 + rt * (H + 1) * C;
    for (int64_t i = threadIdx.x; i < NG * C; i += THREADS) {
        const int64_t j = i / C, c = i % C;
        if (j0 + j >= H) break;
        float s = 0.0f;
        for (int64_t m = 0; m < nrows; m++) s = fmaf(sm.hs[m * HS + j], sm.zs[m * C + c], s);
        pw2[(j0 + j) * C + c] = s;
    }
    if (g == 0)
        for (int64_t c = threadIdx.x; c < C; c += THREADS) {
            float s = 0.0f;
            for (int64_t m = 0; m < nrows; m++) s += sm.zs[m * C + c];
            pw2[H * C + c] = s;
        }
}

/* ---- phase 3: linear_backward's dW and sgd_update ----------------------- */
template <class T>
__device__ void update_item(const Step &st, int64_t p, int64_t g, char *smem) {
    const FusedEpoch &e = *st.e;
    const int64_t i0 = p * e.in_tile, j0 = g * NG, H = e.H, C = e.C;
    const int64_t width = e.D + 1 - i0 < e.in_tile ? e.D + 1 - i0 : e.in_tile;
    const HeadSmem sm(smem);
    const UpdateSource<T> src = {&e, st.start, st.B, i0, cdiv(width, 16) * 16,
                                 st.dh + g * st.rows * NG};
    product<T>(src, (int)cdiv(width, 16), smem, sm.red);
    for (int i = threadIdx.x; i < width * NG; i += THREADS) {
        const int m = i / NG, j = i % NG;
        if (j0 + j >= H) continue;
        const int64_t at = (i0 + m) * H + j0 + j;
        const float grad = result(sm.red, m, j) * st.xscale;
        float v = e.momentum != 0.0f ? __ldcg(e.V1 + at) : 0.0f;
        e.W1[at] = sgd_step(__ldcg(e.W1 + at), v, grad, e.lr, e.momentum, e.weight_decay);
        if (e.momentum != 0.0f) e.V1[at] = v;
    }
    if (p != 0) return;
    /* the group's rows of W2, and b2 with the first group */
    const int64_t tiles = cdiv(st.B, MT), last = g == 0 ? NG + 1 : NG;
    for (int64_t i = threadIdx.x; i < last * C; i += THREADS) {
        const int64_t row = i < NG * C ? j0 + i / C : H, c = i % C;
        if (row >= H && i < NG * C) continue;
        float grad = 0.0f;
        for (int64_t t = 0; t < tiles; t++) grad += __ldcg(st.pw2 + (t * (H + 1) + row) * C + c);
        const int64_t at = row * C + c;
        float v = e.momentum != 0.0f ? __ldcg(e.V2 + at) : 0.0f;
        e.W2[at] = sgd_step(__ldcg(e.W2 + at), v, grad, e.lr, e.momentum, e.weight_decay);
        if (e.momentum != 0.0f) e.V2[at] = v;
    }
}

template <class T>
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
    st.xscale = sizeof(T) == 1 ? 1.0f / 255.0f : 1.0f;
    const int64_t pieces = cdiv(e.D + 1, e.in_tile);
    for (st.start = 0; st.start < e.n; st.start += e.batch) {
        st.B = e.n - st.start < e.batch ? e.n - st.start : e.batch;
        const int64_t items = cdiv(st.B, MT) * st.G;
        for (int64_t i = blockIdx.x; i < items; i += gridDim.x)
            forward_item<T>(st, i / st.G, i % st.G, smem);
        grid.sync();
        for (int64_t i = blockIdx.x; i < items; i += gridDim.x) head_item(st, i / st.G, i % st.G, smem);
        grid.sync();
        for (int64_t i = blockIdx.x; i < pieces * st.G; i += gridDim.x)
            update_item<T>(st, i / st.G, i % st.G, smem);
        if (st.start + e.batch < e.n) grid.sync(); /* the next forward reads all of W1[:, group] */
    }
}
#endif

__global__ void __launch_bounds__(THREADS, 1) fused_rows_kernel(FusedEpoch e) {
#if MLP_HAVE_TF32
    extern __shared__ __align__(16) char smem[];
    if (e.dtype == MLP_UINT8)
        epoch<uint8_t>(e, smem);
    else
        epoch<float>(e, smem);
#endif
}

} // namespace

bool fused_rows_plan(FusedPlan &plan, int64_t D, int64_t H, int64_t C, int64_t batch, int sms) {
    if (C > MAX_CLASSES) return false;
    int per_sm = 0;
    if (cudaFuncSetAttribute(fused_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             SMEM_BYTES) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fused_rows_kernel, THREADS,
                                                      SMEM_BYTES) != cudaSuccess ||
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
    plan.smem_bytes = SMEM_BYTES;
    plan.in_tile = width;
    plan.row_stride = cdiv(D + 1, 16) * 16; /* 16-byte rows for either dtype */
    plan.workspace_floats = workspace_of(H, C, batch).total;
    return true;
}

cudaError_t fused_rows_launch(cudaStream_t s, const FusedPlan &plan, const FusedEpoch &e) {
    FusedEpoch args = e;
    void *argv[] = {&args};
    return cudaLaunchCooperativeKernel((const void *)fused_rows_kernel, dim3(plan.blocks),
                                       dim3(THREADS), argv, plan.smem_bytes, s);
}
