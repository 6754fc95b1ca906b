"""Equation checks for the batch normalization chapter (14), including its three errata."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def batch_norm(X, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The chapter's from-scratch batch normalization (PyTorch's conventions)."""
    if not training:
        X_hat = (X - running_mean) / torch.sqrt(running_var + eps)
        return gamma * X_hat + beta, running_mean, running_var
    dims = (0,) if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
    X_hat = (X - mean) / torch.sqrt(var + eps)
    m = X.numel() // X.shape[1]
    with torch.no_grad():
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    return gamma * X_hat + beta, running_mean, running_var


class BatchNorm(nn.Module):
    """The chapter's from-scratch layer."""

    def __init__(self, num_features, num_dims, momentum=0.1, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.momentum, self.eps = momentum, eps

    def forward(self, X):
        Y, self.running_mean, self.running_var = batch_norm(
            X, self.gamma, self.beta, self.running_mean, self.running_var, self.training, self.momentum, self.eps)
        return Y


CASES = [
    pytest.param(lambda: BatchNorm(5, 2), lambda: nn.BatchNorm1d(5), (16, 5), id="dense"),
    pytest.param(lambda: BatchNorm(3, 4), lambda: nn.BatchNorm2d(3), (4, 3, 6, 5), id="conv"),
    pytest.param(lambda: BatchNorm(3, 2, momentum=0.3), lambda: nn.BatchNorm1d(3, momentum=0.3), (2, 3),
                 id="dense-batch-2-momentum-0.3"),
]


@pytest.mark.parametrize(("make_ours", "make_theirs", "shape"), CASES)
def test_train_mode_outputs_running_stats_and_gradients(make_ours, make_theirs, shape):
    torch.manual_seed(0)
    ours, theirs = make_ours().double(), make_theirs().double()
    with torch.no_grad():  # non-trivial affine parameters
        theirs.weight.uniform_(0.5, 2.0)
        theirs.bias.normal_()
        ours.gamma.copy_(theirs.weight.reshape(ours.gamma.shape))
        ours.beta.copy_(theirs.bias.reshape(ours.beta.shape))
    for step in range(6):
        X = (torch.randn(shape, dtype=torch.float64) * (step + 1) + 3 * step).requires_grad_()
        Y_ours, Y_theirs = ours(X), theirs(X)
        torch.testing.assert_close(Y_ours, Y_theirs)
        torch.testing.assert_close(ours.running_mean.reshape(-1), theirs.running_mean)
        torch.testing.assert_close(ours.running_var.reshape(-1), theirs.running_var)
        upstream = torch.randn(shape, dtype=torch.float64)
        g_ours = torch.autograd.grad(Y_ours, [X, ours.gamma, ours.beta], upstream)
        g_theirs = torch.autograd.grad(Y_theirs, [X, theirs.weight, theirs.bias], upstream)
        for a, b in zip(g_ours, g_theirs, strict=True):
            torch.testing.assert_close(a.reshape(-1), b.reshape(-1))
    assert theirs.num_batches_tracked.item() == 6


@pytest.mark.parametrize(("make_ours", "make_theirs", "shape"), CASES)
def test_eval_mode_uses_running_statistics(make_ours, make_theirs, shape):
    torch.manual_seed(1)
    ours, theirs = make_ours().double(), make_theirs().double()
    for step in range(3):
        X = torch.randn(shape, dtype=torch.float64) + step
        ours(X), theirs(X)
    ours.eval(), theirs.eval()
    X = torch.randn(shape, dtype=torch.float64) * 4 - 1
    torch.testing.assert_close(ours(X), theirs(X))
    mean = theirs.running_mean.reshape(ours.running_mean.shape)
    var = theirs.running_var.reshape(ours.running_var.shape)
    torch.testing.assert_close(ours(X), (X - mean) / torch.sqrt(var + 1e-5))
    # and the running statistics do not move in eval mode
    before = ours.running_mean.clone()
    ours(X + 100)
    torch.testing.assert_close(ours.running_mean, before)


def test_convolutional_statistics_are_per_channel_over_n_h_w():
    X = torch.randn(4, 3, 5, 6, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]).reshape(1, 3, 1, 1).double()
    Y = nn.BatchNorm2d(3).double()(X)
    per_channel = Y.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    var = X.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=False)
    torch.testing.assert_close(per_channel.var(dim=1, unbiased=False), var / (var + 1e-5))


def test_train_mode_depends_on_the_batch_and_eval_mode_does_not():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, generator=gen)
    batch_a = torch.cat([x, torch.randn(7, 3, generator=gen)])
    batch_b = torch.cat([x, 5 + torch.randn(7, 3, generator=gen)])
    bn = nn.BatchNorm1d(3)
    assert not torch.allclose(bn(batch_a)[0], bn(batch_b)[0])
    bn.eval()
    torch.testing.assert_close(bn(batch_a)[0], bn(batch_b)[0])


# ---------------------------------------------------------------- errata


def test_momentum_convention_of_the_notes_is_pytorchs_one_minus_momentum():
    """Errata errata-bn-momentum: the notes' momentum=0.9 keeps 90% of the old value, PyTorch's 0.1 does too."""
    torch.manual_seed(2)
    notes_mean = torch.zeros(1)
    bn_01, bn_09 = nn.BatchNorm1d(1, momentum=0.1), nn.BatchNorm1d(1, momentum=0.9)
    for _ in range(5):
        X = 2 + torch.randn(16, 1)
        notes_mean = 0.9 * notes_mean + (1 - 0.9) * X.mean(0)
        bn_01(X), bn_09(X)
    torch.testing.assert_close(notes_mean, bn_01.running_mean)
    assert not torch.allclose(notes_mean, bn_09.running_mean, atol=0.1)
    # one step from 0 with a batch of mean 2: 0.2 with momentum 0.1 (notes 0.9), 1.8 with PyTorch's 0.9
    X = torch.tensor([[1.0], [3.0]])
    bn = nn.BatchNorm1d(1, momentum=0.1)
    bn(X)
    assert bn.running_mean.item() == pytest.approx(0.2)
    bn = nn.BatchNorm1d(1, momentum=0.9)
    bn(X)
    assert bn.running_mean.item() == pytest.approx(1.8)


