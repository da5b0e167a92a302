"""The cores' host buffers (csrc/common.c's mlp_alloc and its array and
zeroed forms): on a 64-byte boundary whatever the heap's state, zeroed
where asked, and NULL instead of a wrapped-around size. Compiled with the C compiler, so it
runs without building the package."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

pytestmark = pytest.mark.skipif(CC is None or not (CSRC / "common.c").is_file(),
                                reason="needs a C compiler and the source tree")

# allocates buffers of many sizes between odd-sized mallocs that move the
# heap, and prints what it found wrong (nothing when all is well)
PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
int main(void) {
    int bad = 0;
    void *keep[600];
    for (int i = 0; i < 300; i++) {
        keep[2 * i] = malloc((size_t)(1 + 13 * i)); /* the heap, moved by an odd amount */
        const size_t bytes = (size_t)1 + (size_t)i * 4099;
        unsigned char *p = i % 2 ? mlp_alloc_zeroed(bytes, 1) : mlp_alloc(bytes);
        keep[2 * i + 1] = p;
        if (!p) { printf("NULL for %zu bytes\n", bytes); bad++; continue; }
        if ((uintptr_t)p % MLP_ALIGN) { printf("%zu bytes at %p\n", bytes, (void *)p); bad++; }
        for (size_t k = 0; i % 2 && k < bytes; k++)
            if (p[k]) { printf("byte %zu of %zu not zero\n", k, bytes); bad++; break; }
        memset(p, 0xab, bytes); /* the whole size is there to write */
    }
    for (int i = 0; i < 600; i++) free(keep[i]);
    if (mlp_alloc_zeroed(SIZE_MAX / 2 + 2, 2)) { printf("overflow not refused\n"); bad++; }
    if (mlp_alloc_zeroed(3, SIZE_MAX / 2)) { printf("overflow not refused\n"); bad++; }
    if (mlp_alloc_array(SIZE_MAX / 4 + 1, 4)) { printf("overflow not refused\n"); bad++; }
    void *zero = mlp_alloc(0);
    if (!zero || (uintptr_t)zero % MLP_ALIGN) { printf("0 bytes: %p\n", zero); bad++; }
    free(zero);
    return bad != 0;
}
"""


def test_host_buffers_are_aligned_zeroed_and_bounded(tmp_path):
    (tmp_path / "main.c").write_text(PROGRAM)
    exe = tmp_path / "alloc"
    subprocess.run([CC, "-std=gnu11", "-O1", "-pthread", f"-I{CSRC}", str(tmp_path / "main.c"),
                    str(CSRC / "common.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
