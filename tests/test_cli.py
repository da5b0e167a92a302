"""The command line, end to end on the MNIST subset of tests/data."""

import builtins
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mlp import cli, datasets


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()


@pytest.fixture
def data_root(tmp_path, monkeypatch, mnist_subset):
    """The MNIST subset as IDX files, registered as 'mnist' (its own digests)."""
    root = tmp_path / "data"
    root.mkdir()
    arrays = {
        "train-images-idx3-ubyte": mnist_subset["X_train"].reshape(-1, 28, 28),
        "train-labels-idx1-ubyte": mnist_subset["y_train"],
        "t10k-images-idx3-ubyte": mnist_subset["X_test"].reshape(-1, 28, 28),
        "t10k-labels-idx1-ubyte": mnist_subset["y_test"],
    }
    digests = {}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (root / name).write_bytes(raw)
        digests[name] = hashlib.sha256(raw).hexdigest()
    monkeypatch.setitem(datasets.DATASETS, "mnist", dict(datasets.DATASETS["mnist"],
                                                         sha256=digests))
    return root


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_save_evaluate_predict_plot(data_root, tmp_path, capsys, mnist_subset):
    model, plot = tmp_path / "model.npz", tmp_path / "curves.png"
    code, out, err = run(capsys, "train", "--data-root", data_root, "--epochs", 3,
                         "--momentum", 0.9, "--device", "cpu", "--out", model, "--plot", plot)
    assert code == 0, err
    lines = out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 3
    for line in epochs:
        for word in ("loss", "train acc", "test acc", " s ", "samples/s"):
            assert word in line
    assert "with device 'cpu' (the C core): test accuracy" in out
    assert f"saved {model}" in out and f"plotted {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "epoch 1/3" in err  # the progress bar

    code, out, err = run(capsys, "evaluate", model, "--data-root", data_root)
    assert code == 0, err
    assert "loss" in out and "accuracy" in out
    per_class = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in per_class] == [str(c) for c in range(10)]
    assert sum(int(row[2]) for row in per_class) == 1000

    X = mnist_subset["X_test"][:25]
    np.save(tmp_path / "x.npy", X.reshape(-1, 28, 28))
    (tmp_path / "x.idx").write_bytes(idx_bytes(X.reshape(-1, 28, 28)))
    code, out_npy, err = run(capsys, "predict", model, tmp_path / "x.npy")
    assert code == 0, err
    code, out_idx, err = run(capsys, "predict", model, tmp_path / "x.idx")
    assert code == 0, err
    assert out_npy == out_idx and len(out_npy.split()) == 25
    accuracy = np.mean(np.array(out_npy.split(), dtype=int) == mnist_subset["y_test"][:25])
    assert accuracy > 0.7


