"""Equation checks for chapter 05 (weight decay): the update rule against autograd and SGD(weight_decay),
the scaling conventions (the source notes' 1/n penalty against their 1/|B| update), MAP = ridge regression,
decoupled weight decay, and the high-dimensional experiment."""

import pytest
import torch
from torch.distributions import Normal

import d2l_support as d2l


def l2_penalty(w):
    return (w**2).sum() / 2


def weight_decay_step(w, b, X, y, lr, lambd):
    """w <- (1 - lr lambd) w - lr/|B| sum x (w.x + b - y); b <- b - lr/|B| sum (w.x + b - y)."""
    residual = X @ w + b - y
    return (1 - lr * lambd) * w - lr * X.T @ residual / len(y), b - lr * residual.mean()


def random_batch(seed, n=8, d=5):
    gen = torch.Generator().manual_seed(seed)
    X, y = torch.randn(n, d, generator=gen), torch.randn(n, generator=gen)
    return X, y, torch.randn(d, generator=gen), torch.tensor(0.3)


@pytest.mark.parametrize("lr, lambd", [(0.1, 0.5), (0.03, 3.0), (0.5, 0.0), (0.01, 50.0)])
def test_update_rule_matches_autograd(lr, lambd):
    X, y, w0, b0 = random_batch(0)
    w_rule, b_rule = weight_decay_step(w0, b0, X, y, lr, lambd)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    (((X @ w + b - y) ** 2 / 2).mean() + lambd * l2_penalty(w)).backward()
    assert torch.allclose(w_rule, w.detach() - lr * w.grad, atol=1e-6)
    assert torch.allclose(b_rule, b.detach() - lr * b.grad, atol=1e-6)


@pytest.mark.parametrize("lr, lambd", [(0.1, 0.5), (0.03, 3.0), (0.01, 50.0)])
def test_update_rule_matches_sgd_weight_decay_on_the_weights_only(lr, lambd):
    X, y, w0, b0 = random_batch(1)
    w_rule, b_rule = weight_decay_step(w0, b0, X, y, lr, lambd)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [w], "weight_decay": lambd}, {"params": [b]}], lr=lr)
    ((X @ w + b - y) ** 2 / 2).mean().backward()
    optimizer.step()
    assert torch.allclose(w_rule, w.detach(), atol=1e-6)
    assert torch.allclose(b_rule, b.detach(), atol=1e-6)
    # weight_decay on every parameter would decay the bias as well, which is not the chapter's rule
    w2, b2 = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([w2, b2], lr=lr, weight_decay=lambd)
    ((X @ w2 + b2 - y) ** 2 / 2).mean().backward()
    optimizer.step()
    assert torch.allclose(w2.detach(), w_rule, atol=1e-6)
    assert torch.allclose(b2.detach(), b_rule - lr * lambd * b0, atol=1e-6)


def test_many_steps_with_a_loader_match_sgd():
    X_all, y_all, w0, b0 = random_batch(2, n=40)
    lr, lambd = 0.05, 0.7
    w_rule, b_rule = w0.clone(), b0.clone()
    for X, y in d2l.TensorLoader(X_all, y_all, batch_size=5, shuffle=True, seed=3):
        w_rule, b_rule = weight_decay_step(w_rule, b_rule, X, y, lr, lambd)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [w], "weight_decay": lambd}, {"params": [b]}], lr=lr)
    for X, y in d2l.TensorLoader(X_all, y_all, batch_size=5, shuffle=True, seed=3):
        optimizer.zero_grad()
        ((X @ w + b - y) ** 2 / 2).mean().backward()
        optimizer.step()
    assert torch.allclose(w_rule, w.detach(), atol=1e-5) and torch.allclose(b_rule, b.detach(), atol=1e-5)


