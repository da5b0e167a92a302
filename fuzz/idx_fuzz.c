/* idx_fuzz.c - libFuzzer harness of the C IDX reader (csrc/idx.c): any bytes
 * are parsed without a crash, an overflow or a read out of bounds (built with
 * AddressSanitizer and UndefinedBehaviorSanitizer by fuzz/run.sh), and what
 * it accepts keeps the rules of csrc/idx.h. */
#include <stddef.h>
#include <stdint.h>

#include "idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    idx_array a;
    size_t offset = 0;
    char err[512];
    if (idx_parse(data, size, "input", &a, &offset, err, (int)sizeof err) != 0) return 0;
    const uint64_t count = (uint64_t)a.n * (uint64_t)a.row;
    if (a.ndim < 1 || a.ndim > 4 || a.n < 0 || a.row < 0 || count > (uint64_t)IDX_MAX_ELEMENTS ||
        offset != 4 + 4 * (size_t)a.ndim || offset + count != size)
        __builtin_trap(); /* accepted something the rules refuse */
    uint64_t sum = 0; /* every element is readable */
    for (uint64_t i = 0; i < count; i++) sum += data[offset + i];
    return sum == 0xFFFFFFFFFFFFFFFFull;
}
