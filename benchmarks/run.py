"""Train the same models on the same data with the reference `d2l` package (1.0.3) and with `d2l_support`,
back to back in one process, and print both times, their ratio and both test accuracies.

Usage: `make bench` (installs the reference from requirements-bench.txt), or
`python benchmarks/run.py [--cases lenet data-28 ...]`.
"""

import argparse
import contextlib
import copy
import io
import itertools
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402

import d2l_support as ours  # noqa: E402
from d2l_support.data import fashion_mnist_root  # noqa: E402

# Dense bfloat16 peak TFLOP/s by device name, most specific first, to report the fraction of the limit reached.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H200 NVL": 835.0, "H100": 989.0, "H200": 989.0,
               "A100": 312.0, "L4": 121.0, "T4": 65.0}


@dataclass
class Case:
    """One model trained for one epoch with fixed settings."""

    name: str
    model: callable
    resize: int
    batch_size: int
    lr: float
    optimizer: type = torch.optim.SGD
    gpu_only: bool = False


TRAINING_CASES = [
    Case("softmax", models.softmax_regression, 28, 256, 0.1),
    Case("mlp", models.mlp, 28, 256, 0.1),
    Case("lenet", lambda: models.xavier_init(models.lenet()), 28, 256, 3e-3, torch.optim.Adam),  # as in chapter 09
    Case("alexnet-224", lambda: models.xavier_init(models.alexnet()), 224, 128, 0.01, gpu_only=True),
    Case("resnet18-96", models.resnet18, 96, 256, 0.05, gpu_only=True),
]
DATA_CASES = {"data-28": 28, "data-96": 96}


def reference():
    """Import the reference implementation, with a clear message when it is missing."""
    try:
        from d2l import torch as d2l
    except ImportError as error:
        sys.exit(f"the reference package is missing ({error}): run `make bench`, which installs it")
    return d2l


def reference_fashion_mnist(batch_size: int, size: int):
    """d2l.FashionMNIST reading the same verified files as d2l_support (its data folder is fixed to ../data)."""
    d2l = reference()
    d2l.DataModule.__init__.__defaults__ = (str(fashion_mnist_root()), 4)
    return d2l.FashionMNIST(batch_size=batch_size, resize=(size, size))


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_reference_training(net: nn.Module, case: Case, device: torch.device) -> float:
    """One epoch of d2l.Trainer (training, then validation on the test set) on d2l.FashionMNIST."""
    d2l = reference()

    class Model(d2l.Classifier):
        def __init__(self, net, lr):
            super().__init__()
            self.net, self.lr = net, lr

        def configure_optimizers(self):
            return case.optimizer(self.parameters(), lr=self.lr)

    data = reference_fashion_mnist(case.batch_size, case.resize)
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1 if device.type == "cuda" else 0)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-step plot prints figures outside Jupyter
        trainer.fit(Model(net, case.lr), data)
    synchronize(device)
    return time.perf_counter() - start


def time_our_training(net: nn.Module, case: Case, device: torch.device) -> float:
    """One epoch of d2l_support.train_classifier (training, then test accuracy), data loading included."""
    start = time.perf_counter()
    train_iter, test_iter = ours.load_fashion_mnist(case.batch_size, resize=case.resize, device=device)
    with contextlib.redirect_stdout(io.StringIO()):
        ours.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(), case.optimizer(net.parameters(),
                              lr=case.lr), epochs=1, device=device, plot=False,
                              amp=device.type == "cuda", channels_last=True)
    synchronize(device)
    return time.perf_counter() - start


