"""Equation checks for chapter 03 (multilayer perceptrons): the affine collapse, activation derivatives,
the from-scratch MLP against nn.Sequential, and the errata check that deep networks are not limited to ReLU."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def collapse(layers):
    """Fold a stack of nn.Linear layers (no activations in between) into one equivalent nn.Linear."""
    A, c = layers[0].weight, layers[0].bias
    for layer in layers[1:]:
        A, c = layer.weight @ A, layer.weight @ c + layer.bias
    merged = nn.Linear(A.shape[1], A.shape[0])
    with torch.no_grad():
        merged.weight.copy_(A)
        merged.bias.copy_(c)
    return merged


def relu(X):
    """ReLU(X) = max(X, 0), as in the chapter."""
    return torch.max(X, torch.zeros_like(X))


def autograd_derivative(f, x):
    """The elementwise derivative f'(x), as the gradient of sum(f(x))."""
    x = x.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def test_two_linear_layers_equal_one_with_product_weight_and_bias():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(4, 5), nn.Linear(5, 3)
    X = torch.randn(16, 4)
    W = lin2.weight @ lin1.weight  # W = W2 W1
    b = lin2.weight @ lin1.bias + lin2.bias  # b = W2 b1 + b2
    assert W.shape == (3, 4) and b.shape == (3,)
    assert torch.allclose(lin2(lin1(X)), X @ W.T + b, atol=1e-6)
    assert torch.allclose(collapse([lin1, lin2])(X), lin2(lin1(X)), atol=1e-6)


@pytest.mark.parametrize("widths", [(4, 16, 3), (4, 16, 16, 8, 16, 3), (7, 2, 9, 1)])
def test_any_stack_of_linear_layers_collapses(widths):
    torch.manual_seed(1)
    layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
    X = torch.randn(32, widths[0])
    merged = collapse(layers)
    assert merged.weight.shape == (widths[-1], widths[0])
    assert torch.allclose(nn.Sequential(*layers)(X), merged(X), atol=1e-5)


def best_affine_residual(net, X):
    """Relative RMS error of the least-squares affine fit to net(X)."""
    with torch.no_grad():
        O = net(X).double()
    design = torch.cat([X.double(), torch.ones(len(X), 1, dtype=torch.float64)], dim=1)
    B = torch.linalg.lstsq(design, O).solution
    return ((design @ B - O).norm() / (O - O.mean(dim=0)).norm()).item()


def test_relu_between_layers_breaks_the_collapse():
    torch.manual_seed(2)
    X = torch.randn(2000, 4)
    lin1, lin2 = nn.Linear(4, 32), nn.Linear(32, 3)
    assert best_affine_residual(nn.Sequential(lin1, lin2), X) < 1e-6
    assert best_affine_residual(nn.Sequential(lin1, nn.ReLU(), lin2), X) > 0.1


X_GRID = torch.linspace(-6, 6, 241)


def test_relu_derivative_is_the_step_function():
    assert torch.equal(autograd_derivative(torch.relu, X_GRID), (X_GRID > 0).float())
    assert autograd_derivative(torch.relu, torch.zeros(1)).item() == 0.0  # PyTorch's convention at 0
    assert autograd_derivative(relu, torch.zeros(1)).item() == 0.5  # torch.max splits ties evenly
    assert torch.equal(relu(X_GRID), torch.relu(X_GRID))


def test_sigmoid_derivative_is_s_times_one_minus_s():
    s = torch.sigmoid(X_GRID)
    assert torch.allclose(autograd_derivative(torch.sigmoid, X_GRID), s * (1 - s), atol=1e-7)
    assert torch.allclose(1 / (1 + torch.exp(-X_GRID)), s, atol=1e-6)
    assert autograd_derivative(torch.sigmoid, torch.zeros(1)).item() == pytest.approx(0.25)
    assert autograd_derivative(torch.sigmoid, X_GRID).max().item() <= 0.25


def test_tanh_derivative_is_one_minus_tanh_squared():
    t = torch.tanh(X_GRID)
    assert torch.allclose(autograd_derivative(torch.tanh, X_GRID), 1 - t**2, atol=1e-6)
    formula = (1 - torch.exp(-2 * X_GRID)) / (1 + torch.exp(-2 * X_GRID))
    assert torch.allclose(formula, t, atol=1e-6)
    assert torch.allclose(t, 2 * torch.sigmoid(2 * X_GRID) - 1, atol=1e-6)
    assert autograd_derivative(torch.tanh, torch.zeros(1)).item() == pytest.approx(1.0)


