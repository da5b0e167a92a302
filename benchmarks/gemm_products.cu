// One product of cuda/gemm.cu at a time, on its float32 tiles and on each
// tensor-core tiling of gemm_tensor.cuh (the large tiles on mma.sync, then
// on wgmma where the build and the GPU have it, else -1): microseconds a
// launch (the mean of 20, or 5 for the largest, after 3), for choosing
// gemm.cu's tiling.
// f: linear_forward (M = B, N = H, K = D + 1); d: linear_backward_input
// (M = B, N = D, K = H); w: linear_backward_weights_update, one layer, SGD
// (M = D + 1, N = H, K = B). On the GPU machine, from the repository root:
//
//   nvcc -std=c++17 -O3 -Icsrc -Icuda -gencode=arch=compute_90a,code=sm_90a \
//       benchmarks/gemm_products.cu \
//       cuda/gemm.cu cuda/ops.cu -o /tmp/gemm_products && /tmp/gemm_products [KINDS]
//
// KINDS (f, d, w or several, e.g. "w"): only those products; KINDS M N K:
// only that one (for a profiler). Built with -DMLP_BLOCK_TIMES as well, it
// prints for each tensor tiling where one launch's time went: when its
// blocks started, finished their products and finished their epilogues
// (cuda/block_times.cuh), the blocks that finished a split tile apart.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>
#include "gemm.cuh"
using namespace gemm;
#include "block_times.cuh"
#ifdef MLP_BLOCK_TIMES
// One launch's blocks: when the last started and when their products and
// epilogues ended, from the first block's start; a block that finished a
// split tile (or had no split) is "finishing", the others wrote partials.
static void print_block_times(int mode) {
    static unsigned long long bt[4 * BLOCK_TIMES_MAX];
    block_times_read(bt);
    unsigned long long t0 = ~0ull, t1 = 0, loops_end = 0;
    int n = 0;
    for (; n < BLOCK_TIMES_MAX && bt[4 * n]; n++) {
        const unsigned long long *b = bt + 4 * n;
        if (b[0] < t0) t0 = b[0];
        if (b[2] > t1) t1 = b[2];
        if (b[1] > loops_end) loops_end = b[1];
    }
    if (n == 0) return;
    int finishing = 0, split = 0;
    double loop = 0, epi_fin = 0, epi_other = 0, start = 0, start_max = 0;
    for (int i = 0; i < n; i++) {
        const unsigned long long *b = bt + 4 * i;
        const bool fin = b[3] >> 16 & 1, sp = b[3] >> 17 & 1;
        loop += b[1] - b[0];
        start += b[0] - t0;
        if (b[0] - t0 > start_max) start_max = b[0] - t0;
        split += sp;
        if (fin || !sp) finishing++, epi_fin += b[2] - b[1];
        else epi_other += b[2] - b[1];
    }
    printf("   mode %d: %d blocks (%d split, %d finishing): span %.1f us, loops end by %.1f, "
           "mean start %.1f (last %.1f), mean loop %.1f, mean epilogue finishing %.1f, "
           "others %.1f\n",
           mode, n, split, finishing, (t1 - t0) / 1e3, (loops_end - t0) / 1e3, start / n / 1e3,
           start_max / 1e3, loop / n / 1e3, finishing ? epi_fin / finishing / 1e3 : 0.0,
           n > finishing ? epi_other / (n - finishing) / 1e3 : 0.0);
}
#endif