def time_steps_alone(net: nn.Module, case: Case, device: torch.device, ready: int = 16) -> float:
    """An epoch's training steps and test forward passes on `ready` batches made beforehand: a floor for any loop."""
    train_iter, test_iter = ours.load_fashion_mnist(case.batch_size, resize=case.resize, device=device)
    train_batches = [(X.contiguous(memory_format=torch.channels_last), y)
                     for X, y in itertools.islice(train_iter, ready)]
    test_batch = next(iter(test_iter))[0].contiguous(memory_format=torch.channels_last)
    net.to(device, memory_format=torch.channels_last)
    optimizer, loss_fn = case.optimizer(net.parameters(), lr=case.lr), nn.CrossEntropyLoss()
    start = time.perf_counter()
    for step in range(len(train_iter)):
        X, y = train_batches[step % ready]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(net(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for _ in range(len(test_iter)):
            net(test_batch)
    synchronize(device)
    return time.perf_counter() - start


def test_accuracy(net: nn.Module, case: Case, device: torch.device) -> float:
    """Accuracy on the full test set, measured the same way for both runs."""
    _, test_iter = ours.load_fashion_mnist(case.batch_size, resize=case.resize, device=device)
    return ours.evaluate_accuracy(net.float().to(device, memory_format=torch.contiguous_format), test_iter, device)


def training_flops(net: nn.Module, case: Case, device: torch.device) -> float:
    """FLOPs of one epoch: forward and backward over 60,000 images, forward over 10,000."""
    probe = copy.deepcopy(net).to(device)
    X = torch.zeros(case.batch_size, 1, case.resize, case.resize, device=device)
    with FlopCounterMode(display=False) as train_counter:
        probe(X).sum().backward()
    with FlopCounterMode(display=False) as eval_counter, torch.no_grad():
        probe(X)
    per_batch_train, per_batch_eval = train_counter.get_total_flops(), eval_counter.get_total_flops()
    return (60_000 * per_batch_train + 10_000 * per_batch_eval) / case.batch_size


def hardware_share(flops: float, seconds: float, device_name: str) -> str:
    """Achieved TFLOP/s and, for a known GPU, its share of the bfloat16 peak."""
    tflops = flops / seconds / 1e12
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    share = f" = {100 * tflops / peak:.1f}% of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""
    return f"{tflops:.1f} TFLOP/s{share}"


def median_times(*timers, repeats: int) -> list[float]:
    """Median seconds of each timer over interleaved runs, so that all see the same machine state."""
    runs = [[timer() for timer in timers] for _ in range(repeats)]
    return [statistics.median(column) for column in zip(*runs)]


def run_training_case(case: Case, device: torch.device, repeats: int) -> bool:
    """Time the reference, ours and the floor from the same weights; print a line; return whether accuracies agree."""
    torch.manual_seed(0)
    initial = case.model()
    ref_net, our_net, floor_net = copy.deepcopy(initial), copy.deepcopy(initial), copy.deepcopy(initial)

    def time_reference():
        ref_net.load_state_dict(initial.state_dict())
        return time_reference_training(ref_net, case, device)

    def time_ours():
        our_net.load_state_dict(initial.state_dict())
        return time_our_training(our_net, case, device)

    def time_floor():
        floor_net.load_state_dict(initial.state_dict())
        return time_steps_alone(floor_net, case, device)

    ref_seconds, our_seconds, floor_seconds = median_times(time_reference, time_ours, time_floor, repeats=repeats)
    ref_acc, our_acc = test_accuracy(ref_net, case, device), test_accuracy(our_net, case, device)
    agree = abs(ref_acc - our_acc) <= 0.05
    line = (f"{case.name:<12} {device.type:<4} reference {ref_seconds:7.2f} s  d2l_support {our_seconds:7.2f} s  "
            f"ratio {ref_seconds / our_seconds:5.1f}x  test acc {ref_acc:.3f} vs {our_acc:.3f}  "
            f"| steps alone {floor_seconds:.2f} s, so at most {ref_seconds / floor_seconds:.1f}x"
            f"{'' if agree else '  (ACCURACIES DIFFER)'}")
    if device.type == "cuda":
        share = hardware_share(training_flops(initial, case, device), our_seconds, torch.cuda.get_device_name(device))
        line += f"  | {70_000 / our_seconds:,.0f} images/s, {share}"
    print(line, flush=True)
    return agree


def run_data_case(name: str, size: int, device: torch.device, repeats: int) -> None:
    """Iterate one epoch of training batches from each pipeline and print the times."""

    def time_reference():
        start = time.perf_counter()
        for X, y in reference_fashion_mnist(256, size).train_dataloader():
            X, y = X.to(device), y.to(device)
        synchronize(device)
        return time.perf_counter() - start

    def time_ours():
        start = time.perf_counter()
        train_iter, _ = ours.load_fashion_mnist(256, resize=size, device=device)
        for _batch in train_iter:
            pass
        synchronize(device)
        return time.perf_counter() - start

    ref_seconds, our_seconds = median_times(time_reference, time_ours, repeats=repeats)
    print(f"{name:<12} {device.type:<4} reference {ref_seconds:7.2f} s  d2l_support {our_seconds:7.2f} s  "
          f"ratio {ref_seconds / our_seconds:5.1f}x  (one epoch of 60,000 images at {size}x{size}, loading included)",
          flush=True)


def main() -> None:
    """Run the selected cases on the CPU, and the GPU cases too when CUDA is available."""
    names = [c.name for c in TRAINING_CASES] + list(DATA_CASES)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", choices=names, default=names)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per case; medians are printed")
    args = parser.parse_args()
    matplotlib.use("Agg")  # the reference draws a figure per epoch; nothing is shown
    os.environ.setdefault("D2L_PROGRESS", "0")
    # d2l.FashionMNIST keeps its default of 4 loader processes, which torch warns about on a 2-core machine.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices: "
          f"{', '.join(ours.device.describe_device(d) for d in devices)}; median of {args.repeats} interleaved runs")
    ours.keep_freed_memory()  # train_classifier does this on CPU; done here, the reference gains from it too
    agree = True
    ours.load_fashion_mnist(256)  # prepare the files once, outside every timing
    for device in devices:
        for case in TRAINING_CASES:
            if case.name in args.cases and (device.type == "cuda" or not case.gpu_only):
                if device.type == "cuda" and case.name in ("softmax", "mlp"):
                    continue
                agree &= run_training_case(case, device, args.repeats)
        for name, size in DATA_CASES.items():
            if name in args.cases and device.type == "cpu":
                run_data_case(name, size, device, args.repeats)
    if not agree:
        sys.exit("some cases reached different accuracies: the comparison is not like for like")


if __name__ == "__main__":
    main()
