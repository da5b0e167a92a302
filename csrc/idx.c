/* idx.c - see idx.h. Format: magic 0x0000 08 NDIM (big-endian), then NDIM
 * big-endian uint32 dimensions, then the uint8 elements. */
#include "idx.h"

#include <stdio.h>
#include <stdlib.h>

static uint32_t be32(const unsigned char b[4]) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int idx_read(const char *path, idx_array *out, char *err, int err_len) {
    out->data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, (size_t)err_len, "cannot open %s", path);
        return -1;
    }
    unsigned char head[4], dim[4];
    int ok = fread(head, 1, 4, f) == 4;
    if (ok && head[0] == 0x1f && head[1] == 0x8b) {
        snprintf(err, (size_t)err_len, "%s is gzip-compressed: run gunzip on it first", path);
        fclose(f);
        return -1;
    }
    if (!ok || head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 || head[3] > 4) {
        snprintf(err, (size_t)err_len, "%s is not a uint8 IDX file", path);
        fclose(f);
        return -1;
    }
    int64_t n = 0, row = 1;
    for (int i = 0; i < head[3]; i++) {
        if (fread(dim, 1, 4, f) != 4) {
            snprintf(err, (size_t)err_len, "%s: header is truncated", path);
            fclose(f);
            return -1;
        }
        if (i == 0) n = be32(dim);
        else row *= be32(dim);
    }
    const size_t count = (size_t)(n * row);
    out->data = malloc(count ? count : 1);
    if (!out->data) {
        snprintf(err, (size_t)err_len, "out of memory reading %s", path);
        fclose(f);
        return -1;
    }
    if (fread(out->data, 1, count, f) != count) {
        snprintf(err, (size_t)err_len, "%s is truncated: expected %zu bytes of data", path, count);
        idx_free(out);
        fclose(f);
        return -1;
    }
    fclose(f);
    out->n = n;
    out->row = row;
    return 0;
}

void idx_free(idx_array *a) {
    free(a->data);
    a->data = NULL;
}
