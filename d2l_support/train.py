"""Training and evaluation of classifiers on one epoch loop shared with the language models (chapter 02).

`fit` is the loop every trainer runs: it checks the number of epochs, resumes from a checkpoint, stops on a NaN
loss, warns when the loss diverges, records, prints and plots each epoch and measures the throughput. A trainer
only supplies `run_epoch`, which trains once over the data and returns an `EpochResult`.
"""

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from d2l_support.device import describe_device, get_device
from d2l_support.distributed import barrier, get_world_size, is_main, sum_over_ranks
from d2l_support.figures import LivePlot
from d2l_support.scales import current_scale

DIVERGENCE_FACTOR = 100.0  # an epoch whose mean loss exceeds its run's first batch loss this many times diverges
TIMED_BATCHES = 10  # batches timed, after one that warms up, to estimate a run's time on the machine at hand


@dataclass
class History:
    """Per-epoch training loss and accuracies, and the measured throughput (chapter 02)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    examples_per_sec: float = 0.0
    device: str = "cpu"


@dataclass
class EpochResult:
    """What one training epoch reports to `fit`: its mean loss, the loss of its first batch, its example count."""

    loss: float
    first_loss: float
    examples: int


@dataclass
class ClassifierEpoch(EpochResult):
    """An epoch of a classifier: `EpochResult` and the training accuracy."""

    accuracy: float = 0.0


# ---------------------------------------------------------------- evaluation


def correct_count(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return, as a tensor on the logits' device, how many rows of logits predict their label (chapter 02)."""
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits of shape (batch, classes) and labels of shape (batch,), "
            f"got {tuple(logits.shape)} and {tuple(y.shape)}"
        )
    return (logits.argmax(dim=1) == y).sum()


def evaluate_accuracy(net: Callable, data_iter: Iterable, device: torch.device | str | None = None) -> float:
    """Return the accuracy of `net` over `data_iter` in eval mode, synchronising once at the end (chapter 02).

    The device defaults to that of the network's parameters. Outputs that are NaN or infinite raise an error
    instead of passing as wrong predictions. Under torch.distributed every rank evaluates its shard and the
    counts are summed over the ranks (chapter 20), so every rank must call it.
    """
    device = network_device(net, device)
    correct, broken = torch.zeros((), device=device, dtype=torch.long), torch.zeros((), device=device, dtype=torch.long)
    total = 0
    with evaluation_mode(net), torch.no_grad():
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            logits = net(X)
            correct += correct_count(logits, y)
            broken += (~torch.isfinite(logits)).any(dim=1).sum()
            total += len(y)
    counts = torch.stack([correct, broken, torch.tensor(total, device=device)])
    correct, broken, total = sum_over_ranks(counts).tolist()
    if total == 0:
        raise ValueError("the evaluation data held no examples")
    if broken:
        raise FloatingPointError(
            f"the network's outputs are NaN or infinite for {broken} of {total} evaluation examples: "
            "check the inputs for NaN or infinite values"
        )
    return correct / total


def network_device(net: Callable, device: torch.device | str | None = None) -> torch.device:
    """Return `device` if given, else the device of the network's parameters, else `get_device()` (chapter 02)."""
    if device is not None:
        return torch.device(device)
    parameter = next(net.parameters(), None) if isinstance(net, nn.Module) else None
    return parameter.device if parameter is not None else get_device()


@contextlib.contextmanager
def evaluation_mode(net: Callable):
    """Put an nn.Module in eval mode for the block and restore its mode after, even on errors (chapter 02)."""
    was_training = isinstance(net, nn.Module) and net.training
    if isinstance(net, nn.Module):
        net.eval()
    try:
        yield
    finally:
        if was_training:
            net.train()


# ---------------------------------------------------------------- the shared epoch loop


def show_progress() -> bool:
    """Whether to draw progress bars: not in CI, and not when D2L_PROGRESS=0 (chapter 02)."""
    return os.environ.get("D2L_PROGRESS", "0" if os.environ.get("CI") else "1") != "0"


def check_epochs(epochs: int) -> None:
    """Reject a number of epochs that is not a positive int (chapter 02)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")


def learning_rate(optimizer) -> float | str:
    """Return the optimizer's current learning rate, or '?' when it has none to read (chapter 02)."""
    if getattr(optimizer, "param_groups", None):
        return optimizer.param_groups[0]["lr"]
    return getattr(optimizer, "lr", "?")


