"""mlp.load checks a model file before it uses anything in it, and before it
reads anything large: a member's declared shape and type against the layer
sizes, the bytes the archive says it holds, finite parameters, sorted and
unique classes."""

import io
import pathlib
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import mlp

from conftest import make_problem


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, y = make_problem(np.random.default_rng(0), 40, 4, 3)
    path = tmp_path_factory.mktemp("m") / "m.npz"
    mlp.train(X, y, hidden=3, epochs=1).save(path)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def write(path, fields, raw_members=None):
    """An .npz of fields, with some members replaced by raw bytes."""
    buf = io.BytesIO()
    np.savez(buf, **fields)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            key = name[:-4]
            data = (raw_members or {}).get(key, src.read(name))
            dst.writestr(name, data)


def npy_header(shape, descr="<f4"):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


@pytest.mark.parametrize("change,match", [
    (dict(params=lambda p: p.astype(np.float64)), r"params is <f8 \(float64\), expected <f4"),
    (dict(params=lambda p: p.astype(">f4")), r"params is >f4 .* little-endian float32"),
    (dict(params=lambda p: np.where(np.arange(len(p)) == 3, np.nan, p).astype(np.float32)),
     "the parameters are not all finite"),
    (dict(sizes=lambda s: s.astype(np.float64) + 0.5), "sizes must be at least 2 integers"),
    (dict(classes=lambda c: c[::-1].copy()), "the classes are not sorted and unique"),
    (dict(classes=lambda c: np.array([0, 0, 1])), "the classes are not sorted and unique"),
    (dict(format_version=lambda v: np.array(99)), "format version 99 is newer"),
])
def test_a_wrong_member_gets_a_message_that_says_what(saved, tmp_path, change, match):
    fields = dict(saved)
    for key, fn in change.items():
        fields[key] = fn(fields[key])
    path = tmp_path / "bad.npz"
    write(path, fields)
    with pytest.raises(ValueError, match=match):
        mlp.load(path)


def test_a_member_that_is_not_an_npy_array(saved, tmp_path):
    """AttributeError / TypeError escaped before."""
    path = tmp_path / "bad.npz"
    write(path, saved, {"params": b"not an array at all"})
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(path)
    write(path, saved, {"history": npy_header((), "|O") + b"\x80\x04N."})
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(path)


def test_a_zip_bomb_is_refused_before_it_is_decompressed(saved, tmp_path):
    """A params member declaring (2^30,) float32 of deflated zeros: 4 GiB
    were read before the shapes were checked."""
    path = tmp_path / "bomb.npz"
    zeros = bytes(1 << 24)  # 16 MiB of its 4 GiB: enough to show nothing is read
    write(path, saved, {"params": npy_header((2 ** 30,)) + zeros})
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"params has shape \(1073741824,\)"):
        mlp.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 4 << 20
    # the right shape, but the archive holds fewer bytes than it declares
    n = len(saved["params"])
    write(path, saved, {"params": npy_header((n,)) + bytes(8)})
    with pytest.raises(ValueError, match="declares .* bytes of data, but the archive holds"):
        mlp.load(path)


def test_save_takes_bytes_and_path_like_paths(tmp_path):
    X, y = make_problem(np.random.default_rng(1), 30, 3, 2)
    m = mlp.train(X, y, hidden=2, epochs=1)
    target = tmp_path / "bytes.npz"
    m.save(bytes(target))
    assert (mlp.load(bytes(target)).predict(X) == m.predict(X)).all()


FUZZ_FINDINGS = pathlib.Path(__file__).parent / "data" / "fuzz"


@pytest.mark.parametrize("path", sorted(FUZZ_FINDINGS.glob("load-*")), ids=lambda p: p.name)
def test_what_the_fuzzer_found_is_a_value_error(path):
    """Inputs that fuzz/fuzz_load.py found escaping as other exceptions (a zip
    of version 21.0 raised NotImplementedError from zipfile)."""
    with pytest.raises(ValueError, match="is not a saved mlp model"):
        mlp.load(path)
