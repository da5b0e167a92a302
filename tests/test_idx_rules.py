"""One set of rules for IDX files (csrc/idx.h), kept by the Python reader
(mlp.datasets.parse_idx) and the C reader (csrc/idx.c) alike: the same
malformed files through both, each refused with a message naming the file."""

import gzip
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from mlp.datasets import parse_idx, read_idx

ROOT = pathlib.Path(__file__).resolve().parent.parent


def header(ndim, dims, kind=8):
    return bytes([0, 0, kind, ndim]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


# (name, bytes, a phrase both readers' messages hold)
MALFORMED = [
    ("empty", b"", "truncated header"),
    ("short magic", b"\x00\x00", "truncated header"),
    ("bad magic", b"\x01\x00\x08\x01" + bytes(4), "not an IDX file"),
    ("no dimensions", b"\x00\x00\x08\x00", "not an IDX file"),
    ("five dimensions", header(5, [1] * 5) + b"\x00", "not an IDX file"),
    ("truncated header", header(3, [2, 2, 2])[:10], "truncated header"),
    ("truncated data", header(1, [10]) + bytes(9), "truncated"),
    ("trailing bytes", header(1, [3]) + bytes(4), "longer than its header says"),
    # (2^31, 2^17, 2^16) wrapped a signed int64 product to 0 before
    ("overflowing product", header(3, [2 ** 31, 2 ** 17, 2 ** 16]), "more than 2^40"),
    ("huge labels, no data", header(2, [2 ** 29, 2 ** 29]), "more than 2^40"),
    ("just over 2^40", header(2, [2 ** 20 + 1, 2 ** 20]), "more than 2^40"),
]
VALID = [
    ("labels", header(1, [3]) + bytes([1, 2, 3]), (1, 3, 1)),
    ("images", header(3, [2, 2, 3]) + bytes(range(12)), (3, 2, 6)),
    ("no rows", header(3, [0, 28, 28]), (3, 0, 784)),
]


@pytest.fixture(scope="module")
def idx_check(tmp_path_factory):
    if shutil.which("cmake") is None or not (ROOT / "csrc").is_dir():
        pytest.skip("needs cmake and the source tree")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DMLP_CUDA=OFF"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "mlp_idx_check"], check=True,
                   capture_output=True)
    return build / "mlp_idx_check"


@pytest.mark.parametrize("name,raw,phrase", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_both_readers_refuse_the_same_files(name, raw, phrase, idx_check, tmp_path):
    path = tmp_path / "file-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=re.escape(phrase)) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    r = subprocess.run([str(idx_check), str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and phrase in r.stderr and str(path) in r.stderr


@pytest.mark.parametrize("name,raw,shape", VALID, ids=[v[0] for v in VALID])
def test_both_readers_take_the_same_valid_files(name, raw, shape, idx_check, tmp_path):
    path = tmp_path / "file-idx"
    path.write_bytes(raw)
    ndim, n, row = shape
    array = read_idx(path)
    assert array.ndim == ndim and array.shape[0] == n
    assert int(np.prod(array.shape[1:], dtype=np.int64)) == row
    r = subprocess.run([str(idx_check), str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["ndim", str(ndim), "n", str(n), "row",
                                                      str(row)]


def test_a_corrupt_gzip_stream_is_a_value_error_naming_the_file(tmp_path):
    """A flipped byte after the gzip header made zlib.error escape before."""
    raw = bytearray(gzip.compress(header(1, [1000]) + bytes(range(250)) * 4))
    raw[20] ^= 0xFF
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_element_types_other_than_uint8():
    """The Python reader takes IDX's other element types; the C program
    needs uint8 and says so."""
    raw = header(1, [2], kind=0x0D) + np.array([1.5, -2], ">f4").tobytes()
    assert parse_idx(raw).tolist() == [1.5, -2.0]


def test_c_reader_names_other_element_types(idx_check, tmp_path):
    path = tmp_path / "floats-idx"
    path.write_bytes(header(1, [2], kind=0x0D) + bytes(8))
    r = subprocess.run([str(idx_check), str(path)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a uint8 IDX file" in r.stderr
