"""The PyTorch level of the lecture: the same network in ``torch.nn``, with
PyTorch's own activations, losses and optimizers, written for reading.

It is the parity oracle of the tests (tests/test_torch_parity.py): from the
same flat parameters (layout of csrc/mlp.h) and the same batches, our cores
must give the same losses and weights. PyTorch is optional: importing this
module without it raises ImportError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import reference
from ._types import Array

if TYPE_CHECKING:
    from .model import Model

Loss = Callable[[Any, Any], Any]

ACTIVATIONS: dict[str, Callable[[], Any]] = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "logistic": torch.nn.Sigmoid,
               "identity": torch.nn.Identity, "gelu": lambda: torch.nn.GELU(approximate="none")}


def build(sizes: Sequence[int], params: Array, activation: str = "relu") -> Any:
    """A torch.nn.Sequential of Linear layers with `activation` between them,
    holding the flat parameters (W stored (fan_in, fan_out), so transposed)."""
    layers: list[Any] = []
    Ws, bs = reference.layer_views(np.asarray(params, np.float32), sizes)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        linear = torch.nn.Linear(sizes[l], sizes[l + 1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(linear)
        if l + 1 < len(Ws):
            layers.append(ACTIVATIONS[activation]())
    return torch.nn.Sequential(*layers)


def flat_params(net: Any) -> Array:
    """The parameters of `build`'s network, back in the flat layout."""
    return np.concatenate([np.concatenate([m.weight.detach().numpy().T.ravel(),
                                           m.bias.detach().numpy()])
                           for m in net if isinstance(m, torch.nn.Linear)])


def loss_fn(loss: str) -> Loss:
    """Our losses in torch's terms: the batch mean over rows of the loss summed
    over a row's outputs."""
    if loss == "cross_entropy":
        return lambda z, t: torch.nn.functional.cross_entropy(z, t)
    if loss == "squared_error":  # 0.5 (z - t)^2, as nn.MSELoss(reduction="sum") / 2 / B
        return lambda z, t: torch.nn.MSELoss(reduction="sum")(z, t) / (2 * len(z))
    if loss == "poisson":  # exp(z) - t z, plus the constant t log t - t
        return lambda z, t: (torch.nn.PoissonNLLLoss(log_input=True, full=False,
                                                     reduction="sum")(z, t)
                             + (torch.special.xlogy(t, t) - t).sum()) / len(z)
    return lambda z, t: torch.nn.BCEWithLogitsLoss(reduction="sum")(z, t) / len(z)


def make_optimizer(parameters: Iterable[Any], opt: dict[str, Any]) -> Any:
    """torch.optim for one of our optimizer dicts (mlp.optimizers.Optimizer.core_dict,
    PyTorch's convention)."""
    if opt["kind"] == "sgd":
        return torch.optim.SGD(parameters, lr=opt["lr"], momentum=opt["momentum"],
                               nesterov=bool(opt["nesterov"]), weight_decay=opt["weight_decay"])
    cls = torch.optim.AdamW if opt["decoupled"] else torch.optim.Adam
    return cls(parameters, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
               weight_decay=opt["weight_decay"])


def train(sizes: Sequence[int], params: Array, X: Array, targets: Array,
          orders: Iterable[Array], batch_size: int, opt: dict[str, Any],
          activation: str = "relu", loss: str = "cross_entropy",
          input_scale: float = 1.0) -> tuple[Array, Array]:
    """Minibatch training as mlp.train does it; returns (every step's loss,
    final flat parameters)."""
    torch.manual_seed(0)
    net = build(sizes, params, activation)
    optimizer = make_optimizer(net.parameters(), opt)
    objective = loss_fn(loss)
    Xt = torch.from_numpy(reference.gather_batch(X, np.arange(len(X)), np.float32, input_scale))
    t = torch.from_numpy(np.asarray(targets).astype(np.int64 if loss == "cross_entropy"
                                                     else np.float32))
    losses: list[float] = []
    for order in orders:
        for start in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            value = objective(net(Xt[idx]), t[idx])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(value.item())
    return np.array(losses), flat_params(net)


class Scale(torch.nn.Module):
    """x * s: the model's input scale (1/255 for pixels)."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = float(s)

    def forward(self, x: Any) -> Any:
        return x * self.s


class Exp(torch.nn.Module):
    """The Poisson loss's output: exp(z)."""

    def forward(self, z: Any) -> Any:
        return torch.exp(z)


OUTPUTS: dict[str, Callable[[], Any] | None] = {"cross_entropy": lambda: torch.nn.Softmax(dim=1), "squared_error": None,
           "binary_cross_entropy": torch.nn.Sigmoid, "poisson": Exp}


def export(model: Model) -> Any:
    """A torch.nn.Sequential that computes what model.predict_proba (or, for
    regression, model.predict's outputs) computes: the input scale, the
    layers and activations, and the output function."""
    net = build(model.sizes, model._flat, model.activation)
    layers = list(net)
    if model.input_scale not in (None, 1.0):
        layers.insert(0, Scale(model.input_scale))
    output = OUTPUTS[model.loss]
    if output is not None:
        layers.append(output())
    return torch.nn.Sequential(*layers).eval()
