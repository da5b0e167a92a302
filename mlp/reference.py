"""The numpy reference: the lecture's "Python + numpy" level.

The same operations, with the same names and the same math, as the C core
(csrc/ops.c) and the CUDA core (cuda/ops.cu), written for reading. It is a
real backend (``device="numpy"``) and the oracle of the tests, where it runs
in float64.

Shapes: B batch rows, D inputs, H outputs, C classes.
"""

from __future__ import annotations

import numpy as np


def gather_batch(X, idx, dtype=np.float32):
    """Rows of X picked by idx, as floats; uint8 pixels are scaled by 1/255."""
    rows = X[idx]
    if rows.dtype == np.uint8:
        if dtype == np.float32:
            return rows.astype(np.float32) * np.float32(1.0 / 255.0)
        return rows.astype(dtype) / 255.0
    return rows.astype(dtype, copy=False)


def linear_forward(inp, W, b):
    """(B,D) @ (D,H) + (H) -> (B,H)"""
    return inp @ W + b


def relu_forward(inp):
    """(B,H) -> (B,H)"""
    return np.maximum(inp, 0)


def softmax_crossentropy_forward(logits, y):
    """logits (B,C), labels (B) -> probs (B,C), summed loss, correct count."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    probs = e / s
    if y is None:
        return probs, 0.0, 0
    rows = np.arange(len(y))
    loss = float(np.sum(np.log(s[:, 0]) - z[rows, y]))
    correct = int(np.sum(logits.argmax(axis=1) == y))
    return probs, loss, correct


def softmax_crossentropy_backward(probs, y):
    """probs (B,C), labels (B) -> dlogits (B,C) of the batch-mean loss."""
    d = probs.copy()
    d[np.arange(len(y)), y] -= 1
    return d / len(y)


def linear_backward(dout, inp, W, need_dinp=True):
    """dout (B,H) -> dinp (B,D), dW (D,H), db (H); dinp is None when not
    needed (the first layer: nothing flows into the data)."""
    return (dout @ W.T if need_dinp else None), inp.T @ dout, dout.sum(axis=0)


def relu_backward(out, dout):
    """out = relu output (B,H), dout (B,H) -> dinp (B,H)."""
    return np.where(out > 0, dout, 0)


def sgd_update(params, grads, velocity, lr, momentum, weight_decay):
    """In place: g = grad + wd * p; v = momentum * v + g; p -= lr * v."""
    g = grads + weight_decay * params
    if momentum == 0:
        params -= lr * g
        return
    velocity *= momentum
    velocity += g
    params -= lr * velocity


class Reference:
    """A network of layer sizes (D, H1, ..., C) whose parameters live in one
    flat buffer with the layout of csrc/mlp.h, trained one batch at a time."""

    def __init__(self, sizes, params, dtype=np.float32):
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = np.dtype(dtype)
        self.params = np.array(params, dtype=self.dtype)
        if self.params.shape != (num_params(self.sizes),):
            raise ValueError("params do not match the layer sizes")
        self.grads = np.zeros_like(self.params)
        self.velocity = np.zeros_like(self.params)
        self.W, self.b = layer_views(self.params, self.sizes)
        self.dW, self.db = layer_views(self.grads, self.sizes)

    def forward(self, x, y=None):
        """Returns probs, summed loss, correct count; keeps the activations."""
        self.acts = [x]
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            h = linear_forward(self.acts[-1], W, b)
            if l + 1 < len(self.W):
                h = relu_forward(h)
            self.acts.append(h)
        return softmax_crossentropy_forward(self.acts[-1], y)

    def backward(self, probs, y):
        dout = softmax_crossentropy_backward(probs, y)
        for l in reversed(range(len(self.W))):
            dinp, self.dW[l][...], self.db[l][...] = linear_backward(dout, self.acts[l], self.W[l],
                                                                     need_dinp=l > 0)
            if l > 0:
                dout = relu_backward(self.acts[l], dinp)

    def train_step(self, x, y, lr, momentum=0.0, weight_decay=0.0):
        """One SGD step on a batch; returns (batch-mean loss, correct)."""
        probs, loss, correct = self.forward(x, y)
        self.backward(probs, y)
        sgd_update(self.params, self.grads, self.velocity, lr, momentum, weight_decay)
        return loss / len(y), correct

    def train_epoch(self, X, y, order, batch_size, lr, momentum=0.0, weight_decay=0.0):
        """Same contract as mlp_train_epoch: (batch losses, mean loss, accuracy)."""
        losses, total, correct = [], 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss, hits = self.train_step(gather_batch(X, idx, self.dtype), y[idx], lr, momentum,
                                         weight_decay)
            losses.append(loss)
            total += loss * len(idx)
            correct += hits
        return np.array(losses), total / len(order), correct / len(order)

    def predict(self, X, want_logits=False, chunk=1024):
        outs = []
        for start in range(0, len(X), chunk):
            x = gather_batch(X, np.arange(start, min(start + chunk, len(X))), self.dtype)
            probs, _, _ = self.forward(x)
            outs.append(self.acts[-1] if want_logits else probs)
        return np.concatenate(outs).astype(self.dtype, copy=False)

    def evaluate(self, X, y, chunk=1024):
        total, correct = 0.0, 0
        for start in range(0, len(X), chunk):
            idx = np.arange(start, min(start + chunk, len(X)))
            _, loss, hits = self.forward(gather_batch(X, idx, self.dtype), y[idx])
            total += loss
            correct += hits
        return total / len(X), correct / len(X)


def num_params(sizes):
    return sum(sizes[l] * sizes[l + 1] + sizes[l + 1] for l in range(len(sizes) - 1))


def layer_views(flat, sizes):
    """Named views into a flat buffer: lists W (fan_in, fan_out) and b (fan_out)."""
    Ws, bs, off = [], [], 0
    for l in range(len(sizes) - 1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        Ws.append(flat[off:off + fan_in * fan_out].reshape(fan_in, fan_out))
        off += fan_in * fan_out
        bs.append(flat[off:off + fan_out])
        off += fan_out
    return Ws, bs


def init_params(sizes, rng):
    """He (Kaiming) normal weights, std sqrt(2 / fan_in); zero biases; float32."""
    flat = np.zeros(num_params(sizes), dtype=np.float32)
    Ws, _ = layer_views(flat, sizes)
    for l, W in enumerate(Ws):
        W[...] = rng.standard_normal(W.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / sizes[l]))
    return flat
