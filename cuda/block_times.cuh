/*
 * block_times.cuh - a developer's view into gemm_tensor.cuh's blocks: when
 * each block of a tensor-tile launch started, finished its products and
 * finished its epilogue, and whether it was the block that finished a split
 * tile. A launch is one kernel to a profiler; this is how its loop and its
 * epilogue are told apart.
 *
 * Compiled in only with -DMLP_BLOCK_TIMES (benchmarks/gemm_products.cu
 * builds with it to print them); ordinary builds contain none of it. Each
 * launch overwrites the times of its first 8192 blocks.
 */
#ifndef MLP_CUDA_BLOCK_TIMES_CUH
#define MLP_CUDA_BLOCK_TIMES_CUH

#ifdef MLP_BLOCK_TIMES
namespace gemm {

constexpr int BLOCK_TIMES_MAX = 8192;
/* per block: start, products done, end (ns of the GPU's clock), and the SM
 * | finishing << 16 | split << 17 */
__device__ unsigned long long block_times[4 * BLOCK_TIMES_MAX];

__device__ inline unsigned long long block_time_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ inline void block_time_set(int i, unsigned long long v) {
    if (threadIdx.x == 0 && blockIdx.x < BLOCK_TIMES_MAX) block_times[4 * blockIdx.x + i] = v;
}
__device__ inline unsigned block_time_sm() {
    unsigned r;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(r));
    return r;
}

/* the host's copy of every block's four values, and clearing them */
void block_times_read(unsigned long long *host);
void block_times_clear();

} // namespace gemm

#define BLOCK_TIME_START() gemm::block_time_set(0, gemm::block_time_now())
#define BLOCK_TIME_LOOP(split)                                                             \
    do {                                                                                   \
        gemm::block_time_set(1, gemm::block_time_now());                                   \
        gemm::block_time_set(3, gemm::block_time_sm() | ((split) ? 1u << 17 : 0u));         \
    } while (0)
#define BLOCK_TIME_FINISHING()                                                             \
    gemm::block_time_set(3, gemm::block_time_sm() | 1u << 16 | 1u << 17)
#define BLOCK_TIME_END() gemm::block_time_set(2, gemm::block_time_now())
#else
#define BLOCK_TIME_START()
#define BLOCK_TIME_LOOP(split)
#define BLOCK_TIME_FINISHING()
#define BLOCK_TIME_END()
#endif

#endif /* MLP_CUDA_BLOCK_TIMES_CUH */
