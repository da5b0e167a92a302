/*
 * pointwise.h - every piece of pointwise math of the network, written once.
 *
 * Each activation's forward and backward, each loss's value and gradient,
 * and each optimizer's update of one parameter. The C core (plain ops and
 * fast paths) and the CUDA core (every kernel) call these functions; no other
 * file spells out a ReLU, a softmax, a loss or an optimizer rule. Compiled as
 * host code by the C compiler and as __host__ __device__ code by nvcc.
 *
 * The numpy reference (mlp/reference.py) writes the same formulas in numpy,
 * and the tests hold the cores to it.
 */
#ifndef MLP_POINTWISE_H
#define MLP_POINTWISE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mlp.h"

#ifdef __CUDACC__
#define MLP_FN __host__ __device__ static inline
#else
#define MLP_FN static inline
#endif

/* ---- division and square root, correctly rounded ------------------------
 * mlp_div(a, b) is a / b and mlp_sqrt(v) is sqrtf(v), rounded as IEEE
 * float32 rounds them, on the host and on the GPU alike. On the GPU, nvcc's
 * own correctly rounded division and square root call a subroutine for
 * rare inputs, and in the one-kernel epochs (255 registers a thread) those
 * calls cost spills and microseconds a step (benchmarks/RESULTS.md). Here
 * nothing is called and nothing branches: the quotient or root is computed
 * in double precision to within about 2^-53 of itself and rounded once to
 * float. That is the correctly rounded float result: double carries more
 * than 2 x 24 + 2 bits, and no quotient or square root of floats lies that
 * close to a float rounding boundary without lying on it, which none does.
 * Zeros, infinities and NaNs (a zero dividend too, for the sign of the
 * zero) take the approximate instructions instead, which are exact on them
 * (a subnormal divisor's reciprocal overflows, but there only its sign
 * counts).
 * mlp_check_rounding (mlp.h) compares both with the compiler's IEEE
 * operations, bit for bit, on each core. */
#if defined(__CUDA_ARCH__)
__device__ static inline float mlp_div_wide(float a, float b) { /* finite, b != 0 */
    const double A = a, B = b; /* exact, float subnormals included */
    double r;
    asm("rcp.approx.ftz.f64 %0, %1;" : "=d"(r) : "d"(B));
    r = fma(r, fma(-B, r, 1.0), r); /* Newton: the error squared */
    const double q = A * r;
    return (float)fma(fma(-B, q, A), r, q); /* the quotient corrected once */
}
__device__ static inline float mlp_sqrt_wide(float v) { /* finite, > 0 */
    const double V = v;
    double y;
    asm("rsqrt.approx.ftz.f64 %0, %1;" : "=d"(y) : "d"(V));
    y = y * fma(-0.5 * V * y, y, 1.5); /* Newton: the error squared */
    const double s = V * y;
    return (float)fma(fma(-s, s, V), 0.5 * y, s); /* the root corrected once */
}
#endif

MLP_FN float mlp_div(float a, float b) {
#if defined(__CUDA_ARCH__)
    float r;
    asm("rcp.approx.f32 %0, %1;" : "=f"(r) : "f"(b));
    if (b != 0.0f && fabsf(b) < 1.17549435e-38f) r = copysignf(1.0f, b); /* 1/b overflows */
    const bool wide = a != 0.0f && isfinite(a) && isfinite(b) && b != 0.0f;
    const float q = mlp_div_wide(wide ? a : 1.0f, wide ? b : 1.0f);
    return wide ? q : a * r; /* a is 0, inf or nan here, or b is 0, inf or nan */
#else
    return a / b;
#endif
}

MLP_FN float mlp_sqrt(float v) {
#if defined(__CUDA_ARCH__)
    float r;
    asm("sqrt.approx.f32 %0, %1;" : "=f"(r) : "f"(v));
    const bool wide = v > 0.0f && isfinite(v);
    const float s = mlp_sqrt_wide(wide ? v : 1.0f);
    return wide ? s : r;
#else
    return sqrtf(v);
#endif
}

/* Input i of the rounding check (mlp_check_rounding) under seed: a
 * dividend and a divisor (the dividend is also a radicand). A quarter are
 * random bit patterns (every class of float), a quarter random significands
 * with exponents near 1, a quarter tiny or subnormal dividends over
 * moderate divisors (Adam's decayed moments), a quarter specials. */
