/*
 * sharing_probe.c - how much two threads lose when they write neighbouring
 * parts of the same rows, on this machine, now.
 *
 * Both runs take 300 Adam-like steps (scikit-learn's rule: one square root
 * and one division a parameter) over 784 x 256 parameters and their two
 * moments, two threads, a barrier after each step:
 *   interleaved: thread t takes columns [128 t, 128 t + 128) of every row,
 *                as the C core's column chunks do with a fused step
 *                (csrc/fast.c, linear_backward_weights_fast);
 *   contiguous:  thread t takes rows [392 t, 392 t + 392), whole.
 * The 2-core development machine moves between a phase where the first
 * costs 3 to 4x the second and one where it costs about 10x (the second
 * unchanged; the 10x from an AVX-512 build of these loops); our epochs with two threads are slow in the latter
 * (benchmarks/RESULTS.md). Run it beside a benchmark to tell the phases
 * apart:
 *
 *   cc -O3 -fno-math-errno -fopenmp -mavx2 -mfma benchmarks/sharing_probe.c -o /tmp/sharing_probe -lm
 *   /tmp/sharing_probe        # prints: interleaved MS contiguous MS
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

enum { D = 784, H = 256, STEPS = 300, THREADS = 2 };

static void adam_piece(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, int n) {
    for (int i = 0; i < n; i++) {
        const float gi = g[i] + 1e-6f * p[i];
        m[i] = 0.9f * m[i] + 0.1f * gi;
        v[i] = 0.999f * v[i] + 0.001f * gi * gi;
        p[i] -= 1e-3f * (m[i] / (sqrtf(v[i]) + 1e-8f));
    }
}

static double run(float *p, float *m, float *v, int interleaved) {
    const double start = omp_get_wtime();
#pragma omp parallel num_threads(THREADS)
    {
        const int t = omp_get_thread_num();
        float g[H];
        for (int j = 0; j < H; j++) g[j] = 1e-3f * (float)(j % 13);
        for (int s = 0; s < STEPS; s++) {
            if (interleaved) {
                const int w = H / THREADS;
                for (long k = 0; k < D; k++) {
                    const long at = k * H + (long)t * w;
                    adam_piece(p + at, g, m + at, v + at, w);
                }
            } else {
                for (long k = (long)D * t / THREADS; k < (long)D * (t + 1) / THREADS; k++)
                    adam_piece(p + k * H, g, m + k * H, v + k * H, H);
            }
#pragma omp barrier
        }
    }
    return omp_get_wtime() - start;
}

int main(void) {
    const size_t n = (size_t)D * H;
    float *p = malloc(n * sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    if (!p || !m || !v) return 1;
    for (size_t i = 0; i < n; i++) p[i] = 0.01f * (float)(i % 7);
    run(p, m, v, 1); /* warm up: pages, threads */
    const double a = run(p, m, v, 1), b = run(p, m, v, 0);
    printf("interleaved %.1f ms contiguous %.1f ms\n", 1e3 * a, 1e3 * b);
    free(p), free(m), free(v);
    return 0;
}
