/* idx.c - see idx.h for the rules. */
#include "idx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be32(const uint8_t b[4]) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int idx_parse(const uint8_t *bytes, size_t size, const char *name, idx_array *out,
              size_t *data_offset, char *err, int err_len) {
    out->data = NULL;
    if (size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        snprintf(err, (size_t)err_len, "%s is gzip-compressed: run gunzip on it first", name);
        return -1;
    }
    if (size < 4) {
        snprintf(err, (size_t)err_len, "%s: truncated header (%zu bytes)", name, size);
        return -1;
    }
    if (bytes[0] != 0 || bytes[1] != 0 || bytes[3] < 1 || bytes[3] > 4) {
        snprintf(err, (size_t)err_len, "%s: not an IDX file (magic bytes %02x%02x%02x%02x)", name,
                 bytes[0], bytes[1], bytes[2], bytes[3]);
        return -1;
    }
    if (bytes[2] != 0x08) {
        snprintf(err, (size_t)err_len, "%s is not a uint8 IDX file (element type 0x%02x)", name,
                 bytes[2]);
        return -1;
    }
    const int ndim = bytes[3];
    const size_t head = 4 + 4 * (size_t)ndim;
    if (size < head) {
        snprintf(err, (size_t)err_len, "%s: truncated header (%zu bytes, need %zu)", name, size,
                 head);
        return -1;
    }
    int64_t n = be32(bytes + 4), row = 1;
    for (int i = 1; i < ndim; i++) {
        const int64_t d = be32(bytes + 4 + 4 * i);
        if (d > 0 && row > IDX_MAX_ELEMENTS / d) {
            snprintf(err, (size_t)err_len, "%s: the dimensions multiply to more than 2^40 elements",
                     name);
            return -1;
        }
        row *= d;
    }
    if (row > 0 && n > IDX_MAX_ELEMENTS / row) {
        snprintf(err, (size_t)err_len, "%s: the dimensions multiply to more than 2^40 elements",
                 name);
        return -1;
    }
    const uint64_t count = (uint64_t)(n * row);
    if ((uint64_t)(size - head) != count) {
        snprintf(err, (size_t)err_len, "%s: file is %s (%zu bytes, header implies %llu)", name,
                 size - head < count ? "truncated" : "longer than its header says", size,
                 (unsigned long long)(head + count));
        return -1;
    }
    out->n = n;
    out->row = row;
    out->ndim = ndim;
    *data_offset = head;
    return 0;
}

int idx_read(const char *path, idx_array *out, char *err, int err_len) {
    out->data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, (size_t)err_len, "cannot open %s", path);
        return -1;
    }
    /* the whole file: its length is part of the rules */
    uint8_t *bytes = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            uint8_t *grown = realloc(bytes, cap);
            if (!grown) {
                free(bytes);
                fclose(f);
                snprintf(err, (size_t)err_len, "out of memory reading %s", path);
                return -1;
            }
            bytes = grown;
        }
        const size_t got = fread(bytes + size, 1, cap - size, f);
        size += got;
        if (got == 0) break;
    }
    const int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(bytes);
        snprintf(err, (size_t)err_len, "cannot read %s", path);
        return -1;
    }
    size_t offset = 0;
    if (idx_parse(bytes, size, path, out, &offset, err, err_len) != 0) {
        free(bytes);
        return -1;
    }
    memmove(bytes, bytes + offset, size - offset);
    out->data = bytes;
    return 0;
}

void idx_free(idx_array *a) {
    free(a->data);
    a->data = NULL;
}
