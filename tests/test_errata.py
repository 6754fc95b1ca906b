"""The errata page's checks: each error in the source notes, and its correction, verified numerically."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

import d2l_support as d2l


def vgg_block_as_printed(num_convs, in_channels, out_channels):
    """The cheat sheets' control flow: the first convolution in the if branch, the only ReLU in the else branch."""
    blk = []
    for i in range(num_convs):
        if i == 0:
            blk.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        else:
            blk.append(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
            blk.append(nn.ReLU())
    blk.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*blk)


def relu_after_each_conv(layers):
    """For each convolution in a sequence of layers, whether the next layer is a ReLU."""
    layers = list(layers)
    return [isinstance(nxt, nn.ReLU) for layer, nxt in zip(layers, layers[1:]) if isinstance(layer, nn.Conv2d)]


@pytest.mark.parametrize("num_convs", [1, 2, 3])
def test_cheat_sheets_vgg_block_lacks_the_first_relu_that_torchvision_has(num_convs):
    assert relu_after_each_conv(vgg_block_as_printed(num_convs, 3, 8)) == [False] + [True] * (num_convs - 1)
    assert all(relu_after_each_conv(torchvision.models.vgg11(weights=None).features))


def test_buggy_single_conv_block_is_linear():
    torch.manual_seed(0)
    conv = vgg_block_as_printed(1, 1, 4)[0]
    x = torch.randn(1, 1, 8, 8)
    linear = lambda x: conv(x) - conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(linear(-x), -linear(x), atol=1e-6)
    assert not torch.allclose(torch.relu(conv(-x)), -torch.relu(conv(x)))


def test_vgg_11_has_8_convolutions_and_3_fully_connected_layers():
    conv_arch = ((1, 1, 64), (1, 64, 128), (2, 128, 256), (2, 256, 512), (2, 512, 512))
    vgg11 = torchvision.models.vgg11(weights=None)
    assert sum(num_convs for num_convs, _, _ in conv_arch) == 8
    assert sum(isinstance(m, nn.Conv2d) for m in vgg11.modules()) == 8
    assert sum(isinstance(m, nn.Linear) for m in vgg11.modules()) == 3


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
    def as_in_notes(num_residuals, first_block=False):
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append("down")  # noqa: F821
                blk.append("plain")  # noqa: F821

    def list_added(num_residuals, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append("down")
                blk.append("plain")
        return blk

    def correct(num_residuals, first_block=False):
        return ["down" if i == 0 and not first_block else "plain" for i in range(num_residuals)]

    with pytest.raises(NameError):
        as_in_notes(2)
    assert len(list_added(3)) == 2 and len(list_added(1)) == 2
    stages = [(2, True), (2, False), (2, False), (2, False)]  # the booklet's ResNet-18
    resnet18 = torchvision.models.resnet18(weights=None)
    reference = [len(getattr(resnet18, f"layer{i}")) for i in range(1, 5)]
    assert [len(correct(*stage)) for stage in stages] == reference == [2, 2, 2, 2]
    assert [len(list_added(*stage)) for stage in stages] == [0, 2, 2, 2]


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
    net.add_module("fc", nn.Sequential(nn.Flatten(), nn.Linear(channels, 10)))
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
    ("BN", (248, 3, 3)), ("relu", (248, 3, 3)), ("global_avg_pool", (248, 1, 1)), ("fc", (10,)),
]


def test_densenet_printout_has_right_shapes_on_wrong_labels():
    actual = densenet_shapes()
    assert len(DENSENET_AS_PRINTED) == 14 and len(actual) == 15
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


# ---------------------------------------------------------------- batch normalization: the notes' further claims


def test_training_mode_uses_the_batch_statistics_not_the_smoothed_ones():
    torch.manual_seed(0)
    x = torch.randn(16, 3) * 2 + 3
    bn = nn.BatchNorm1d(3, affine=False)
    y = bn(x)
    with_batch = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    with_smoothed = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(y, with_batch, atol=1e-5)
    assert not torch.allclose(y, with_smoothed, atol=1e-3)
    assert torch.allclose(bn.eval()(x), with_smoothed, atol=1e-5)