def take_step(loss: torch.Tensor, optimizer, scheduler=None, clip: Callable[[], object] | None = None) -> None:
    """Backpropagate `loss`, optionally clip, update the parameters and advance the scheduler (chapter 02)."""
    optimizer.zero_grad()
    loss.backward()
    if clip is not None:
        clip()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def sgd_one_cycle(params, lr: float, total_steps: int, momentum: tuple[float, float] = (0.85, 0.95),
                  weight_decay: float = 5e-4, warmup: float = 0.3):
    """Nesterov SGD with weight decay, and a one-cycle schedule of its learning rate and momentum (chapter 10)."""
    low, high = momentum
    optimizer = torch.optim.SGD(params, lr=lr, momentum=high, nesterov=True, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=warmup,
                                                   base_momentum=low, max_momentum=high)
    return optimizer, schedule


def check_loss(result: EpochResult, reference: float, epoch: int, optimizer) -> None:
    """Stop on a NaN or infinite loss and warn when it exceeds `reference` a hundredfold (chapter 02)."""
    if not math.isfinite(result.loss):
        raise FloatingPointError(
            f"the training loss became {result.loss} in epoch {epoch}: lower the learning rate "
            f"(now {learning_rate(optimizer)}) or check the inputs for NaN or infinite values"
        )
    if reference > 0 and result.loss > DIVERGENCE_FACTOR * reference:
        warnings.warn(
            f"the training loss diverges: {result.loss:.3g} in epoch {epoch}, against {reference:.3g} on the first "
            f"batch; lower the learning rate (now {learning_rate(optimizer)})",
            RuntimeWarning,
            stacklevel=4,  # the caller of the trainer
        )