MLP_FN void mlp_rounding_case(uint64_t seed, int64_t i, float *a, float *b) {
    uint64_t h[2];
    for (int k = 0; k < 2; k++) { /* splitmix64 of (seed, i, k) */
        uint64_t x = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i * 2 + (uint64_t)k;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        h[k] = x ^ (x >> 31);
    }
    uint32_t x = (uint32_t)h[0], y = (uint32_t)h[1];
    const uint32_t specials[8] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,
                                  0x7fc00000u, 0x00000001u, 0x007fffffu, 0x7f7fffffu};
    switch ((h[0] >> 32) % 4) {
    case 1: /* exponents 2^-8 .. 2^7 */
        x = (x & 0x807fffffu) | ((119u + (uint32_t)(h[0] >> 40) % 16u) << 23);
        y = (y & 0x807fffffu) | ((119u + (uint32_t)(h[1] >> 40) % 16u) << 23);
        break;
    case 2: /* dividends below 2^-100, divisors 2^-27 .. 2^12 */
        x &= 0x8cffffffu;
        y = (y & 0x807fffffu) | ((100u + (uint32_t)(h[1] >> 40) % 40u) << 23);
        break;
    case 3: /* a special on either side */
        if ((h[1] >> 40) & 1u)
            x = specials[(h[0] >> 40) % 8u] | (x & 0x80000000u);
        else
            y = specials[(h[1] >> 48) % 8u] | (y & 0x80000000u);
        break;
    default: break;
    }
    uint32_t bits[2] = {x, y};
    float f[2];
    memcpy(f, bits, sizeof f);
    *a = f[0];
    *b = f[1];
}

/* Whether the rounding check counts x and y as the same result: equal in
 * every bit, or both NaN. */
MLP_FN int mlp_same_result(float x, float y) {
    uint32_t bits[2];
    const float f[2] = {x, y};
    memcpy(bits, f, sizeof bits);
    return bits[0] == bits[1] || (x != x && y != y);
}

/* ---- activations --------------------------------------------------------
 * y = f(x); the backward pass gets both the input x and the output y of the
 * activation, so each derivative uses whichever is cheaper and exact. */

MLP_FN float mlp_logistic(float x) {
    /* never exp of a large positive number */
    if (x >= 0.0f) return mlp_div(1.0f, 1.0f + expf(-x));
    const float e = expf(x);
    return mlp_div(e, 1.0f + e);
}

/* Whether ReLU lets the gradient through, from its output y: the fused
 * kernels skip the work of a blocked unit. */
MLP_FN int mlp_relu_passes(float y) { return y > 0.0f; }

/* GELU(x) = x Phi(x), Phi the standard normal distribution function; its
 * slope Phi(x) + x phi(x) from x and Phi(x), so that a kernel that has
 * Phi from the forward can keep the slope for the backward (fused_rows.cu)
 * instead of computing erf again: the same expressions either way. */
MLP_FN float mlp_gelu_cdf(float x) { return 0.5f * (1.0f + erff(x * 0.70710678118654752f)); }
MLP_FN float mlp_gelu_slope(float x, float cdf) {
    return cdf + x * (0.39894228040143268f * expf(-0.5f * x * x));
}

MLP_FN float mlp_activation_forward(mlp_activation act, float x) {
    switch (act) {
    case MLP_RELU: return x > 0.0f ? x : 0.0f;
    case MLP_TANH: return tanhf(x);
    case MLP_LOGISTIC: return mlp_logistic(x);
    case MLP_GELU: return x * mlp_gelu_cdf(x);
    case MLP_IDENTITY: default: return x;
    }
}

/* dL/dx from dL/dy = dy, for y = f(x) */
MLP_FN float mlp_activation_backward(mlp_activation act, float x, float y, float dy) {
    switch (act) {
    case MLP_RELU: return mlp_relu_passes(y) ? dy : 0.0f;
    case MLP_TANH: return dy * (1.0f - y * y);
    case MLP_LOGISTIC: return dy * (y * (1.0f - y));
    case MLP_GELU: return dy * mlp_gelu_slope(x, mlp_gelu_cdf(x));
    case MLP_IDENTITY: default: return dy;
    }
}

/* Whether the backward pass needs the activation's input x (not only y).
 * fused_rows.cu keeps GELU's slope instead of its input: an activation added
 * here needs its own slope kept there. */
MLP_FN int mlp_activation_needs_input(mlp_activation act) { return act == MLP_GELU; }

/* ---- losses --------------------------------------------------------------
 * The loss of a row is summed over its outputs; a batch's loss is the mean
 * over its rows, weighted by the sample weights when there are any. The
 * gradient with respect to each output z is given for a row whose weight in
 * the batch mean is `scale` (1 / rows, or w / sum of weights).
 *
 * Softmax cross-entropy is a function of the whole row; it comes in three
 * pieces so that a warp of the CUDA core and a loop of the C core assemble
 * it alike: the row's max zmax and sum = sum_c exp(z_c - zmax) are taken
 * first (any order), then each probability and gradient. */

