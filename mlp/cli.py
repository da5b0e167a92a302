"""The command line: `mlp train`, `mlp evaluate`, `mlp predict`.

Errors print one line (`mlp: error: ...`) and exit non-zero, without a
traceback.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import __version__, datasets
from ._backends import DEVICES
from ._interrupt import raise_interrupt
from ._types import Array
from .model import Model, load
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .training import ACTIVATIONS, train

BACKEND_NAMES = {"cpu": "the C core", "cuda": "the CUDA core", "numpy": "the numpy reference"}
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, MemoryError, KeyError)


class CLIError(Exception):
    """A mistake of the user's, reported in one line."""


def _hidden(text: str) -> int | tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,N,...; got {text!r}") from None
    if min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths[0] if len(widths) == 1 else widths


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _number(minimum: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not np.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B1,B2; got {text!r}") from None
    return (b1, b2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlp", description="Train and use multilayer perceptrons.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataset", choices=sorted(datasets.DATASETS), default="mnist",
                       help="the data set")
        q.add_argument("--data-root", metavar="DIR",
                       help="folder with the data set's IDX files (default: MLP_DATA, the "
                            "cache, system folders, then a download)")
        q.add_argument("--device", choices=DEVICES, default="auto",
                       help="where to run: the GPU when there is one (auto), the C core (cpu), "
                            "the GPU (cuda), the numpy reference")

    # every help line shows its default
    defaults = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser("train", help="train on a data set and report test accuracy",
                       formatter_class=defaults)
    data_args(t)
    t.add_argument("--epochs", type=_positive_int, default=10, help="passes over the data")
    t.add_argument("--batch-size", type=_positive_int, default=64, help="rows per step")
    t.add_argument("--lr", type=_number(0, strict=True), default=None,
                   help="learning rate (default: 0.1 for sgd, 0.001 for adam and adamw)")
    t.add_argument("--hidden", type=_hidden, default=256, metavar="N[,N...]",
                   help="hidden layer widths")
    t.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="between the layers")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="PyTorch's rules for each")
    t.add_argument("--momentum", type=_number(0, strict=False), default=0.0, help="SGD's momentum")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    t.add_argument("--weight-decay", type=_number(0, strict=False), default=0.0,
                   help="L2 weight decay (decoupled for adamw)")
    t.add_argument("--betas", type=_betas, default=(0.9, 0.999), metavar="B1,B2",
                   help="Adam's betas")
    t.add_argument("--eps", type=_number(0, strict=True), default=1e-8, help="Adam's eps")
    t.add_argument("--lr-schedule", choices=tuple(SCHEDULES), default="constant",
                   help="the learning rate of each epoch")
    t.add_argument("--early-stopping", action="store_true",
                   help="hold out --validation-fraction of the training rows and stop when "
                        "their loss stops improving (the best epoch's weights are kept)")
    t.add_argument("--validation-fraction", type=_number(0, strict=True), default=0.1,
                   help="training rows held out by --early-stopping")
    t.add_argument("--n-iter-no-change", type=_positive_int, default=10,
                   help="epochs without improvement before early stopping stops")
    t.add_argument("--tol", type=_number(0, strict=False), default=1e-4,
                   help="the improvement that counts, for early stopping and adaptive rates")
    t.add_argument("--init", metavar="MODEL.npz",
                   help="continue training a saved model (its weights and optimizer state)")
    t.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    t.add_argument("--out", metavar="MODEL.npz", help="save the trained model here")
    t.add_argument("--plot", metavar="FILE.png",
                   help="training curves and the test confusion matrix (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="loss, accuracy and per-class accuracy on the test set",
                       formatter_class=defaults)
    e.add_argument("model", help="a model saved by mlp train --out")
    data_args(e)

    r = sub.add_parser("predict", help="predicted labels for images in an IDX or .npy file",
                       formatter_class=defaults)
    r.add_argument("model", help="a model saved by mlp train --out")
    r.add_argument("file", help="images: an IDX file (raw or gzip) or a .npy array")
    r.add_argument("--device", choices=DEVICES, default="auto", help="where to run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}[args.command](args)
    except BrokenPipeError:  # `mlp predict ... | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("mlp: interrupted", file=sys.stderr)
        return 130
    except (CLIError, *USER_ERRORS) as exc:  # DatasetError is a RuntimeError
        return _fail(exc)
    return 0


def _fail(exc: BaseException) -> int:
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename:
        message = f"no such file: {exc.filename}"
    first, _, rest = message.partition("\n")
    print(f"mlp: error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)
    return 1


# ---- train ---------------------------------------------------------------

class EpochBar:
    """A progress bar over the rows of each epoch: tqdm when installed, else
    a plain counter on stderr."""

    def __init__(self, epochs: int, enabled: bool = True) -> None:
        self.epochs, self.enabled = epochs, enabled
        self.bar: Any = None
        self.epoch: int | None = None
        self.done = 0
        self.tqdm: Any
        try:
            from tqdm import tqdm
            self.tqdm = tqdm
        except ImportError as exc:
            raise_interrupt(exc)
            self.tqdm = None

    def __call__(self, epoch: int, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.epoch != epoch:
            self.close()
            self.epoch, self.done = epoch, 0
            if self.tqdm is not None:
                self.bar = self.tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}",
                                     unit="img", unit_scale=True, leave=False, file=sys.stderr)
        if self.bar is not None:
            self.bar.update(done - self.done)
        else:
            print(f"\repoch {epoch}/{self.epochs}: {100 * done // total:3d}%", end="",
                  file=sys.stderr, flush=True)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.epoch is not None and self.tqdm is None:
            print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)


