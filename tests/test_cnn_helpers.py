"""The helpers the convolutional chapters teach once: output sizes, parameter counts, layer tables, initialisation."""

import itertools

import pytest
import torch
from torch import nn

from d2l_support import cnn

WINDOWS = list(itertools.product([5, 8, 11], [1, 2, 3, 5], [0, 1, 2], [1, 2, 3]))


@pytest.mark.parametrize("n, kernel, padding, stride", WINDOWS)
def test_out_size_matches_conv2d_and_max_pooling(n, kernel, padding, stride):
    if n + 2 * padding < kernel:
        with pytest.raises(ValueError, match="does not fit"):
            cnn.out_size(n, kernel=kernel, padding=padding, stride=stride)
        return
    expected = cnn.out_size(n, kernel=kernel, padding=padding, stride=stride)
    X = torch.zeros(1, 1, n, n)
    assert nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)(X).shape[-1] == expected
    if 2 * padding <= kernel:  # PyTorch's pooling allows at most half a window of padding
        assert nn.MaxPool2d(kernel, stride=stride, padding=padding)(X).shape[-1] == expected


def test_out_size_takes_its_window_by_keyword_only():
    with pytest.raises(TypeError):
        cnn.out_size(224, 11, 4)  # padding or stride? the chapters once disagreed
    assert cnn.out_size(224, kernel=11, stride=4) == 54 and cnn.out_size(224, kernel=11, padding=4) == 222


def test_num_params_counts_trainable_parameters():
    net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10))
    assert cnn.num_params(net) == 8 * (3 * 25 + 1) + 2 * 8 + 10 * (8 + 1)
    net[0].weight.requires_grad_(False)
    assert cnn.num_params(net) == 8 + 2 * 8 + 10 * 9


def test_layer_table_reads_shapes_and_counts_from_the_network(capsys):
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(6 * 14 * 14, 10))
    net.train()
    total = cnn.layer_table(net, torch.zeros(1, 1, 28, 28))  # one example: batch norm needs eval mode
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["layer", "type", "output", "shape", "parameters"]
    assert rows[1] == ["0", "Conv2d", "(1,", "6,", "28,", "28)", "156"]
    assert rows[4] == ["3", "MaxPool2d", "(1,", "6,", "14,", "14)", "0"]
    assert rows[6] == ["5", "Linear", "(1,", "10)", "11,770"]
    assert rows[-1] == ["total", f"{total:,}"] and total == 156 + 12 + 11_770
    assert net.training


@pytest.mark.parametrize("rule, std", [("he", lambda fan_in: (2 / fan_in) ** 0.5),
                                       ("xavier", lambda fan_in: (2 / (fan_in + 400)) ** 0.5)])
def test_init_cnn_sizes_lazy_layers_and_scales_weights_by_rule(rule, std):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(400))
    cnn.init_cnn(net, torch.zeros(1, 1, 12, 12), rule=rule)
    fan_in = 16 * 10 * 10
    assert net[3].weight.shape == (400, fan_in)
    assert net[3].weight.std().item() == pytest.approx(std(fan_in), rel=0.02)
    assert all(torch.all(layer.bias == 0) for layer in (net[0], net[3]))
    with pytest.raises(ValueError, match="'he' or 'xavier'"):
        cnn.init_cnn(net, rule="kaiming")