def error_line(err):
    lines = err.strip().splitlines()
    assert lines[0].startswith("mlp: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_errors_are_one_line(data_root, tmp_path, capsys):
    code, _, err = run(capsys, "predict", tmp_path / "missing.npz", tmp_path / "x.npy")
    assert code == 1 and "no such model file" in error_line(err)

    (tmp_path / "junk.npz").write_bytes(b"junk")
    code, _, err = run(capsys, "evaluate", tmp_path / "junk.npz", "--data-root", data_root)
    assert code == 1 and "is not a saved mlp model" in error_line(err)

    code, _, err = run(capsys, "train", "--data-root", data_root, "--epochs", 1, "--hidden", 8,
                       "--device", "cpu", "--out", tmp_path / "small.npz", "--quiet")
    assert code == 0, err
    np.save(tmp_path / "wide.npy", np.zeros((3, 30, 30), np.uint8))
    code, _, err = run(capsys, "predict", tmp_path / "small.npz", tmp_path / "wide.npy")
    assert code == 1 and "holds images of 900 values, the model was trained on 784" in \
        error_line(err)


    code, _, err = run(capsys, "train", "--data-root", data_root, "--out",
                       tmp_path / "no" / "dir" / "m.npz")
    assert code == 1 and "--out: folder" in error_line(err)


def test_missing_data_set_lists_what_was_tried(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", [])
    monkeypatch.setitem(datasets.DATASETS["fashion-mnist"], "mirrors", [])
    code, _, err = run(capsys, "train", "--dataset", "fashion-mnist", "--data-root",
                       tmp_path / "empty")
    assert code == 1
    assert "could not find fashion-mnist file train-images-idx3-ubyte" in error_line(err)
    assert "Place the four files" in err


def test_plot_without_matplotlib_is_a_clear_error(data_root, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, out, err = run(capsys, "train", "--data-root", data_root, "--plot", tmp_path / "p.png")
    assert code == 1 and "--plot needs matplotlib: pip install matplotlib" in error_line(err)
    assert out == ""  # failed before training


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--epochs", "0"], "must be a positive integer"),
    (["train", "--lr", "-1"], "must be > 0"),
    (["train", "--momentum", "nan"], "must be >= 0"),
    (["train", "--hidden", "64,0"], "widths must be positive"),
    (["predict", "model.npz"], "the following arguments are required: file"),
])
def test_usage_errors_exit_2_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_and_console_script_share_main(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mlp", "predict", str(tmp_path / "m.npz"),
                          str(tmp_path / "x.npy")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("mlp: error: no such model file") and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "mlp", "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "train" in out.stdout and "evaluate" in out.stdout


def test_train_with_the_configurable_network_flags(data_root, tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    code, out, err = run(capsys, "train", "--data-root", data_root, "--epochs", 3,
                         "--hidden", 32, "--activation", "tanh", "--optimizer", "adam",
                         "--betas", "0.8,0.99", "--lr-schedule", "cosine", "--device", "cpu",
                         "--quiet", "--out", first)
    assert code == 0, err
    assert mlp_load(first).activation == "tanh"
    assert mlp_load(first).optimizer_state["name"] == "adam"
    code, out, err = run(capsys, "train", "--data-root", data_root, "--epochs", 30,
                         "--hidden", 32, "--activation", "tanh", "--optimizer", "adam",
                         "--init", first, "--early-stopping", "--n-iter-no-change", 1,
                         "--tol", 10, "--device", "cpu", "--quiet", "--out", second)
    assert code == 0, err
    assert "val acc" in out and "(stopped: validation loss did not improve" in out
    assert mlp_load(second).optimizer_state["steps"] > mlp_load(first).optimizer_state["steps"]
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "train", "--data-root", data_root, "--optimizer", "rmsprop")
    assert exit_info.value.code == 2 and "invalid choice: 'rmsprop'" in capsys.readouterr().err


def mlp_load(path):
    import mlp
    return mlp.load(path)


def test_train_that_diverges_saves_nothing(data_root, tmp_path, capsys):
    out = tmp_path / "model.npz"
    code, _, err = run(capsys, "train", "--data-root", data_root, "--epochs", 2, "--lr", 1e30,
                       "--device", "cpu", "--quiet", "--out", out)
    assert code == 1 and "training diverged at epoch 1" in err and "smaller lr" in err
    assert not out.exists()


def test_version_and_defaults_in_help(capsys):
    import mlp
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"mlp {mlp.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    options = [line for line in text.split("options:")[1].splitlines()
               if line.lstrip().startswith("--") and not line.lstrip().startswith("--help")]
    assert len(options) > 20
    joined = " ".join(text.split("options:")[1].split())
    for option in ("--epochs", "--lr", "--optimizer", "--activation", "--tol", "--seed"):
        assert option in joined
    assert joined.count("(default:") >= len(options) - 1  # --help has none


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import mlp
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    m = mlp.train(X, np.arange(20) % 2, hidden=2, epochs=1)
    old = os.umask(0o022)
    try:
        m.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644  # mkstemp gave 0600
