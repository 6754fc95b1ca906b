"""Equation checks of chapter 02, softmax regression: softmax, cross-entropy, its gradient and the SGD update."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import d2l_support as d2l


def softmax_naive(O):
    """Row-wise softmax exactly as the formula reads."""
    E = torch.exp(O)
    return E / E.sum(dim=1, keepdim=True)


def softmax(O):
    """Row-wise softmax after subtracting each row's maximum (the chapter's stable form)."""
    E = torch.exp(O - O.max(dim=1, keepdim=True).values)
    return E / E.sum(dim=1, keepdim=True)


def log_softmax(O):
    """Row-wise log-softmax by the LogSumExp trick."""
    shifted = O - O.max(dim=1, keepdim=True).values
    return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))


def cross_entropy(Y_hat, y):
    """Per-example loss -log(probability of the true class)."""
    return -torch.log(Y_hat[torch.arange(len(y)), y])


def update_by_hand(W, b, X, y, lr):
    """W -= lr/|B| sum_i x_i (y_hat_i - y_i)^T and b -= lr/|B| sum_i (y_hat_i - y_i), as sums over examples."""
    X = X.reshape(len(X), -1)
    errors = softmax(X @ W + b) - F.one_hot(y, num_classes=W.shape[1]).float()
    grad_W = sum(torch.outer(x_i, e_i) for x_i, e_i in zip(X, errors)) / len(X)
    grad_b = errors.sum(dim=0) / len(X)
    return W - lr * grad_W, b - lr * grad_b


class SGD:
    """The chapter's scratch optimizer: zero_grad() and step() on a list of tensors."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        with torch.no_grad():
            for p in self.params:
                p -= self.lr * p.grad


# ---------------------------------------------------------------- softmax


@pytest.mark.parametrize("shape", [(1, 3), (7, 10), (64, 10)])
def test_softmax_matches_torch_softmax(shape):
    O = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    P = softmax(O)
    assert torch.allclose(P, torch.softmax(O, dim=1), atol=1e-6)
    assert torch.allclose(P, softmax_naive(O), atol=1e-6)
    assert torch.allclose(P.sum(dim=1), torch.ones(shape[0]), atol=1e-6)
    assert (P > 0).all()
    assert torch.equal(P.argmax(dim=1), O.argmax(dim=1))


@pytest.mark.parametrize("offset", [1000.0, -1000.0, 1e4])
def test_stable_softmax_survives_huge_logits_where_the_naive_form_gives_nan(offset):
    O = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 50.0]])
    big = O + offset
    assert torch.isnan(softmax_naive(big)).all()
    assert torch.isfinite(softmax(big)).all()
    assert torch.allclose(softmax(big), torch.softmax(big, dim=1), atol=1e-6)
    assert torch.allclose(softmax(big), softmax(O), atol=1e-6)  # shift invariance


def test_temperature_keeps_the_argmax_and_spreads_the_probabilities():
    logits = torch.tensor([[3.0, 1.5, 1.0, 0.2, -1.0]])
    temperatures = [0.05, 0.5, 1.0, 2.0, 10.0, 1e4]
    probs = [softmax(logits / T) for T in temperatures]
    entropies = [torch.special.entr(p).sum().item() for p in probs]
    assert all(p.argmax() == 0 for p in probs)
    assert entropies == sorted(entropies)
    assert torch.allclose(probs[0], F.one_hot(torch.tensor([0]), 5).float(), atol=1e-6)
    assert torch.allclose(probs[-1], torch.full((1, 5), 0.2), atol=1e-3)


# ---------------------------------------------------------------- cross-entropy and its gradient


def test_cross_entropy_known_values():
    Y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    losses = cross_entropy(Y_hat, torch.tensor([0, 2]))
    assert losses.tolist() == pytest.approx([-torch.log(torch.tensor(0.1)).item(), torch.log(torch.tensor(2.0)).item()])


def test_cross_entropy_matches_F_cross_entropy_and_the_one_hot_sum():
    g = torch.Generator().manual_seed(1)
    O = torch.randn(32, 10, generator=g) * 2
    y = torch.randint(0, 10, (32,), generator=g)
    ours = cross_entropy(softmax(O), y)
    assert torch.allclose(ours, F.cross_entropy(O, y, reduction="none"), atol=1e-5)
    assert torch.allclose(ours.mean(), F.cross_entropy(O, y), atol=1e-6)
    assert torch.allclose(ours.mean(), nn.CrossEntropyLoss()(O, y), atol=1e-6)
    one_hot_sum = -(F.one_hot(y, 10).float() * torch.log(softmax(O))).sum(dim=1)
    assert torch.allclose(ours, one_hot_sum, atol=1e-6)


def test_log_sum_exp_stays_finite_where_softmax_then_log_overflows():
    O = torch.tensor([[0.0, 200.0], [3.0, 1.0]])
    y = torch.tensor([0, 0])
    two_step = cross_entropy(softmax(O), y)
    fused = -log_softmax(O)[torch.arange(2), y]
    assert torch.isinf(two_step[0])
    assert torch.allclose(fused, torch.tensor([200.0, 0.126928]), atol=1e-5)
    assert torch.allclose(fused, F.cross_entropy(O, y, reduction="none"), atol=1e-6)
    wide = torch.randn(16, 10, generator=torch.Generator().manual_seed(2)) * 50
    assert torch.allclose(log_softmax(wide), F.log_softmax(wide, dim=1), atol=1e-4)


