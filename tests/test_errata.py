"""The errata page's checks: each error in the source notes, and its correction, verified numerically."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def vgg_block(num_convs, in_channels, out_channels, relu_after_first=True):
    layers = []
    for i in range(num_convs):
        layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1))
        if i > 0 or relu_after_first:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.MaxPool2d(2))


@pytest.mark.parametrize("num_convs", [1, 2, 3])
def test_vgg_block_needs_a_relu_after_every_conv(num_convs):
    relus = lambda block: sum(isinstance(m, nn.ReLU) for m in block)
    assert relus(vgg_block(num_convs, 3, 8)) == num_convs
    assert relus(vgg_block(num_convs, 3, 8, relu_after_first=False)) == num_convs - 1


def test_buggy_single_conv_block_is_linear():
    torch.manual_seed(0)
    conv = vgg_block(1, 1, 4, relu_after_first=False)[0]
    x = torch.randn(1, 1, 8, 8)
    linear = lambda x: conv(x) - conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(linear(-x), -linear(x), atol=1e-6)
    correct = vgg_block(1, 1, 4)
    assert not torch.allclose(correct[1](conv(-x)), -correct[1](conv(x)))


def test_batch_norm_normalises_with_biased_and_tracks_unbiased_variance():
    torch.manual_seed(0)
    x = torch.randn(8, 3)
    bn = nn.BatchNorm1d(3, affine=False, momentum=1.0)
    y = bn(x)
    mu = x.mean(0)
    biased, unbiased = x.var(0, unbiased=False), x.var(0, unbiased=True)
    assert torch.allclose(y, (x - mu) / torch.sqrt(biased + bn.eps), atol=1e-5)
    assert not torch.allclose(y, (x - mu) / torch.sqrt(unbiased + bn.eps), atol=1e-3)
    assert torch.allclose(bn.running_var, unbiased, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.1, 0.9])
def test_pytorch_momentum_is_the_weight_of_the_new_batch(momentum):
    torch.manual_seed(0)
    x = torch.randn(16, 2, 4, 4) + 5.0
    bn = nn.BatchNorm2d(2, momentum=momentum)
    bn(x)
    assert torch.allclose(bn.running_mean, momentum * x.mean(dim=(0, 2, 3)), atol=1e-5)


def test_variance_needs_the_subtraction_and_the_square():
    x = torch.tensor([1.0, 2.0, 4.0, 9.0])
    booklet = x.sum() / len(x)  # (1/m) sum x_i
    assert booklet == x.mean() and ((x - 10).sum() / len(x)) < 0  # the mean, negative for shifted data
    assert (x - x.mean()).mean().abs() < 1e-6
    assert ((x - x.mean()) ** 2).mean() == pytest.approx(torch.var(x, unbiased=False).item())


class Inception(nn.Module):
    def __init__(self, c_in, c1, c2, c3, c4):
        super().__init__()
        self.p1 = nn.Conv2d(c_in, c1, 1)
        self.p2 = nn.Sequential(nn.Conv2d(c_in, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1))
        self.p3 = nn.Sequential(nn.Conv2d(c_in, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2))
        self.p4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c_in, c4, 1))

    def forward(self, x):
        return torch.cat([torch.relu(p(x)) for p in (self.p1, self.p2, self.p3, self.p4)], dim=1)


def test_inception_blocks_per_googlenet_module():
    modules = {
        "third": [(192, 64, (96, 128), (16, 32), 32), (256, 128, (128, 192), (32, 96), 64)],
        "fourth": [(480, 192, (96, 208), (16, 48), 64), (512, 160, (112, 224), (24, 64), 64),
                   (512, 128, (128, 256), (24, 64), 64), (512, 112, (144, 288), (32, 64), 64),
                   (528, 256, (160, 320), (32, 128), 128)],
        "fifth": [(832, 256, (160, 320), (32, 128), 128), (832, 384, (192, 384), (48, 128), 128)],
    }
    x = torch.randn(1, 192, 4, 4)
    for configs in modules.values():
        x = nn.Sequential(*(Inception(*c) for c in configs))(x)  # fails if the channels do not chain
    assert x.shape[1] == 1024
    assert {name: len(configs) for name, configs in modules.items()} == {"third": 2, "fourth": 5, "fifth": 2}


def test_bptt_needs_the_direct_term_and_gives_dW_qh():
    torch.manual_seed(0)
    T, d, h, q = 5, 3, 4, 2
    W_hx, W_hh, W_qh = [(torch.randn(*s) * 0.5).requires_grad_(True) for s in [(h, d), (h, h), (q, h)]]
    xs, targets = torch.randn(T, d), torch.randn(T, q)
    hs, h_prev = [], torch.zeros(h)
    for t in range(T):
        h_prev = W_hx @ xs[t] + W_hh @ h_prev
        h_prev.retain_grad()
        hs.append(h_prev)
    outputs = [W_qh @ h_t for h_t in hs]
    (sum(((o - y) ** 2).sum() / 2 for o, y in zip(outputs, targets)) / T).backward()
    dL_do = [(o - y).detach() / T for o, y in zip(outputs, targets)]

    def recursion():
        grads = [W_qh.detach().T @ dL_do[-1]]
        for t in range(T - 2, -1, -1):
            grads.insert(0, W_hh.detach().T @ grads[0] + W_qh.detach().T @ dL_do[t])
        return torch.stack(grads)

    def expansion(first):
        """Sum over s >= t + first of (W_hh^T)^(s-t) W_qh^T dL/do_s; first = 1 is the notes' expansion."""
        A, B = W_hh.detach().T, W_qh.detach().T
        return torch.stack([sum((torch.linalg.matrix_power(A, s - t) @ B @ dL_do[s] for s in range(t + first, T)),
                                torch.zeros(h)) for t in range(T)])

    autograd_dh = torch.stack([h_t.grad for h_t in hs])
    assert torch.allclose(recursion(), autograd_dh, atol=1e-6)
    assert torch.allclose(expansion(0), autograd_dh, atol=1e-6)
    direct = torch.stack([W_qh.detach().T @ g for g in dL_do])
    assert torch.allclose(autograd_dh - expansion(1), direct, atol=1e-6) and direct.abs().max() > 1e-2
    with pytest.raises(RuntimeError):  # the notes' leading term has no W_qh^T: (h, h) @ (q,) with q != h
        torch.linalg.matrix_power(W_hh.detach().T, 2) @ dL_do[-1]
    dW_qh = sum(torch.outer(g, h_t.detach()) for g, h_t in zip(dL_do, hs))
    assert torch.allclose(dW_qh, W_qh.grad, atol=1e-6)


