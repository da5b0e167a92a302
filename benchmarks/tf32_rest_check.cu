// rest_to_tf32 (cuda/tf32.cuh) against cvt.rna.tf32.f32 over every finite
// float32 bit pattern; prints how many differ. On the GPU machine:
//
//   nvcc -std=c++17 -O3 -Icuda -Icsrc -arch=sm_90 benchmarks/tf32_rest_check.cu \
//       -o /tmp/tf32_rest_check && /tmp/tf32_rest_check
#include <cstdio>
#include <cmath>
#include "tf32.cuh"
__global__ void check(unsigned long long *bad) {
    unsigned long long mine = 0;
#if MLP_HAVE_TF32
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < (1ull << 32);
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const float x = __uint_as_float((unsigned)i);
        if (!isfinite(x)) continue;
        if (rest_to_tf32(x) != to_tf32(x)) mine++;
    }
#endif
    atomicAdd(bad, mine);
}
int main() {
    unsigned long long *d, h = 0;
    cudaMalloc(&d, 8); cudaMemset(d, 0, 8);
    check<<<1320, 256>>>(d);
    cudaMemcpy(&h, d, 8, cudaMemcpyDeviceToHost);
    printf("finite patterns where rest_to_tf32 != cvt.rna: %llu (%s)\n", h, cudaGetErrorString(cudaGetLastError()));
    return 0;
}
