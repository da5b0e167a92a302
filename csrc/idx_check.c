/* idx_check.c - runs idx_read on one file and prints what it found, or its
 * error; the tests hold it to the Python reader on the same files. */
#include <stdio.h>

#include "idx.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mlp_idx_check FILE\n");
        return 2;
    }
    idx_array a;
    char err[4352];
    if (idx_read(argv[1], &a, err, (int)sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("ndim %d n %lld row %lld\n", a.ndim, (long long)a.n, (long long)a.row);
    idx_free(&a);
    return 0;
}
