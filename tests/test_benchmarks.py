"""The benchmarks train the chapters' own models and count their FLOPs correctly (benchmarks/)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from chapter_code import from_chapter

from d2l_support.cnn import num_params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import models  # noqa: E402
import run  # noqa: E402


@pytest.mark.parametrize("model, chapter_count", [
    (models.softmax_regression, 7_850),  # chapter 02: 784 * 10 + 10
    (models.mlp, 203_530),  # chapter 03: 784 * 256 + 256 + 256 * 10 + 10
    (models.lenet, 61_706),  # chapter 09
    (models.alexnet, 46_764_746),  # chapter 10
    (models.resnet18, 11_178_378),  # chapter 15
])
def test_benchmark_models_have_the_chapters_parameter_counts(model, chapter_count):
    assert num_params(model()) == chapter_count


@pytest.mark.parametrize("model, notebook, name, size", [
    (models.lenet, "09_lenet", "lenet", 28),
    (models.alexnet, "10_alexnet", "alexnet", 224),
    (models.resnet18, "15_resnet", "resnet18", 96),
])
def test_benchmark_models_are_the_chapters_models(model, notebook, name, size):
    """Layer by layer the chapter's modules, with its kernels, strides, paddings and parameter shapes."""
    with torch.device("meta"):  # shapes only: no memory, no computation
        chapter = from_chapter(notebook, name)()
        chapter(torch.zeros(2, 1, size, size))  # sizes lazy layers as the benchmark does
    ours = model()
    assert repr(ours) == repr(chapter)
    shapes = lambda net: [(key, value.shape) for key, value in net.state_dict().items()]
    assert shapes(ours) == shapes(chapter)


def test_benchmark_models_accept_their_image_size():
    for case in run.TRAINING_CASES:
        if case.resize <= 96:
            assert case.model()(torch.zeros(2, 1, case.resize, case.resize)).shape == (2, 10), case.name


def test_training_flops_of_the_mlp_by_hand():
    case = next(c for c in run.TRAINING_CASES if c.name == "mlp")
    batch, layers = case.batch_size, [(784, 256), (256, 10)]
    forward = sum(2 * batch * n_in * n_out for n_in, n_out in layers)
    # Backward: a weight gradient for both layers, an input gradient only for the second (the images need none).
    backward = forward + 2 * batch * 256 * 10
    expected = (60_000 * (forward + backward) + 10_000 * forward) / batch
    assert run.training_flops(case.model(), case, torch.device("cpu")) == pytest.approx(expected)


@pytest.mark.parametrize("device_name, peak", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835),
    ("NVIDIA H200", 989), ("NVIDIA A100-SXM4-80GB", 312),
])
def test_hardware_share_uses_the_peak_of_the_exact_gpu(device_name, peak):
    flops, seconds = 0.1 * peak * 1e12, 1.0  # a tenth of the peak
    expected = f"{0.1 * peak:.1f} TFLOP/s = 10.0% of the {peak} TFLOP/s bf16 peak"
    assert run.hardware_share(flops, seconds, device_name) == expected


def test_hardware_share_of_an_unknown_gpu_gives_the_rate_alone():
    assert run.hardware_share(3e12, 2.0, "Some Future GPU") == "1.5 TFLOP/s"


def test_importing_the_benchmarks_leaves_the_environment_alone():
    # The notebook kernels that pytest starts after these tests inherit the environment (MPLBACKEND, for one).
    script = "import os, sys; sys.path.insert(0, 'benchmarks'); import d2l_support, models; " \
             "before = dict(os.environ); import run; print(dict(os.environ) == before)"
    bare = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=bare, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "True"


def test_median_times_interleaves_the_timers_and_takes_each_ones_median():
    calls = []

    def timer(name, seconds):
        values = iter(seconds)
        return lambda: calls.append(name) or next(values)

    medians = run.median_times(timer("a", [3.0, 1.0, 2.0]), timer("b", [10.0, 30.0, 20.0]), repeats=3)
    assert medians == [2.0, 20.0]
    assert calls == ["a", "b"] * 3


def test_the_floor_under_any_loop_trains_the_model():
    case = next(c for c in run.TRAINING_CASES if c.name == "softmax")
    torch.manual_seed(0)
    net = case.model()
    assert run.time_steps_alone(net, case, torch.device("cpu")) > 0
    # 235 steps cycling over 16 batches take softmax regression from chance (0.10) to about 0.79.
    assert run.test_accuracy(net, case, torch.device("cpu")) > 0.7
