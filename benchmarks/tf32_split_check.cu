// tf32.cuh's splits against cvt.rna.tf32.f32 (to_tf32) over every float32
// bit pattern; prints one figure a line. For normal operands up to
// TF32_SPLIT_MAX, split_tf32 (Veltkamp's hi) must give a TF32 number as
// close to x as cvt.rna's, the same as it off ties, and an hi + lo (as the
// tensor cores read them) as close to x as cvt.rna's;
// rest_to_tf32 must round every finite float as cvt.rna does. For subnormal
// operands hi may keep bits that TF32 (and so the tensor cores) drop: the
// largest error of hi + lo as the tensor cores read them is printed beside
// cvt.rna's. On the GPU machine:
//
//   nvcc -std=c++17 -O3 -Icuda -Icsrc -arch=sm_90 benchmarks/tf32_split_check.cu \
//       -o /tmp/tf32_split_check && /tmp/tf32_split_check
#include <cstdio>
#include <cmath>
#include <cfloat>
#include <cstring>
#include "tf32.cuh"

enum { REST_DIFFERS, HI_NOT_TF32, HI_FARTHER, SUM_FARTHER, HI_DIFFERS_OFF_TIE, TIES_OTHER_WAY,
       SUBNORMAL_HI_NOT_TF32, PAST_MAX, COUNTS };
static const char *names[COUNTS] = {
    "finite, rest_to_tf32 != cvt.rna", "normal, hi not a TF32 number",
    "normal, hi farther from x than cvt.rna's",
    "normal, hi + lo as read farther from x than cvt.rna's",
    "normal, hi != cvt.rna's off a tie", "normal, ties broken the other way",
    "subnormal, hi not a TF32 number", "finite past TF32_SPLIT_MAX"};

/* the split as the tensor cores read it: each part's low 13 bits dropped */
__device__ double as_read(uint32_t hi, uint32_t lo) {
    return (double)__uint_as_float(hi & 0xffffe000u) + (double)__uint_as_float(lo & 0xffffe000u);
}

__global__ void check(unsigned long long *counts, unsigned long long *worst) {
#if MLP_HAVE_TF32
    unsigned long long mine[COUNTS] = {};
    double worst_split = 0.0, worst_cvt = 0.0;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < (1ull << 32); i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned bits = (unsigned)i;
        const float x = __uint_as_float(bits);
        if (!isfinite(x)) continue;
        const uint32_t ref = to_tf32(x), ref_lo = rest_to_tf32(x - __uint_as_float(ref));
        if (rest_to_tf32(x) != ref) mine[REST_DIFFERS]++;
        if (fabsf(x) > TF32_SPLIT_MAX) {
            mine[PAST_MAX]++;
            continue;
        }
        const float v[1] = {x};
        uint32_t hi[1], lo[1];
        split_tf32(v, hi, lo);
        if (x != 0.0f && fabsf(x) < FLT_MIN) {
            if (hi[0] & 0x1fffu) mine[SUBNORMAL_HI_NOT_TF32]++;
            worst_split = fmax(worst_split, fabs((double)x - as_read(hi[0], lo[0])));
            worst_cvt = fmax(worst_cvt, fabs((double)x - as_read(ref, ref_lo)));
            continue;
        }
        const double dx = x, h = __uint_as_float(hi[0]), r = __uint_as_float(ref);
        if (hi[0] & 0x1fffu) mine[HI_NOT_TF32]++;
        if (fabs(dx - h) > fabs(dx - r)) mine[HI_FARTHER]++;
        if (fabs(dx - as_read(hi[0], lo[0])) > fabs(dx - as_read(ref, ref_lo))) mine[SUM_FARTHER]++;
        if (hi[0] != ref) mine[(bits & 0x1fffu) == 0x1000u ? TIES_OTHER_WAY : HI_DIFFERS_OFF_TIE]++;
    }
    for (int c = 0; c < COUNTS; c++) atomicAdd(&counts[c], mine[c]);
    /* non-negative doubles order as their bit patterns */
    atomicMax(&worst[0], (unsigned long long)__double_as_longlong(worst_split));
    atomicMax(&worst[1], (unsigned long long)__double_as_longlong(worst_cvt));
#endif
}

int main() {
    unsigned long long *d, h[COUNTS + 2] = {};
    cudaMalloc(&d, sizeof h);
    cudaMemset(d, 0, sizeof h);
    check<<<1320, 256>>>(d, d + COUNTS);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        fprintf(stderr, "%s\n", cudaGetErrorString(err));
        return 1;
    }
    for (int c = 0; c < COUNTS; c++) printf("%s: %llu\n", names[c], h[c]);
    double w[2];
    memcpy(w, h + COUNTS, sizeof w);
    printf("subnormal, largest error of hi + lo as read: %.6e\n", w[0]);
    printf("subnormal, largest error of cvt.rna's hi + lo as read: %.6e\n", w[1]);
    return 0;
}
