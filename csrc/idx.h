/* idx.h - reader for the IDX files of MNIST (raw, not gzip: this program
 * links nothing but libc, so decompress the downloads with gunzip first). */
#ifndef MLP_IDX_H
#define MLP_IDX_H

#include <stdint.h>

typedef struct idx_array {
    uint8_t *data;  /* all elements, row-major */
    int64_t n;      /* first dimension */
    int64_t row;    /* product of the other dimensions (1 for labels) */
} idx_array;

/* Reads a uint8 IDX file; returns 0, or -1 with a message in err. */
int idx_read(const char *path, idx_array *out, char *err, int err_len);
void idx_free(idx_array *a);

#endif /* MLP_IDX_H */
