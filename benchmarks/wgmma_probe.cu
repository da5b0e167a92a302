// wgmma_probe.cu - a measurement, not part of the package: how fast Hopper's
// warpgroup products (wgmma, sm_90a) multiply float32 matrices at float32's
// accuracy, each operand split into two TF32 parts and multiplied three
// times as tf32.cuh's mma_3xtf32 does with mma.sync. Issue 14's wide shapes
// run on gemm_tensor.cuh's mma.sync tiles at about a third of the tensor
// cores' rate; this program asks whether wgmma changes that.
//
// C (M,N) = A (M,K) @ B^T, A and B both row-major with K contiguous (what
// wgmma takes for TF32). A block of two warpgroups computes a 128 x 128
// tile; the tiles of 32 k go through STAGES shared-memory stages by cp.async
// in the 128-byte swizzled layout that the wgmma descriptors name; each
// stage's floats are split in place (the TF32 high part) and beside it (the
// rest), then three wgmma per 8 k: rest x high, high x rest, high x high.
// Sizes must be multiples of 128 (M, N) and 32 (K).
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icuda \
//       benchmarks/wgmma_probe.cu -o /tmp/wgmma_probe && /tmp/wgmma_probe M N K
//
// -DONE_PRODUCT keeps only high x high (plain TF32: for timing, fails the check).
// Prints the error against a float64 product on sampled outputs and the
// time of a launch (median of 20); exits 1 when the error is not float32's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "tf32.cuh"

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 256;
constexpr int TILE_BYTES = 128 * BK * 4; /* one operand's tile: 16 KB */
constexpr int STAGE_BYTES = 2 * TILE_BYTES;
constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 2 * STAGE_BYTES + 1024;

#define CHECK(x)                                                                     \
    do {                                                                             \
        cudaError_t e_ = (x);                                                        \
        if (e_ != cudaSuccess) {                                                     \
            fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
            exit(3);                                                                 \
        }                                                                            \
    } while (0)

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HAVE_WGMMA 1
#else
#define HAVE_WGMMA 0
#endif

/* byte offset of (row r, 16-byte chunk c) in a tile of 128-byte rows,
 * swizzled as the descriptors' 128-byte mode reads it */
__device__ inline uint32_t swz(int r, int c) { return (uint32_t)(r * 128 + ((c ^ (r & 7)) << 4)); }

#if HAVE_WGMMA
__device__ inline uint64_t desc(uint32_t smem_addr) {
    return (uint64_t)((smem_addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ inline void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ inline void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ inline void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

#define R8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
              "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])

/* d (64 x 128, this warpgroup's) += A (64 x 8) @ B (128 x 8)^T, TF32 */
__device__ inline void wgmma_128(float (&d)[64], uint64_t da, uint64_t db) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
        "%64, %65, 1, 1, 1;"
        : R8(0), R8(8), R8(16), R8(24), R8(32), R8(40), R8(48), R8(56)
        : "l"(da), "l"(db));
}
#endif

__global__ void __launch_bounds__(THREADS, 1)
gemm_wgmma(float *C, const float *A, const float *B, int M, int N, int K) {
#if HAVE_WGMMA
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t pad = ((raw + 1023) & ~1023u) - raw;
    unsigned char *smem = smem_raw + pad;
    const uint32_t base = raw + pad;
    /* stage s: A tile at s * STAGE_BYTES, B tile after it; the rests of
     * tile t at (STAGES + t % 2) * STAGE_BYTES, laid out the same */
    const int tid = threadIdx.x, wg = tid / 128;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int tiles = K / BK;

    auto load = [&](int t) {
        if (t >= tiles) return;
        unsigned char *st = smem + (t % STAGES) * STAGE_BYTES;
        const int k0 = t * BK;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int chunk = tid + i * THREADS, r = chunk / 8, c = chunk % 8;
            cp_async16(st + swz(r, c), A + (int64_t)(m0 + r) * K + k0 + 4 * c, 16);
            cp_async16(st + TILE_BYTES + swz(r, c), B + (int64_t)(n0 + r) * K + k0 + 4 * c, 16);
        }
    };

    float d[64];
#pragma unroll
    for (int i = 0; i < 64; i++) d[i] = 0.0f;

    load(0);
    cp_async_commit();
    load(1);
    cp_async_commit();
    for (int t = 0; t < tiles; t++) {
        cp_async_wait<1>();
        __syncthreads(); /* tile t landed; tile t - 2's products are done */
        load(t + 2);
        cp_async_commit();
        unsigned char *st = smem + (t % STAGES) * STAGE_BYTES;
        unsigned char *rest = smem + (STAGES + t % 2) * STAGE_BYTES;
#pragma unroll
        for (int i = 0; i < 8; i++) { /* both tiles: 2048 chunks of 16 bytes */
            const uint32_t off = (uint32_t)(tid + i * THREADS) * 16;
            float4 x = *(float4 *)(st + off);
            uint4 hi, lo;
            hi.x = to_tf32(x.x); lo.x = rest_to_tf32(x.x - __uint_as_float(hi.x));
            hi.y = to_tf32(x.y); lo.y = rest_to_tf32(x.y - __uint_as_float(hi.y));
            hi.z = to_tf32(x.z); lo.z = rest_to_tf32(x.z - __uint_as_float(hi.z));
            hi.w = to_tf32(x.w); lo.w = rest_to_tf32(x.w - __uint_as_float(hi.w));
            *(uint4 *)(st + off) = hi;
            *(uint4 *)(rest + off) = lo;
        }
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        const uint32_t a_hi = base + (t % STAGES) * STAGE_BYTES + wg * 64 * 128;
        const uint32_t b_hi = base + (t % STAGES) * STAGE_BYTES + TILE_BYTES;
        const uint32_t a_lo = base + (STAGES + t % 2) * STAGE_BYTES + wg * 64 * 128;
        const uint32_t b_lo = base + (STAGES + t % 2) * STAGE_BYTES + TILE_BYTES;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 8; kk++) {
            const uint32_t k = kk * 32; /* 8 floats along the swizzled row */
#ifndef ONE_PRODUCT
            wgmma_128(d, desc(a_lo + k), desc(b_hi + k));
            wgmma_128(d, desc(a_hi + k), desc(b_lo + k));
#endif
            wgmma_128(d, desc(a_hi + k), desc(b_hi + k));
        }
        wg_commit();
        wg_wait<1>();
    }
    wg_wait<0>();
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory"); /* after the wait */
    /* lane (g, q) of warp w holds rows 16 w + g and + 8, columns 8 i + 2 q, + 1 */
    const int w = (tid % 128) / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
    const int row = m0 + wg * 64 + w * 16 + g;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int col = n0 + 8 * i + 2 * q;
        *(float2 *)(C + (int64_t)row * N + col) = make_float2(d[4 * i], d[4 * i + 1]);
        *(float2 *)(C + (int64_t)(row + 8) * N + col) = make_float2(d[4 * i + 2], d[4 * i + 3]);
    }