def test_decay_alone_is_exponential():
    w0, lr, lambd = torch.randn(4, dtype=torch.float64), 0.003, 3.0
    w = w0.clone()
    zero = torch.zeros(1, 4, dtype=torch.float64)
    for _ in range(400):  # X = 0: no data gradient
        w, _ = weight_decay_step(w, 0.0, zero, torch.zeros(1, dtype=torch.float64), lr, lambd)
    assert torch.allclose(w, (1 - lr * lambd) ** 400 * w0)
    assert (1 - lr * lambd) ** 400 == pytest.approx(0.0266, abs=5e-4)


# ---------------------------------------------------------------- errata: one convention for the scaling


@pytest.mark.parametrize("n, batch_size", [(20, 5), (60, 10), (100, 1)])
def test_notes_penalty_and_notes_update_are_different_objectives(n, batch_size):
    X, y, w0, b0 = random_batch(4, n=batch_size)
    lr, lambd_notes = 0.1, 3.0
    w = w0.clone().requires_grad_(True)
    (((X @ w + b0 - y) ** 2 / 2).mean() + lambd_notes / n * l2_penalty(w)).backward()
    w_penalty = w.detach() - lr * w.grad  # the notes' loss lambda'/(2n) ||w||^2, differentiated
    w_update = (1 - lr * lambd_notes / batch_size) * w0 - lr * X.T @ (X @ w0 + b0 - y) / batch_size  # their update
    assert not torch.allclose(w_penalty, w_update)
    assert torch.allclose(w_penalty, weight_decay_step(w0, b0, X, y, lr, lambd_notes / n)[0], atol=1e-6)
    assert torch.allclose(w_update, weight_decay_step(w0, b0, X, y, lr, lambd_notes / batch_size)[0], atol=1e-6)


def test_notes_forms_agree_for_full_batch_gradient_descent():
    n = 12
    X, y, w0, b0 = random_batch(5, n=n)
    lr, lambd_notes = 0.1, 3.0
    w = w0.clone().requires_grad_(True)
    (((X @ w + b0 - y) ** 2 / 2).mean() + lambd_notes / n * l2_penalty(w)).backward()
    w_update = (1 - lr * lambd_notes / n) * w0 - lr * X.T @ (X @ w0 + b0 - y) / n
    assert torch.allclose(w.detach() - lr * w.grad, w_update, atol=1e-6)


def test_summed_loss_with_penalty_is_the_mean_convention_with_lambda_over_n():
    n = 16
    X, y, w0, b0 = random_batch(6, n=n)
    lambd_sum = 2.5
    w_sum = w0.clone().requires_grad_(True)
    (((X @ w_sum + b0 - y) ** 2 / 2).sum() + lambd_sum * l2_penalty(w_sum)).backward()
    w_mean = w0.clone().requires_grad_(True)
    (((X @ w_mean + b0 - y) ** 2 / 2).mean() + lambd_sum / n * l2_penalty(w_mean)).backward()
    assert torch.allclose(w_sum.grad / n, w_mean.grad, atol=1e-6)


# ---------------------------------------------------------------- the Bayesian view


def map_problem(seed=1, n=30, d=5, sigma=0.5, tau=0.3):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_true = torch.randn(d, generator=gen, dtype=torch.float64)
    y = X @ w_true + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
    return X, y, sigma, tau


def test_negative_log_posterior_formula_up_to_a_constant():
    X, y, sigma, tau = map_problem()

    def formula(w):
        return ((y - X @ w) ** 2).sum() / (2 * sigma**2) + (w**2).sum() / (2 * tau**2)

    def exact(w):
        prior = Normal(torch.zeros((), dtype=torch.float64), tau)
        return -(Normal(X @ w, sigma).log_prob(y).sum() + prior.log_prob(w).sum())

    gen = torch.Generator().manual_seed(7)
    gaps = [(exact(w) - formula(w)).item() for w in torch.randn(4, X.shape[1], generator=gen, dtype=torch.float64)]
    assert max(gaps) - min(gaps) < 1e-9