def test_gradient_descent_makes_gamma_negative():
    torch.manual_seed(0)
    x = torch.randn(64, 1) * 3 + 1
    bn = nn.BatchNorm1d(1)
    target = -(x - x.mean()) / x.std(unbiased=False)
    optimizer = torch.optim.SGD(bn.parameters(), lr=0.1)
    for _ in range(100):
        optimizer.zero_grad()
        ((bn(x) - target) ** 2).mean().backward()
        optimizer.step()
    assert bn.weight.item() == pytest.approx(-1.0, abs=0.01)


def test_fixed_gamma_beta_undo_one_batch_only_in_training():
    torch.manual_seed(0)
    batch1, batch2 = torch.randn(32, 3) * 2 + 1, torch.randn(32, 3) * 0.5 - 1
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.sqrt(batch1.var(0, unbiased=False) + bn.eps))
        bn.bias.copy_(batch1.mean(0))
        assert torch.allclose(bn(batch1), batch1, atol=1e-5)
        assert not torch.allclose(bn(batch2), batch2, atol=1e-3)
        bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
        bn.bias.copy_(bn.running_mean)
        bn.eval()
        assert torch.allclose(bn(batch1), batch1, atol=1e-5) and torch.allclose(bn(batch2), batch2, atol=1e-5)


def test_a_zero_moving_variance_blows_evaluation_up():
    bn = nn.BatchNorm2d(4)
    assert torch.equal(bn.running_var, torch.ones(4))
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        bn.running_var.zero_()
        scale = bn.eval()(x) / x
    assert torch.allclose(scale, torch.full_like(scale, bn.eps**-0.5), rtol=1e-4)
    moving = 0.0
    for _ in range(10):
        moving = 0.9 * moving + 0.1 * 4.0
    assert moving == pytest.approx(4 * (1 - 0.9**10)) and moving < 2.7


# ---------------------------------------------------------------- the hand-written CNN notes' printouts