#endif
}

}  // namespace

int main(int argc, char **argv) {
    const int M = argc > 3 ? atoi(argv[1]) : 4096, N = argc > 3 ? atoi(argv[2]) : 4096,
              K = argc > 3 ? atoi(argv[3]) : 4096;
    if (M % BM || N % BN || K % BK || M <= 0 || N <= 0 || K <= 0) {
        fprintf(stderr, "sizes must be positive multiples of 128, 128, 32\n");
        return 2;
    }
    std::mt19937 gen(1234);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> hA((size_t)M * K), hB((size_t)N * K), hC((size_t)M * N);
    for (auto &x : hA) x = nd(gen);
    for (auto &x : hB) x = nd(gen);
    float *A, *B, *C;
    CHECK(cudaMalloc(&A, hA.size() * 4));
    CHECK(cudaMalloc(&B, hB.size() * 4));
    CHECK(cudaMalloc(&C, hC.size() * 4));
    CHECK(cudaMemcpy(A, hA.data(), hA.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(B, hB.data(), hB.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(C, 0xff, hC.size() * 4)); /* NaNs: every output must be written */
    CHECK(cudaFuncSetAttribute(gemm_wgmma, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               SMEM_BYTES));
    const dim3 grid(N / BN, M / BM);
    gemm_wgmma<<<grid, THREADS, SMEM_BYTES>>>(C, A, B, M, N, K);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(hC.data(), C, hC.size() * 4, cudaMemcpyDeviceToHost));

    /* sampled outputs against float64; the error over the sum of |a||b|,
     * which float32's rounding keeps near 1e-7 and TF32's near 1e-3 */
    double worst = 0.0;
    int bad = 0;
    std::uniform_int_distribution<int> pick_m(0, M - 1), pick_n(0, N - 1);
    for (int s = 0; s < 4096; s++) {
        const int i = s < 64 ? s % M : pick_m(gen), j = s < 64 ? (s * 7) % N : pick_n(gen);
        double ref = 0.0, mag = 0.0;
        for (int k = 0; k < K; k++) {
            const double p = (double)hA[(size_t)i * K + k] * hB[(size_t)j * K + k];
            ref += p;
            mag += fabs(p);
        }
        const double got = hC[(size_t)i * N + j];
        const double err = std::isfinite(got) ? fabs(got - ref) / mag : 1e30;
        worst = std::max(worst, err);
        bad += !(err < 1e-5);
    }
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    std::vector<float> ms(20);
    for (int r = -3; r < 20; r++) {
        CHECK(cudaEventRecord(e0));
        gemm_wgmma<<<grid, THREADS, SMEM_BYTES>>>(C, A, B, M, N, K);
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        if (r >= 0) CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
    }
    CHECK(cudaGetLastError());
    std::sort(ms.begin(), ms.end());
    const double t = ms[10] * 1e-3;
    printf("wgmma 3xTF32 %d x %d x %d: %.1f us, %.1f TFLOP/s (float32 products), "
           "worst error / sum|ab| %.2e, %d of 4096 sampled outputs off\n",
           M, N, K, t * 1e6, 2.0 * M * N * K / t / 1e12, worst, bad);
    return bad ? 1 : 0;
}
