"""The numpy reference: the lecture's "Python + numpy" level.

The same operations, with the same names and the same math, as the C core
(csrc/ops.c, csrc/pointwise.h) and the CUDA core (cuda/ops.cu), written for
reading. It is a real backend (``device="numpy"``) and the oracle of the
tests, where it runs in float64.

Shapes: B batch rows, D inputs, H outputs, C outputs of the last layer.

An activation is two functions and two table entries (ACTIVATIONS,
DERIVATIVES); a loss is a forward and a backward function in LOSSES; an
optimizer rule is one branch of ``update``, mirroring ``mlp_update`` in
csrc/pointwise.h.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._types import Array

# what a loss's forward gives: outputs, weighted loss sum, correct count
LossOut = tuple[Array, float, int]


def gather_batch(X: Array, idx: Array, dtype: DTypeLike = np.float32, scale: float = 1.0) -> Array:
    """Rows of X picked by idx, as floats, times the model's input scale."""
    rows = X[idx]
    if dtype == np.float32:
        return np.asarray(rows.astype(np.float32) * np.float32(scale))
    return np.asarray(rows.astype(dtype) * np.asarray(np.float32(scale), dtype=dtype))


def linear_forward(inp: Array, W: Array, b: Array) -> Array:
    """(B,D) @ (D,H) + (H) -> (B,H)"""
    return inp @ W + b


# ---- activations: y = f(x); the derivative gets x and y -------------------

def relu_forward(x: Array) -> Array:
    return np.maximum(x, 0)


def relu_backward(x: Array, y: Array, dy: Array) -> Array:
    return np.where(y > 0, dy, 0)


def tanh_forward(x: Array) -> Array:
    return np.tanh(x)


def tanh_backward(x: Array, y: Array, dy: Array) -> Array:
    return np.asarray(dy * (1 - y * y))


def logistic_forward(x: Array) -> Array:
    return _logistic(x)


def logistic_backward(x: Array, y: Array, dy: Array) -> Array:
    return np.asarray(dy * (y * (1 - y)))


def identity_forward(x: Array) -> Array:
    return x


def identity_backward(x: Array, y: Array, dy: Array) -> Array:
    return dy


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_forward(x: Array) -> Array:
    """The exact form: x * Phi(x)."""
    return np.asarray((0.5 * x * (1 + _erf(np.asarray(x, np.float64) / math.sqrt(2)))).astype(x.dtype))


def gelu_backward(x: Array, y: Array, dy: Array) -> Array:
    x64 = np.asarray(x, np.float64)
    Phi = 0.5 * (1 + _erf(x64 / math.sqrt(2)))
    phi = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    return np.asarray((dy * (Phi + x64 * phi)).astype(dy.dtype))


ACTIVATIONS = {"relu": relu_forward, "tanh": tanh_forward, "logistic": logistic_forward,
               "identity": identity_forward, "gelu": gelu_forward}
DERIVATIVES = {"relu": relu_backward, "tanh": tanh_backward, "logistic": logistic_backward,
               "identity": identity_backward, "gelu": gelu_backward}


def activation_forward(act: str, x: Array) -> Array:
    """(N) -> (N): y = f(x)"""
    return ACTIVATIONS[act](x)


def activation_backward(act: str, x: Array, y: Array, dy: Array) -> Array:
    """(N) -> (N): dx = f'(x) * dy, from the input x and output y"""
    return DERIVATIVES[act](x, y, dy)


def _logistic(z: Array) -> Array:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1 / (1 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1 + e)
    return out


# ---- losses: forward gives the outputs, the weighted loss sum, the hits ----

def _row_weights(B: int, weights: Array | None, dtype: DTypeLike) -> Array:
    return np.ones(B, dtype) if weights is None else np.asarray(weights, dtype)