def test_weight_decay_convention_matches_sgd_weight_decay():
    torch.manual_seed(0)
    X, y, w0, lam, lr = torch.randn(10, 4), torch.randn(10), torch.randn(4), 0.3, 0.1
    rule = (1 - lr * lam) * w0 - lr * X.T @ (X @ w0 - y) / len(y)
    w = w0.clone().requires_grad_(True)
    (((X @ w - y) ** 2 / 2).mean() + lam / 2 * (w**2).sum()).backward()
    assert torch.allclose(rule, w0 - lr * w.grad, atol=1e-6)
    w_torch = w0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([w_torch], lr=lr, weight_decay=lam)
    ((X @ w_torch - y) ** 2 / 2).mean().backward()
    optimizer.step()
    assert torch.allclose(rule, w_torch.detach(), atol=1e-6)
    # The notes' mix, penalty lam/(2n) with a 1/|B| update, is the same rule with lam scaled by |B|/n.
    n, batch = 60, 10
    w_mix = w0.clone().requires_grad_(True)
    (((X @ w_mix - y) ** 2 / 2).mean() + lam / (2 * n) * (w_mix**2).sum() * batch).backward()
    assert torch.allclose(w0 - lr * w_mix.grad, (1 - lr * lam * batch / n) * w0 - lr * X.T @ (X @ w0 - y) / batch)


def test_alexnet_fc_layers_have_4096_outputs():
    fc = lambda width: nn.Sequential(nn.Linear(6400, width), nn.Linear(width, width), nn.Linear(width, 10))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(fc(4096)) == 43_040_778 and count(fc(496)) == 3_426_378


def test_two_input_channel_example():
    K = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]]).unsqueeze(0)
    both_one_to_nine = torch.arange(1.0, 10.0).repeat(2).reshape(1, 2, 3, 3)
    zero_to_eight_first = torch.cat([torch.arange(0.0, 9.0), torch.arange(1.0, 10.0)]).reshape(1, 2, 3, 3)
    assert F.conv2d(both_one_to_nine, K).squeeze().tolist() == [[62, 78], [110, 126]]
    assert F.conv2d(zero_to_eight_first, K).squeeze().tolist() == [[56, 72], [104, 120]]


def test_resnet_stage_builder():
    def as_in_notes(num_residuals):
        for i in range(num_residuals):
            if i == 0:
                blk.append("down")  # noqa: F821
                blk.append("plain")  # noqa: F821

    def list_added(num_residuals):
        blk = []
        for i in range(num_residuals):
            if i == 0:
                blk.append("down")
                blk.append("plain")
        return blk

    def correct(num_residuals):
        return ["down" if i == 0 else "plain" for i in range(num_residuals)]

    with pytest.raises(NameError):
        as_in_notes(2)
    assert len(list_added(3)) == 2 and len(list_added(1)) == 2
    assert correct(3) == ["down", "plain", "plain"] and len(correct(1)) == 1


def test_ragged_one_hot_rows_are_rejected():
    with pytest.raises(ValueError, match="expected sequence of length 9"):
        torch.tensor([[0] * 9, [0] * 10])
    assert F.one_hot(torch.tensor([3, 1]), 10).shape == (2, 10)


def test_residual_block_can_be_the_identity():
    branch = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    nn.init.zeros_(branch[2].weight)
    nn.init.zeros_(branch[2].bias)
    x = torch.randn(3, 4)
    assert torch.equal(x + branch(x), x)