def _require_matplotlib() -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise_interrupt(exc)
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")


def cmd_train(args: argparse.Namespace) -> None:
    if args.plot:
        _require_matplotlib()
    if args.out:
        _check_writable(args.out, "--out")
    if args.plot:
        _check_writable(args.plot, "--plot")
    X, y = datasets.load(args.dataset, "train", args.data_root)
    Xt, yt = datasets.load(args.dataset, "test", args.data_root)
    init = load(args.init, device=args.device) if args.init else None
    bar = EpochBar(args.epochs, enabled=not args.quiet)
    # early stopping watches held-out training rows, never the test set
    held_out = "val" if args.early_stopping else "test"

    def on_epoch(epoch: int, history: dict[str, Any]) -> None:
        bar.close()
        sec = history["seconds"][-1]
        print(f"epoch {epoch:3d}/{args.epochs}  loss {history['loss'][-1]:.4f}  "
              f"train acc {history['accuracy'][-1]:.4f}  "
              f"{held_out} acc {history['val_accuracy'][-1]:.4f}  {sec:6.2f} s  "
              f"{len(X) / sec:,.0f} samples/s", flush=True)

    start = time.perf_counter()
    model = train(X, y, hidden=args.hidden, activation=args.activation, epochs=args.epochs,
                  batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                  momentum=args.momentum, nesterov=args.nesterov,
                  weight_decay=args.weight_decay, betas=args.betas, eps=args.eps,
                  lr_schedule=args.lr_schedule, early_stopping=args.early_stopping,
                  validation_fraction=args.validation_fraction,
                  n_iter_no_change=args.n_iter_no_change, tol=args.tol, init=init,
                  seed=args.seed, device=args.device,
                  validation_data=None if args.early_stopping else (Xt, yt),
                  on_progress=bar, on_epoch=on_epoch)
    h = model.history
    widths = "-".join(map(str, model.sizes))
    stopped = f" (stopped: {h['stop_reason']})" if h.get("stop_reason") else ""
    print(f"trained {widths} on {args.dataset} with device '{model.device}' "
          f"({BACKEND_NAMES[model.device]}): test accuracy {100 * model.score(Xt, yt):.2f}% "
          f"after {len(h['loss'])} epochs in {time.perf_counter() - start:.1f} s{stopped}")
    if args.out:
        if not all(np.isfinite(p).all() for p in model.params.values()):
            raise CLIError(f"not saving {args.out}: the model's parameters are not all finite")
        model.save(args.out)
        print(f"saved {args.out}")
    if args.plot:
        _plot(model, Xt, yt, args.plot, args.dataset)
        print(f"plotted {args.plot}")