def ridge(X, y, lambd_sum):
    return torch.linalg.solve(X.T @ X + lambd_sum * torch.eye(X.shape[1], dtype=X.dtype), X.T @ y)


def test_map_by_gradient_descent_equals_the_ridge_closed_form():
    X, y, sigma, tau = map_problem()
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    for _ in range(1000):
        (((y - X @ w) ** 2).sum() / (2 * sigma**2) + (w**2).sum() / (2 * tau**2)).backward()
        with torch.no_grad():
            w -= 0.002 * w.grad
            w.grad.zero_()
    assert torch.allclose(w.detach(), ridge(X, y, sigma**2 / tau**2), atol=1e-8)
    # the ridge solution zeroes the gradient of the mean-convention objective with lambda = sigma^2 / (n tau^2)
    w_star = ridge(X, y, sigma**2 / tau**2).requires_grad_(True)
    (((X @ w_star - y) ** 2 / 2).mean() + sigma**2 / (len(y) * tau**2) * l2_penalty(w_star)).backward()
    assert w_star.grad.abs().max() < 1e-10


def test_ridge_limits():
    X, y, _, _ = map_problem()
    least_squares = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(ridge(X, y, 1e-9), least_squares)
    assert ridge(X, y, 1e9).abs().max() < 1e-7
    norms = [ridge(X, y, lam).norm().item() for lam in (0.01, 0.1, 1, 10, 100)]
    assert all(b < a for a, b in zip(norms, norms[1:]))  # more decay, smaller weights


def test_adamw_decouples_the_decay_and_adam_does_not():
    w0 = torch.randn(5, generator=torch.Generator().manual_seed(3))
    grad = torch.randn(5, generator=torch.Generator().manual_seed(4))
    lr, lambd = 0.1, 0.5

    def one_step(make_optimizer):
        w = w0.clone().requires_grad_(True)
        optimizer = make_optimizer([w])
        (w * grad).sum().backward()
        optimizer.step()
        return w.detach()

    adam_l2 = one_step(lambda p: torch.optim.Adam(p, lr=lr, weight_decay=lambd))
    adamw = one_step(lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=lambd))
    plain = one_step(lambda p: torch.optim.Adam(p, lr=lr))
    assert not torch.allclose(adam_l2, adamw)
    assert torch.allclose(adamw, plain - w0 + (1 - lr * lambd) * w0, atol=1e-6)


# ---------------------------------------------------------------- the high-dimensional experiment


def train_high_dimensional(lambd, epochs=100, lr=0.003):
    """D2L's setting: 20 examples, 200 features, w = 0.01, b = 0.05; returns test MSE and ||w||."""
    true_w = torch.full((200,), 0.01)
    gen = torch.Generator().manual_seed(5)
    train_X, train_y = d2l.synthetic_data(true_w, 0.05, 20, noise=0.01, generator=gen)
    test_X, test_y = d2l.synthetic_data(true_w, 0.05, 100, noise=0.01, generator=gen)
    train_y, test_y = train_y.squeeze(1), test_y.squeeze(1)
    torch.manual_seed(0)
    w, b = torch.randn(200), torch.zeros(())
    loader = d2l.TensorLoader(train_X, train_y, batch_size=5, shuffle=True, seed=0)
    for _ in range(epochs):
        for X, y in loader:
            w, b = weight_decay_step(w, b, X, y, lr, lambd)
    return ((test_X @ w + b - test_y) ** 2).mean().item(), w.norm().item()


def test_weight_decay_cures_the_high_dimensional_overfitting():
    test_0, norm_0 = train_high_dimensional(0.0)
    test_3, norm_3 = train_high_dimensional(3.0)
    test_12, norm_12 = train_high_dimensional(12.0)
    assert test_0 > 100 * test_3 and test_3 > test_12
    assert norm_0 > 10 > norm_3 > norm_12
    assert test_12 < 0.03  # near the level of predicting the mean label, about 0.02
