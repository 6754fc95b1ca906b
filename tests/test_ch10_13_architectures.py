"""Chapters 10-13 (AlexNet, VGG, NiN, GoogLeNet): the chapters' own models against shapes, parameter counts by
formula, and the errata."""

import pytest
import torch
import torch.nn.functional as F
from chapter_code import from_chapter
from torch import nn

from d2l_support.cnn import init_cnn, num_params, out_size

alexnet = from_chapter("10_alexnet", "alexnet")
VGG11, vgg_block, notes_vgg_block, vgg = from_chapter("11_vgg", "VGG11", "vgg_block", "notes_vgg_block", "vgg")
nin_block, nin, d2l_nin = from_chapter("12_nin", "nin_block", "nin", "d2l_nin")
Inception, INCEPTION, googlenet = from_chapter("13_googlenet", "Inception", "INCEPTION", "googlenet")

# ---------------------------------------------------------------- independent formulas


def conv_params(c_in: int, c_out: int, k: int) -> int:
    """Weights and biases of a k x k convolution."""
    return c_out * (c_in * k * k + 1)


def linear_params(n_in: int, n_out: int) -> int:
    """Weights and biases of a fully connected layer."""
    return n_out * (n_in + 1)


def built(net: nn.Module, size: int) -> nn.Module:
    """`net` after one 1 x size x size image has fixed the shapes of its lazy layers."""
    with torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    return net


def shapes(net: nn.Sequential, size: int) -> list[tuple]:
    """Output shape after each child of `net` for one 1 x size x size image."""
    X, out = torch.zeros(1, 1, size, size), []
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            out.append(tuple(X.shape))
    return out


# ---------------------------------------------------------------- AlexNet (chapter 10)