def softmax_crossentropy_forward(logits: Array, y: Array | None, weights: Array | None = None) -> LossOut:
    """logits (B,C), labels (B) -> probs (B,C), weighted loss sum, correct count."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    probs = e / s
    if y is None:
        return probs, 0.0, 0
    rows = np.arange(len(y))
    w = _row_weights(len(y), weights, logits.dtype)
    loss = float(np.sum(w * (np.log(s[:, 0]) - z[rows, y])))
    correct = int(np.sum(logits.argmax(axis=1) == y))
    return probs, loss, correct


def softmax_crossentropy_backward(probs: Array, logits: Array, y: Array, weights: Array | None,
                                  wsum: float) -> Array:
    """probs (B,C), labels (B) -> dlogits (B,C) of the weighted batch-mean loss."""
    d = probs.copy()
    d[np.arange(len(y)), y] -= 1
    return np.asarray(d * (_row_weights(len(y), weights, probs.dtype) / wsum)[:, None])


def squared_error_forward(z: Array, t: Array | None, weights: Array | None = None) -> LossOut:
    """identity outputs; loss 0.5 (z - t)^2 summed over outputs"""
    if t is None:
        return z, 0.0, 0
    w = _row_weights(len(z), weights, z.dtype)
    return z, float(np.sum(w * 0.5 * ((z - t) ** 2).sum(axis=1))), 0


def squared_error_backward(out: Array, z: Array, t: Array, weights: Array | None,
                           wsum: float) -> Array:
    return (z - t) * (_row_weights(len(z), weights, z.dtype) / wsum)[:, None]


def binary_crossentropy_forward(z: Array, t: Array | None, weights: Array | None = None) -> LossOut:
    """logistic outputs; loss -t log s(z) - (1 - t) log(1 - s(z)) summed over outputs;
    a row is correct when every thresholded output matches"""
    probs = _logistic(z)
    if t is None:
        return probs, 0.0, 0
    w = _row_weights(len(z), weights, z.dtype)
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    correct = int(np.sum(np.all((z > 0) == (t > 0.5), axis=1)))
    return probs, float(np.sum(w * per.sum(axis=1))), correct


def binary_crossentropy_backward(out: Array, z: Array, t: Array, weights: Array | None,
                                 wsum: float) -> Array:
    return (out - t) * (_row_weights(len(z), weights, z.dtype) / wsum)[:, None]


def poisson_forward(z: Array, t: Array | None, weights: Array | None = None) -> LossOut:
    """exp outputs (log link); loss exp(z) - t z + t log t - t summed over outputs"""
    mu = np.exp(z)
    if t is None:
        return mu, 0.0, 0
    w = _row_weights(len(z), weights, z.dtype)
    tlogt = np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0)
    return mu, float(np.sum(w * (mu - t * z + tlogt - t).sum(axis=1))), 0


def poisson_backward(out: Array, z: Array, t: Array, weights: Array | None, wsum: float) -> Array:
    return (out - t) * (_row_weights(len(z), weights, z.dtype) / wsum)[:, None]


LOSSES = {
    "cross_entropy": (softmax_crossentropy_forward, softmax_crossentropy_backward),
    "squared_error": (squared_error_forward, squared_error_backward),
    "binary_cross_entropy": (binary_crossentropy_forward, binary_crossentropy_backward),
    "poisson": (poisson_forward, poisson_backward),
}


def loss_forward(loss: str, logits: Array, t: Array | None, weights: Array | None = None) -> LossOut:
    """(B,C) -> outputs (B,C), weighted loss sum, correct count"""
    return LOSSES[loss][0](logits, t, weights)


def loss_backward(loss: str, out: Array, logits: Array, t: Array, weights: Array | None,
                  wsum: float) -> Array:
    """-> dlogits (B,C) of the weighted mean loss over total weight wsum"""
    return LOSSES[loss][1](out, logits, t, weights, wsum)


def linear_backward(dout: Array, inp: Array, W: Array,
                    need_dinp: bool = True) -> tuple[Array | None, Array, Array]:
    """dout (B,H) -> dinp (B,D), dW (D,H), db (H); dinp is None when not
    needed (the first layer: nothing flows into the data)."""
    return (dout @ W.T if need_dinp else None), inp.T @ dout, dout.sum(axis=0)


# ---- optimizers ------------------------------------------------------------

def step_constants(opt: dict[str, Any], step: int, batch_weight: float) -> dict[str, Any]:
    """One step's constants (mlp_step_init in csrc/pointwise.h); opt is a dict
    with the keys of mlp._config.Optimizer.core_dict()."""
    adam, sklearn = opt["kind"] == "adam", opt["convention"] == "sklearn"
    s = dict(adam=adam, sklearn=sklearn, nesterov=bool(opt["nesterov"]), lr=opt["lr"],
             momentum=opt["momentum"], beta1=opt["beta1"], beta2=opt["beta2"], eps=opt["eps"],
             decay=1.0)
    wd = opt["weight_decay"]
    if sklearn:
        s["l2_weight"], s["l2_bias"] = (wd / batch_weight if batch_weight > 0 else 0.0), 0.0
    elif adam and opt["decoupled"]:
        s["l2_weight"] = s["l2_bias"] = 0.0
        s["decay"] = 1.0 - opt["lr"] * wd
    else:
        s["l2_weight"] = s["l2_bias"] = wd
    bc1 = 1.0 - opt["beta1"] ** step
    bc2 = 1.0 - opt["beta2"] ** step
    s["bc2_sqrt"] = math.sqrt(bc2)
    s["step_size"] = opt["lr"] * math.sqrt(bc2) / bc1 if sklearn else opt["lr"] / bc1
    return s


def update(s: dict[str, Any], p: Array, g: Array, m: Array, v: Array, is_bias: Array) -> None:
    """In place, one optimizer step of the parameters p (mlp_update): PyTorch's
    SGD (momentum, nesterov, weight decay), Adam and AdamW, or scikit-learn's
    SGD and Adam. is_bias: a boolean mask of p."""
    dt = p.dtype.type
    g = g + np.where(is_bias, dt(s["l2_bias"]), dt(s["l2_weight"])) * p
    if s["adam"]:
        p *= dt(s["decay"])
        m[...] = dt(s["beta1"]) * m + dt(1 - s["beta1"]) * g
        v[...] = dt(s["beta2"]) * v + dt(1 - s["beta2"]) * g * g
        denom = np.sqrt(v) + dt(s["eps"]) if s["sklearn"] else \
            np.sqrt(v) / dt(s["bc2_sqrt"]) + dt(s["eps"])
        p -= dt(s["step_size"]) * (m / denom)
        return
    lr, mu = dt(s["lr"]), dt(s["momentum"])
    if s["sklearn"]:
        m[...] = mu * m - lr * g
        p += mu * m - lr * g if s["nesterov"] else m
        return
    if s["momentum"] != 0:
        m[...] = mu * m + g
        g = g + mu * m if s["nesterov"] else m
    p -= lr * g


class Reference:
    """A network of layer sizes (D, H1, ..., C) whose parameters live in one
    flat buffer with the layout of csrc/mlp.h, trained one batch at a time."""

    def __init__(self, sizes: Sequence[int], params: ArrayLike, dtype: DTypeLike = np.float32,
                 activation: str = "relu", loss: str = "cross_entropy",
                 input_scale: float = 1.0) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = np.dtype(dtype)
        self.activation, self.loss, self.input_scale = activation, loss, input_scale
        self.params: Array = np.array(params, dtype=self.dtype)
        if self.params.shape != (num_params(self.sizes),):
            raise ValueError("params do not match the layer sizes")
        self.grads = np.zeros_like(self.params)
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)
        self.steps = 0
        self.W, self.b = layer_views(self.params, self.sizes)
        self.dW, self.db = layer_views(self.grads, self.sizes)
        self.is_bias = np.zeros(len(self.params), bool)
        for b in layer_views(self.is_bias, self.sizes)[1]:
            b[...] = True

    def forward(self, x: Array, t: Array | None = None, weights: Array | None = None) -> LossOut:
        """Returns outputs, weighted loss sum, correct count; keeps the activations."""
        self.acts: list[Array] = [x]
        self.pre: list[Array | None] = [None]
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            z = linear_forward(self.acts[-1], W, b)
            self.pre.append(z)
            self.acts.append(activation_forward(self.activation, z) if l + 1 < len(self.W) else z)
        self.out, loss, correct = loss_forward(self.loss, self.acts[-1], t, weights)
        return self.out, loss, correct

    def backward(self, t: Array, weights: Array | None = None, wsum: float | None = None) -> None:
        """Gradients of the weighted mean loss (over wsum, the batch's weight) into grads."""
        if wsum is None:
            wsum = batch_weight(weights, len(self.acts[0]))
        dout = loss_backward(self.loss, self.out, self.acts[-1], t, weights, wsum)
        for l in reversed(range(len(self.W))):
            dinp, self.dW[l][...], self.db[l][...] = linear_backward(dout, self.acts[l], self.W[l],
                                                                     need_dinp=l > 0)
            if l > 0:
                pre = self.pre[l]
                assert pre is not None and dinp is not None
                dout = activation_backward(self.activation, pre, self.acts[l], dinp)

    def train_step(self, x: Array, t: Array, opt: dict[str, Any],
                   weights: Array | None = None) -> tuple[float, int]:
        """One optimizer step on a batch; returns (batch loss, correct)."""
        wsum = batch_weight(weights, len(x))
        _, loss, correct = self.forward(x, t, weights)
        loss = (loss / wsum if wsum > 0 else 0.0) * self.reported_scale(opt) + \
            self.penalty(opt, wsum)
        self.backward(t, weights, wsum)
        self.steps += 1
        update(step_constants(opt, self.steps, wsum), self.params, self.grads, self.m, self.v,
               self.is_bias)
        return loss, correct

    def reported_scale(self, opt: dict[str, Any]) -> float:
        """scikit-learn reports squared error as 0.5 x the mean over the outputs
        (mlp_reported_loss_scale); its gradient stays that of the sum."""
        sklearn_se = opt["convention"] == "sklearn" and self.loss == "squared_error"
        return 1.0 / self.sizes[-1] if sklearn_se else 1.0

    def penalty(self, opt: dict[str, Any], wsum: float) -> float:
        """scikit-learn's L2 term of the reported loss (0 in PyTorch's convention)."""
        if opt["convention"] != "sklearn" or opt["weight_decay"] == 0 or not wsum > 0:
            return 0.0
        squares = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in self.W)
        return 0.5 * float(opt["weight_decay"]) / wsum * squares

    def train_epoch(self, X: Array, t: Array, order: Array, batch_size: int, opt: dict[str, Any],
                    sample_weight: Array | None = None) -> tuple[Array, float, float]:
        """Same contract as mlp_train_epoch: (batch losses, mean loss, accuracy)."""
        losses, total, weight, correct = [], 0.0, 0.0, 0
        self.stop_requested = False
        for start in range(0, len(order), batch_size):
            if self.stop_requested:  # mlp_request_stop
                raise KeyboardInterrupt("stopped at the caller's request")
            idx = order[start:start + batch_size]
            w = None if sample_weight is None else sample_weight[idx]
            x = gather_batch(X, idx, self.dtype, self.input_scale)
            loss, hits = self.train_step(x, t[idx], opt, w)
            wsum = batch_weight(w, len(idx))
            losses.append(loss)
            total += loss * wsum
            weight += wsum
            correct += hits
        return np.array(losses), (total / weight if weight > 0 else 0.0), correct / len(order)

    def predict(self, X: Array, want_logits: bool = False, chunk: int = 1024) -> Array:
        outs = []
        for start in range(0, len(X), chunk):
            idx = np.arange(start, min(start + chunk, len(X)))
            out, _, _ = self.forward(gather_batch(X, idx, self.dtype, self.input_scale))
            outs.append(self.acts[-1] if want_logits else out)
        return np.concatenate(outs).astype(self.dtype, copy=False)

    def evaluate(self, X: Array, t: Array, sample_weight: Array | None = None,
                 chunk: int = 1024) -> tuple[float, float]:
        total, correct = 0.0, 0
        for start in range(0, len(X), chunk):
            idx = np.arange(start, min(start + chunk, len(X)))
            w = None if sample_weight is None else sample_weight[idx]
            _, loss, hits = self.forward(gather_batch(X, idx, self.dtype, self.input_scale),
                                         t[idx], w)
            total += loss
            correct += hits
        weight = batch_weight(sample_weight, len(X))
        return (total / weight if weight > 0 else 0.0), correct / len(X)

    def loss_and_grad(self, X: Array, t: Array, opt: dict[str, Any],
                      sample_weight: Array | None = None) -> tuple[float, Array]:
        """Full-batch loss (with scikit-learn's penalty) and gradient (mlp_loss_and_grad)."""
        x = gather_batch(X, np.arange(len(X)), self.dtype, self.input_scale)
        wsum = batch_weight(sample_weight, len(X))
        _, loss, _ = self.forward(x, t, sample_weight)
        loss = (loss / wsum if wsum > 0 else 0.0) * self.reported_scale(opt) + \
            self.penalty(opt, wsum)
        self.backward(t, sample_weight, wsum)
        s = step_constants(opt, 1, wsum)
        grad = self.grads + np.where(self.is_bias, s["l2_bias"], s["l2_weight"]) * self.params
        return loss, grad.astype(self.dtype)


