"""Equation checks for chapter 07: the hand-derived backpropagation of the one-hidden-layer MLP with L2 penalty."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {  # phi and phi' as functions of z
    "relu": (torch.relu, lambda z: (z > 0).to(z.dtype)),
    "sigmoid": (torch.sigmoid, lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z))),
    "tanh": (torch.tanh, lambda z: 1 - torch.tanh(z) ** 2),
}
GRADIENT_NAMES = ("o", "W2", "h", "z", "W1")


def forward(x, y, W1, W2, lam, phi):
    """One example: z = W1 x, h = phi(z), o = W2 h, L = l(o, y), s = lam/2 (|W1|^2 + |W2|^2), J = L + s."""
    z = W1 @ x
    h = phi(z)
    o = W2 @ h
    L = F.cross_entropy(o.unsqueeze(0), y.unsqueeze(0))
    s = lam / 2 * (W1.square().sum() + W2.square().sum())
    return dict(z=z, h=h, o=o, L=L, s=s, J=L + s)


def backward(x, y, W1, W2, lam, cache, phi_prime):
    """The chapter's five equations for one example (column vectors)."""
    dJ_do = torch.softmax(cache["o"], dim=0) - F.one_hot(y, len(cache["o"])).to(x.dtype)
    dJ_dW2 = torch.outer(dJ_do, cache["h"]) + lam * W2
    dJ_dh = W2.T @ dJ_do
    dJ_dz = dJ_dh * phi_prime(cache["z"])
    dJ_dW1 = torch.outer(dJ_dz, x) + lam * W1
    return dict(o=dJ_do, W2=dJ_dW2, h=dJ_dh, z=dJ_dz, W1=dJ_dW1)


def forward_batch(X, y, W1, W2, lam, phi):
    """A minibatch with examples as rows; the loss is averaged, the penalty added once."""
    z = X @ W1.T
    h = phi(z)
    o = h @ W2.T
    L = F.cross_entropy(o, y)
    s = lam / 2 * (W1.square().sum() + W2.square().sum())
    return dict(z=z, h=h, o=o, L=L, s=s, J=L + s)


def backward_batch(X, y, W1, W2, lam, cache, phi_prime):
    """The chapter's batch equations (examples as rows)."""
    n, q = cache["o"].shape
    dJ_do = (torch.softmax(cache["o"], dim=1) - F.one_hot(y, q).to(X.dtype)) / n
    dJ_dW2 = dJ_do.T @ cache["h"] + lam * W2
    dJ_dh = dJ_do @ W2
    dJ_dz = dJ_dh * phi_prime(cache["z"])
    dJ_dW1 = dJ_dz.T @ X + lam * W1
    return dict(o=dJ_do, W2=dJ_dW2, h=dJ_dh, z=dJ_dz, W1=dJ_dW1)


def autograd_gradients(x, y, W1, W2, lam, forward_fn, phi):
    """Gradients of J w.r.t. W1, W2 and the intermediate variables z, h, o, by autograd."""
    W1, W2 = W1.clone().requires_grad_(True), W2.clone().requires_grad_(True)
    cache = forward_fn(x, y, W1, W2, lam, phi)
    for name in ("z", "h", "o"):
        cache[name].retain_grad()
    cache["J"].backward()
    return dict(o=cache["o"].grad, W2=W2.grad, h=cache["h"].grad, z=cache["z"].grad, W1=W1.grad)


def random_problem(seed, batch=None):
    """Random shapes and values (float64): inputs, labels and the two weight matrices."""
    gen = torch.Generator().manual_seed(seed)
    d, h, q = (int(v) for v in torch.randint(1, 12, (3,), generator=gen))
    q = max(q, 2)
    shape = (d,) if batch is None else (batch, d)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, q, () if batch is None else (batch,), generator=gen)
    W1 = torch.randn(h, d, generator=gen, dtype=torch.float64)
    W2 = torch.randn(q, h, generator=gen, dtype=torch.float64)
    return x, y, W1, W2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.0, 0.3])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_gradient_of_one_example_matches_autograd(seed, lam, activation):
    phi, phi_prime = ACTIVATIONS[activation]
    x, y, W1, W2 = random_problem(seed)
    cache = forward(x, y, W1, W2, lam, phi)
    ours = backward(x, y, W1, W2, lam, cache, phi_prime)
    reference = autograd_gradients(x, y, W1, W2, lam, forward, phi)
    for name in GRADIENT_NAMES:
        assert ours[name].shape == reference[name].shape, name
        assert torch.allclose(ours[name], reference[name], rtol=1e-10, atol=1e-12), name


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lam", [0.0, 0.3])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("batch", [1, 16])
def test_every_gradient_of_a_minibatch_matches_autograd(seed, lam, activation, batch):
    phi, phi_prime = ACTIVATIONS[activation]
    X, y, W1, W2 = random_problem(seed, batch)
    cache = forward_batch(X, y, W1, W2, lam, phi)
    ours = backward_batch(X, y, W1, W2, lam, cache, phi_prime)
    reference = autograd_gradients(X, y, W1, W2, lam, forward_batch, phi)
    for name in GRADIENT_NAMES:
        assert torch.allclose(ours[name], reference[name], rtol=1e-10, atol=1e-12), name


