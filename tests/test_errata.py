"""The errata page's checks: each error in the source notes, and its correction, verified numerically."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

import d2l_support as d2l


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


@pytest.mark.parametrize("momentum, matches", [(0.1, True), (0.9, False)])
def test_notes_momentum_09_is_pytorch_momentum_01(momentum, matches):
    torch.manual_seed(0)
    x, old = torch.randn(16, 2, 4, 4) + 5.0, torch.tensor([1.0, -1.0])
    bn = nn.BatchNorm2d(2, momentum=momentum)
    bn.running_mean.copy_(old)
    bn(x)
    notes_rule = 0.9 * old + (1.0 - 0.9) * x.mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, notes_rule, atol=1e-6) == matches


def test_variance_needs_the_subtraction_and_the_square():
    x = torch.tensor([1.0, 2.0, 4.0, 9.0])
    booklet = x.sum() / len(x)  # (1/m) sum x_i
    assert booklet == x.mean() and ((x - 10).sum() / len(x)) < 0  # the mean, negative for shifted data
    assert (x - x.mean()).mean().abs() < 1e-6
    assert ((x - x.mean()) ** 2).mean() == pytest.approx(torch.var(x, unbiased=False).item())


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
        torch.tensor([[1] + [0] * 8, [0, 1] + [0] * 8])
    assert F.one_hot(torch.tensor([0, 1]), 10).shape == (2, 10)


# ---------------------------------------------------------------- torchvision's GoogLeNet and AlexNet


def googlenet_modules():
    """torchvision's GoogLeNet split into modules at its max-pooling layers: lists of (name, layer)."""
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    modules = [[]]
    for name, layer in net.named_children():
        if isinstance(layer, nn.MaxPool2d):
            modules.append([])
        else:
            modules[-1].append((name, layer))
    return net, modules


def test_googlenet_modules_against_torchvision():
    net, modules = googlenet_modules()
    counts = [sum(isinstance(layer, Inception) for _, layer in module) for module in modules]
    assert counts == [0, 0, 2, 5, 2]  # the fifth module, not the fourth, chains 2 Inception blocks
    assert len(modules[1:]) == 4 and sum(c > 0 for c in counts[1:]) == 3  # 4 modules follow, 3 with Inception
    assert [layer.conv.kernel_size for _, layer in modules[1]] == [(1, 1), (3, 3)]
    widths = []
    for _, layer in (pair for module in modules for pair in module):
        if isinstance(layer, Inception):
            layer.register_forward_hook(lambda m, i, output: widths.append(output.shape[1]))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, 64, 64))
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]  # D2L's channel numbers


def test_alexnet_fc_layers_have_4096_outputs():
    alexnet = torchvision.models.alexnet(weights=None)
    assert [m.out_features for m in alexnet.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 1000]


# ---------------------------------------------------------------- weight decay


def test_weight_decay_notes_update_decays_n_over_batch_times_harder():
    torch.manual_seed(0)
    n, batch, lam, lr = 1000, 10, 0.5, 0.1
    X, y = torch.randn(batch, 2, dtype=torch.float64), torch.randn(batch, dtype=torch.float64)
    w0 = torch.randn(2, dtype=torch.float64)
    same = lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-12)

    def autograd_step(penalty):
        w = w0.clone().requires_grad_(True)
        (((X @ w - y) ** 2 / 2).mean() + penalty(w)).backward()
        return (w0 - lr * w.grad).detach()

    def decay_update(decay):
        return (1 - decay) * w0 - lr * X.T @ (X @ w0 - y) / batch

    notes_objective = autograd_step(lambda w: lam / (2 * n) * (w**2).sum())
    notes_update = decay_update(lr * lam / batch)
    assert not torch.allclose(notes_update, notes_objective, rtol=0, atol=1e-6)
    implied = (decay_update(0) - notes_objective) / w0
    assert torch.allclose(lr * lam / batch / implied, torch.full_like(implied, n / batch), rtol=1e-6)
    assert same(notes_update, autograd_step(lambda w: lam / (2 * batch) * (w**2).sum()))
    assert same(decay_update(lr * lam), autograd_step(lambda w: lam / 2 * (w**2).sum()))
    assert same(decay_update(lr * lam / n), notes_objective)
    w_torch = w0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([w_torch], lr=lr, weight_decay=lam)
    ((X @ w_torch - y) ** 2 / 2).mean().backward()
    optimizer.step()
    assert same(w_torch.detach(), decay_update(lr * lam))


# ---------------------------------------------------------------- DenseNet's printout