/* The first index of a row's largest value: the predicted class, and a
 * hit where it is the label. */
MLP_FN int64_t mlp_argmax(const float *z, int64_t C) {
    int64_t best = 0;
    for (int64_t c = 1; c < C; c++)
        if (z[c] > z[best]) best = c;
    return best;
}

MLP_FN float mlp_softmax_term(float z, float zmax) { return expf(z - zmax); }

MLP_FN float mlp_softmax_prob(float z, float zmax, float inv_sum) {
    return expf(z - zmax) * inv_sum;
}

/* -log softmax(z)[label] */
MLP_FN float mlp_cross_entropy_loss(float zmax, float sum, float z_label) {
    return logf(sum) - (z_label - zmax);
}

/* d loss / d z_c for probability p of class c */
MLP_FN float mlp_cross_entropy_grad(float p, int is_label, float scale) {
    return (p - (is_label ? 1.0f : 0.0f)) * scale;
}

/* squared error with an identity output: 0.5 (z - t)^2 per output */
MLP_FN float mlp_squared_error_loss(float z, float t) {
    const float r = z - t;
    return 0.5f * r * r;
}

MLP_FN float mlp_squared_error_grad(float z, float t, float scale) { return (z - t) * scale; }

/* binary cross-entropy with a logistic output, from the logit z:
 * -t log s(z) - (1 - t) log(1 - s(z)), written to stay finite for large |z| */
MLP_FN float mlp_binary_cross_entropy_loss(float z, float t) {
    return (z > 0.0f ? z : 0.0f) - z * t + log1pf(expf(-fabsf(z)));
}

MLP_FN float mlp_binary_cross_entropy_grad(float z, float t, float scale) {
    return (mlp_logistic(z) - t) * scale;
}

/* Whether a logistic output's label is right (a multi-label row counts as a
 * hit when every one is): the logit's side of 0 against the target's side
 * of 0.5 */
MLP_FN int mlp_binary_hit(float z, float t) { return (z > 0.0f) == (t > 0.5f); }

/* Poisson deviance with an exp output (log link), halved as scikit-learn
 * reports it: exp(z) - t z + t log t - t (the last two make a perfect fit
 * cost 0; they do not depend on z) */
MLP_FN float mlp_poisson_loss(float z, float t) {
    return expf(z) - t * z + (t > 0.0f ? t * logf(t) - t : 0.0f);
}

MLP_FN float mlp_poisson_grad(float z, float t, float scale) { return (expf(z) - t) * scale; }

/* The loss of one output and its gradient, for the element-wise losses. */
MLP_FN float mlp_elementwise_loss(mlp_loss loss, float z, float t) {
    switch (loss) {
    case MLP_SQUARED_ERROR: return mlp_squared_error_loss(z, t);
    case MLP_POISSON: return mlp_poisson_loss(z, t);
    default: return mlp_binary_cross_entropy_loss(z, t);
    }
}

MLP_FN float mlp_elementwise_grad(mlp_loss loss, float z, float t, float scale) {
    switch (loss) {
    case MLP_SQUARED_ERROR: return mlp_squared_error_grad(z, t, scale);
    case MLP_POISSON: return mlp_poisson_grad(z, t, scale);
    default: return mlp_binary_cross_entropy_grad(z, t, scale);
    }
}

/* What the model outputs for prediction from the last layer's z. */
MLP_FN float mlp_output(mlp_loss loss, float z) {
    switch (loss) {
    case MLP_BINARY_CROSS_ENTROPY: return mlp_logistic(z);
    case MLP_POISSON: return expf(z);
    default: return z;
    }
}

/* The factor of the data loss that a convention reports: scikit-learn
 * reports squared error as 0.5 x the mean over the outputs too (its
 * gradient stays that of the sum). */
MLP_FN float mlp_reported_loss_scale(mlp_convention convention, mlp_loss loss, int64_t outputs) {
    return convention == MLP_SKLEARN && loss == MLP_SQUARED_ERROR ? 1.0f / (float)outputs : 1.0f;
}

/* ---- optimizers ----------------------------------------------------------
 * mlp_step holds one step's constants, worked out once per step from the
 * optimizer settings and the step count (mlp_step_init); mlp_update then
 * updates one parameter p with gradient g (the gradient of the batch's data
 * loss) and its state m (velocity or first moment) and v (second moment). */

