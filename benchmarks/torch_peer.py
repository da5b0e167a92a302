"""The PyTorch peer of the CPU benchmarks: the network of `sizes` (ReLU
between the layers) as torch.nn modules, from our flat initial parameters,
trained with torch.optim.SGD on inputs scaled to floats once (as a PyTorch
user would hold them)."""

import numpy as np
import torch

from mlp.torch_reference import build


class TorchPeer:
    def __init__(self, params, sizes, lr, X, y):
        self.model = build(sizes, params)
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