def batch_weight(weights: Array | None, B: int) -> float:
    """The total weight of a batch: its rows, or the sum of their weights."""
    return float(B) if weights is None else float(np.sum(np.asarray(weights, np.float64)))


def num_params(sizes: Sequence[int]) -> int:
    return sum(sizes[l] * sizes[l + 1] + sizes[l + 1] for l in range(len(sizes) - 1))


def layer_views(flat: Array, sizes: Sequence[int]) -> tuple[list[Array], list[Array]]:
    """Named views into a flat buffer: lists W (fan_in, fan_out) and b (fan_out)."""
    Ws, bs, off = [], [], 0
    for l in range(len(sizes) - 1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        Ws.append(flat[off:off + fan_in * fan_out].reshape(fan_in, fan_out))
        off += fan_in * fan_out
        bs.append(flat[off:off + fan_out])
        off += fan_out
    return Ws, bs


def init_params(sizes: Sequence[int], rng: np.random.Generator, scheme: str = "he",
                activation: str = "relu") -> Array:
    """Initial flat parameters, float32: "he" (Kaiming normal, std sqrt(2 /
    fan_in), zero biases) or "glorot" (uniform in +-sqrt(f / (fan_in + fan_out))
    with f = 6, or 2 for the logistic activation, as scikit-learn; zero biases)."""
    flat = np.zeros(num_params(sizes), dtype=np.float32)
    Ws, _ = layer_views(flat, sizes)
    for l, W in enumerate(Ws):
        if scheme == "he":
            W[...] = rng.standard_normal(W.shape, dtype=np.float32) * np.float32(
                np.sqrt(2.0 / sizes[l]))
        else:
            factor = 2.0 if activation == "logistic" else 6.0
            bound = np.sqrt(factor / (sizes[l] + sizes[l + 1]))
            W[...] = rng.uniform(-bound, bound, W.shape).astype(np.float32)
    return flat
