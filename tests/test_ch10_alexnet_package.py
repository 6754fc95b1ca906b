"""The AlexNet that the package keeps for later chapters (chapter 10): its size at D2L's and at small resolutions."""

import pytest
import torch

import d2l_support as d2l


def built(size: int) -> torch.nn.Sequential:
    """d2l.alexnet() on the meta device after one size x size image has fixed its lazy layer."""
    with torch.device("meta"):
        net = d2l.alexnet()
        net(torch.zeros(1, 1, size, size))
    return net


def test_alexnet_at_224_pixels_has_a_6400_input_first_fc_layer():
    net = built(224)
    assert net[14].in_features == 6400 and d2l.num_params(net) == 46_764_746


@pytest.mark.parametrize("size", [67, 80, 96, 98])
def test_alexnet_below_99_pixels_ends_in_a_1x1_map(size):
    net = built(size)
    assert net[14].in_features == 256 and d2l.num_params(net) == 21_598_922


def test_alexnet_at_99_pixels_ends_in_a_2x2_map():
    assert built(99)[14].in_features == 256 * 2 * 2


def test_alexnet_hidden_width_is_a_parameter():
    assert built(224)[17].out_features == 4096
    with torch.device("meta"):
        assert d2l.alexnet(hidden=496)[17].in_features == 496