def test_normalisation_uses_biased_variance_running_var_uses_unbiased():
    """Errata errata-bn-variance: normalise with 1/m; PyTorch's running variance uses 1/(m - 1)."""
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    biased, unbiased = x.var(unbiased=False), x.var(unbiased=True)
    assert biased.item() == pytest.approx(3.5)
    assert unbiased.item() == pytest.approx(14 / 3)
    bn = nn.BatchNorm1d(1, affine=False, momentum=1.0)
    y = bn(x)
    torch.testing.assert_close(y, (x - x.mean()) / torch.sqrt(biased + 1e-5))
    assert not torch.allclose(y, (x - x.mean()) / torch.sqrt(unbiased + 1e-5))
    assert bn.running_var.item() == pytest.approx(14 / 3)
    # the notes' code: biased variance for normalisation (right) and for the running variance (unlike PyTorch)
    notes_var = ((x - x.mean()) ** 2).mean()
    assert notes_var.item() == pytest.approx(3.5)
    assert notes_var.item() != pytest.approx(bn.running_var.item())


def test_biased_and_unbiased_differ_by_m_over_m_minus_1_for_conv_layers():
    X = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    bn = nn.BatchNorm2d(3, momentum=1.0).double()
    bn(X)
    m = 2 * 4 * 4
    biased = X.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=False)
    torch.testing.assert_close(bn.running_var, biased * m / (m - 1))


def test_variance_formula_of_seed_004_is_missing_the_square():
    """Errata errata-variance-square: (1/m) sum x_i is the mean, not the variance."""
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    booklet = x.sum() / len(x)
    assert booklet.item() == pytest.approx(x.mean().item())
    assert booklet.item() != pytest.approx(x.var(unbiased=False).item())
    shifted = x + 10
    assert (shifted.sum() / 4).item() == pytest.approx(13.0)  # moves with the data
    assert shifted.var(unbiased=False).item() == pytest.approx(3.5)  # a variance does not
    negative = torch.tensor([-3.0, -1.0, 0.0, 0.0])
    assert torch.isnan(torch.sqrt(negative.sum() / 4 + 1e-5))
    with_square = ((x - x.mean()) ** 2).sum() / len(x)
    assert with_square.item() == pytest.approx(x.var(unbiased=False).item())


# ---------------------------------------------------------------- exercises and the BN-LeNet


def test_bias_before_batch_norm_cancels_in_train_mode():
    """Exercise ex-14-bias."""
    torch.manual_seed(0)
    lin, bn = nn.Linear(3, 4), nn.BatchNorm1d(4)
    X = torch.randn(8, 3)
    torch.testing.assert_close(bn(lin(X)), bn(X @ lin.weight.T), atol=1e-5, rtol=0)


def test_batch_of_one_in_train_mode():
    """Exercise ex-14-batch-size-one."""
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(3)(torch.randn(1, 3))
    assert nn.BatchNorm2d(3)(torch.randn(1, 3, 4, 4)).shape == (1, 3, 4, 4)
    gamma, beta = torch.ones(1, 3), torch.tensor([[0.5, -1.0, 2.0]])
    Y, _, _ = batch_norm(torch.randn(1, 3), gamma, beta, torch.zeros(1, 3), torch.ones(1, 3), training=True)
    torch.testing.assert_close(Y, beta)


def test_folding_batch_norm_into_the_convolution():
    """Exercise ex-14-fold."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3).double(), nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    for _ in range(3):
        bn(conv(torch.randn(4, 2, 6, 6, dtype=torch.float64)))
    bn.eval()
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    W = conv.weight * s[:, None, None, None]
    b = s * (conv.bias - bn.running_mean) + bn.bias
    X = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(F.conv2d(X, W, b), bn(conv(X)))


def test_momentum_memory():
    """Exercise ex-14-momentum: 44 updates until the initial value weighs less than 1%."""
    assert min(t for t in range(200) if 0.9 ** t < 0.01) == 44


def test_bn_lenet_scratch_and_concise_agree():
    def bn_lenet(norm2d, norm1d):
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), norm2d(6), nn.Sigmoid(), nn.AvgPool2d(2, 2),
            nn.Conv2d(6, 16, 5), norm2d(16), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
            nn.Linear(400, 120), norm1d(120), nn.Sigmoid(), nn.Linear(120, 84), norm1d(84), nn.Sigmoid(),
            nn.Linear(84, 10))

    torch.manual_seed(0)
    scratch = bn_lenet(lambda c: BatchNorm(c, 4), lambda d: BatchNorm(d, 2))
    torch.manual_seed(0)
    concise = bn_lenet(nn.BatchNorm2d, nn.BatchNorm1d)
    assert sum(p.numel() for p in scratch.parameters()) == sum(p.numel() for p in concise.parameters())
    assert sum(p.numel() for p in concise.parameters()) == 61_706 + 2 * (6 + 16 + 120 + 84)
    X = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(scratch(X), concise(X))
    scratch.eval(), concise.eval()
    torch.testing.assert_close(scratch(X), concise(X))
