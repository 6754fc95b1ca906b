"""The LeNet chapter's (09) own model: layer shapes, parameter counts, the forward equations, the exercises."""

import pytest
import torch
import torch.nn.functional as F
from chapter_code import from_chapter
from torch import nn

from d2l_support.cnn import num_params, out_size

lenet = from_chapter("09_lenet", "lenet")


EXPECTED_SHAPES = [
    (6, 28, 28), (6, 28, 28), (6, 14, 14),
    (16, 10, 10), (16, 10, 10), (16, 5, 5),
    (400,), (120,), (120,), (84,), (84,), (10,),
]
EXPECTED_PARAMS = [156, 0, 0, 2416, 0, 0, 0, 48120, 0, 10164, 0, 850]


@pytest.mark.parametrize(("activation", "pooling"), [(nn.Sigmoid, nn.AvgPool2d), (nn.ReLU, nn.MaxPool2d)])
def test_layer_output_shapes_and_parameters(activation, pooling):
    net = lenet(activation, pooling)
    X = torch.zeros(2, 1, 28, 28)
    for layer, shape, params in zip(net, EXPECTED_SHAPES, EXPECTED_PARAMS, strict=True):
        X = layer(X)
        assert X.shape == (2, *shape), layer
        assert num_params(layer) == params, layer
    assert num_params(net) == 61_706


def test_shapes_follow_the_output_size_formula():
    side = 28
    side = out_size(side, kernel=5, padding=2)
    assert side == 28
    side = out_size(side, kernel=2, stride=2)
    assert side == 14
    side = out_size(side, kernel=5)
    assert side == 10
    side = out_size(side, kernel=2, stride=2)
    assert side == 5


def test_parameter_formulas():
    conv = lambda c_in, c_out, k: c_out * (c_in * k * k + 1)
    dense = lambda d_in, d_out: d_out * (d_in + 1)
    assert conv(1, 6, 5) == num_params(nn.Conv2d(1, 6, 5))
    assert conv(6, 16, 5) == num_params(nn.Conv2d(6, 16, 5))
    assert dense(400, 120) == num_params(nn.Linear(400, 120))
    total = conv(1, 6, 5) + conv(6, 16, 5) + dense(400, 120) + dense(120, 84) + dense(84, 10)
    assert total == 61_706
    assert dense(400, 120) / total > 0.75  # most parameters sit in the first dense layer


def test_forward_equations_match_the_sequential_model():
    torch.manual_seed(0)
    net = lenet()
    W1, b1, W2, b2, W3, b3, W4, b4, W5, b5 = net.parameters()
    X = torch.rand(4, 1, 28, 28)
    H1 = F.avg_pool2d(torch.sigmoid(F.conv2d(X, W1, b1, padding=2)), 2, 2)
    H2 = F.avg_pool2d(torch.sigmoid(F.conv2d(H1, W2, b2)), 2, 2)
    h3 = torch.sigmoid(H2.flatten(1) @ W3.T + b3)
    h4 = torch.sigmoid(h3 @ W4.T + b4)
    torch.testing.assert_close(h4 @ W5.T + b5, net(X))


def test_exercise_without_padding():
    """Exercise ex-09-no-padding: 28 -> 24 -> 12 -> 8 -> 4, 44,426 parameters."""
    net = nn.Sequential(nn.Conv2d(1, 6, 5), *lenet()[1:7], nn.Linear(256, 120), *lenet()[8:])
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert net[:7](torch.zeros(1, 1, 28, 28)).shape == (1, 256)
    assert num_params(net) == 44_426


def test_exercise_receptive_field():
    """Exercise ex-09-receptive-field: one output entry of the convolutional block sees a 16 x 16 patch."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.AvgPool2d(2, 2), nn.Conv2d(1, 1, 5), nn.AvgPool2d(2, 2))
    X = torch.zeros(1, 1, 28, 28, requires_grad=True)
    block(X)[0, 0, 2, 2].backward()
    rows = (X.grad[0, 0].abs().sum(dim=1) > 0).sum().item()
    cols = (X.grad[0, 0].abs().sum(dim=0) > 0).sum().item()
    assert (rows, cols) == (16, 16)
    r = 1
    for k, s in [(2, 2), (5, 1), (2, 2), (5, 1)]:
        r = s * r + (k - s)
    assert r == 16


def test_sigmoid_derivative_is_at_most_a_quarter():
    """Exercise ex-09-sigmoid-gradient."""
    x = torch.linspace(-8, 8, 1601, requires_grad=True)
    torch.sigmoid(x).sum().backward()
    assert x.grad.max().item() == pytest.approx(0.25)
    assert x.grad.argmax().item() == 800  # at x = 0


def test_modern_variant_differs_only_in_parameter_free_layers():
    classic, modern = lenet(), lenet(nn.ReLU, nn.MaxPool2d)
    assert [tuple(p.shape) for p in classic.parameters()] == [tuple(p.shape) for p in modern.parameters()]
    assert sum(isinstance(m, nn.ReLU) for m in modern) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in modern) == 2


def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = lenet(nn.ReLU, nn.MaxPool2d)
    templates, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (64,))
    X = templates[y] + 0.1 * torch.randn(64, 1, 28, 28)  # a learnable task: one noisy template per class
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
