"""The lean numpy peer of the CPU benchmarks: the lecture's forward and
backward for 784-256-10 in a few lines of float32 numpy, with none of the
reference backend's bookkeeping."""

import numpy as np

from mlp.reference import layer_views


class LeanNumpy:
    def __init__(self, params, sizes, lr):
        self.W1, self.b1, self.W2, self.b2 = (
            a.copy() for pair in zip(*layer_views(params, sizes)) for a in pair)
        self.lr, self.scale = np.float32(lr), np.float32(1 / 255)

    def epoch(self, X, y, order, batch):
        """One SGD epoch over uint8 rows X[order], in batches."""
        W1, b1, W2, b2, lr = self.W1, self.b1, self.W2, self.b2, self.lr
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            x, t = X[idx].astype(np.float32) * self.scale, y[idx]
            h = np.maximum(x @ W1 + b1, 0)
            z = h @ W2 + b2
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(t)), t] -= 1
            p /= len(t)
            dh = (p @ W2.T) * (h > 0)
            W2 -= lr * (h.T @ p)  # in place: the arrays are the model's
            b2 -= lr * p.sum(axis=0)
            W1 -= lr * (x.T @ dh)
            b1 -= lr * dh.sum(axis=0)

    def logits(self, X):
        return np.maximum(X.astype(np.float32) * self.scale @ self.W1 + self.b1, 0) @ self.W2 + self.b2
