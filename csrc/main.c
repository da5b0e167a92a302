/*
 * main.c - the lecture's "C without dependencies" level: trains the MNIST MLP
 * with the C core and prints loss, accuracy and seconds per epoch.
 *
 *   mlp_train_c [--plain] DIR [epochs=10] [batch_size=64] [lr=0.1] [hidden=256] [seed=0]
 *
 * DIR holds the four raw (gunzipped) MNIST IDX files. --plain runs the
 * lecture's readable ops (ops.c) instead of the fast paths (fast.c).
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idx.h"
#include "mlp.h"

/* splitmix64: a small, good generator for the init and the shuffles */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }
static double rng_normal(uint64_t *s) {
    const double u = 1.0 - rng_uniform(s), v = rng_uniform(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int load(const char *dir, const char *name, idx_array *a) {
    char path[4096], err[4352];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (idx_read(path, a, err, (int)sizeof err) != 0) {
        fprintf(stderr, "mlp_train_c: %s\n", err);
        return -1;
    }
    return 0;
}

static int check(mlp_status st, const char *what) {
    if (st == MLP_OK) return 0;
    fprintf(stderr, "mlp_train_c: %s failed (%d): %s\n", what, (int)st, mlp_last_error());
    return -1;
}

int main(int argc, char **argv) {
    const int plain = argc > 1 && strcmp(argv[1], "--plain") == 0;
    if (plain) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s [--plain] DIR [epochs] [batch_size] [lr] [hidden] [seed]\n",
                argv[0]);
        return 2;
    }
    const int epochs = argc > 2 ? atoi(argv[2]) : 10;
    const int64_t batch = argc > 3 ? atoll(argv[3]) : 64;
    const float lr = argc > 4 ? (float)atof(argv[4]) : 0.1f;
    const int64_t hidden = argc > 5 ? atoll(argv[5]) : 256;
    uint64_t seed = argc > 6 ? (uint64_t)atoll(argv[6]) : 0;
    if (epochs < 1 || batch < 1 || !(lr > 0) || hidden < 1) {
        fprintf(stderr, "mlp_train_c: epochs, batch_size, lr and hidden must be positive\n");
        return 2;
    }

    idx_array xtr, ytr, xte, yte;
    if (load(argv[1], "train-images-idx3-ubyte", &xtr) || load(argv[1], "train-labels-idx1-ubyte", &ytr) ||
        load(argv[1], "t10k-images-idx3-ubyte", &xte) || load(argv[1], "t10k-labels-idx1-ubyte", &yte))
        return 1;
    if (ytr.ndim != 1 || yte.ndim != 1 || xtr.ndim < 2 || xte.ndim < 2) {
        fprintf(stderr, "mlp_train_c: labels must be 1-D and images at least 2-D IDX files\n");
        return 1;
    }
    if (xtr.n != ytr.n || xte.n != yte.n || xtr.row != xte.row) {
        fprintf(stderr, "mlp_train_c: image and label files do not match\n");
        return 1;
    }
    int32_t *ytr32 = malloc(sizeof(int32_t) * (size_t)ytr.n);
    int32_t *yte32 = malloc(sizeof(int32_t) * (size_t)yte.n);
    int64_t *order = malloc(sizeof(int64_t) * (size_t)xtr.n);
    if (!ytr32 || !yte32 || !order) {
        fprintf(stderr, "mlp_train_c: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < ytr.n; i++) ytr32[i] = ytr.data[i];
    for (int64_t i = 0; i < yte.n; i++) yte32[i] = yte.data[i];

    const int64_t sizes[3] = {xtr.row, hidden, 10};
    mlp_model *model;
    mlp_data *train, *test;
    const mlp_config config = {3, sizes, MLP_RELU, MLP_CROSS_ENTROPY, 1.0f / 255.0f};
    const mlp_targets train_y = {ytr32, NULL, 0, NULL}, test_y = {yte32, NULL, 0, NULL};
    const mlp_optimizer sgd = {MLP_SGD, MLP_TORCH, lr, 0.0f, 0, 0.0f, 0, 0.9f, 0.999f, 1e-8f};
    if (check(mlp_create(&model, &config), "create") ||
        check(mlp_data_create(&train, xtr.data, MLP_UINT8, xtr.n, xtr.row, &train_y), "train data") ||
        check(mlp_data_create(&test, xte.data, MLP_UINT8, xte.n, xte.row, &test_y), "test data"))
        return 1;

    /* He initialisation, biases zero; the same layout as mlp.h describes */
    float *params = calloc((size_t)mlp_num_params(model), sizeof(float));
    if (!params) return 1;
    int64_t off = 0;
    for (int l = 0; l < 2; l++) {
        const double std = sqrt(2.0 / (double)sizes[l]);
        for (int64_t i = 0; i < sizes[l] * sizes[l + 1]; i++) params[off + i] = (float)(std * rng_normal(&seed));
        off += sizes[l] * sizes[l + 1] + sizes[l + 1];
    }
    if (check(mlp_set_params(model, params), "set_params") ||
        check(mlp_use_plain_ops(model, plain), "use_plain_ops"))
        return 1;

    printf("MNIST %lld train, %lld test; %lld-%lld-10, batch %lld, lr %g; %s ops\n",
           (long long)xtr.n, (long long)xte.n, (long long)sizes[0], (long long)hidden,
           (long long)batch, (double)lr, mlp_kernel_set(model));
    for (int e = 1; e <= epochs; e++) {
        for (int64_t i = 0; i < xtr.n; i++) order[i] = i;
        for (int64_t i = xtr.n - 1; i > 0; i--) {
            const int64_t j = (int64_t)(rng_next(&seed) % (uint64_t)(i + 1));
            const int64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss, acc, test_loss, test_acc;
        const double t0 = now();
        if (check(mlp_train_epoch(model, train, order, xtr.n, batch, &sgd, NULL, &loss, &acc), "train"))
            return 1;
        const double seconds = now() - t0;
        if (check(mlp_evaluate(model, test, &test_loss, &test_acc), "evaluate")) return 1;
        printf("epoch %2d  loss %.4f  train acc %.4f  test acc %.4f  %.3f s\n", e, loss, acc, test_acc, seconds);
    }
    mlp_data_free(train);
    mlp_data_free(test);
    mlp_free(model);
    free(params);
    free(order);
    free(ytr32);
    free(yte32);
    idx_free(&xtr);
    idx_free(&ytr);
    idx_free(&xte);
    idx_free(&yte);
    return 0;
}
