"""Equation and errata checks for chapters 15 (ResNet) and 16 (DenseNet).

The chapters' own models and helpers, read from the notebooks, are checked against torchvision, autograd,
functional re-computations and parameter counts derived by formula.
"""

import pytest
import torch
import torchvision
from chapter_code import chapter_namespace, from_chapter
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock

from d2l_support.cnn import num_params

(Residual, resnet_block, resnet_block_as_in_notes, resnet_block_list_fixed, resnet18, zero_last_bn, Skip,
 layer_grad_norms, map_sides, multiply_adds) = from_chapter(
    "15_resnet", "Residual", "resnet_block", "resnet_block_as_in_notes", "resnet_block_list_fixed", "resnet18",
    "zero_last_bn", "Skip", "layer_grad_norms", "map_sides", "multiply_adds")
conv_block, DenseBlock, transition_block, densenet = from_chapter(
    "16_densenet", "conv_block", "DenseBlock", "transition_block", "densenet")

# ---------------------------------------------------------------- chapter 15: ResNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_residual_block_shapes():
    X = torch.rand(4, 3, 6, 6)
    assert Residual(3, 3)(X).shape == (4, 3, 6, 6)
    assert Residual(3, 3, use_1x1conv=True)(X).shape == (4, 3, 6, 6)
    assert Residual(3, 6, use_1x1conv=True, stride=2)(X).shape == (4, 6, 3, 3)
    assert Residual(3, 6, use_1x1conv=True, stride=2)(torch.rand(2, 3, 7, 7)).shape == (2, 6, 4, 4)
    with pytest.raises(RuntimeError, match="must match"):
        Residual(3, 6)(X)  # without the 1x1 convolution x and g(x) cannot be added


@pytest.mark.parametrize("in_channels, out_channels, stride", [(3, 3, 1), (3, 6, 2)])
def test_residual_block_matches_torchvision_basic_block(in_channels, out_channels, stride):
    blk = Residual(in_channels, out_channels, use_1x1conv=in_channels != out_channels, stride=stride)
    basic = BasicBlock(in_channels, out_channels, stride=stride, downsample=blk.conv3)
    basic.conv1, basic.bn1, basic.conv2, basic.bn2 = blk.conv1, blk.bn1, blk.conv2, blk.bn2
    X = torch.randn(4, in_channels, 6, 6)
    with torch.no_grad():
        for mode in (True, False):
            blk.train(mode)
            basic.train(mode)
            assert torch.equal(blk(X), basic(X))


def test_residual_block_equation_by_hand():
    blk = Residual(3, 6, use_1x1conv=True, stride=2).eval()
    with torch.no_grad():
        for bn in (blk.bn1, blk.bn2):  # non-trivial running statistics and affine parameters
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        X = torch.randn(4, 3, 6, 6)

        def bn(z, layer):
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            return (z - layer.running_mean[:, None, None]) * scale[:, None, None] + layer.bias[:, None, None]

        g = bn(F.conv2d(torch.relu(bn(F.conv2d(X, blk.conv1.weight, blk.conv1.bias, stride=2, padding=1), blk.bn1)),
                        blk.conv2.weight, blk.conv2.bias, padding=1), blk.bn2)
        shortcut = F.conv2d(X, blk.conv3.weight, blk.conv3.bias, stride=2)
        torch.testing.assert_close(blk(X), torch.relu(shortcut + g), atol=1e-5, rtol=1e-5)


def test_zeroed_last_bn_makes_block_the_identity():
    blk = zero_last_bn(Residual(3, 3))
    X_nonneg, X_any = torch.rand(4, 3, 6, 6), torch.randn(4, 3, 6, 6)
    for mode in (True, False):
        blk.train(mode)
        assert torch.equal(blk(X_nonneg), X_nonneg)
        assert torch.equal(blk(X_any), torch.relu(X_any))
        assert not torch.equal(blk(X_any), X_any)  # negative entries are clipped: the identity needs x >= 0
    # with random gamma the same block is not the identity
    assert not torch.allclose(Residual(3, 3)(X_nonneg), X_nonneg)


def test_deeper_resnet_contains_the_shallower_one():
    net = resnet18(width=8).eval()
    X = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        before = net(X)
        net.stage2.append(zero_last_bn(Residual(16, 16)))
        net.stage4.append(zero_last_bn(Residual(64, 64)))
        assert torch.equal(net(X), before)


