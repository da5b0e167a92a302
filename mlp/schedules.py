"""Learning-rate schedules, applied once per epoch.

Each schedule is one small class: ``lr(epoch, lr0)`` gives the learning rate
of an epoch (numbered from 1) from the initial one, and ``after_epoch(...)``
lets a schedule that watches training ("adaptive") react. ``make_schedule``
turns the names that ``mlp.train(lr_schedule=...)`` takes into these.
"""

from __future__ import annotations

import copy
import math


class Schedule:
    name = "constant"
    lr0: float
    epochs: int
    n_samples: int
    current: float

    def start(self, lr0: float, epochs: int, n_samples: int) -> None:
        """Called once before training: the initial rate, the epochs, the rows."""
        self.lr0, self.epochs, self.n_samples = lr0, epochs, n_samples
        self.current = lr0

    def lr(self, epoch: int) -> float:
        return self.current

    def after_epoch(self, epoch: int, improved: bool) -> str | None:
        """Called after each epoch with whether the watched quantity improved;
        returns a reason to stop training, or None."""
        return None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if k not in ("lr0", "epochs", "n_samples", "current"))
        return f"{type(self).__name__}({fields})"


class Constant(Schedule):
    pass


class Step(Schedule):
    """lr0 * gamma ** ((epoch - 1) // step_size) (PyTorch's StepLR)."""
    name = "step"

    def __init__(self, step_size: int | None = None, gamma: float = 0.1) -> None:
        self.step_size, self.gamma = step_size, gamma

    def lr(self, epoch: int) -> float:
        size = self.step_size or max(1, self.epochs // 3)
        return self.lr0 * self.gamma ** ((epoch - 1) // size)


class Cosine(Schedule):
    """lr0 * (1 + cos(pi * (epoch - 1) / epochs)) / 2 (PyTorch's CosineAnnealingLR
    with T_max = epochs and eta_min = 0, stepped per epoch)."""
    name = "cosine"

    def lr(self, epoch: int) -> float:
        return self.lr0 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / self.epochs))


class InvScaling(Schedule):
    """per="epoch": lr0 / epoch ** power_t (epochs from 1); per="sample"
    (scikit-learn's rule): lr0 / (t + 1) ** power_t, t the samples seen before
    the epoch (so the first epoch runs at lr0)."""
    name = "invscaling"

    def __init__(self, power_t: float = 0.5, per: str = "epoch") -> None:
        if per not in ("epoch", "sample"):
            raise ValueError(f"per must be 'epoch' or 'sample', got {per!r}")
        self.power_t, self.per = power_t, per

    def lr(self, epoch: int) -> float:
        if self.per == "epoch":
            return self.lr0 / math.pow(epoch, self.power_t)
        return self.lr0 / math.pow((epoch - 1) * self.n_samples + 1, self.power_t)


class Adaptive(Schedule):
    """Keeps lr0 while training improves; after `patience` epochs in a row
    without improvement (more than tol, judged by the caller) divides the rate
    by 5 (scikit-learn's "adaptive"), and asks to stop once it would fall
    below min_lr."""
    name = "adaptive"

    def __init__(self, patience: int = 10, factor: float = 0.2, min_lr: float = 1e-6) -> None:
        self.patience, self.factor, self.min_lr = patience, factor, min_lr

    def start(self, lr0: float, epochs: int, n_samples: int) -> None:
        super().start(lr0, epochs, n_samples)
        self.bad = 0

    def after_epoch(self, epoch: int, improved: bool) -> str | None:
        self.bad = 0 if improved else self.bad + 1
        if self.bad < self.patience:
            return None
        self.bad = 0
        if self.current <= self.min_lr:
            return f"the learning rate reached {self.current:g} without improvement"
        self.current *= self.factor
        return None


SCHEDULES: dict[str, type[Schedule]] = {"constant": Constant, "step": Step, "cosine": Cosine, "invscaling": InvScaling,
             "adaptive": Adaptive}


def make_schedule(value: str | Schedule, patience: int = 10) -> Schedule:
    """A Schedule from a name of SCHEDULES or an instance (copied)."""
    if isinstance(value, Schedule):
        return copy.deepcopy(value)
    if isinstance(value, str) and value in SCHEDULES:
        return Adaptive(patience=patience) if value == "adaptive" else SCHEDULES[value]()
    raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))} or an "
                     f"mlp.schedules.Schedule, got {value!r}")