def densenet_shapes():
    """(name, output shape without the batch axis) of each top-level layer of D2L's DenseNet on a 96x96 input."""
    def conv_block(c_in, c_out):
        return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 3, padding=1))

    class DenseBlock(nn.Module):
        def __init__(self, num_convs, c_in, growth):
            super().__init__()
            self.convs = nn.ModuleList(conv_block(c_in + i * growth, growth) for i in range(num_convs))

        def forward(self, x):
            for conv in self.convs:
                x = torch.cat([x, conv(x)], dim=1)
            return x

    net = nn.Sequential(nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.MaxPool2d(3, stride=2, padding=1))
    channels = 64
    for i in range(4):
        net.add_module(f"DenseBlock_{i}", DenseBlock(4, channels, 32))
        channels += 128
        if i < 3:
            net.add_module(f"transition_block_{i}", nn.Sequential(
                nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels // 2, 1), nn.AvgPool2d(2)))
            channels //= 2
    net.add_module("BN", nn.BatchNorm2d(channels))
    net.add_module("relu", nn.ReLU())
    net.add_module("global_avg_pool", nn.AdaptiveAvgPool2d(1))
    x, shapes = torch.rand(1, 1, 96, 96), []
    with torch.no_grad():
        for name, layer in net.named_children():
            x = layer(x)
            shapes.append((name, tuple(x.shape[1:])))
    return shapes


DENSENET_AS_PRINTED = [
    ("0", (64, 48, 48)), ("1", (64, 48, 48)), ("2", (64, 24, 24)), ("3", (192, 24, 24)),
    ("DenseBlosk_0", (96, 12, 12)), ("DenseBlosk_1", (224, 12, 12)), ("transition_block_0", (112, 6, 6)),
    ("DenseBlosk_2", (240, 6, 6)), ("transition_block_1", (120, 3, 3)), ("DenseBlosk_3", (248, 3, 3)),
    ("BN", (248, 3, 3)), ("relu", (248, 3, 3)), ("global_avg_pool", (248, 1, 1)),
]


def test_densenet_printout_has_right_shapes_on_wrong_labels():
    actual = densenet_shapes()
    assert len(actual) == len(DENSENET_AS_PRINTED) + 1
    assert dict(actual)["2"] == (64, 48, 48)  # the ReLU keeps its input's shape
    without_relu = [(name, shape) for name, shape in actual if name != "2"]
    assert [s for _, s in DENSENET_AS_PRINTED] == [s for _, s in without_relu]
    wrong = [label for (label, _), (name, _) in zip(DENSENET_AS_PRINTED, without_relu)
             if label.replace("Blosk", "Block") != name]
    assert wrong == ["2", "3", "DenseBlosk_0", "transition_block_0", "transition_block_1"]


# ---------------------------------------------------------------- the framework booklet's claims about deep networks


def deep_cnn(activation, bn_after_activation=False, widths=(8, 16, 32), convs_per_stage=3):
    """The errata page's ten-layer CNN with batch norm."""
    layers, channels = [], 1
    for stage, width in enumerate(widths):
        for _ in range(convs_per_stage):
            norm = nn.BatchNorm2d(width)
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            layers += [activation(), norm] if bn_after_activation else [norm, activation()]
            channels = width
        if stage < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 7 * 7, 10))


def train_on_fashion_mnist(net, subset=2000, epochs=2):
    """Train with Adam on a Fashion-MNIST subset as the errata page does at quick scale; return the history."""
    train_iter, test_iter = d2l.load_fashion_mnist(batch_size=64, subset=subset, device="cpu")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    return d2l.train_classifier(net, train_iter, test_iter, F.cross_entropy, optimizer, epochs, "cpu", plot=False)


@pytest.mark.parametrize("activation, bn_after", [(nn.Tanh, False), (nn.Sigmoid, False), (nn.ReLU, True)])
def test_deep_cnn_trains_without_relu_and_with_bn_after_relu(activation, bn_after):
    torch.manual_seed(0)
    net = deep_cnn(activation, bn_after)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules()) == 10
    assert train_on_fashion_mnist(net).test_acc[-1] >= 0.5


class ResidualBlock(nn.Module):
    def __init__(self, channels, zero_gamma):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                                    nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        if zero_gamma:
            nn.init.zeros_(self.branch[-1].weight)

    def forward(self, x):
        return torch.relu(x + self.branch(x))


@pytest.mark.parametrize("zero_gamma", [True, False])
def test_deep_residual_stack_is_the_identity_when_its_last_gamma_is_zero(zero_gamma):
    torch.manual_seed(0)
    stack = nn.Sequential(*[ResidualBlock(8, zero_gamma) for _ in range(20)])
    x = torch.rand(4, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(stack(x), x) == zero_gamma
        assert torch.equal(stack.eval()(x), x) == zero_gamma


def test_deep_plain_stack_represents_the_identity():
    plain = nn.Sequential(*[m for _ in range(30) for m in (nn.Linear(64, 64), nn.ReLU())])
    x = torch.rand(8, 64)
    assert not torch.equal(plain(x), x)
    with torch.no_grad():
        for layer in plain[::2]:
            layer.weight.copy_(torch.eye(64))
            layer.bias.zero_()
    assert torch.equal(plain(x), x)


class ResidualPair(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
                                    nn.Linear(width, width), nn.BatchNorm1d(width))
        nn.init.zeros_(self.branch[-1].weight)

    def forward(self, x):
        return torch.relu(x + self.branch(x))


def mlp(hidden_layers, residual=False, width=64):
    if residual:
        body = [ResidualPair(width) for _ in range(hidden_layers // 2)]
    else:
        body = [m for _ in range(hidden_layers) for m in (nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU())]
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), *body, nn.Linear(width, 10))


def test_more_plain_layers_train_worse_and_residual_ones_do_not():
    accuracy = {}
    for name, hidden, residual in [("shallow", 2, False), ("plain", 30, False), ("residual", 30, True)]:
        torch.manual_seed(0)
        accuracy[name] = train_on_fashion_mnist(mlp(hidden, residual)).train_acc[-1]
    assert accuracy["plain"] < accuracy["shallow"] - 0.1, accuracy
    assert accuracy["residual"] > accuracy["shallow"] - 0.05, accuracy


def test_max_pooling_tolerates_shifts_within_a_window_only():
    pool = nn.MaxPool2d(2)
    unchanged = lambda a, b: torch.equal(pool(a), pool(b))
    dot, bar, long_bar = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    dot[..., 2, 2] = 1.0
    bar[..., 2, 2:6] = 1.0
    long_bar[..., 2, :] = 1.0
    assert unchanged(dot, dot.roll((1, 1), dims=(2, 3)))
    assert not unchanged(dot, dot.roll(-1, dims=3))
    assert not unchanged(bar, torch.rot90(bar, 1, dims=(2, 3)))
    assert not unchanged(bar, long_bar)