def test_plain_layers_with_dirac_kernels_are_the_identity():
    plain = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
    for conv in (plain[0], plain[2]):
        nn.init.dirac_(conv.weight)
        nn.init.zeros_(conv.bias)
    X = torch.rand(4, 3, 6, 6)
    torch.testing.assert_close(plain(X), X, atol=1e-6, rtol=0)


def conv_params(c_in, c_out, k):
    return k * k * c_in * c_out + c_out


def residual_params(c_in, c_out, use_1x1conv):
    return (conv_params(c_in, c_out, 3) + 2 * c_out + conv_params(c_out, c_out, 3) + 2 * c_out
            + (conv_params(c_in, c_out, 1) if use_1x1conv else 0))


def resnet18_params_by_formula(width=64, num_classes=10):
    c = [width, 2 * width, 4 * width, 8 * width]
    total = conv_params(1, c[0], 7) + 2 * c[0]
    total += 2 * residual_params(c[0], c[0], False)
    for c_in, c_out in zip(c, c[1:]):
        total += residual_params(c_in, c_out, True) + residual_params(c_out, c_out, False)
    return total + c[3] * num_classes + num_classes


@pytest.mark.parametrize("width", [8, 64])
def test_resnet18_shapes_and_parameter_count(width):
    net = resnet18(width=width).eval()
    assert num_params(net) == resnet18_params_by_formula(width)
    X = torch.zeros(1, 1, 96, 96)
    expected = {"stem": (1, width, 24, 24), "stage1": (1, width, 24, 24), "stage2": (1, 2 * width, 12, 12),
                "stage3": (1, 4 * width, 6, 6), "stage4": (1, 8 * width, 3, 3), "fc": (1, 10)}
    with torch.no_grad():
        for name, layer in net.named_children():
            X = layer(X)
            if name in expected:
                assert X.shape == expected[name], name
        assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 10)
    weight_layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(1 for m in weight_layers if getattr(m, "kernel_size", None) != (1, 1)) == 18


def test_resnet18_parameter_count_value_and_torchvision_difference():
    net = resnet18()
    assert num_params(net) == 11_178_378
    tv = torchvision.models.resnet18(num_classes=10)
    tv.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    conv_biases = sum(m.bias.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    shortcut_bn = sum(p.numel() for name, p in tv.named_parameters() if ".downsample.1." in name)
    assert (conv_biases, shortcut_bn) == (4_800, 1_792)
    assert num_params(net) - num_params(tv) == conv_biases - shortcut_bn


def test_errata_resnet_block_as_in_notes(monkeypatch):
    with pytest.raises(NameError, match="blk"):
        resnet_block_as_in_notes(8, 16, 2)
    with pytest.raises(NameError, match="blk"):
        resnet_block_as_in_notes(8, 8, 2, first_block=True)
    for n in (1, 2, 3):
        assert len(resnet_block_list_fixed(8, 8, n, first_block=True)) == 0
        assert len(resnet_block_list_fixed(8, 16, n)) == 2
        assert len(resnet_block(8, 8, n, first_block=True)) == n
        assert len(resnet_block(8, 16, n)) == n
    # the half-fixed builder runs silently: the chapter's ResNet-18 built with it loses its whole first stage
    correct = resnet18(width=8)
    monkeypatch.setitem(chapter_namespace("15_resnet"), "resnet_block", resnet_block_list_fixed)
    broken = resnet18(width=8)
    stages = ["stage1", "stage2", "stage3", "stage4"]
    assert [len(getattr(broken, s)) for s in stages] == [0, 2, 2, 2]
    assert [len(getattr(correct, s)) for s in stages] == [2, 2, 2, 2]
    assert broken(torch.zeros(2, 1, 64, 64)).shape == (2, 10)


def test_residual_jacobian_is_identity_plus_branch_jacobian():
    branch = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5)).double()
    x = torch.randn(5, dtype=torch.float64)
    J_block = torch.autograd.functional.jacobian(Skip(branch), x)
    J_branch = torch.autograd.functional.jacobian(branch, x)
    torch.testing.assert_close(J_block, torch.eye(5, dtype=torch.float64) + J_branch)


def test_first_layer_gradient_plain_vs_residual():
    plain, residual = layer_grad_norms(50, False), layer_grad_norms(50, True)
    assert len(plain) == len(residual) == 50
    assert plain[0] < 1e-12 < 1e-2 < residual[0] < 10
    assert residual[0] / plain[0] > 1e12
    # the plain gradient shrinks towards the input; the residual one stays within one order of magnitude
    assert plain[0] < plain[24] < plain[-1]
    assert max(residual) / min(residual) < 10
    # shallow networks barely differ
    shallow_plain, shallow_residual = layer_grad_norms(2, False), layer_grad_norms(2, True)
    assert 0.5 < shallow_residual[0] / shallow_plain[0] < 2