def fit(run_epoch: Callable[[], EpochResult], epochs: int, *, optimizer, history, record: Callable,
        replay: Callable[[int], None] = lambda epoch: None, checkpoint: str | Path | None = None,
        state: dict | None = None, quiet: bool = False) -> float | None:
    """Run `run_epoch` `epochs` times: check, record and report each epoch, resume and save a checkpoint (chapter 02).

    `record(epoch, result)` stores an epoch in `history` and returns its report line (or None to print nothing);
    `replay(epoch)` redraws an epoch restored from the checkpoint; `state` names what a checkpoint holds besides
    the history (modules, optimizers, schedulers, generators). Returns examples per second, or None if no epoch ran.
    """
    check_epochs(epochs)
    done = load_checkpoint(checkpoint, state, history) if checkpoint else 0
    if done and not quiet:
        print(f"resumed from {checkpoint} after epoch {done}")
    for epoch in range(1, done + 1):
        replay(epoch)
    seconds, examples, reference = 0.0, 0, None
    for epoch in range(done + 1, epochs + 1):
        start = time.perf_counter()
        result = run_epoch()
        seconds, examples = seconds + time.perf_counter() - start, examples + result.examples
        reference = result.first_loss if reference is None else reference
        check_loss(result, reference, epoch, optimizer)
        line = record(epoch, result)
        if line and not quiet:
            print(f"epoch {epoch}/{epochs}: {line}")
        if checkpoint:
            if is_main():  # every rank holds the same state; rank 0 writes it, and every rank resumes from it
                save_checkpoint(checkpoint, epoch, state, history)
            barrier()
    return examples / seconds if seconds else None


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, epoch: int, state: dict, history) -> None:
    """Write the training state after `epoch` atomically, so that an interrupted run can resume (chapter 15)."""
    path = Path(path)
    snapshot = {name: _state_of(obj) for name, obj in state.items() if obj is not None}
    partial = path.with_name(f"{path.name}.part")
    torch.save({"epoch": epoch, "history": asdict(history), "state": snapshot, "rng": torch.get_rng_state(),
                "cuda rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path, state: dict, history) -> int:
    """Restore the training state from `path` if it exists and return the epochs it completed, else 0 (chapter 15).

    An epoch interrupted half-way is not saved: the rerun trains it again from the state after the epoch before.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    saved = _read_checkpoint(path)
    try:
        for name, obj in state.items():
            if obj is not None:
                _restore(obj, saved["state"][name])
    except (RuntimeError, KeyError, ValueError, TypeError, EOFError) as error:
        raise ValueError(
            f"{path} is not a checkpoint of this network and optimizer ({error}); delete it to train from scratch"
        ) from error
    torch.set_rng_state(saved["rng"])
    if saved["cuda rng"]:
        torch.cuda.set_rng_state_all(saved["cuda rng"])
    for name, value in saved["history"].items():
        if name != "device":  # the run goes on where it runs now
            setattr(history, name, value)
    return saved["epoch"]


CHECKPOINT_LAYOUT = {"epoch": int, "history": dict, "state": dict, "rng": torch.Tensor, "cuda rng": list}


def _read_checkpoint(path: Path) -> dict:
    """Load what `save_checkpoint` wrote at `path`, or raise ValueError saying that the file is not a checkpoint."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on foreign pickles: the error below says what matters
            saved = torch.load(path, weights_only=True)
    except OSError:
        raise
    except Exception as error:  # any failure to unpickle: random bytes, text, foreign pickles, an empty file
        first_line = next(iter(str(error).strip().splitlines()), "")
        problem = f"it cannot be read as one: {type(error).__name__} {first_line}".rstrip()
        raise ValueError(_not_a_checkpoint(path, problem)) from error
    missing = [key for key, kind in CHECKPOINT_LAYOUT.items()
               if not isinstance(saved, dict) or not isinstance(saved.get(key), kind)]
    if missing:
        problem = f"it holds a {type(saved).__name__} without a valid {', '.join(repr(k) for k in missing)}"
        raise ValueError(_not_a_checkpoint(path, problem))
    return saved


def _not_a_checkpoint(path: Path, problem: str) -> str:
    """The message for a file at `checkpoint=` that `save_checkpoint` did not write."""
    return (f"{path} is not a training checkpoint ({problem}). Delete it, or pass another file as checkpoint=, "
            "to train from scratch.")


def _state_of(obj):
    """The saveable state of a module, optimizer, scheduler or generator."""
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _restore(obj, saved) -> None:
    """Load a saved state back into a module, optimizer, scheduler or generator."""
    if isinstance(obj, torch.Generator):
        obj.set_state(saved)
    else:
        obj.load_state_dict(saved)


def checkpoint_state(net, optimizer, scheduler, train_iter) -> dict:
    """Name what a checkpoint must hold to resume exactly: weights, optimizer, scheduler, data order (chapter 15)."""
    if not isinstance(net, nn.Module) or not hasattr(optimizer, "state_dict"):
        raise ValueError("checkpoints need an nn.Module network and an optimizer with state_dict()")
    return {"net": net, "optimizer": optimizer, "scheduler": scheduler,
            "data order": getattr(train_iter, "generator", None)}


# ---------------------------------------------------------------- classifiers


def train_classifier(net: Callable, train_iter: Iterable, test_iter: Iterable, loss_fn: Callable,
                     optimizer, epochs: int, device: torch.device | None = None, plot: bool = True,
                     amp: bool = False, channels_last: bool = False, *, scheduler=None, quiet: bool = False,
                     checkpoint: str | Path | None = None, estimate_time: bool = False) -> History:
    """Train a classifier, evaluate it on the test set after every epoch, and return its history (chapter 02).

    `loss_fn` returns the mean loss of a batch; `optimizer` has `zero_grad()` and `step()`; `scheduler`, if
    given, is stepped after every optimizer step. Metrics stay on the device and are read once per epoch.
    `amp` (bfloat16 autocast) only takes effect on CUDA; `channels_last` stores images and convolution
    weights channels-last, which speeds up convolutions on CUDA and CPU. `quiet` prints nothing. With
    `checkpoint` (a file path) the state is saved after every epoch and a rerun resumes where it stopped.
    `estimate_time` prints how long the training steps will take on this machine, timed on the first batches,
    and at the end how long the run took (chapter 10). Under torch.distributed (chapter 20) the metrics are
    summed over the ranks, and only rank 0 prints and plots.
    """
    check_epochs(epochs)
    quiet, plot = quiet or not is_main(), plot and is_main()
    device = torch.device(device) if device is not None else get_device()
    if isinstance(net, nn.Module):
        net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    state = checkpoint_state(net, optimizer, scheduler, train_iter) if checkpoint else None
    live = LivePlot(xlabel="epoch", legend=["train loss", "train acc", "test acc"],
                    xlim=(1, max(epochs, 2))) if plot else None
    history = History(device=describe_device(device))

    def print_estimate(seconds_per_batch: float) -> None:
        remaining = (epochs - len(history.train_loss)) * len(train_iter)
        print(f"estimated from the first {TIMED_BATCHES} batches on this machine: "
              f"{seconds_per_batch * remaining / 60:.1f} minutes of training steps")

    timed = estimate_time and not quiet
    epochs_run = 0

    def run_epoch() -> EpochResult:
        nonlocal epochs_run
        on_timed = print_estimate if timed and not epochs_run and len(train_iter) > TIMED_BATCHES + 1 else None
        epochs_run += 1
        return _train_epoch(net, train_iter, loss_fn, optimizer, device, amp and device.type == "cuda",
                            channels_last, scheduler, progress=not quiet, on_timed=on_timed)

    def replay(epoch: int) -> None:
        if live:
            live.add(epoch, [history.train_loss[epoch - 1], history.train_acc[epoch - 1], history.test_acc[epoch - 1]])

    def record(epoch: int, result: ClassifierEpoch) -> str:
        history.train_loss.append(result.loss)
        history.train_acc.append(result.accuracy)
        history.test_acc.append(evaluate_accuracy(net, test_iter, device))
        replay(epoch)
        return f"loss {result.loss:.3f}, train acc {result.accuracy:.3f}, test acc {history.test_acc[-1]:.3f}"

    start = time.perf_counter()
    speed = fit(run_epoch, epochs, optimizer=optimizer, history=history, record=record, replay=replay,
                checkpoint=checkpoint, state=state, quiet=quiet)
    history.examples_per_sec = speed or history.examples_per_sec
    if not quiet:
        print(f"{history.examples_per_sec:,.0f} examples/s on {device}")
        if timed and epochs_run:
            print(f"the run took {(time.perf_counter() - start) / 60:.1f} minutes, test evaluations included")
    return history


def _synchronized_clock(device: torch.device) -> float:
    """Read the clock once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _train_epoch(net, train_iter, loss_fn, optimizer, device, amp, channels_last, scheduler=None,
                 progress=True, on_timed: Callable[[float], None] | None = None) -> ClassifierEpoch:
    """Run one epoch; return the mean loss over examples, the accuracy and the count, reading the device once.

    `on_timed`, if given, receives the seconds per batch of batches 2 to `TIMED_BATCHES + 1` (the first warms up).
    """
    if isinstance(net, nn.Module):
        net.train()
    loss_sum = torch.zeros((), device=device)
    first_loss = torch.full((), math.nan, device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for batch, (X, y) in enumerate(tqdm(train_iter, leave=False, disable=not (progress and show_progress()))):
        if on_timed and batch == 1:
            timed_from = _synchronized_clock(device)
        elif on_timed and batch == TIMED_BATCHES + 1:
            on_timed((_synchronized_clock(device) - timed_from) / TIMED_BATCHES)
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(X)
            loss = loss_fn(logits, y)
        take_step(loss, optimizer, scheduler)
        if n == 0:
            first_loss = loss.detach().float()
        loss_sum += loss.detach().float() * len(y)
        correct += correct_count(logits.detach(), y)
        n += len(y)
    if n == 0:
        raise ValueError("the training data held no examples")
    totals = torch.stack([loss_sum, first_loss, correct.float(), torch.tensor(float(n), device=device)])
    loss_sum, first_loss, correct, n = sum_over_ranks(totals).tolist()  # one read (and all-reduce) per epoch
    return ClassifierEpoch(loss_sum / n, first_loss / get_world_size(), int(n), accuracy=correct / n)


def assert_quality(value: float, *, full: float, quick: float, name: str = "test accuracy",
                   lower_is_better: bool = False) -> None:
    """Fail loudly unless `value` reaches the threshold of the active scale (chapter 02)."""
    threshold = full if current_scale() == "full" else quick
    ok = value <= threshold if lower_is_better else value >= threshold
    relation = "<=" if lower_is_better else ">="
    if not ok:
        raise AssertionError(f"{name} {value:.4g} misses the {current_scale()}-scale target {relation} {threshold}")
    print(f"{name} {value:.4g} {relation} {threshold} ({current_scale()} scale): OK")
