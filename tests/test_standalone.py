"""The standalone C program (csrc/main.c) builds without Python and trains
on raw IDX files."""

import pathlib
import shutil
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or not (ROOT / "csrc").is_dir(),
                                reason="needs cmake and the source tree")


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    build = tmp_path_factory.mktemp("build")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DMLP_CUDA=OFF"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "mlp_train_c"], check=True,
                   capture_output=True)
    exe = build / "mlp_train_c"
    assert exe.exists()
    return exe


@pytest.mark.parametrize("plain", [False, True])
def test_trains_on_idx_files(program, mnist_subset, tmp_path, plain):
    write_idx(tmp_path / "train-images-idx3-ubyte", mnist_subset["X_train"].reshape(-1, 28, 28))
    write_idx(tmp_path / "train-labels-idx1-ubyte", mnist_subset["y_train"])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", mnist_subset["X_test"].reshape(-1, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", mnist_subset["y_test"])
    argv = [str(program)] + (["--plain"] if plain else []) + [str(tmp_path), "5", "32", "0.1"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout
    assert ("; plain ops" in out) == plain
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 5
    test_acc = float(lines[-1].split("test acc")[1].split()[0])
    losses = [float(line.split("loss")[1].split()[0]) for line in lines]
    assert losses[-1] < losses[0] and test_acc > 0.85


def test_clear_errors(program, tmp_path):
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot open" in r.stderr
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b\x08\x00")
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "gunzip" in r.stderr
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 2, 2)))
    with open(tmp_path / "train-images-idx3-ubyte", "r+b") as f:
        f.truncate(30)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10))
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "truncated" in r.stderr
    for argv in ([str(program)], [str(program), "--plain"]):
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 2 and "usage" in r.stderr


def test_bad_headers_are_errors_not_crashes(program, tmp_path):
    """A header of (2^31, 2^17, 2^16) wrapped the byte count to 0 and the
    program read past its buffer (SIGSEGV); labels of 2^29 x 2^29 with no
    data read heap bytes as labels; 2-D labels were taken."""
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 2, 2)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (2**31, 2**17, 2**16)))
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "more than 2^40 elements" in r.stderr
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 2, 2)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 8, 2]) + b"".join(n.to_bytes(4, "big") for n in (2**29, 2**29)))
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "more than 2^40 elements" in r.stderr
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((10, 1)))
    r = subprocess.run([str(program), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "labels must be 1-D" in r.stderr