def test_map_sides_and_multiply_adds_follow_the_resolution():
    net = resnet18(width=8)
    assert map_sides(net, 96) == {"stem": 24, "stage1": 24, "stage2": 12, "stage3": 6, "stage4": 3, "pool": 1}
    assert map_sides(net, 48)["stage4"] == 2  # 3 -> 2: a stride-2 window with padding rounds up
    assert map_sides(net, 32)["stage4"] == 1
    tiny = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    assert multiply_adds(tiny, 10) == 4 * 10 * 10 * 9 + 5 * 4
    wide = resnet18()
    assert 3 < multiply_adds(wide, 96) / multiply_adds(wide, 48) < 4  # the last stage shrinks only from 3x3 to 2x2


# ---------------------------------------------------------------- chapter 16: DenseNet


@pytest.mark.parametrize("num_convs, in_channels, growth_rate", [(1, 3, 10), (2, 3, 10), (4, 64, 32), (3, 5, 7)])
def test_dense_block_channel_arithmetic(num_convs, in_channels, growth_rate):
    blk = DenseBlock(num_convs, in_channels, growth_rate)
    X = torch.rand(2, in_channels, 8, 8)
    Y = blk(X)
    assert Y.shape == (2, in_channels + num_convs * growth_rate, 8, 8)
    assert blk.out_channels == Y.shape[1]
    assert torch.equal(Y[:, :in_channels], X)  # the block input passes through untouched
    for i, layer in enumerate(blk.layers):  # layer i reads c0 + i k channels
        assert layer[0].num_features == in_channels + i * growth_rate


def test_dense_block_matches_its_equation():
    blk = DenseBlock(3, 4, 6)
    X = torch.randn(5, 4, 7, 7)
    features = [X]
    for bn, _, conv in blk.layers:
        Z = torch.cat(features, dim=1)
        mean = Z.mean(dim=(0, 2, 3), keepdim=True)
        var = Z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        Z = (Z - mean) / torch.sqrt(var + bn.eps) * bn.weight[:, None, None] + bn.bias[:, None, None]
        features.append(F.conv2d(torch.relu(Z), conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(blk(X), torch.cat(features, dim=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels, size", [(23, 8), (192, 24), (248, 6), (9, 5)])
def test_transition_layer_halves_channels_and_resolution(channels, size):
    Y = transition_block(channels, channels // 2)(torch.rand(2, channels, size, size))
    assert Y.shape == (2, channels // 2, size // 2, size // 2)


def dense_params(n, c0, k):
    return (9 * k + 2) * (n * c0 + k * n * (n - 1) // 2) + n * k


def test_dense_block_and_transition_parameter_formulas():
    for n in (1, 2, 4, 6):
        for c0 in (3, 64):
            for k in (8, 32):
                blk = DenseBlock(n, c0, k)
                by_layers = sum(2 * (c0 + i * k) + 9 * (c0 + i * k) * k + k for i in range(n))
                assert num_params(blk) == dense_params(n, c0, k) == by_layers
    for c in (23, 192):
        assert num_params(transition_block(c, c // 2)) == 2 * c + c * (c // 2) + c // 2


def test_densenet_shapes_and_parameter_count():
    net = densenet().eval()
    X = torch.zeros(1, 1, 96, 96)
    channels = {}
    with torch.no_grad():
        for name, layer in net.named_children():
            X = layer(X)
            channels[name] = tuple(X.shape[1:])
    assert channels["stem"] == (64, 24, 24)
    assert [channels[f"dense{i}"][0] for i in range(1, 5)] == [192, 224, 240, 248]
    assert [channels[f"trans{i}"] for i in range(1, 4)] == [(96, 12, 12), (112, 6, 6), (120, 3, 3)]
    assert X.shape == (1, 10)
    c_final = 248
    formula = (49 * 64 + 64 + 128 + dense_params(4, 64, 32) + (2 * 192 + 192 * 96 + 96)
               + dense_params(4, 96, 32) + (2 * 224 + 224 * 112 + 112)
               + dense_params(4, 112, 32) + (2 * 240 + 240 * 120 + 120)
               + dense_params(4, 120, 32) + 2 * c_final + c_final * 10 + 10)
    assert num_params(net) == formula == 758_226
    assert densenet(width=16, growth_rate=8)(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
