"""Training and evaluation of classifiers, with metrics kept on the device (chapter 02)."""

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from d2l_support.device import describe_device, get_device, keep_freed_memory
from d2l_support.plot import LivePlot
from d2l_support.scale import current_scale


@dataclass
class History:
    """Per-epoch training loss and accuracies, and the measured throughput (chapter 02)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    examples_per_sec: float = 0.0
    device: str = "cpu"


def correct_count(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return, as a tensor on the logits' device, how many rows of logits predict their label (chapter 02)."""
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits of shape (batch, classes) and labels of shape (batch,), "
            f"got {tuple(logits.shape)} and {tuple(y.shape)}"
        )
    return (logits.argmax(dim=1) == y).sum()


def evaluate_accuracy(net: Callable, data_iter: Iterable, device: torch.device | None = None) -> float:
    """Return the accuracy of `net` over `data_iter`, synchronising once at the end (chapter 02)."""
    device = device or get_device()
    with _eval_mode(net), torch.no_grad():
        correct, total = torch.zeros((), device=device, dtype=torch.long), 0
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            correct += correct_count(net(X), y)
            total += len(y)
    return correct.item() / max(total, 1)


@contextlib.contextmanager
def _eval_mode(net: Callable):
    """Put an nn.Module in eval mode for the block and restore its mode after."""
    was_training = isinstance(net, nn.Module) and net.training
    if isinstance(net, nn.Module):
        net.eval()
    try:
        yield
    finally:
        if was_training:
            net.train()


def show_progress() -> bool:
    """Whether to draw progress bars: not in CI, and not when D2L_PROGRESS=0 (chapter 02)."""
    return os.environ.get("D2L_PROGRESS", "0" if os.environ.get("CI") else "1") != "0"


def train_classifier(net: Callable, train_iter: Iterable, test_iter: Iterable, loss_fn: Callable,
                     optimizer, epochs: int, device: torch.device | None = None, plot: bool = True,
                     amp: bool = False, channels_last: bool = False) -> History:
    """Train a classifier, evaluate it on the test set after every epoch, and return its history (chapter 02).

    `loss_fn` returns the mean loss of a batch; `optimizer` has `zero_grad()` and `step()`.
    Metrics stay on the device and are read once per epoch. `amp` (bfloat16 autocast) only takes
    effect on CUDA; `channels_last` stores images and convolution weights channels-last, which speeds up
    convolutions on both CUDA and CPU. On CPU it first calls `keep_freed_memory`, which saves the
    page faults of re-allocating every large tensor at every step.
    """
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cpu":
        keep_freed_memory()
    if isinstance(net, nn.Module):
        net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    legend = ["train loss", "train acc", "test acc"]
    live = LivePlot(xlabel="epoch", legend=legend, xlim=(1, max(epochs, 2))) if plot else None
    history = History(device=describe_device(device))
    seconds, examples = 0.0, 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss, acc, n = _train_epoch(net, train_iter, loss_fn, optimizer, device,
                                     amp and device.type == "cuda", channels_last)
        _check_finite(loss, epoch, optimizer)
        seconds, examples = seconds + time.perf_counter() - start, examples + n
        test_acc = evaluate_accuracy(net, test_iter, device)
        history.train_loss.append(loss)
        history.train_acc.append(acc)
        history.test_acc.append(test_acc)
        print(f"epoch {epoch}/{epochs}: loss {loss:.3f}, train acc {acc:.3f}, test acc {test_acc:.3f}")
        if live:
            live.add(epoch, [loss, acc, test_acc])
    history.examples_per_sec = examples / seconds
    print(f"{history.examples_per_sec:,.0f} examples/s on {device}")
    return history


def _train_epoch(net, train_iter, loss_fn, optimizer, device, amp, channels_last) -> tuple[float, float, int]:
    """Run one epoch; return mean loss, accuracy and example count, reading the device once."""
    if isinstance(net, nn.Module):
        net.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for X, y in tqdm(train_iter, leave=False, disable=not show_progress()):
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(X)
            loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().float() * len(y)
        correct += correct_count(logits.detach(), y)
        n += len(y)
    return loss_sum.item() / n, correct.item() / n, n


def _check_finite(loss: float, epoch: int, optimizer) -> None:
    """Stop with advice when the loss has become NaN or infinite."""
    if not math.isfinite(loss):
        lr = optimizer.param_groups[0]["lr"] if hasattr(optimizer, "param_groups") else getattr(optimizer, "lr", "?")
        raise FloatingPointError(
            f"the training loss became {loss} in epoch {epoch}: lower the learning rate (now {lr}) "
            "or check the inputs for NaN or infinite values"
        )


def assert_quality(value: float, *, full: float, quick: float, name: str = "test accuracy",
                   lower_is_better: bool = False) -> None:
    """Fail loudly unless `value` reaches the threshold of the active scale (chapter 02)."""
    threshold = full if current_scale() == "full" else quick
    ok = value <= threshold if lower_is_better else value >= threshold
    relation = "<=" if lower_is_better else ">="
    if not ok:
        raise AssertionError(f"{name} {value:.4g} misses the {current_scale()}-scale target {relation} {threshold}")
    print(f"{name} {value:.4g} {relation} {threshold} ({current_scale()} scale): OK")
