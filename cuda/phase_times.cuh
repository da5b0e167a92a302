/*
 * phase_times.cuh - a developer's view into the one-kernel epochs (fused.cu,
 * fused_rows.cu): how long each block spends in each phase of a step and
 * waiting at each grid barrier. A grid-wide kernel is one launch to any
 * profiler, so this is how its phases are told apart.
 *
 * Compiled in only with -DMLP_PHASE_TIMES (for example
 * CUDAFLAGS=-DMLP_PHASE_TIMES pip install ...), and then active only when
 * the environment names a file in MLP_PHASE_LOG: after each epoch a line is
 * appended there with the microseconds per step of each phase, the mean
 * over blocks and the largest. Ordinary builds contain none of it.
 */
#ifndef MLP_CUDA_PHASE_TIMES_CUH
#define MLP_CUDA_PHASE_TIMES_CUH

#include <cuda_runtime.h>

#ifdef MLP_PHASE_TIMES
#include <stdio.h>
#include <stdlib.h>

/* phases: forward, barrier, head, barrier, update, barrier (fused_rows.cu) */
constexpr int PHASES = 6;
__device__ unsigned long long phase_sum[PHASES], phase_max[PHASES];

__device__ inline unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* one block's time in each phase, over the epoch */
struct PhaseClock {
    unsigned long long spent[PHASES] = {}, last = 0;
    __device__ PhaseClock() { last = global_ns(); }
    __device__ void mark(int phase) {
        const unsigned long long t = global_ns();
        spent[phase] += t - last;
        last = t;
    }
    __device__ void flush() const {
        if (threadIdx.x != 0) return;
        for (int p = 0; p < PHASES; p++) {
            atomicAdd(&phase_sum[p], spent[p]);
            atomicMax(&phase_max[p], spent[p]);
        }
    }
};

/* After the epoch's kernel: appends its line to MLP_PHASE_LOG, and clears
 * the totals. */
static inline void phase_report(cudaStream_t s, const char *kernel, int blocks, long long steps) {
    const char *path = getenv("MLP_PHASE_LOG");
    if (!path || cudaStreamSynchronize(s) != cudaSuccess) return;
    unsigned long long sum[PHASES], most[PHASES], zero[PHASES] = {};
    cudaMemcpyFromSymbol(sum, phase_sum, sizeof sum);
    cudaMemcpyFromSymbol(most, phase_max, sizeof most);
    cudaMemcpyToSymbol(phase_sum, zero, sizeof zero);
    cudaMemcpyToSymbol(phase_max, zero, sizeof zero);
    FILE *f = fopen(path, "a");
    if (!f) return;
    static const char *names[PHASES] = {"forward", "barrier1", "head", "barrier2", "update",
                                        "barrier3"};
    fprintf(f, "%s blocks %d steps %lld, us/step mean/max:", kernel, blocks, steps);
    for (int p = 0; p < PHASES; p++)
        fprintf(f, " %s %.2f/%.2f", names[p], sum[p] / 1e3 / blocks / steps, most[p] / 1e3 / steps);
    fprintf(f, "\n");
    fclose(f);
}

#define PHASE_CLOCK(c) PhaseClock c
#define PHASE_MARK(c, p) c.mark(p)
#define PHASE_FLUSH(c) c.flush()
#else
#define PHASE_CLOCK(c)
#define PHASE_MARK(c, p)
#define PHASE_FLUSH(c)
static inline void phase_report(cudaStream_t, const char *, int, long long) {}
#endif

#endif /* MLP_CUDA_PHASE_TIMES_CUH */