int main(int argc, char **argv) {
    struct P { char kind; int64_t M, N, K; };
    std::vector<P> ps = {
        {'f',64,4096,785},{'f',64,4096,4097},{'d',64,4096,4096},{'w',785,4096,64},{'w',4097,4096,64},
        {'f',64,512,785},{'f',64,256,513},{'d',64,512,256},{'w',785,512,64},{'w',513,256,64},
        {'f',1024,4096,785},{'f',1024,4096,4097},{'d',1024,4096,4096},{'w',785,4096,1024},{'w',4097,4096,1024},
        {'f',1024,1024,785},{'f',1024,1024,1025},{'d',1024,1024,1024},{'w',785,1024,1024},{'w',1025,1024,1024},
        {'f',1024,512,785},{'f',1024,256,513},{'f',1024,128,257},{'d',1024,512,256},{'d',1024,256,128},
        {'w',785,512,1024},{'w',513,256,1024},{'w',257,128,1024},
        {'f',1024,512,101},{'f',1024,512,513},{'d',1024,512,512},{'w',101,512,1024},{'w',513,512,1024},
        {'f',8192,512,101},{'f',8192,512,513},{'d',8192,512,512},{'w',101,512,8192},{'w',513,512,8192},
        {'f',8192,4096,785},{'f',8192,4096,4097},{'d',8192,4096,4096},{'w',785,4096,8192},{'w',4097,4096,8192},
    };
    const int64_t BIG = 8192LL * 4097;
    float *A, *W, *O, *P2, *M, *V, *D;
    cudaMalloc(&A, 4 * BIG * 4); cudaMalloc(&W, 4 * BIG * 4); cudaMalloc(&O, 4 * BIG * 4);
    cudaMalloc(&P2, 4 * BIG * 4); cudaMalloc(&M, 4 * BIG * 4); cudaMalloc(&V, 4 * BIG * 4); cudaMalloc(&D, 4 * BIG * 4);
    std::vector<float> h(4 * BIG);
    for (auto &x : h) x = (float)rand() / RAND_MAX - 0.5f;
    cudaMemcpy(A, h.data(), 4 * BIG * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(W, h.data(), 4 * BIG * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(D, h.data(), 4 * BIG * 4, cudaMemcpyHostToDevice);
    Scratch sc{};
    sc.partial_floats = scratch_partial_floats(); sc.n_counters = scratch_counters();
    sc.sms = scratch_sms();
    cudaMalloc(&sc.partial, sc.partial_floats * 4); cudaMalloc(&sc.counters, sc.n_counters * 4);
    cudaMemset(sc.counters, 0, sc.n_counters * 4);
    StepInfo si{}; si.s.lr = 1e-6f;
    StepInfo *sd; cudaMalloc(&sd, sizeof si); cudaMemcpy(sd, &si, sizeof si, cudaMemcpyHostToDevice);
    bool ok = tensor_supported();
    const bool wgmma = wgmma_supported();
    printf("tensor_supported %d wgmma_supported %d\n", ok, wgmma);
    cudaStream_t s; cudaStreamCreate(&s);
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    printf("kind M N K | float32 small large wide (us)\n");
    for (auto p : ps) {
        if (argc > 1 && !strchr(argv[1], p.kind)) continue;
        if (argc > 4 && (p.M != atoll(argv[2]) || p.N != atoll(argv[3]) || p.K != atoll(argv[4])))
            continue;
        double t[4] = {0, 0, 0, -1};
        for (int mode = 0; mode < (wgmma ? 4 : 3); mode++) {
            sc.tensor_min_work = mode ? 1.0 : 0.0; sc.tensor_tiles = mode < 3 ? mode : 2;
            sc.wgmma = mode == 3;
            auto run = [&]() {
                if (p.kind == 'f') {
                    LayerInput in{A, NULL, MLP_FLOAT32, 1.0f, NULL, 0};
                    linear_forward(s, O, NULL, in, W, p.M, p.K - 1, p.N, MLP_RELU, true, NULL, sc);
                } else if (p.kind == 'd') {
                    linear_backward_input(s, O, D, W, MLP_RELU, NULL, A, p.M, p.N, p.K, sc);
                } else {
                    WeightsJob j{P2, M, V, D, LayerInput{A, NULL, MLP_FLOAT32, 1.0f, NULL, 0}, p.M - 1, p.N};
                    linear_backward_weights_update(s, &j, 1, p.K, sd, sc);
                }
            };
            for (int i = 0; i < 3; i++) run();
            const int reps = p.M * p.N * p.K > 1e10 ? 5 : 20;
            cudaEventRecord(e0, s);
            for (int i = 0; i < reps; i++) run();
            cudaEventRecord(e1, s);
            cudaEventSynchronize(e1);
            float ms; cudaEventElapsedTime(&ms, e0, e1);
            t[mode] = 1000.0 * ms / reps;
#ifdef MLP_BLOCK_TIMES
            if (mode >= 1) {
                cudaDeviceSynchronize();
                block_times_clear();
                run();
                cudaDeviceSynchronize();
                print_block_times(mode);
            }
#endif
        }
        cudaError_t err = cudaGetLastError();
        printf("%c %5lld %5lld %5lld | %9.1f %9.1f %9.1f %9.1f  %s\n", p.kind, (long long)p.M,
               (long long)p.N, (long long)p.K, t[0], t[1], t[2], t[3],
               err ? cudaGetErrorString(err) : "");
    }
    return 0;
}
