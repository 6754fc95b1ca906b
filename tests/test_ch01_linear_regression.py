"""Equation checks for chapter 01: linear regression."""

import math

import pytest
import torch
from torch import nn

import d2l_support as d2l

TRUE_W, TRUE_B = torch.tensor([2.0, -3.4]), 4.2


def with_ones(X):
    """Append a column of ones (the bias as the last weight)."""
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)


def squared_loss(y_hat, y):
    """Per-example squared loss (y_hat - y)^2 / 2."""
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):
    """The chapter's scratch minibatch SGD on a summed loss."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


@pytest.fixture(scope="module")
def data():
    return d2l.synthetic_data(TRUE_W, TRUE_B, 1000, noise=0.01, generator=torch.Generator().manual_seed(0))


def test_synthetic_data_follows_the_model(data):
    X, y = data
    assert X.shape == (1000, 2) and y.shape == (1000, 1)
    residual = y.ravel() - (X @ TRUE_W + TRUE_B)
    assert residual.std().item() == pytest.approx(0.01, rel=0.1)


def test_normal_equations_match_lstsq(data):
    X1, y = with_ones(data[0].double()), data[1].double()
    theta = torch.linalg.solve(X1.T @ X1, X1.T @ y)
    torch.testing.assert_close(theta, torch.linalg.lstsq(X1, y).solution)
    # the exact minimiser misses the truth only by the noise, about 0.01 / sqrt(1000)
    truth = torch.tensor([*TRUE_W.tolist(), TRUE_B], dtype=torch.float64)
    assert (theta.ravel() - truth).abs().max() < 2e-3


def test_least_squares_solution_has_zero_gradient(data):
    X1, y = with_ones(data[0].double()), data[1].double()
    theta = torch.linalg.lstsq(X1, y).solution.requires_grad_(True)
    squared_loss(X1 @ theta, y).mean().backward()
    assert theta.grad.abs().max() < 1e-10


def test_squared_loss_gradient_formula_matches_autograd(data):
    X, y = data[0].double(), data[1].double()
    generator = torch.Generator().manual_seed(3)
    w = torch.randn(2, 1, dtype=torch.float64, generator=generator, requires_grad=True)
    b = torch.randn(1, dtype=torch.float64, generator=generator, requires_grad=True)
    squared_loss(X @ w + b, y).mean().backward()
    residual = X @ w.detach() + b.detach() - y
    torch.testing.assert_close(w.grad, X.T @ residual / len(X))  # (1/n) X^T (Xw + b - y)
    torch.testing.assert_close(b.grad, residual.mean().reshape(1))


def test_scratch_sgd_step_equals_torch_optim_sgd(data):
    X, y = data[0][:10], data[1][:10]
    w = torch.randn(2, 1, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    b = torch.zeros(1, requires_grad=True)
    w_torch, b_torch = w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    squared_loss(X @ w + b, y).sum().backward()
    sgd([w, b], lr=0.03, batch_size=len(y))
    optimizer = torch.optim.SGD([w_torch, b_torch], lr=0.03)
    squared_loss(X @ w_torch + b_torch, y).mean().backward()
    optimizer.step()
    torch.testing.assert_close(w, w_torch)
    torch.testing.assert_close(b, b_torch)
    assert w.grad.abs().max() == 0 and b.grad.abs().max() == 0


def test_mse_loss_is_twice_the_halved_loss_and_half_lr_matches():
    generator = torch.Generator().manual_seed(5)
    X, y = torch.randn(10, 2, generator=generator), torch.randn(10, 1, generator=generator)
    torch.testing.assert_close(nn.MSELoss()(X[:, :1], y), 2 * squared_loss(X[:, :1], y).mean())
    w0 = torch.tensor([[0.5], [-0.5]])
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(w0.T)
        net.bias.zero_()
    w, b = w0.clone().requires_grad_(True), torch.zeros(1, requires_grad=True)
    squared_loss(X @ w + b, y).sum().backward()
    sgd([w, b], lr=0.03, batch_size=10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.015)
    nn.MSELoss()(net(X), y).backward()
    optimizer.step()
    torch.testing.assert_close(net.weight.T, w.detach())
    torch.testing.assert_close(net.bias, b.detach())


def test_gaussian_negative_log_likelihood_is_scaled_squared_loss():
    generator = torch.Generator().manual_seed(6)
    y, y_hat = torch.randn(50, dtype=torch.float64, generator=generator), torch.randn(50, dtype=torch.float64,
                                                                                       generator=generator)
    for sigma in (0.3, 1.0, 4.0):
        nll = -torch.distributions.Normal(y_hat, sigma).log_prob(y).sum()
        expected = 50 / 2 * math.log(2 * math.pi * sigma**2) + 50 / sigma**2 * squared_loss(y_hat, y).mean()
        torch.testing.assert_close(nll, expected)


def test_scratch_training_recovers_parameters(data):
    X, y = data
    generator = torch.Generator().manual_seed(0)
    w = torch.normal(0.0, 0.01, (2, 1), generator=generator).requires_grad_(True)
    b = torch.zeros(1, requires_grad=True)
    for _ in range(3):
        for X_batch, y_batch in d2l.TensorLoader(X, y, batch_size=10, shuffle=True):
            squared_loss(X_batch @ w + b, y_batch).sum().backward()
            sgd([w, b], 0.03, len(y_batch))
    assert (w.detach().ravel() - TRUE_W).abs().max() < 5e-3
    assert abs(b.item() - TRUE_B) < 5e-3


def test_seed_three_example_fit_and_closed_form_iteration():
    X = torch.tensor([[1.1, 2.3], [4.6, 5.7], [8.9, 10.1]], dtype=torch.float64)
    y = X @ torch.tensor([3.1, 4.2], dtype=torch.float64) + 0.5
    X1 = with_ones(X)
    exact = torch.linalg.solve(X1, y)
    torch.testing.assert_close(exact, torch.tensor([3.1, 4.2, 0.5], dtype=torch.float64))
    theta = torch.tensor([0.001, 0.003, 0.005], dtype=torch.float64, requires_grad=True)
    for _ in range(200):
        squared_loss(X1 @ theta, y).sum().backward()
        with torch.no_grad():
            theta -= 1e-4 * theta.grad
        theta.grad.zero_()
    H = X1.T @ X1
    M = torch.eye(3, dtype=torch.float64) - 1e-4 * H
    jumped = exact + torch.linalg.matrix_power(M, 200) @ (torch.tensor([0.001, 0.003, 0.005],
                                                                        dtype=torch.float64) - exact)
    torch.testing.assert_close(theta.detach(), jumped)
    # after the source's 30,000 steps the loss is tiny but w is still off by about 0.16
    after = exact + torch.linalg.matrix_power(M, 30_000) @ (torch.tensor([0.001, 0.003, 0.005],
                                                                         dtype=torch.float64) - exact)
    assert squared_loss(X1 @ after, y).sum() < 1e-4
    assert (after - exact).abs().max() > 0.1
