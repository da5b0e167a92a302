/* idx.h - reader for the IDX files of MNIST (raw, not gzip: this program
 * links nothing but libc, so decompress the downloads with gunzip first).
 *
 * The rules, kept alike by the Python reader (mlp.datasets.parse_idx):
 *   1. the magic: bytes 0 and 1 zero, byte 2 the element type (this reader
 *      takes uint8, 0x08, only), byte 3 the number of dimensions, 1 to 4;
 *   2. the header whole: 4 + 4 * ndim bytes, each dimension a big-endian
 *      uint32;
 *   3. the element count, the product of the dimensions, at most 2^40
 *      (checked as it is multiplied, so it never overflows);
 *   4. the exact length: header + count bytes, no fewer and no more.
 */
#ifndef MLP_IDX_H
#define MLP_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_MAX_ELEMENTS ((int64_t)1 << 40)

typedef struct idx_array {
    uint8_t *data;  /* all elements, row-major */
    int64_t n;      /* first dimension */
    int64_t row;    /* product of the other dimensions (1 for labels) */
    int ndim;
} idx_array;

/* Checks a file's bytes against the rules; on success fills n, row, ndim
 * and the offset of the data (out->data stays NULL). Returns 0, or -1 with
 * a message naming `name` in err. */
int idx_parse(const uint8_t *bytes, size_t size, const char *name, idx_array *out,
              size_t *data_offset, char *err, int err_len);

/* Reads a uint8 IDX file; returns 0, or -1 with a message in err. */
int idx_read(const char *path, idx_array *out, char *err, int err_len);
void idx_free(idx_array *a);

#endif /* MLP_IDX_H */
