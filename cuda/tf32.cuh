/*
 * tf32.cuh - device code shared by the fused epochs (fused.cu and
 * fused_rows.cu) on sm_80 and newer: TF32 tensor-core products and
 * asynchronous copies into shared memory.
 */
#ifndef MLP_CUDA_TF32_CUH
#define MLP_CUDA_TF32_CUH

#include <stdint.h>

/* Whether this compilation has TF32 tensor cores (sm_80 and newer). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define MLP_HAVE_TF32 1
#else
#define MLP_HAVE_TF32 0
#endif

#if MLP_HAVE_TF32
__device__ inline uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

/* A finite float32 rounded to TF32 as to_tf32 rounds it (to nearest, ties
 * away from zero), in two integer operations: add half of TF32's last
 * mantissa bit to the magnitude, then cut. cvt.rna.tf32.f32 takes several
 * instructions in sm_90 code. For the rest of a split (x - hi), which is
 * finite wherever x is; where x is a NaN or an infinity, hi keeps it (and
 * the rest may come out as a signed zero). */
__device__ inline uint32_t rest_to_tf32(float x) {
    return (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
}

/* x rounded to a nearest number of TF32's 11 significant bits, by
 * Veltkamp's splitting (multiply by 2^13 + 1, two subtractions) on the
 * float32 units. sm_90 code emulates cvt.rna (to_tf32) with integer
 * instructions, which the products' fragment reads and copies compete for;
 * the split products are faster this way (benchmarks/RESULTS.md, stop 35).
 * For a normal x it differs from to_tf32 only where x lies halfway between
 * two TF32 numbers, and hi + lo (as the tensor cores read them) is as close
 * to x either way; for a subnormal x, hi may keep bits that TF32 drops, an
 * error of at most 2^-136 (benchmarks/tf32_split_check.cu checks every
 * float32). Past TF32_SPLIT_MAX (a little below FLT_MAX / 8193, where x *
 * 8193 overflows), and for infinities and NaNs, it may be a NaN: float32
 * products of operands that large overflow anyway. The _rn intrinsics keep
 * the compiler from contracting the operations into a multiply-add, which
 * would undo the split. */
#define TF32_SPLIT_MAX 4.0e34f
__device__ inline uint32_t hi_tf32(float x) {
    const float t = __fmul_rn(x, 8193.0f);
    return __float_as_uint(__fsub_rn(t, __fsub_rn(t, x)));
}

/* x = hi + lo, both TF32: together they carry float32's precision (x - hi
 * is exact; lo is it rounded). */
template <int N>
__device__ inline void split_tf32(const float (&x)[N], uint32_t (&hi)[N], uint32_t (&lo)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        hi[i] = hi_tf32(x[i]);
        lo[i] = rest_to_tf32(x[i] - __uint_as_float(hi[i]));
    }
}

/* d += a @ b on tensor cores (not volatile: the compiler may interleave
 * independent products), a (16x8, row) and b (8x8, col) in TF32. Lane
 * (g = lane / 4, q = lane % 4) holds a (g, q), (g+8, q), (g, q+4),
 * (g+8, q+4); b (q, g), (q+4, g); d (g, 2q), (g, 2q+1), (g+8, 2q), (g+8, 2q+1). */
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* d += a @ b in 3xTF32 (float32's accuracy), a (16x8) and b (8x8) given as
 * float fragments laid out as mma_tf32's: the small terms first */
__device__ inline void mma_3xtf32(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
    uint32_t ah[4], al[4], bh[2], bl[2];
    split_tf32(a, ah, al);
    split_tf32(b, bh, bl);
    mma_tf32(d, al, bh);
    mma_tf32(d, ah, bl);
    mma_tf32(d, ah, bh);
}

/* Asynchronous copies global -> shared; bytes past src_bytes are zeros. */
__device__ inline void cp_async16(void *dst, const void *src, int src_bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src),
                 "r"(src_bytes));
}
__device__ inline void cp_async4(void *dst, const void *src, int src_bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src),
                 "r"(src_bytes));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
/* waits until at most N of this thread's groups are still in flight */
template <int N>
__device__ inline void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
#endif

#endif /* MLP_CUDA_TF32_CUH */