def test_the_penalty_adds_lambda_w_to_the_weight_gradients_only():
    x, y, W1, W2 = random_problem(0)
    relu, relu_prime = ACTIVATIONS["relu"]
    with_penalty = backward(x, y, W1, W2, 0.5, forward(x, y, W1, W2, 0.5, relu), relu_prime)
    without = backward(x, y, W1, W2, 0.0, forward(x, y, W1, W2, 0.0, relu), relu_prime)
    assert torch.allclose(with_penalty["W1"] - without["W1"], 0.5 * W1)
    assert torch.allclose(with_penalty["W2"] - without["W2"], 0.5 * W2)
    for name in ("o", "h", "z"):
        assert torch.equal(with_penalty[name], without[name])


def test_batch_gradients_are_the_mean_of_per_example_outer_products():
    X, y, W1, W2 = random_problem(3, batch=5)
    relu, relu_prime = ACTIVATIONS["relu"]
    lam = 0.2
    batch = backward_batch(X, y, W1, W2, lam, forward_batch(X, y, W1, W2, lam, relu), relu_prime)
    singles = [backward(X[i], y[i], W1, W2, lam, forward(X[i], y[i], W1, W2, lam, relu), relu_prime)
               for i in range(len(X))]
    for name in ("W1", "W2"):
        mean_data_term = torch.stack([g[name] - lam * (W1 if name == "W1" else W2) for g in singles]).mean(dim=0)
        assert torch.allclose(batch[name], mean_data_term + lam * (W1 if name == "W1" else W2))
    assert torch.allclose(batch["o"], torch.stack([g["o"] for g in singles]) / len(X))


def test_sgd_weight_decay_step_equals_a_gradient_step_on_the_penalised_objective():
    X, y, W1, W2 = random_problem(4, batch=8)
    relu, relu_prime = ACTIVATIONS["relu"]
    lam, lr = 0.1, 0.5
    h, d = W1.shape
    q = W2.shape[0]
    net = nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, q, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(W1)
        net[2].weight.copy_(W2)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=lam)
    F.cross_entropy(net(X), y).backward()
    optimizer.step()
    ours = backward_batch(X, y, W1, W2, lam, forward_batch(X, y, W1, W2, lam, relu), relu_prime)
    assert torch.allclose(net[0].weight, W1 - lr * ours["W1"])
    assert torch.allclose(net[2].weight, W2 - lr * ours["W2"])


class HandMLP(torch.autograd.Function):
    """O = relu(X W1^T) W2^T with the chapter's hand-written backward."""

    @staticmethod
    def forward(ctx, X, W1, W2):
        Z = X @ W1.T
        H = torch.relu(Z)
        ctx.save_for_backward(X, Z, H, W2)
        return H @ W2.T

    @staticmethod
    def backward(ctx, dJ_dO):
        X, Z, H, W2 = ctx.saved_tensors
        dJ_dZ = (dJ_dO @ W2) * (Z > 0).to(Z.dtype)
        return None, dJ_dZ.T @ X, dJ_dO.T @ H


def test_hand_written_autograd_function_passes_gradcheck():
    X, _, W1, W2 = random_problem(5, batch=6)
    assert torch.autograd.gradcheck(HandMLP.apply, (X, W1.requires_grad_(True), W2.requires_grad_(True)))


def deep_mlp(depth, activation=nn.ReLU, width=256):
    """The chapter's deeper MLP on 28x28 images."""
    layers = [nn.Flatten(), nn.Linear(784, width), activation()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def saved_activation_bytes(net, X):
    """Bytes of distinct non-parameter storages saved for backward during net(X)."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = net(X)
    del output
    return sum(saved.values())


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("batch", [16, 100])
def test_training_saves_one_activation_per_relu_layer_and_inference_none(depth, batch):
    net = deep_mlp(depth)
    X = torch.rand(batch, 1, 28, 28)
    assert saved_activation_bytes(net, X) == 4 * batch * (784 + 256 * depth)
    with torch.no_grad():
        assert saved_activation_bytes(net, X) == 0


@pytest.mark.parametrize("activation, per_layer", [(nn.GELU, 2), (nn.Sigmoid, 1), (nn.Tanh, 1)])
def test_saved_memory_for_other_activations(activation, per_layer):
    batch, depth = 32, 2
    expected = 4 * batch * (784 + per_layer * 256 * depth)
    assert saved_activation_bytes(deep_mlp(depth, activation), torch.rand(batch, 1, 28, 28)) == expected
