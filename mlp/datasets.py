"""Data sets: a reader for IDX files (the format of MNIST and Fashion-MNIST)."""

from __future__ import annotations

import gzip
import os

import numpy as np

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw, name="IDX data"):
    """An array from the bytes of an IDX file, checking magic number,
    dimensions and length; ValueError naming `name` when anything is off."""
    if len(raw) < 4:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 8:
        raise ValueError(f"{name}: not an IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes, need {head})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"{name}: file is {kind} ({len(raw)} bytes, header implies {expected})")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="),
                                                                       copy=False)


def read_idx(path):
    """Reads an IDX file, gzip-compressed or raw."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    return parse_idx(raw, path)
