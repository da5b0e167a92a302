"""PyTorch, the lecture's first level, against our cores: the same init,
the same batches, the same SGD, the same losses."""

import numpy as np
import pytest

from mlp import reference
from mlp.training import initial_state

from conftest import make_problem, rel_err, run_backend

torch = pytest.importorskip("torch")

CORES = ["cpu", "numpy", pytest.param("cuda", marks=pytest.mark.cuda)]


def torch_run(sizes, params, X, y, orders, batch_size, lr, momentum, weight_decay):
    torch.manual_seed(0)
    layers = []
    Ws, bs = reference.layer_views(params, sizes)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        lin = torch.nn.Linear(sizes[l], sizes[l + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if l + 1 < len(Ws):
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    Xt = torch.from_numpy(reference.gather_batch(X, np.arange(len(X))))
    yt = torch.from_numpy(y.astype(np.int64))
    losses = []
    for order in orders:
        for start in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            loss = torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    flat = np.concatenate([np.concatenate([lin.weight.detach().numpy().T.ravel(),
                                           lin.bias.detach().numpy()])
                           for lin in net if isinstance(lin, torch.nn.Linear)])
    return np.array(losses), flat


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("uint8,hidden,momentum,weight_decay", [
    (True, (64,), 0.0, 0.0),
    (False, (16, 8), 0.9, 1e-3),
])
def test_same_losses_as_pytorch(core, uint8, hidden, momentum, weight_decay):
    rng = np.random.default_rng(5)
    X, y = make_problem(rng, 150, 40, 4, uint8)
    sizes = (40, *hidden, 4)
    params, orders = initial_state(sizes, len(X), 3, seed=5)
    ours, final, _ = run_backend(core, sizes, params, X, y, orders, 32, 0.05, momentum,
                                 weight_decay)
    theirs, torch_final = torch_run(sizes, params, X, y, orders, 32, 0.05, momentum,
                                    weight_decay)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert rel_err(final, torch_final) < 1e-4
