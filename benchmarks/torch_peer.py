"""The PyTorch peer of the CPU benchmarks: 784-256-10 as torch.nn modules,
from our flat initial parameters, trained with torch.optim.SGD on inputs
scaled to floats once (as a PyTorch user would hold them)."""

import numpy as np
import torch

from mlp.reference import layer_views


class TorchPeer:
    def __init__(self, params, sizes, lr, X, y):
        self.model = torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), torch.nn.ReLU(),
                                         torch.nn.Linear(sizes[1], sizes[2]))
        with torch.no_grad():
            for lin, W, b in zip((self.model[0], self.model[2]), *layer_views(params, sizes)):
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b.copy()))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.X = torch.from_numpy(X.astype(np.float32) / np.float32(255))
        self.y = torch.from_numpy(y)

    def epoch(self, order, batch):
        """One SGD epoch over the rows in `order`, in batches."""
        perm = torch.from_numpy(order)
        for s in range(0, len(perm), batch):
            idx = perm[s:s + batch]
            loss = torch.nn.functional.cross_entropy(self.model(self.X[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()

    def logits(self, X):
        with torch.no_grad():
            return self.model(torch.from_numpy(X.astype(np.float32) / 255)).numpy()
