"""Equation checks for chapter 04 (model selection): polynomial features, K-fold splits, the minibatch
gradient, nested least-squares fits, leave-one-out cross-validation and the choice of the degree."""

import math

import pytest
import torch

TRUE_W = torch.tensor([5.0, 1.2, -3.4, 5.6], dtype=torch.float64)


def poly_features(x, degree):
    """The features x^i / i! for i = 0, ..., degree, as in the chapter."""
    powers = torch.arange(degree + 1, dtype=x.dtype)
    factorials = torch.tensor([math.factorial(i) for i in range(degree + 1)], dtype=x.dtype)
    return x.unsqueeze(1) ** powers / factorials


def make_data(n, generator):
    """D2L's cubic data: x ~ N(0, 1), y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + N(0, 0.1^2)."""
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    return x, poly_features(x, 3) @ TRUE_W + 0.1 * torch.randn(n, generator=generator, dtype=torch.float64)


def k_fold_splits(n, k, generator=None):
    """Shuffle 0..n-1 into k folds; return k (train_indices, validation_indices) pairs."""
    if not 2 <= k <= n:
        raise ValueError(f"k must lie between 2 and the number of examples {n}, got {k}")
    folds = torch.randperm(n, generator=generator).tensor_split(k)
    return [(torch.cat(folds[:i] + folds[i + 1:]), folds[i]) for i in range(k)]


def fit_least_squares(degree, x, y):
    return torch.linalg.lstsq(poly_features(x, degree), y.unsqueeze(1), driver="gelsd").solution.squeeze(1)


def mse(X, y, w):
    return ((X @ w - y) ** 2).mean().item()


def cross_validation_error(degree, x, y, splits):
    errors = torch.tensor([mse(poly_features(x[va], degree), y[va], fit_least_squares(degree, x[tr], y[tr]))
                           for tr, va in splits])
    return errors.mean().item(), (errors.std() / math.sqrt(len(errors))).item()


def test_poly_features_are_powers_over_factorials():
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], dtype=torch.float64)
    F = poly_features(x, 20)
    assert F.shape == (5, 21)
    assert torch.equal(F[:, 0], torch.ones(5, dtype=torch.float64))
    for i in (1, 2, 3, 7, 20):
        assert torch.allclose(F[:, i], x**i / math.factorial(i))
    # the true cubic in this basis
    cubic = 5 + 1.2 * x - 3.4 * x**2 / 2 + 5.6 * x**3 / 6
    assert torch.allclose(poly_features(x, 3) @ TRUE_W, cubic)
    # dividing by i! keeps high powers small: |x|^20 / 20! at x = 3 is about 1.4e-9
    assert F[-1, 20].item() == pytest.approx(3.0**20 / math.factorial(20)) and F[-1, 20].item() < 1e-8


@pytest.mark.parametrize("n, k", [(100, 5), (101, 5), (23, 4), (10, 10), (7, 2)])
def test_k_fold_validation_folds_partition_the_data(n, k):
    splits = k_fold_splits(n, k, torch.Generator().manual_seed(n + k))
    assert len(splits) == k
    validation = torch.cat([val for _, val in splits])
    assert torch.equal(validation.sort().values, torch.arange(n))  # every example validated exactly once
    sizes = [len(val) for _, val in splits]
    assert max(sizes) - min(sizes) <= 1
    for train, val in splits:
        assert len(train) + len(val) == n
        assert not set(train.tolist()) & set(val.tolist())
    # every example is used for training exactly k - 1 times
    assert torch.equal(torch.cat([tr for tr, _ in splits]).bincount(minlength=n), torch.full((n,), k - 1))


@pytest.mark.parametrize("k", [0, 1, 11])
def test_k_fold_rejects_impossible_k(k):
    with pytest.raises(ValueError, match="k must lie between 2"):
        k_fold_splits(10, k)


def test_minibatch_gradient_matches_autograd():
    x, y = make_data(10, torch.Generator().manual_seed(0))
    X = poly_features(x, 5)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64).requires_grad_(True)
    (0.5 * (X @ w - y) ** 2).mean().backward()
    assert torch.allclose(X.T @ (X @ w.detach() - y) / len(y), w.grad)


def test_least_squares_training_error_never_increases_with_the_degree():
    x, y = make_data(100, torch.Generator().manual_seed(1))
    # up to degree 15; beyond, the smallest singular values fall below the solver's cutoff (numerics, not maths)
    errs = [mse(poly_features(x, d), y, fit_least_squares(d, x, y)) for d in range(16)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errs, errs[1:]))
    assert errs[1] > 100 * errs[3]  # a line underfits the cubic
    assert errs[3] == pytest.approx(0.01, rel=0.5)  # the cubic reaches the noise level 0.1^2


def test_least_squares_recovers_the_cubic():
    x, y = make_data(1000, torch.Generator().manual_seed(2))
    assert torch.allclose(fit_least_squares(3, x, y), TRUE_W, atol=0.02)


def test_interpolation_when_examples_do_not_exceed_coefficients():
    x, y = make_data(8, torch.Generator().manual_seed(3))
    w = fit_least_squares(10, x, y)
    assert mse(poly_features(x, 10), y, w) < 1e-12


def test_leave_one_out_shortcut_equals_k_fold_with_k_equal_n():
    x, y = make_data(40, torch.Generator().manual_seed(4))
    X = poly_features(x, 3)
    H = X @ torch.linalg.solve(X.T @ X, X.T)
    residuals = y - H @ y
    shortcut = ((residuals / (1 - H.diagonal())) ** 2).mean().item()
    loo = cross_validation_error(3, x, y, k_fold_splits(40, 40))[0]
    assert shortcut == pytest.approx(loo, rel=1e-6)


@pytest.mark.parametrize("seed", [4, 0, 1, 2, 3])
def test_cross_validation_with_the_one_standard_error_rule_picks_the_cubic(seed):
    x, y = make_data(100, torch.Generator().manual_seed(seed))
    splits = k_fold_splits(100, 5, torch.Generator().manual_seed(0))
    cv = [cross_validation_error(d, x, y, splits) for d in range(11)]
    best = min(range(11), key=lambda d: cv[d][0])
    one_se = min(d for d in range(11) if cv[d][0] <= cv[best][0] + cv[best][1])
    assert best >= 3 and one_se == 3
    assert cv[1][0] > 50 * cv[3][0]