typedef struct mlp_step {
    int adam, sklearn, nesterov;
    float lr, momentum;
    float l2_weight, l2_bias; /* added to the gradient: l2 * p */
    float decay;              /* decoupled weight decay: p *= decay first */
    float beta1, beta2, eps;
    float step_size;  /* Adam: lr / (1 - beta1^t) (PyTorch), or lr sqrt(1 - beta2^t) / (1 - beta1^t) */
    float bc2_sqrt;   /* Adam, PyTorch: sqrt(1 - beta2^t) */
} mlp_step;

/* step: the number of this step, from 1; batch_weight: the rows (or the sum
 * of the sample weights) of the batch, which scikit-learn's L2 term divides by */
MLP_FN mlp_step mlp_step_init(const mlp_optimizer *o, int64_t step, double batch_weight) {
    mlp_step s;
    s.adam = o->kind == MLP_ADAM;
    s.sklearn = o->convention == MLP_SKLEARN;
    s.nesterov = o->nesterov != 0;
    s.lr = o->lr;
    s.momentum = o->momentum;
    s.beta1 = o->beta1;
    s.beta2 = o->beta2;
    s.eps = o->eps;
    s.decay = 1.0f;
    if (s.sklearn) { /* alpha: L2 on the weights only, over the batch */
        s.l2_weight = batch_weight > 0.0 ? (float)((double)o->weight_decay / batch_weight) : 0.0f;
        s.l2_bias = 0.0f;
    } else if (s.adam && o->decoupled) { /* AdamW */
        s.l2_weight = s.l2_bias = 0.0f;
        s.decay = 1.0f - o->lr * o->weight_decay;
    } else {
        s.l2_weight = s.l2_bias = o->weight_decay;
    }
    const double bc1 = 1.0 - pow((double)o->beta1, (double)step);
    const double bc2 = 1.0 - pow((double)o->beta2, (double)step);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.step_size = s.sklearn ? (float)((double)o->lr * sqrt(bc2) / bc1) : (float)((double)o->lr / bc1);
    return s;
}

/* Whether an SGD step keeps no state and adds nothing to the gradient, so
 * that it is p -= lr * g (the fast paths fuse it into the weight gradient). */
MLP_FN int mlp_step_is_plain_sgd(const mlp_step *s) {
    return !s->adam && s->momentum == 0.0f && s->l2_weight == 0.0f && s->l2_bias == 0.0f;
}

/* The gradient with the L2 term of the step's convention added. */
MLP_FN float mlp_l2_grad(const mlp_step *s, float p, float g, int is_bias) {
    return g + (is_bias ? s->l2_bias : s->l2_weight) * p;
}

/* The three rules, each of one parameter p with gradient g (L2 term in):
 * PyTorch's SGD (momentum, nesterov; m is the momentum buffer) */
MLP_FN float mlp_torch_sgd(const mlp_step *s, float p, float g, float *m) {
    if (s->momentum != 0.0f) {
        *m = s->momentum * *m + g;
        g = s->nesterov ? g + s->momentum * *m : *m;
    }
    return p - s->lr * g;
}

/* scikit-learn's SGD: the velocity m holds lr */
MLP_FN float mlp_sklearn_sgd(const mlp_step *s, float p, float g, float *m) {
    *m = s->momentum * *m - s->lr * g;
    return s->nesterov ? p + (s->momentum * *m - s->lr * g) : p + *m;
}

/* Adam (PyTorch's, AdamW with a decoupled decay, or scikit-learn's with eps
 * added after the bias correction) */
MLP_FN float mlp_adam(const mlp_step *s, float p, float g, float *m, float *v) {
    p *= s->decay;
    *m = s->beta1 * *m + (1.0f - s->beta1) * g;
    *v = s->beta2 * *v + (1.0f - s->beta2) * g * g;
    const float root = mlp_sqrt(*v);
    const float denom = s->sklearn ? root + s->eps : mlp_div(root, s->bc2_sqrt) + s->eps;
    return p - s->step_size * mlp_div(*m, denom);
}

/* The new value of p under the step's optimizer: PyTorch's SGD (momentum,
 * nesterov, weight_decay), Adam and AdamW, or scikit-learn's SGD and Adam. */
MLP_FN float mlp_update(const mlp_step *s, float p, float g, float *m, float *v, int is_bias) {
    g = mlp_l2_grad(s, p, g, is_bias);
    if (s->adam) return mlp_adam(s, p, g, m, v);
    return s->sklearn ? mlp_sklearn_sgd(s, p, g, m) : mlp_torch_sgd(s, p, g, m);
}

#endif /* MLP_POINTWISE_H */