def test_scratch_mlp_equals_nn_sequential_in_outputs_and_gradients():
    torch.manual_seed(3)
    W1, b1 = torch.randn(784, 256) * (2 / 784) ** 0.5, torch.randn(256) * 0.1
    W2, b2 = torch.randn(256, 10) * (2 / 256) ** 0.5, torch.randn(10) * 0.1
    params = [p.requires_grad_() for p in (W1, b1, W2, b2)]
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    with torch.no_grad():
        net[1].weight.copy_(W1.T)
        net[1].bias.copy_(b1)
        net[3].weight.copy_(W2.T)
        net[3].bias.copy_(b2)
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    logits = relu(X.reshape(-1, 784) @ W1 + b1) @ W2 + b2
    assert torch.allclose(logits, net(X), atol=1e-5)
    F.cross_entropy(logits, y).backward()
    F.cross_entropy(net(X), y).backward()
    assert torch.allclose(params[0].grad, net[1].weight.grad.T, atol=1e-6)
    assert torch.allclose(params[3].grad, net[3].bias.grad, atol=1e-6)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in net.parameters()) == 203_530


def test_kaiming_normal_draws_variance_two_over_fan_in():
    torch.manual_seed(4)
    layer = nn.Linear(784, 2000)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    assert layer.weight.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.01)


def test_small_regression_mlp_by_hand_and_with_sequential_follow_the_same_path():
    gen = torch.Generator().manual_seed(4)
    hand = [torch.randn(2, 3, generator=gen) * 0.5, torch.zeros(3),
            torch.randn(3, 1, generator=gen) * 0.5, torch.zeros(1)]
    hand = [p.requires_grad_() for p in hand]
    layers = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        layers[0].weight.copy_(hand[0].T)
        layers[0].bias.copy_(hand[1])
        layers[2].weight.copy_(hand[2].T)
        layers[2].bias.copy_(hand[3])
    x, target, eta = torch.tensor([[2.1, 3.2]]), torch.tensor([[0.7]]), 0.05
    optimizer = torch.optim.SGD(layers.parameters(), lr=eta)
    losses = []
    for _ in range(6):
        loss_hand = ((relu(x @ hand[0] + hand[1]) @ hand[2] + hand[3] - target) ** 2 / 2).sum()
        loss_hand.backward()
        with torch.no_grad():
            for p in hand:
                p -= eta * p.grad
                p.grad.zero_()
        loss_layers = ((layers(x) - target) ** 2 / 2).sum()
        optimizer.zero_grad()
        loss_layers.backward()
        optimizer.step()
        assert loss_hand.item() == pytest.approx(loss_layers.item(), rel=1e-5, abs=1e-8)
        losses.append(loss_hand.item())
    assert losses[-1] < 0.01 * losses[0]


def test_two_relu_units_compute_xor():
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    W1, b1 = torch.tensor([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([0.0, -1.0])
    W2 = torch.tensor([[1.0], [-2.0]])
    assert torch.equal((relu(X @ W1 + b1) @ W2).squeeze(1), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    # no affine map does it: the least-squares affine fit leaves a residual
    design = torch.cat([X, torch.ones(4, 1)], dim=1)
    fit = torch.linalg.lstsq(design, torch.tensor([[0.0], [1.0], [1.0], [0.0]])).solution
    assert (design @ fit - torch.tensor([[0.0], [1.0], [1.0], [0.0]])).abs().max() > 0.4


# ---------------------------------------------------------------- errata: deep networks are not limited to ReLU


def init_he(module):
    """He-normal weights and zero biases, as in the chapter."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(module.bias)


def plain_cnn(activation, depth=8, channels=16):
    layers, in_channels = [], 1
    for _ in range(depth):
        layers += [nn.Conv2d(in_channels, channels, 3, padding=1), activation()]
        in_channels = channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def first_to_last_gradient_ratio(activation):
    """RMS gradient of the first convolution divided by that of the last, in an 8-layer plain CNN."""
    torch.manual_seed(0)
    net = plain_cnn(activation)
    net.apply(init_he)
    X, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    F.cross_entropy(net(X), y).backward()
    rms = [m.weight.grad.pow(2).mean().sqrt().item() for m in net if isinstance(m, nn.Conv2d)]
    return rms[0] / rms[-1]


def test_sigmoid_gradients_vanish_in_a_deep_plain_cnn_but_not_those_of_other_activations():
    assert first_to_last_gradient_ratio(nn.Sigmoid) < 1e-3
    for activation in (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU):
        assert first_to_last_gradient_ratio(activation) > 0.05, activation


@pytest.mark.parametrize("activation", [nn.Tanh, nn.GELU, nn.ELU, nn.ReLU])
def test_deep_networks_with_other_activations_train(activation):
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(256, 20, generator=gen)
    y = (X[:, :2].sum(dim=1) > 0).long() + (X[:, 2] > 0.5).long()  # three classes
    torch.manual_seed(0)
    layers, fan_in = [], 20
    for _ in range(6):
        layers += [nn.Linear(fan_in, 32), activation()]
        fan_in = 32
    net = nn.Sequential(*layers, nn.Linear(32, 3))
    net.apply(init_he)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
    first = F.cross_entropy(net(X), y).item()
    for _ in range(150):
        loss = F.cross_entropy(net(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first
    assert (net(X).argmax(dim=1) == y).float().mean() > 0.9