@pytest.mark.parametrize("loss_of_logits", [
    lambda O, y: cross_entropy(softmax(O), y).mean(),
    lambda O, y: F.cross_entropy(O, y),
], ids=["scratch", "F.cross_entropy"])
def test_gradient_wrt_logits_is_softmax_minus_one_hot_over_batch_size(loss_of_logits):
    g = torch.Generator().manual_seed(3)
    O = (torch.randn(6, 10, generator=g) * 2).requires_grad_()
    y = torch.randint(0, 10, (6,), generator=g)
    loss_of_logits(O, y).backward()
    expected = (torch.softmax(O.detach(), dim=1) - F.one_hot(y, 10).float()) / len(y)
    assert torch.allclose(O.grad, expected, atol=1e-6)
    assert torch.allclose(O.grad.sum(dim=1), torch.zeros(6), atol=1e-6)  # each row of y_hat - y sums to 0


def test_gradient_of_a_summed_loss_is_not_divided_by_the_batch_size():
    O = torch.randn(5, 4, generator=torch.Generator().manual_seed(4)).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 0])
    F.cross_entropy(O, y, reduction="sum").backward()
    assert torch.allclose(O.grad, torch.softmax(O.detach(), dim=1) - F.one_hot(y, 4).float(), atol=1e-6)


# ---------------------------------------------------------------- the update rule


def test_explicit_update_rule_equals_one_sgd_step_on_nn_linear():
    g = torch.Generator().manual_seed(5)
    X = torch.rand(16, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    W0, b0 = net[1].weight.detach().T.clone(), net[1].bias.detach().clone()  # nn.Linear stores W^T
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    nn.CrossEntropyLoss()(net(X), y).backward()
    optimizer.step()
    W1, b1 = update_by_hand(W0, b0, X, y, lr=0.1)
    assert torch.allclose(W1, net[1].weight.detach().T, atol=1e-6)
    assert torch.allclose(b1, net[1].bias.detach(), atol=1e-6)
    assert (W1 - W0).abs().max() > 1e-3  # the step is large compared with the tolerance
    wrong_sign = W0 + (W0 - W1)
    assert not torch.allclose(wrong_sign, net[1].weight.detach().T, atol=1e-4)


def test_sum_of_outer_products_is_the_matrix_product():
    g = torch.Generator().manual_seed(6)
    X, E = torch.rand(8, 12, generator=g), torch.randn(8, 3, generator=g)
    assert torch.allclose(sum(torch.outer(x, e) for x, e in zip(X, E)), X.T @ E, atol=1e-5)


def test_scratch_sgd_matches_torch_optim_sgd():
    g = torch.Generator().manual_seed(7)
    X, y = torch.rand(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)
    W0, b0 = torch.randn(6, 3, generator=g), torch.zeros(3)
    results = []
    for make in (lambda p: SGD(p, lr=0.5), lambda p: torch.optim.SGD(p, lr=0.5)):
        W, b = W0.clone().requires_grad_(), b0.clone().requires_grad_()
        optimizer = make([W, b])
        for _ in range(3):
            optimizer.zero_grad()
            cross_entropy(softmax(X @ W + b), y).mean().backward()
            optimizer.step()
        results.append((W.detach(), b.detach()))
    (W_a, b_a), (W_b, b_b) = results
    assert torch.allclose(W_a, W_b, atol=1e-6) and torch.allclose(b_a, b_b, atol=1e-6)
    assert not torch.allclose(W_a, W0)


# ---------------------------------------------------------------- training with d2l_support


def separable_blobs(n=600, seed=0):
    """Three well separated Gaussian blobs in the plane, split 480/120 into training and test loaders."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 5.0]])
    y = torch.randint(0, 3, (n,), generator=g)
    X = centers[y] + torch.randn(n, 2, generator=g)
    train = d2l.TensorLoader(X[:480], y[:480], batch_size=32, shuffle=True)
    test = d2l.TensorLoader(X[480:], y[480:], batch_size=64)
    return train, test


def test_train_classifier_learns_a_separable_problem_from_scratch():
    train, test = separable_blobs()
    torch.manual_seed(0)
    W = torch.normal(0, 0.01, size=(2, 3), requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    net = lambda X: softmax(X @ W + b)
    loss_fn = lambda Y_hat, y: cross_entropy(Y_hat, y).mean()
    history = d2l.train_classifier(net, train, test, loss_fn, SGD([W, b], lr=0.1), 5, device="cpu", plot=False)
    assert history.test_acc[-1] >= 0.95
    assert history.train_loss[-1] < history.train_loss[0]


def test_train_classifier_learns_a_separable_problem_with_nn():
    train, test = separable_blobs(seed=1)
    torch.manual_seed(1)
    net = nn.Linear(2, 3)
    untrained = d2l.evaluate_accuracy(net, test, device=torch.device("cpu"))
    history = d2l.train_classifier(net, train, test, nn.CrossEntropyLoss(),
                                   torch.optim.SGD(net.parameters(), lr=0.1), 5, device="cpu", plot=False)
    assert history.test_acc[-1] >= 0.95 > untrained


# ---------------------------------------------------------------- errata


def test_y_target_with_rows_of_9_and_10_entries_cannot_be_built():
    rows_as_printed = [[1, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]]
    assert [len(row) for row in rows_as_printed] == [9, 10]
    with pytest.raises(ValueError, match="expected sequence of length 9 at dim 1"):
        torch.tensor(rows_as_printed, dtype=torch.float32)
    y_target = F.one_hot(torch.tensor([0, 1]), num_classes=10).float()
    assert y_target.shape == (2, 10)
    assert y_target.sum(dim=1).tolist() == [1.0, 1.0]
    assert y_target.argmax(dim=1).tolist() == [0, 1]