def _check_writable(path: str, flag: str) -> None:
    folder = pathlib.Path(path).resolve().parent
    if not folder.is_dir():
        raise CLIError(f"{flag}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{flag}: folder {folder} is not writable")


def _confusion(y_true: Array, y_pred: Array, classes: Array) -> Array:
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[index[t], index[p]] += 1
    return m


def _plot(model: Model, Xt: Array, yt: Array, path: str, title: str) -> None:
    import matplotlib.pyplot as plt
    h = model.history
    epochs = np.arange(1, len(h["loss"]) + 1)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.5))
    a1.plot(epochs, h["loss"], "o-", label="train")
    a1.plot(epochs, h["val_loss"], "o-", label="test")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    a1.legend()
    a2.plot(epochs, h["accuracy"], "o-", label="train")
    a2.plot(epochs, h["val_accuracy"], "o-", label="test")
    a2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    a2.legend()
    from matplotlib.ticker import MaxNLocator
    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    classes = model._labels()
    cm = _confusion(yt, model.predict(Xt), classes)
    a3.imshow(cm, cmap="Blues")
    a3.set(xlabel="predicted", ylabel="true", title="test confusion matrix",
           xticks=range(len(cm)), yticks=range(len(cm)),
           xticklabels=classes, yticklabels=classes)
    for i in range(len(cm)):
        for j in range(len(cm)):
            a3.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.suptitle(f"{title}: {'-'.join(map(str, model.sizes))} on {model.device}")
    fig.tight_layout()
    folder = pathlib.Path(path).resolve().parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mlp-plot-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


# ---- evaluate and predict --------------------------------------------------

def _load_model(path: str, device: str) -> Model:
    if not pathlib.Path(path).is_file():
        raise CLIError(f"no such model file: {path}")
    return load(path, device=device)


def cmd_evaluate(args: argparse.Namespace) -> None:
    model = _load_model(args.model, args.device)
    X, y = datasets.load(args.dataset, "test", args.data_root)
    if X.shape[1] != model.sizes[0]:
        raise CLIError(f"the model takes {model.sizes[0]} features, {args.dataset} images have "
                       f"{X.shape[1]}")
    if model.classes_ is None:
        raise CLIError(f"{args.model} is a regression model: mlp evaluate takes a classifier")
    classes = model.classes_
    known = np.isin(y, classes)
    if not known.all():
        raise CLIError(f"{args.dataset} has labels the model was not trained on: "
                       f"{sorted(set(y[~known].tolist()))[:5]}")
    result = model.evaluate(X, y)
    pred = model.predict(X)
    print(f"{args.dataset} test set, {len(X)} images, device '{model.device}'")
    print(f"loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}")
    print("class  accuracy  count")
    for c in classes:
        rows = y == c
        if rows.any():
            print(f"{str(c):>5}  {np.mean(pred[rows] == c):8.4f}  {int(rows.sum()):5d}")


def _read_images(path: str) -> Array:
    p = pathlib.Path(path)
    if not p.is_file():
        raise CLIError(f"no such file: {path}")
    if p.suffix == ".npy":
        try:
            X = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"{path}: not a numpy array file ({exc})") from None
    else:
        X = datasets.read_idx(p)
    if X.ndim == 1:
        X = X[None, :]
    rows: Array = X.reshape(len(X), -1)
    return rows


def cmd_predict(args: argparse.Namespace) -> None:
    model = _load_model(args.model, args.device)
    X = _read_images(args.file)
    if X.shape[1] != model.sizes[0]:
        raise CLIError(f"{args.file} holds images of {X.shape[1]} values, the model was "
                       f"trained on {model.sizes[0]}")
    for label in model.predict(X):
        print(label)


if __name__ == "__main__":
    sys.exit(main())