ALEXNET_CONVS = [(1, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]


def alexnet_side(size: int) -> int:
    """Side of AlexNet's last feature map by the output-size formula: an 11 x 11 stride-4 convolution and three
    3 x 3 stride-2 poolings change it; the padded 5 x 5 and 3 x 3 convolutions keep it."""
    n = out_size(size, kernel=11, stride=4)
    for _ in range(3):
        n = out_size(n, kernel=3, stride=2)
    return n


def alexnet_params(hidden: int, flat: int = 256 * alexnet_side(224) ** 2) -> int:
    """AlexNet's parameter count from the layer definitions."""
    convs = sum(conv_params(*c) for c in ALEXNET_CONVS)
    return convs + linear_params(flat, hidden) + linear_params(hidden, hidden) + linear_params(hidden, 10)


def test_alexnet_shapes_at_224():
    got = shapes(alexnet(), 224)
    convs_and_pools = [got[i] for i in (0, 2, 3, 5, 6, 8, 10, 12, 13)]
    assert convs_and_pools == [(1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12),
                               (1, 384, 12, 12), (1, 384, 12, 12), (1, 256, 12, 12), (1, 256, 5, 5), (1, 6400)]
    assert got[-1] == (1, 10)
    assert got[13] == (1, 256 * alexnet_side(224) ** 2)


def test_alexnet_smallest_resolution():
    """67 pixels is the smallest input for which the last pooling window still fits."""
    assert shapes(alexnet(), 67)[13] == (1, 256) and alexnet_side(67) == 1
    with pytest.raises(RuntimeError):
        shapes(alexnet(), 66)
    with pytest.raises(ValueError, match="does not fit"):
        alexnet_side(66)


def test_alexnet_parameter_count():
    assert num_params(built(alexnet(), 224)) == alexnet_params(4096) == 46_764_746


def test_alexnet_4096_not_496():
    """Errata: the hidden layers have 4096 outputs; with 496 the model would be 6.5 times smaller."""
    assert num_params(built(alexnet(hidden=496), 224)) == alexnet_params(496) == 7_150_346
    assert alexnet_params(4096) - alexnet_params(496) == 39_614_400
    fc = linear_params(6400, 4096) + linear_params(4096, 4096) + linear_params(4096, 10)
    assert fc / alexnet_params(4096) > 0.9  # the fully connected layers hold over 90% of the parameters


# ---------------------------------------------------------------- VGG (chapter 11)


def count_relus(net: nn.Module) -> int:
    """Number of ReLU modules inside `net`."""
    return sum(isinstance(m, nn.ReLU) for m in net.modules())


@pytest.mark.parametrize("num_convs", [1, 2, 3])
def test_vgg_block_relu_count(num_convs):
    assert count_relus(vgg_block(num_convs, 3, 8)) == num_convs
    assert count_relus(notes_vgg_block(num_convs, 3, 8)) == num_convs - 1


def test_vgg11_relu_count_correct_vs_buggy():
    convs = lambda net: sum(isinstance(m, nn.Conv2d) for m in net.modules())
    good, bad = vgg(VGG11, ratio=16), vgg(VGG11, ratio=16, block=notes_vgg_block)
    assert convs(good) == convs(bad) == 8
    assert count_relus(good[:5]) == 8 and count_relus(bad[:5]) == 3


def test_buggy_block_collapses_to_one_5x5_convolution():
    """Without a ReLU in between, two 3x3 convolutions equal one 5x5 convolution away from the border."""
    torch.manual_seed(0)
    block = notes_vgg_block(2, 3, 4)
    conv1, conv2 = block[0], block[1]
    W1, b1, W2, b2 = conv1.weight, conv1.bias, conv2.weight, conv2.bias
    K = torch.zeros(4, 3, 5, 5)
    for a in range(3):
        for b in range(3):
            K[:, :, a:a + 3, b:b + 3] += torch.einsum("om,mihw->oihw", W2[:, :, a, b], W1)
    bias = b2 + W2.sum(dim=(2, 3)) @ b1
    X = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        two = conv2(conv1(X))
        one = F.conv2d(X, K, bias, padding=2)
        assert torch.allclose(two[..., 2:-2, 2:-2], one[..., 2:-2, 2:-2], atol=1e-5)
        relu_between = conv2(F.relu(conv1(X)))
        assert (relu_between[..., 2:-2, 2:-2] - one[..., 2:-2, 2:-2]).abs().max() > 0.1


@pytest.mark.parametrize(("ratio", "resize"), [(4, 224), (16, 32)])
def test_vgg11_shapes(ratio, resize):
    got = shapes(vgg(VGG11, ratio=ratio), resize)
    for i, (_, c) in enumerate(VGG11):
        assert got[i] == (1, c // ratio, resize // 2 ** (i + 1), resize // 2 ** (i + 1))
    assert got[5] == (1, 512 // ratio * (resize // 32) ** 2)
    assert got[-1] == (1, 10)


def test_vgg11_parameter_count():
    ratio, c_in, expected = 4, 1, 0
    for num_convs, c in VGG11:
        for i in range(num_convs):
            expected += conv_params(c_in if i == 0 else c // ratio, c // ratio, 3)
        c_in = c // ratio
    expected += linear_params(c_in * 7 * 7, 4096) + linear_params(4096, 4096) + linear_params(4096, 10)
    assert num_params(built(vgg(VGG11, ratio=4), 224)) == expected == 43_093_322


# ---------------------------------------------------------------- NiN (chapter 12)


def test_nin_shapes():
    got = shapes(nin(), 224)
    assert [got[i] for i in (0, 1, 2, 3, 4, 5, 7, 8, 9)] == [
        (1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12),
        (1, 384, 12, 12), (1, 384, 5, 5), (1, 384, 5, 5), (1, 10, 5, 5), (1, 10, 1, 1)]
    assert got[-1] == (1, 10)
    assert shapes(nin(), 67)[8] == (1, 10, 1, 1)
    assert shapes(d2l_nin(), 224)[7] == (1, 10, 5, 5)
    with pytest.raises(RuntimeError):
        shapes(nin(), 66)


NIN_TRUNK = [(1, 96, 11), (96, 256, 5), (256, 384, 3)]


def nin_block_params(c_in: int, c_out: int, k: int) -> int:
    """A k x k convolution and two 1x1 convolutions."""
    return conv_params(c_in, c_out, k) + 2 * conv_params(c_out, c_out, 1)


def test_nin_parameter_count_and_alexnet_ratio():
    trunk = sum(nin_block_params(*b) for b in NIN_TRUNK)
    expected = trunk + nin_block_params(384, 384, 3) + conv_params(384, 10, 1)
    assert num_params(nin()) == expected == 3_584_394
    assert num_params(d2l_nin()) == trunk + nin_block_params(384, 10, 3) == 1_992_166
    assert alexnet_params(4096) / expected > 13  # NiN has about 13 times fewer parameters than AlexNet


def test_nin_runs_at_any_size_with_the_same_parameters():
    net = nin().eval()
    with torch.no_grad():
        for size in (67, 100, 131):
            assert net(torch.zeros(1, 1, size, size)).shape == (1, 10)
    assert num_params(net) == 3_584_394
    assert alexnet_params(4096, flat=256 * 1 * 1) != alexnet_params(4096)  # AlexNet's count depends on the size


def test_d2l_nin_has_dead_classes_and_the_chapter_nin_has_none():
    """With a ReLU on the class scores, some classes score exactly 0 on every input of a fresh network."""
    X = torch.rand(8, 1, 67, 67, generator=torch.Generator().manual_seed(0))

    def dead_classes(make, seed):
        torch.manual_seed(seed)
        net = init_cnn(make().eval())  # He-normal weights, zero biases
        with torch.no_grad():
            return int((net(X) == 0).all(dim=0).sum())

    assert sum(dead_classes(d2l_nin, seed) for seed in range(3)) > 0
    assert sum(dead_classes(nin, seed) for seed in range(2)) == 0


def test_score_layer_then_gap_equals_gap_then_linear():
    torch.manual_seed(0)
    conv, Z = nn.Conv2d(8, 3, 1), torch.rand(2, 8, 5, 5)
    with torch.no_grad():
        left = F.adaptive_avg_pool2d(conv(Z), 1).flatten(1)
        right = Z.mean(dim=(2, 3)) @ conv.weight[:, :, 0, 0].T + conv.bias
    assert torch.allclose(left, right, atol=1e-6)


def test_one_by_one_conv_is_per_pixel_linear_and_gap_is_mean():
    torch.manual_seed(0)
    conv, X = nn.Conv2d(6, 4, 1), torch.randn(2, 6, 5, 7)
    linear = nn.Linear(6, 4)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[:, :, 0, 0])
        linear.bias.copy_(conv.bias)
        per_pixel = linear(X.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert torch.allclose(conv(X), per_pixel, atol=1e-6)
        assert torch.allclose(nn.AdaptiveAvgPool2d(1)(X).flatten(1), X.mean(dim=(2, 3)), atol=1e-6)


# ---------------------------------------------------------------- GoogLeNet (chapter 13)


def inception_out(c1, c2, c3, c4) -> int:
    """Output channels of an Inception block: the four paths' channels added up."""
    return c1 + c2[1] + c3[1] + c4


def test_inception_channel_arithmetic():
    blocks = [cfg for module in ("b3", "b4", "b5") for cfg in INCEPTION[module]]
    outs = [inception_out(*cfg[1:]) for cfg in blocks]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert [cfg[0] for cfg in blocks[1:]] == outs[:-1]  # each block consumes what the previous one produced
    torch.manual_seed(0)
    block = Inception(*INCEPTION["b3"][0])
    assert block(torch.randn(2, 192, 6, 6)).shape == (2, 256, 6, 6)


def test_inception_matches_torchvision_channels():
    """torchvision's GoogLeNet uses the same channel numbers for each of its nine Inception blocks."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    names = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
             "inception4e", "inception5a", "inception5b"]
    blocks = [cfg for module in ("b3", "b4", "b5") for cfg in INCEPTION[module]]
    for name, (in_c, c1, c2, c3, c4) in zip(names, blocks, strict=True):
        m = getattr(ref, name)
        assert m.branch1.conv.in_channels == in_c
        assert (m.branch1.conv.out_channels, m.branch2[1].conv.out_channels,
                m.branch3[1].conv.out_channels, m.branch4[1].conv.out_channels) == (c1, c2[1], c3[1], c4)


def test_googlenet_blocks_per_module():
    """Errata: the fourth module chains five Inception blocks; the fifth module chains two."""
    net = googlenet()
    counts = [sum(isinstance(m, Inception) for m in module) for module in net[:5]]
    assert counts == [0, 0, 2, 5, 2]


@pytest.mark.parametrize(("size", "spatial"), [(96, [24, 12, 6, 3]), (32, [8, 4, 2, 1])])
def test_googlenet_shapes(size, spatial):
    got = shapes(googlenet(), size)
    assert [s[1] for s in got[:4]] == [64, 192, 480, 832]
    assert [s[2] for s in got[:4]] == spatial
    assert got[4] == (1, 1024) and got[5] == (1, 10)


def test_googlenet_parameter_count():
    def inception_params(in_c, c1, c2, c3, c4):
        return (conv_params(in_c, c1, 1) + conv_params(in_c, c2[0], 1) + conv_params(c2[0], c2[1], 3)
                + conv_params(in_c, c3[0], 1) + conv_params(c3[0], c3[1], 5) + conv_params(in_c, c4, 1))

    expected = conv_params(1, 64, 7) + conv_params(64, 64, 1) + conv_params(64, 192, 3)
    expected += sum(inception_params(*cfg) for module in INCEPTION.values() for cfg in module)
    expected += linear_params(1024, 10)
    assert num_params(googlenet()) == expected == 5_977_530
