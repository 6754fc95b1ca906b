"""The models the benchmarks train: the chapters' own definitions, read from their notebooks where they are defined."""

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chapter_code import from_chapter  # noqa: E402


def softmax_regression() -> nn.Module:
    """Softmax regression on 28x28 images (chapter 02, which builds it in a statement, not a function)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def mlp() -> nn.Module:
    """The 784-256-10 multilayer perceptron (chapter 03, whose `mlp_layers` reads sizes its statements set)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def lenet() -> nn.Module:
    """Chapter 09's classic LeNet-5, with sigmoids and average pooling."""
    return from_chapter("09_lenet", "lenet")()


def alexnet(size: int = 224) -> nn.Module:
    """Chapter 10's AlexNet, its lazy first linear layer sized by one 1 x size x size image."""
    net = from_chapter("10_alexnet", "alexnet")()
    with torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    return net


def resnet18() -> nn.Module:
    """Chapter 15's ResNet-18 for one-channel images, 64 channels in its first stage."""
    return from_chapter("15_resnet", "resnet18")()


def xavier_init(net: nn.Module) -> nn.Module:
    """Initialise linear and convolutional weights with Xavier-uniform, as D2L does for these models."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
    return net
