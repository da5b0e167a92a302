"""Optimizer settings: what ``mlp.train(optimizer=...)`` names, as the
struct that every core takes (csrc/mlp.h, ``mlp_optimizer``). The update
rules themselves live in csrc/pointwise.h (``mlp_update``) and, for the
numpy reference, in ``mlp.reference.update``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ._validation import check_real

OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


@dataclass(frozen=True)
class Optimizer:
    """kind "sgd" or "adam"; convention "torch" (PyTorch's rules) or
    "sklearn" (scikit-learn's; weight_decay is then its L2 alpha)."""
    kind: str = "sgd"
    convention: str = "torch"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    decoupled: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    @property
    def name(self) -> str:
        return "adamw" if self.kind == "adam" and self.decoupled else self.kind

    def with_lr(self, lr: float) -> Optimizer:
        return replace(self, lr=float(lr))

    def core_dict(self) -> dict[str, Any]:
        """The fields of mlp_optimizer, as mlp/_core.pxi and mlp.reference take them."""
        return dict(kind=self.kind, convention=self.convention, lr=self.lr,
                    momentum=self.momentum, nesterov=int(self.nesterov),
                    weight_decay=self.weight_decay, decoupled=int(self.decoupled),
                    beta1=self.beta1, beta2=self.beta2, eps=self.eps)


def make_optimizer(name: str, lr: float | None = None, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float = 0.0,
                   betas: tuple[float, float] | list[float] = (0.9, 0.999), eps: float = 1e-8,
                   convention: str = "torch") -> Optimizer:
    """Validated settings for an optimizer name of OPTIMIZERS; lr None takes
    the name's default (DEFAULT_LR)."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, "
                         f"got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else check_real(lr, "lr", positive=True)
    if lr < 1e-30:
        raise ValueError(f"lr must be at least 1e-30 (it is a float32 in the core), got {lr}")
    momentum = check_real(momentum, "momentum")
    weight_decay = check_real(weight_decay, "weight_decay")
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    if name != "sgd" and (momentum != 0 or nesterov):
        raise ValueError(f"momentum and nesterov belong to optimizer='sgd', not {name!r} "
                         "(Adam's momentum is betas[0])")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = (check_real(b, "betas") for b in betas)
    if not (beta1 < 1 and beta2 < 1):
        raise ValueError(f"betas must each be in [0, 1), got {tuple(betas)}")
    eps = check_real(eps, "eps", positive=True)
    return Optimizer(kind="sgd" if name == "sgd" else "adam", convention=convention, lr=lr,
                     momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                     decoupled=name == "adamw", beta1=beta1, beta2=beta2, eps=eps)