def test_googlenet_b2_without_relus_is_one_convolution():
    torch.manual_seed(0)
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.Conv2d(64, 192, kernel_size=3, padding=1)).double()
    merged = torch.einsum("ojkl,ji->oikl", b2[1].weight, b2[0].weight[:, :, 0, 0])
    x = torch.randn(2, 64, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        one_conv = F.conv2d(x, merged, padding=1)
        assert torch.allclose(b2(x) - b2(torch.zeros_like(x)), one_conv, atol=1e-10)
        with_relus = nn.Sequential(b2[0], nn.ReLU(), b2[1], nn.ReLU())
        assert not torch.allclose(with_relus(x) - with_relus(torch.zeros_like(x)), one_conv, atol=1e-3)
        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
        assert (net.conv3(net.conv2(torch.randn(2, 64, 12, 12))) >= 0).all()


def alexnet_as_printed(conv3x3_padding=0):
    """The convolutional part of the hand-written notes' AlexNet printout, flattened."""
    return nn.Sequential(
        nn.Conv2d(1, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(96, 256, 5, stride=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(256, 384, 3, padding=conv3x3_padding), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=conv3x3_padding), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=conv3x3_padding), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten())


def meta_features(net, size):
    """Features a network outputs for a 1-channel size x size image on the meta device, or None if it fails."""
    try:
        return net(torch.empty(1, 1, size, size, device="meta")).shape[1]
    except RuntimeError:
        return None


def test_alexnet_printout_cannot_produce_its_6400_features():
    with torch.device("meta"):
        printed, padded = alexnet_as_printed(), alexnet_as_printed(conv3x3_padding=1)
        d2l_features = nn.Sequential(*list(d2l.alexnet())[:14])
    assert meta_features(d2l_features, 224) == 6400
    assert meta_features(printed, 224) is None and meta_features(padded, 224) == 2304
    sizes = [size for size in range(64, 1025) if meta_features(printed, size) == 6400]
    assert sizes == list(range(491, 555))


def test_alexnet_fc_layers_hold_about_a_fifth_of_a_gigabyte():
    alexnet = torchvision.models.alexnet(weights=None)
    linears = [m for m in alexnet.classifier if isinstance(m, nn.Linear)][:2]
    count = sum(p.numel() for m in linears for p in m.parameters())
    assert count == 9216 * 4096 + 4096 + 4096 * 4096 + 4096 == 54_534_144
    assert 0.2 < count * 4 / 1e9 < 0.25 and sum(p.numel() for p in alexnet.parameters()) * 4 / 1e9 < 0.25


def test_the_last_nin_block_is_followed_by_global_average_pooling():
    def nin_block(c_in, c_out, kernel_size, stride, padding):
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, stride, padding), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, 1), nn.ReLU(), nn.Conv2d(c_out, c_out, 1), nn.ReLU())

    layers = [nin_block(1, 96, 11, 4, 0), nn.MaxPool2d(3, 2), nin_block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
              nin_block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Dropout(0.5), nin_block(384, 10, 3, 1, 1),
              nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    after = [next(type(nxt) for nxt in layers[i + 1:] if not isinstance(nxt, nn.Dropout))
             for i, layer in enumerate(layers) if isinstance(layer, nn.Sequential)]
    assert after == [nn.MaxPool2d] * 3 + [nn.AdaptiveAvgPool2d]
    assert nn.Sequential(*layers)(torch.zeros(1, 1, 224, 224)).shape == (1, 10)


X_PATTERN_AS_PRINTED = torch.tensor([
    [0.77, 0.11, 0.11, 0.33, 0.55, 0.11, 0.33], [0.11, 1.00, 0.11, 0.33, 0.11, 0.11, -0.11],
    [0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55], [0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33],
    [0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11], [-0.11, 0.11, -0.11, 0.33, -0.11, 1.00, 0.11],
    [0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77]])
X_PATTERN_RELU_AS_PRINTED = torch.tensor([
    [0.77, 0, 0.11, 0.33, 0.55, 0, 0.33], [0, 1.00, 0, 0.33, 0, 0.11, 0], [0.11, 0, 1.00, 0, 0.11, 0, 0.55],
    [0.33, 0.33, 0, 0.55, 0, 0.33, 0.33], [0.55, 0, 0.11, 0, 1.00, 0, 0.11], [0, 0.11, 0, 0.33, 0, 1.00, 0],
    [0.33, 0, 0.55, 0.33, 0.11, 0, 0.77]])


def test_x_pattern_map_lost_six_signs_before_the_relu():
    ninths = lambda table: (table * 9).round().int()
    image = -torch.ones(9, 9)
    for i in range(1, 8):
        image[i, i] = image[i, 8 - i] = 1.0
    response = lambda k: F.conv2d(image.view(1, 1, 9, 9), torch.tensor(k).view(1, 1, 3, 3)).view(7, 7).int()
    diagonal = response([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    printed, relu = ninths(X_PATTERN_AS_PRINTED), ninths(X_PATTERN_RELU_AS_PRINTED)
    wrong = (printed.relu() != relu).nonzero().tolist()
    assert wrong == [[0, 1], [0, 5], [1, 0], [1, 2], [1, 4], [5, 6]]
    assert torch.equal(printed.abs(), diagonal.abs()) and (printed != diagonal).nonzero().tolist() == wrong
    assert torch.equal(diagonal.relu(), relu)
    assert not torch.equal(printed.abs(), response([[1.0, -1, -1], [-1, 1, 1], [-1, -1, 1]]).abs())


# ---------------------------------------------------------------- convolution and padding


def test_cross_correlation_rotates_the_kernel_not_the_output():
    def conv2d_by_definition(X, K):
        h, w = K.shape
        Y = torch.zeros(X.shape[0] - h + 1, X.shape[1] - w + 1)
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                Y[i, j] = sum(X[i + h - 1 - a, j + w - 1 - b] * K[a, b] for a in range(h) for b in range(w))
        return Y

    X, K = torch.arange(9.0).reshape(3, 3), torch.arange(4.0).reshape(2, 2)
    corr = F.conv2d(X.view(1, 1, 3, 3), K.view(1, 1, 2, 2)).view(2, 2)
    assert corr.tolist() == [[19, 25], [37, 43]]
    assert torch.equal(conv2d_by_definition(X, torch.rot90(K, 2)), corr)
    assert not torch.equal(torch.rot90(conv2d_by_definition(X, K), 2), corr)


def test_padding_an_11x11_kernel_by_11_leaves_the_border_to_the_bias():
    torch.manual_seed(0)
    image, other = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20)
    for padding, wasted in [(10, False), (11, True)]:
        conv = nn.Conv2d(1, 1, 11, padding=padding)
        with torch.no_grad():
            row, other_row = conv(image)[0, 0, 0], conv(other)[0, 0, 0]
        assert torch.equal(row, other_row) == wasted
        assert torch.equal(row, conv.bias.expand_as(row)) == wasted
    assert nn.Conv2d(1, 96, 11, 4).padding == (0, 0)


# ---------------------------------------------------------------- softmax regression


def test_softmax_of_one_score_is_one_and_of_all_scores_is_the_probability():
    torch.manual_seed(0)
    scores = torch.randn(5, 3).T @ torch.randn(5)
    assert all(torch.softmax(scores[c : c + 1], dim=0).item() == 1.0 for c in range(3))
    assert torch.allclose(torch.softmax(scores, 0), torch.exp(scores) / torch.exp(scores).sum())


def test_row_vector_softmax_update_is_x_transposed_times_the_error():
    torch.manual_seed(0)
    W = torch.randn(4, 3, requires_grad=True)
    X, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    F.cross_entropy(X @ W, labels).backward()
    error = F.one_hot(labels, 3).float() - torch.softmax(X @ W, dim=1).detach()
    with pytest.raises(RuntimeError):
        X[:1] @ error[:1].T  # x (y - y_hat)^T with row vectors: (1, 4) @ (3, 1)
    step = sum(X[n : n + 1].T @ error[n : n + 1] for n in range(6)) / 6
    assert step.shape == W.shape and torch.allclose(step, -W.grad, atol=1e-6)


def test_softmax_regression_trains_with_the_squared_loss():
    def squared_loss_of_softmax(logits, labels):
        return ((torch.softmax(logits, dim=1) - F.one_hot(labels, 10).float()) ** 2).sum(dim=1).mean() / 2

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    train_iter, test_iter = d2l.load_fashion_mnist(batch_size=64, subset=2000, device="cpu")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    history = d2l.train_classifier(net, train_iter, test_iter, squared_loss_of_softmax, optimizer, 2, "cpu",
                                   plot=False, quiet=True)
    assert history.test_acc[-1] >= 0.6


# ---------------------------------------------------------------- the framework booklet's listings


def test_booklet_chapter_2_loop_prints_ten_lines_without_a_repeat():
    x = torch.tensor([[-0.0040, 0.0005]], requires_grad=True)
    lines = []
    for _ in range(10):
        lines.append(f"x= {x}")
        (torch.mm(x, x.t()) + 4 * x[0, 0] + 5 * x[0, 1] + 3).backward()
        x.data -= 0.4 * x.grad
        x.grad.zero_()
    assert len(lines) == 10  # the booklet shows 11
    assert lines[5] == "x= tensor([[-1.9994, -2.4992]], requires_grad=True)"
    assert lines[6] == "x= tensor([[-1.9999, -2.4998]], requires_grad=True)"  # the booklet repeats line 6


def test_gradient_descent_stability_depends_on_curvature_not_gradient_size():
    inputs = torch.tensor([[1.1, 4.6, 8.9], [2.3, 5.7, 10.1]], dtype=torch.float64)
    targets = torch.tensor([13.57, 38.70, 70.51], dtype=torch.float64)
    A = torch.cat([inputs, torch.ones(1, 3, dtype=torch.float64)])
    lam_max = torch.linalg.eigvalsh(A @ A.T)[-1].item()

    def final_loss(theta, eta, steps):
        for _ in range(steps):
            theta = theta - eta * (A @ (theta @ A - targets))
        return ((theta @ A - targets) ** 2 / 2).sum().item()

    start, solution = torch.tensor([0.001, 0.003, 0.005], dtype=torch.float64), torch.linalg.solve(A.T, targets)
    assert 0.008 < 2 / lam_max < 0.0085  # 82 times the booklet's 0.0001
    assert final_loss(start, 0.9 * 2 / lam_max, 2000) < 1e-3  # a large gradient at the start does no harm
    assert final_loss(solution + 1e-6, 1.1 * 2 / lam_max, 500) > 1e6  # a tiny one does not save a large step


def test_unclosed_sequential_is_a_syntax_error_and_closing_it_runs():
    listing = "net = nn.Sequential(\n    nn.Linear(2, 3),\n    nn.ReLU(),\n    nn.Linear(3, 1),\n{close}" \
              "for param in net.parameters():\n    nn.init.normal_(param, std=0.5)\n"
    with pytest.raises(SyntaxError):
        compile(listing.format(close=""), "booklet", "exec")
    namespace = {"nn": nn}
    exec(compile(listing.format(close=")\n"), "corrected", "exec"), namespace)
    assert isinstance(namespace["net"], nn.Sequential) and len(namespace["net"]) == 3


# ---------------------------------------------------------------- the study diary's statistics


def test_map_estimate_is_ridge_with_lambda_sigma_squared_not_the_sum_of_densities():
    generator = torch.Generator().manual_seed(0)
    n, sigma, lam = 20, 0.5, 20.0
    xs = torch.randn(n, generator=generator, dtype=torch.float64)
    ys = 2 * xs + sigma * torch.randn(n, generator=generator, dtype=torch.float64)
    grid = torch.linspace(-1, 5, 60001, dtype=torch.float64)
    log_normal = lambda v, mean, var: -((v - mean) ** 2) / (2 * var) - 0.5 * torch.log(2 * torch.pi * var)
    log_lik = log_normal(ys[:, None], grid[None, :] * xs[:, None], torch.tensor(sigma**2))
    log_prior = log_normal(grid, 0.0, torch.tensor(1 / lam))
    map_w = grid[(log_lik.sum(0) + log_prior).argmax()].item()
    sum_w = grid[(log_lik.exp().sum(0) * log_prior.exp()).argmax()].item()
    ridge = lambda c: ((xs * ys).sum() / ((xs**2).sum() + c)).item()
    assert abs(map_w - ridge(lam * sigma**2)) < 1e-4
    assert abs(map_w - ridge(lam)) > 1e-2 and abs(sum_w - map_w) > 1e-2


def test_more_training_examples_can_raise_the_test_error():
    generator = torch.Generator().manual_seed(0)
    d = 20
    w_true = torch.randn(d, generator=generator, dtype=torch.float64)
    X_test = torch.randn(1000, d, generator=generator, dtype=torch.float64)

    def median_test_error(n):
        errors = []
        for _ in range(100):
            X = torch.randn(n, d, generator=generator, dtype=torch.float64)
            y = X @ w_true + 0.5 * torch.randn(n, generator=generator, dtype=torch.float64)
            errors.append(((X_test @ (torch.linalg.pinv(X) @ y - w_true)) ** 2).mean())
        return torch.stack(errors).median().item()

    error = {n: median_test_error(n) for n in (15, 20, 200)}
    assert error[20] > error[15] > error[200]


# ---------------------------------------------------------------- gradient clipping


def test_a_character_rnn_trains_without_clipping():
    from d2l_support import text

    loader, vocab = text.load_data_time_machine(32, 35, random_iter=True, max_tokens=10_000, device="cpu")
    torch.manual_seed(0)
    rnn, out = nn.RNN(len(vocab), 128), nn.Linear(128, len(vocab))
    params = list(rnn.parameters()) + list(out.parameters())
    optimizer = torch.optim.Adam(params, lr=0.01)
    for _ in range(20):
        total, count = 0.0, 0
        for X, Y in loader:
            states, _ = rnn(F.one_hot(X.T, len(vocab)).float())
            loss = F.cross_entropy(out(states).reshape(-1, len(vocab)), Y.T.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * Y.numel(), count + Y.numel()
    assert torch.exp(torch.tensor(total / count)) < 8  # uniform guessing scores 28
