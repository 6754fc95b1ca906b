"""What the convolutional chapters teach once and reuse: output sizes, parameter counts, layer tables, initialisation,
and AlexNet, which the NiN chapter compares with its own network.

Each function is written out in the chapter that introduces it (chapters 08, 09 and 10); a test checks that the
chapter's code and this module's are the same, and later chapters import them from here.
"""

import torch
from torch import nn

from d2l_support.train import evaluation_mode


def out_size(n: int, *, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Output length of a convolution or pooling window: floor((n - kernel + 2 padding) / stride) + 1 (chapter 08)."""
    if n + 2 * padding < kernel:
        raise ValueError(f"a window of {kernel} does not fit in {n} + 2 x {padding} padding")
    return (n - kernel + 2 * padding) // stride + 1


def num_params(module: nn.Module) -> int:
    """Number of trainable parameters of a module (chapter 09)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def layer_table(net: nn.Module, X: torch.Tensor) -> int:
    """Print each top-level layer's name, type, output shape and parameter count for input X; return the total.

    Introduced in chapter 09. The network runs in eval mode, so that batch norm accepts a single example.
    """
    print(f"{'layer':<8}{'type':<19}{'output shape':<20}{'parameters':>12}")
    with evaluation_mode(net), torch.no_grad():
        for name, layer in net.named_children():
            X = layer(X)
            print(f"{name:<8}{type(layer).__name__:<19}{str(tuple(X.shape)):<20}{num_params(layer):>12,}")
    total = num_params(net)
    print(f"{'total':<47}{total:>12,}")
    return total


def init_cnn(net: nn.Module, X: torch.Tensor | None = None, rule: str = "he") -> nn.Module:
    """Fix lazy shapes with X, then initialise conv and linear weights by `rule`, biases at 0 (chapter 10).

    `rule` is "he" (Kaiming normal, suited to ReLU) or "xavier" (Glorot uniform).
    """
    if rule not in ("he", "xavier"):
        raise ValueError(f"rule must be 'he' or 'xavier', got {rule!r}")
    if X is not None:
        with evaluation_mode(net), torch.no_grad():
            net(X)
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            if rule == "he":
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return net


def alexnet(hidden: int = 4096) -> nn.Sequential:
    """AlexNet for 1-channel images and 10 classes; `hidden` is the width of the two hidden FC layers (chapter 10)."""
    return nn.Sequential(
        # convolutional part: large windows first, then 3 x 3; overlapping 3 x 3 max pooling with stride 2
        nn.Conv2d(1, 96, kernel_size=11, stride=4), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        # fully connected part: two wide hidden layers with dropout, then the 10 class scores
        nn.Flatten(),
        nn.LazyLinear(hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, 10),
    )
