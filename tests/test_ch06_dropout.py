"""Equation checks for chapter 06 (dropout): inverted dropout's mean and variance, nn.Dropout, train/eval modes."""

import math

import pytest
import torch
from torch import nn


def dropout_mask(X, p, generator=None):
    """Draw a 0/1 mask shaped like X whose entries are 1 (keep) with probability 1 - p."""
    return (torch.rand(X.shape, device=X.device, generator=generator) >= p).to(X.dtype)


def apply_dropout_mask(X, mask, p):
    """Inverted dropout with a given mask: keep the entries where mask is 1, scaled by 1 / (1 - p)."""
    if p == 1:
        return torch.zeros_like(X)
    return X * mask / (1 - p)


def dropout_layer(X, p, generator=None):
    """Inverted dropout: zero each entry of X with probability p and scale the survivors by 1 / (1 - p)."""
    if not 0 <= p <= 1:
        raise ValueError(f"the dropout probability p must lie in [0, 1], got {p}")
    return apply_dropout_mask(X, dropout_mask(X, p, generator), p)


NUM_MASKS = 200_000
X_VALUES = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)


def two_point_moments(x, p):
    """Exact variance and fourth central moment of h' = xi x / (1 - p) with xi ~ Bernoulli(1 - p)."""
    low, high = -x, x / (1 - p) - x  # deviations from the mean x when dropped and when kept
    variance = p * low**2 + (1 - p) * high**2
    fourth = p * low**4 + (1 - p) * high**4
    return variance, fourth


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_inverted_dropout_keeps_the_expectation(p):
    samples = dropout_layer(X_VALUES.expand(NUM_MASKS, -1), p, torch.Generator().manual_seed(11))
    standard_error = X_VALUES.abs() * math.sqrt(p / (1 - p)) / math.sqrt(NUM_MASKS)
    # six standard errors: a false alarm has probability about 1e-9 per entry, and the seed is fixed anyway
    assert torch.all((samples.mean(dim=0) - X_VALUES).abs() <= 6 * standard_error)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_inverted_dropout_variance_is_p_over_one_minus_p_x_squared(p):
    samples = dropout_layer(X_VALUES.expand(NUM_MASKS, -1), p, torch.Generator().manual_seed(12))
    variance, fourth = two_point_moments(X_VALUES, p)
    assert torch.allclose(variance, p / (1 - p) * X_VALUES**2)  # the closed form of the chapter
    # exact standard error of the (unbiased) sample variance of NUM_MASKS independent draws
    n = NUM_MASKS
    standard_error = torch.sqrt((fourth - (n - 3) / (n - 1) * variance**2) / n)
    assert torch.all((samples.var(dim=0) - variance).abs() <= 6 * standard_error)


def test_variance_grows_without_bound_as_p_approaches_one():
    ones = torch.ones(NUM_MASKS, dtype=torch.float64)
    variances = [dropout_layer(ones, p, torch.Generator().manual_seed(13)).var().item() for p in (0.5, 0.8, 0.9)]
    assert variances[0] < variances[1] < variances[2]
    assert variances[2] == pytest.approx(9.0, rel=0.05)


def test_mask_keeps_a_fraction_one_minus_p():
    mask = dropout_mask(torch.empty(NUM_MASKS), 0.3, torch.Generator().manual_seed(14))
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.mean().item() == pytest.approx(0.7, abs=6 * math.sqrt(0.21 / NUM_MASKS))


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(4, 6), (3, 2, 5)])
def test_scratch_dropout_matches_nn_dropout_given_the_same_mask(p, shape):
    X = torch.randn(shape, generator=torch.Generator().manual_seed(15))
    drop = nn.Dropout(p)
    torch.manual_seed(16)
    expected = drop(X)
    torch.manual_seed(16)
    mask = (drop(torch.ones_like(X)) != 0).to(X.dtype)  # the same random draw, read off a tensor of ones
    assert torch.allclose(apply_dropout_mask(X, mask, p), expected, atol=1e-6)
    if p > 0:
        assert torch.allclose(drop(torch.ones_like(X)).unique().max(), torch.tensor(1 / (1 - p)))


def test_nn_dropout_is_the_identity_in_eval_mode():
    X = torch.randn(8, 16)
    drop = nn.Dropout(0.5)
    assert drop.training
    assert not torch.equal(drop(X), X)
    drop.eval()
    assert torch.equal(drop(X), X)


def test_a_network_with_dropout_is_deterministic_in_eval_mode_only():
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    X = torch.randn(5, 10)
    assert not torch.equal(net(X), net(X))
    net.eval()
    plain = nn.Sequential(net[0], net[1], net[3])  # the same layers without dropout
    assert torch.equal(net(X), net(X))
    assert torch.equal(net(X), plain(X))


def test_edge_cases():
    X = torch.randn(3, 4)
    assert torch.equal(dropout_layer(X, 0.0), X)
    assert torch.equal(dropout_layer(X, 1.0), torch.zeros_like(X))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            dropout_layer(X, bad)


def test_gradient_of_dropout_is_the_mask_over_one_minus_p():
    p = 0.3
    h = torch.randn(10, requires_grad=True)
    dropout_layer(h, p, torch.Generator().manual_seed(0)).sum().backward()
    mask = dropout_mask(h, p, torch.Generator().manual_seed(0))
    assert torch.allclose(h.grad, mask / (1 - p))


def test_dropped_units_get_no_gradient_for_one_example_but_do_in_a_batch():
    torch.manual_seed(17)
    lin1, lin2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def gradients(X, mask):
        lin1.zero_grad()
        lin2.zero_grad()
        lin2(apply_dropout_mask(torch.tanh(lin1(X)), mask, 0.5)).sum().backward()
        return lin1.weight.grad.clone(), lin2.weight.grad.clone()

    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    g1, g2 = gradients(torch.randn(1, 4), mask)
    dropped = mask[0] == 0
    assert torch.all(g1[dropped] == 0) and torch.all(g1[~dropped].abs().sum(dim=1) > 0)
    assert torch.all(g2[:, dropped] == 0) and torch.all(g2[:, ~dropped].abs().sum(dim=0) > 0)

    X = torch.randn(64, 4)
    g1, g2 = gradients(X, dropout_mask(torch.empty(64, 5), 0.5, torch.Generator().manual_seed(18)))
    assert torch.all(g1.abs().sum(dim=1) > 0) and torch.all(g2.abs().sum(dim=0) > 0)
