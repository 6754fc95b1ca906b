"""The training loop, evaluation, quality assertions, scales, devices, provenance, plots and explorers."""

import copy
import io
import pickle
import resource
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn

import d2l_support as d2l
from d2l_support import train

matplotlib.use("Agg")


def separable_problem(n=512, seed=0):
    """Two Gaussian blobs in 2-D, one per class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, 2, generator=g) + 3.0 * (2 * y.unsqueeze(1) - 1)
    return d2l.TensorLoader(X, y, batch_size=64, shuffle=True), d2l.TensorLoader(X, y, batch_size=128)


def test_train_classifier_learns_and_reports(capsys):
    torch.manual_seed(0)
    train_iter, test_iter = separable_problem()
    net = nn.Linear(2, 2)
    history = d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(),
                                   torch.optim.SGD(net.parameters(), lr=0.1), epochs=3, device="cpu", plot=False)
    assert len(history.train_loss) == len(history.test_acc) == 3
    assert history.test_acc[-1] > 0.95 and history.train_loss[-1] < history.train_loss[0]
    assert history.examples_per_sec > 0 and history.device == "cpu"
    out = capsys.readouterr().out
    assert "epoch 3/3: loss" in out and "train acc" in out and "examples/s on cpu" in out


def test_metrics_match_a_plain_loop():
    """The device-side accumulation equals a straightforward per-batch .item() loop."""
    train_iter, test_iter = separable_problem()
    net = nn.Linear(2, 2)
    expected_correct = sum((net(X).argmax(1) == y).sum().item() for X, y in test_iter)
    assert train.evaluate_accuracy(net, test_iter, "cpu") == expected_correct / 512
    torch.manual_seed(1)
    net_a, net_b = nn.Linear(2, 2), nn.Linear(2, 2)
    net_b.load_state_dict(net_a.state_dict())
    loss_fn = nn.CrossEntropyLoss()
    epoch = train._train_epoch(net_a, train_iter, loss_fn, torch.optim.SGD(net_a.parameters(), lr=0.1),
                                      torch.device("cpu"), False, False)
    loss, acc, n = epoch.loss, epoch.accuracy, epoch.examples
    opt_b, total, correct = torch.optim.SGD(net_b.parameters(), lr=0.1), 0.0, 0
    train_iter.generator.manual_seed(0)
    replay = d2l.TensorLoader(*train_iter.tensors, batch_size=64, shuffle=True)
    for X, y in replay:
        logits = net_b(X)
        batch_loss = loss_fn(logits, y)
        opt_b.zero_grad()
        batch_loss.backward()
        opt_b.step()
        total += batch_loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
    assert n == 512 and loss == pytest.approx(total / 512, rel=1e-5) and acc == correct / 512


def small_convnet_problem():
    """A small convolutional network and random images in three classes."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(256, 1, 12, 12, generator=g), torch.randint(0, 3, (256,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.AvgPool2d(2), nn.Conv2d(4, 8, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    return net, X, y


def fit_small(net, X, y, epochs=1, **options):
    """Train `net` on (X, y) on the CPU with the same batches every time; return the history."""
    train_iter = d2l.TensorLoader(X, y, batch_size=32, shuffle=True, seed=1)
    return d2l.train_classifier(net, train_iter, d2l.TensorLoader(X, y, batch_size=64), nn.CrossEntropyLoss(),
                                torch.optim.SGD(net.parameters(), lr=0.5), epochs=epochs, device="cpu", plot=False,
                                **options)


def test_channels_last_gives_the_same_training_as_the_default_layout():
    """The faster memory layout changes no result beyond floating-point rounding."""
    plain, X, y = small_convnet_problem()
    fast = copy.deepcopy(plain)
    histories = [fit_small(plain, X, y, epochs=2), fit_small(fast, X, y, epochs=2, channels_last=True)]
    assert fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert histories[0].train_loss == pytest.approx(histories[1].train_loss, rel=1e-5)
    for p, q in zip(plain.parameters(), fast.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_bfloat16_autocast_trains_like_float32():
    """The mixed-precision step (bfloat16 autocast, as on CUDA) follows the float32 one within bfloat16 rounding."""
    plain, X, y = small_convnet_problem()
    mixed = copy.deepcopy(plain)
    results = []
    for net, amp in ((plain, False), (mixed, True)):
        train_iter = d2l.TensorLoader(X, y, batch_size=32, shuffle=True, seed=1)
        results.append(train._train_epoch(net, train_iter, nn.CrossEntropyLoss(),
                                          torch.optim.SGD(net.parameters(), lr=0.5), torch.device("cpu"), amp, True))
    (plain_loss, plain_acc, n), (mixed_loss, mixed_acc, m) = [(r.loss, r.accuracy, r.examples) for r in results]
    assert n == m == 256 and mixed_loss == pytest.approx(plain_loss, rel=2e-2)
    assert abs(mixed_acc - plain_acc) <= 0.05
    for p, q in zip(plain.parameters(), mixed.parameters()):
        assert q.dtype == torch.float32 and torch.allclose(p, q, atol=2e-2)
        assert not torch.equal(p, q), "autocast changed nothing: the bfloat16 path did not run"


def test_amp_only_takes_effect_on_cuda():
    """On the CPU `amp=True` trains exactly as float32 does: autocast applies on CUDA only."""
    histories = [fit_small(*small_convnet_problem(), amp=amp) for amp in (False, True)]
    assert histories[0].train_loss == histories[1].train_loss


def test_nan_loss_stops_with_advice():
    train_iter, test_iter = separable_problem()
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"lower the learning rate \(now 0.5\)"):
        d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(),
                             torch.optim.SGD(net.parameters(), lr=0.5), epochs=2, device="cpu", plot=False)


def test_wrong_output_shape_is_explained():
    train_iter, test_iter = separable_problem()
    net = nn.Sequential(nn.Linear(2, 2), nn.Flatten(0))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        d2l.train_classifier(net, train_iter, test_iter, lambda logits, y: logits.sum(),
                             torch.optim.SGD(net.parameters(), lr=0.1), epochs=1, device="cpu", plot=False)


def test_scratch_optimizer_and_function_net():
    """A plain function with an object that has zero_grad() and step() works like nn.Module + optim."""
    train_iter, test_iter = separable_problem()
    W = torch.zeros(2, 2, requires_grad=True)

    class ScratchSGD:
        lr = 0.1

        def zero_grad(self):
            W.grad = None

        def step(self):
            with torch.no_grad():
                W.sub_(self.lr * W.grad)

    history = d2l.train_classifier(lambda X: X @ W, train_iter, test_iter, nn.CrossEntropyLoss(), ScratchSGD(),
                                   epochs=2, device="cpu", plot=False)
    assert history.test_acc[-1] > 0.95


def test_eval_mode_is_restored():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    _, test_iter = separable_problem()
    net.train()
    train.evaluate_accuracy(net, test_iter, "cpu")
    assert net.training


def test_assert_quality(monkeypatch, capsys):
    monkeypatch.setenv("D2L_SCALE", "quick")
    d2l.assert_quality(0.6, full=0.9, quick=0.5)
    assert "(quick scale): OK" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="quick-scale target >= 0.7"):
        d2l.assert_quality(0.6, full=0.9, quick=0.7)
    monkeypatch.setenv("D2L_SCALE", "full")
    with pytest.raises(AssertionError, match="full-scale"):
        d2l.assert_quality(0.6, full=0.9, quick=0.5)
    d2l.assert_quality(1.2, full=1.5, quick=3.0, name="perplexity", lower_is_better=True)
    with pytest.raises(AssertionError, match="<= 1.1"):
        d2l.assert_quality(1.2, full=1.1, quick=3.0, name="perplexity", lower_is_better=True)


def test_progress_switch(monkeypatch):
    monkeypatch.delenv("D2L_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert not train.show_progress()
    monkeypatch.delenv("CI")
    assert train.show_progress()
    monkeypatch.setenv("D2L_PROGRESS", "0")
    assert not train.show_progress()


def test_scale_selection(monkeypatch):
    monkeypatch.setenv("D2L_SCALE", "quick")
    cfg = d2l.scale(full=dict(epochs=10, subset=None), quick=dict(epochs=1, subset=2048))
    assert (cfg.scale, cfg.epochs, cfg.subset) == ("quick", 1, 2048)
    monkeypatch.delenv("D2L_SCALE")
    assert d2l.scale(full=dict(epochs=10), quick=dict(epochs=1)).epochs == 10
    with pytest.raises(ValueError, match=r"\['subset'\]"):
        d2l.scale(full=dict(epochs=10), quick=dict(epochs=1, subset=5))
    monkeypatch.setenv("D2L_SCALE", "huge")
    with pytest.raises(ValueError, match="D2L_SCALE must be one of"):
        d2l.current_scale()


def test_device_and_seed():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert d2l.get_device().type == expected
    generator = d2l.seed_everything(3)
    a = torch.rand(2)
    d2l.seed_everything(3)
    assert torch.equal(a, torch.rand(2)) and torch.equal(generator.initial_seed() * torch.ones(1), 3 * torch.ones(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_kept_memory_is_reused_without_page_faults():
    def page_faults_of_fresh_tensors():
        """Like a training step: tensors of 4, 8 and 12 MB written, then freed; 20 times."""
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            tensors = [torch.ones(2**20 * k) for k in (1, 2, 3)]
            del tensors
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert d2l.keep_freed_memory()
    page_faults_of_fresh_tensors()
    assert page_faults_of_fresh_tensors() < 1000  # glibc's defaults fault in about 120,000 pages here


def test_provenance(monkeypatch, capsys):
    monkeypatch.setenv("D2L_SCALE", "quick")
    record = d2l.report_provenance(d2l.start_clock(), "cpu", test_acc=0.8312, epochs=3)
    assert record["scale"] == "quick" and record["device"] == "cpu" and record["test acc"] == "0.831"
    out = capsys.readouterr().out
    assert out.startswith("Provenance\n") and "  torch         " in out and "  epochs        3" in out
    assert record["peak memory"].endswith(" GiB RAM")


def high_water_mark() -> int:
    """The kernel's record of this process's peak resident memory (VmHWM), in bytes."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_peak_memory_agrees_with_the_kernels_high_water_mark():
    ours, kernels = d2l.provenance.peak_resident_bytes(), high_water_mark()
    assert abs(ours - kernels) < 4 * 2**20  # the kernel counts resident pages in per-thread batches
    gib = float(d2l.provenance.peak_memory("cpu").removesuffix(" GiB RAM"))
    assert abs(gib - ours / 2**30) < 0.01


def test_live_plot_and_figures():
    live = d2l.LivePlot(xlabel="epoch", legend=["a", "b"])
    live.add(1, [0.5, 0.2])
    live.add(2, [0.4, 0.3])
    assert [line.get_ydata().tolist() for line in live.ax.lines] == [[0.5, 0.4], [0.2, 0.3]]
    live.add(3, [0.3, 0.4], draw=False)
    assert len(live.ax.lines[0].get_ydata()) == 2
    live.add(4, [0.2, 0.5])
    assert live.ax.lines[0].get_xdata().tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="expected 2 values"):
        live.add(3, [0.1])
    ax = d2l.plot(torch.arange(3), torch.arange(3) ** 2, torch.arange(3), legend=["square", "identity"])
    assert len(ax.lines) == 2
    fig = d2l.show_images(torch.rand(5, 1, 8, 8), titles=["x"] * 5, num_cols=3)
    assert len(fig.axes) == 6 and sum(bool(a.images) for a in fig.axes) == 5
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        d2l.show_images(torch.rand(8, 8))


def test_explorers():
    def draw(ax, slope, offset=0.0):
        ax.plot([0, 1], [offset, offset + slope])

    html = d2l.frames_player(draw, "slope", [0.5, 1.0, 2.0], offset=1.0).data
    assert html.count("data:image/png;base64") == 3 and "<input" in html
    explorer = d2l.live_explorer(draw, slope=(0.0, 2.0, 0.5))
    assert [child.description for child in explorer.children[:-1]] == ["slope"]
    with pytest.raises(ValueError, match="must not be empty"):
        d2l.frames_player(draw, "slope", [])


# ---------------------------------------------------------------- what the loop evaluates, records and averages


class ModeRecorder(nn.Module):
    """A fixed linear classifier that records, for each forward pass, its mode and batch size."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
            self.linear.bias.zero_()
        self.calls = []

    def forward(self, X):
        self.calls.append((self.training, len(X)))
        return self.linear(X)


def split_problem():
    """Training and test sets that differ, so that swapping them changes every metric."""
    g = torch.Generator().manual_seed(0)
    X_train, X_test = torch.randn(100, 2, generator=g), torch.randn(60, 2, generator=g)
    y_train, y_test = (X_train[:, 1] > X_train[:, 0]).long(), torch.randint(0, 2, (60,), generator=g)
    return X_train, y_train, X_test, y_test


def frozen_run(net, epochs=2, **options):
    """Train with learning rate 0, so that every epoch measures the same fixed network."""
    X_train, y_train, X_test, y_test = split_problem()
    train_iter = d2l.TensorLoader(X_train, y_train, batch_size=32, shuffle=True)  # 100 = 3 * 32 + 4
    test_iter = d2l.TensorLoader(X_test, y_test, batch_size=25)
    return d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(),
                                torch.optim.SGD(net.parameters(), lr=0.0), epochs, device="cpu", plot=False,
                                **options)


def test_training_runs_in_train_mode_and_evaluation_in_eval_mode():
    net = ModeRecorder().eval()  # e.g. left in eval mode by a layer table: training must switch it back
    frozen_run(net, epochs=1)
    assert net.calls == [(True, 32), (True, 32), (True, 32), (True, 4), (False, 25), (False, 25), (False, 10)]
    assert net.training


def test_history_records_each_split_and_the_loss_per_example():
    """Metrics of a fixed network: training ones over the training set, test accuracy over the test set."""
    net = ModeRecorder()
    X_train, y_train, X_test, y_test = split_problem()
    with torch.no_grad():
        train_loss = nn.functional.cross_entropy(net(X_train), y_train).item()  # mean over all 100 examples
        train_acc = (net(X_train).argmax(1) == y_train).float().mean().item()
        test_acc = (net(X_test).argmax(1) == y_test).float().mean().item()
    assert train_acc != pytest.approx(test_acc, abs=0.05)
    history = frozen_run(net, epochs=3)
    assert history.train_loss == pytest.approx([train_loss] * 3, rel=1e-6)
    assert history.train_acc == pytest.approx([train_acc] * 3) and history.test_acc == pytest.approx([test_acc] * 3)
    batch_means = [nn.functional.cross_entropy(net(X), y).item() for X, y in
                   d2l.TensorLoader(X_train, y_train, batch_size=32)]
    assert sum(batch_means) / len(batch_means) != pytest.approx(train_loss, rel=1e-3)  # the test can tell them apart


def test_scheduler_steps_after_every_optimizer_step():
    X, y, _, _ = split_problem()
    net = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    d2l.train_classifier(net, d2l.TensorLoader(X, y, batch_size=32), d2l.TensorLoader(X, y, batch_size=50),
                         nn.CrossEntropyLoss(), optimizer, 2, device="cpu", plot=False, scheduler=schedule)
    assert schedule.last_epoch == 8 and optimizer.param_groups[0]["lr"] == pytest.approx(1 / 9)


def test_quiet_mode_prints_nothing(capsys):
    frozen_run(ModeRecorder(), quiet=True)
    assert capsys.readouterr().out == ""
    frozen_run(ModeRecorder())
    assert "epoch 2/2" in capsys.readouterr().out


# ---------------------------------------------------------------- checkpoints


def dropout_problem():
    """A network with dropout and a shuffled loader: resuming must restore both random streams."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    X, y, X_test, y_test = split_problem()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    loaders = d2l.TensorLoader(X, y, batch_size=16, shuffle=True), d2l.TensorLoader(X_test, y_test, batch_size=60)
    return net, optimizer, schedule, loaders


def run_with_checkpoint(path, epochs):
    """Train the dropout problem from a fresh process-like start, resuming from `path` if it exists."""
    net, optimizer, schedule, (train_iter, test_iter) = dropout_problem()
    torch.manual_seed(123)  # a new process would not share the old one's random state
    history = d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(), optimizer, epochs,
                                   device="cpu", plot=False, scheduler=schedule, checkpoint=path)
    return net, history


def test_an_interrupted_run_resumes_exactly(tmp_path, capsys):
    straight, straight_history = run_with_checkpoint(tmp_path / "straight.pt", 3)
    run_with_checkpoint(tmp_path / "resumed.pt", 1)  # stops after one epoch, as if interrupted
    resumed, resumed_history = run_with_checkpoint(tmp_path / "resumed.pt", 3)
    assert "resumed from" in capsys.readouterr().out
    assert resumed_history.train_loss == straight_history.train_loss
    assert resumed_history.test_acc == straight_history.test_acc
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    again, history = run_with_checkpoint(tmp_path / "resumed.pt", 3)  # nothing left to train
    assert history.train_loss == straight_history.train_loss and torch.equal(again[0].weight, straight[0].weight)


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    run_with_checkpoint(tmp_path / "run.pt", 1)
    X, y, _, _ = split_problem()
    other = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a checkpoint of this network"):
        d2l.train_classifier(other, d2l.TensorLoader(X, y, batch_size=10), d2l.TensorLoader(X, y, batch_size=10),
                             nn.CrossEntropyLoss(), torch.optim.SGD(other.parameters(), lr=0.1), 2, device="cpu",
                             plot=False, checkpoint=tmp_path / "run.pt")
    with pytest.raises(ValueError, match="optimizer with state_dict"):
        d2l.train_classifier(lambda X: X, d2l.TensorLoader(X, y, batch_size=10), d2l.TensorLoader(X, y, batch_size=10),
                             nn.CrossEntropyLoss(), object(), 1, device="cpu", plot=False, checkpoint=tmp_path / "x.pt")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("epochs", [0, -1, True, 1.5])
def test_epochs_must_be_a_positive_int(epochs):
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        frozen_run(ModeRecorder(), epochs=epochs)


def test_empty_data_is_refused():
    X, y, _, _ = split_problem()
    empty = d2l.TensorLoader(X[:0], y[:0], batch_size=8)
    full = d2l.TensorLoader(X, y, batch_size=8)
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="evaluation data held no examples"):
        train.evaluate_accuracy(net, empty)
    with pytest.raises(ValueError, match="training data held no examples"):
        d2l.train_classifier(net, empty, full, nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), 1,
                             device="cpu", plot=False)


def test_nan_in_the_test_data_is_an_error_not_a_low_accuracy():
    X, y, _, _ = split_problem()
    X_bad = X.clone()
    X_bad[7, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or infinite for 1 of 100"):
        train.evaluate_accuracy(nn.Linear(2, 2), d2l.TensorLoader(X_bad, y, batch_size=32))


def test_a_diverging_loss_warns():
    """A squared loss whose learning rate is too large grows a billionfold in one epoch, yet stays finite."""
    train_iter, test_iter = separable_problem()
    squared = lambda logits, y: ((logits - nn.functional.one_hot(y, 2)) ** 2).mean()
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    with pytest.warns(RuntimeWarning, match=r"diverges: 2.56e\+09 in epoch 1.*\(now 0.3\)") as caught:
        d2l.train_classifier(net, train_iter, test_iter, squared, torch.optim.SGD(net.parameters(), lr=0.3), 1,
                             device="cpu", plot=False)
    assert caught[0].filename == __file__


def test_a_healthy_run_does_not_warn(recwarn):
    frozen_run(ModeRecorder())
    fit_small(*small_convnet_problem(), epochs=2)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_evaluation_defaults_to_the_networks_device(monkeypatch):
    monkeypatch.setattr(train, "get_device", lambda: torch.device("meta"))
    X, y, _, _ = split_problem()
    assert 0 <= train.evaluate_accuracy(nn.Linear(2, 2), d2l.TensorLoader(X, y, batch_size=32)) <= 1
    assert train.network_device(lambda X: X) == torch.device("meta")


def test_a_setting_called_scale_is_refused():
    with pytest.raises(ValueError, match="'scale' names the active scale"):
        d2l.scale(full=dict(scale=1.0), quick=dict(scale=0.5))


# ---------------------------------------------------------------- interruptions and files that are not checkpoints


class Interrupt(KeyboardInterrupt):
    """A Ctrl-C raised from inside a training batch."""


def interrupt_at(net, batch):
    """Make `net` raise Interrupt on its `batch`-th training forward pass (counted from 1)."""
    calls = []

    def hook(module, args):
        if module.training:
            calls.append(1)
            if len(calls) == batch:
                raise Interrupt

    return net.register_forward_pre_hook(hook)


def resume_problem(path, epochs, interrupt=None, objects=None):
    """Train the dropout problem with a checkpoint, on `objects` if given; return the objects and the history."""
    net, optimizer, schedule, (train_iter, test_iter) = objects or dropout_problem()
    handle = interrupt_at(net, interrupt) if interrupt else None
    try:
        history = d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(), optimizer, epochs,
                                       device="cpu", plot=False, scheduler=schedule, checkpoint=path, quiet=True)
    finally:
        if handle:
            handle.remove()
    return (net, optimizer, schedule, (train_iter, test_iter)), history


@pytest.mark.parametrize("same_objects", [False, True], ids=["new process", "same cell rerun"])
def test_a_run_interrupted_in_the_middle_of_an_epoch_resumes_exactly(tmp_path, same_objects):
    (straight, *_), expected = resume_problem(tmp_path / "straight.pt", 3)
    objects, _ = dropout_problem(), None
    with pytest.raises(Interrupt):
        resume_problem(tmp_path / "run.pt", 3, interrupt=7 + 3, objects=objects)  # 7 batches per epoch: epoch 2
    torch.manual_seed(123)  # whatever the random state is now
    (resumed, optimizer, schedule, _), history = resume_problem(tmp_path / "run.pt", 3,
                                                                objects=objects if same_objects else None)
    assert history.train_loss == expected.train_loss and history.test_acc == expected.test_acc
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters(), strict=True))
    assert schedule.last_epoch == 3 * 7


def test_an_interruption_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    (straight, *_), expected = resume_problem(tmp_path / "straight.pt", 3)
    resume_problem(tmp_path / "run.pt", 1)
    real_save = torch.save

    def save_half_then_stop(obj, f):
        real_save(obj, f)
        Path(f).write_bytes(Path(f).read_bytes()[:100])
        raise Interrupt

    monkeypatch.setattr(train.torch, "save", save_half_then_stop)
    with pytest.raises(Interrupt):
        resume_problem(tmp_path / "run.pt", 3)
    monkeypatch.undo()
    (resumed, *_), history = resume_problem(tmp_path / "run.pt", 3)
    assert history.train_loss == expected.train_loss
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters(), strict=True))


def not_checkpoints():
    """Files a reader might pass as checkpoint= by mistake, keyed by what they are."""
    files = {"random bytes": bytes(range(256)) * 8, "text": b"epoch 3: loss 0.41\n", "empty": b"",
             "a pickle of a list": pickle.dumps([1, 2, 3]), "a pickle of a dict": pickle.dumps({"epoch": 1})}
    for name, obj in {"a saved tensor": torch.zeros(3), "a saved state_dict": nn.Linear(2, 2).state_dict(),
                      "a dict without the rng": {"epoch": 1, "history": {}, "state": {}, "cuda rng": []},
                      "a saved None": None}.items():
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        files[name] = buffer.getvalue()
    files["a truncated checkpoint"] = files["a saved state_dict"][:200]
    return files


NOT_CHECKPOINTS = not_checkpoints()


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_gets_a_clear_error(tmp_path, kind, recwarn):
    path = tmp_path / "run.pt"
    path.write_bytes(NOT_CHECKPOINTS[kind])
    with pytest.raises(ValueError, match="is not a training checkpoint") as info:
        resume_problem(path, 2)
    message = str(info.value)
    assert str(path) in message and "Delete it, or pass another file as checkpoint=" in message
    assert type(info.value) is ValueError and path.read_bytes() == NOT_CHECKPOINTS[kind]  # left as it was
    assert not [w for w in recwarn if "pickle" in str(w.message)]


def _timed_run(tmp_path, monkeypatch, capsys, epochs, **kwargs):
    """Train on 20 batches an epoch under a clock that advances 3 s per reading; return what it printed."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(train, "_synchronized_clock", lambda device: float(next(ticks)) * 3.0)
    X, y = torch.randn(640, 4), torch.randint(0, 2, (640,))
    net = nn.Linear(4, 2)
    d2l.train_classifier(net, d2l.TensorLoader(X, y, batch_size=32), d2l.TensorLoader(X, y, batch_size=64),
                         nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), epochs, device="cpu",
                         plot=False, checkpoint=tmp_path / "run.pt", **kwargs)
    return capsys.readouterr().out


def test_time_estimate_is_timed_on_the_first_batches_for_the_epochs_left(tmp_path, monkeypatch, capsys):
    # 3 s between the readings at batches 2 and 12: 0.3 s a batch, 20 batches an epoch
    out = _timed_run(tmp_path, monkeypatch, capsys, epochs=3, estimate_time=True)
    assert "estimated from the first 10 batches on this machine: 0.3 minutes of training steps" in out  # 18 s
    assert out.count("estimated from") == 1 and "the run took" in out
    resumed = _timed_run(tmp_path, monkeypatch, capsys, epochs=23, estimate_time=True)
    assert "resumed from" in resumed and "2.0 minutes of training steps" in resumed  # 20 epochs left: 120 s


def test_no_time_estimate_unless_asked_or_without_enough_batches(tmp_path, monkeypatch, capsys):
    out = _timed_run(tmp_path, monkeypatch, capsys, epochs=1)
    assert "estimated from" not in out and "the run took" not in out
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    net = nn.Linear(4, 2)
    d2l.train_classifier(net, d2l.TensorLoader(X, y, batch_size=8), d2l.TensorLoader(X, y, batch_size=64),
                         nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), 1, device="cpu",
                         plot=False, estimate_time=True)
    assert "estimated from" not in capsys.readouterr().out  # 8 batches: too few to time 10 after a warm-up


def test_one_cycle_schedule_rises_to_its_peak_then_falls_once_per_minibatch():
    w = nn.Parameter(torch.ones(3))
    optimizer, schedule = d2l.sgd_one_cycle([w], lr=0.1, total_steps=20, momentum=(0.85, 0.95), weight_decay=5e-4,
                                            warmup=0.2)
    assert optimizer.defaults["nesterov"] and optimizer.defaults["weight_decay"] == 5e-4
    X, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    data = [(X[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)]  # 4 minibatches per epoch, 5 epochs: 20 steps
    lrs, momenta = [], []  # the settings of each step, read before train_classifier advances the schedule
    optimizer.register_step_post_hook(lambda *_: (lrs.append(optimizer.param_groups[0]["lr"]),
                                                  momenta.append(optimizer.param_groups[0]["momentum"])))
    d2l.train_classifier(lambda X: X * w, data, data, nn.CrossEntropyLoss(label_smoothing=0.1), optimizer, 5,
                         device="cpu", plot=False, quiet=True, scheduler=schedule)
    assert len(lrs) == 20 and schedule.last_epoch == 20
    assert lrs[0] == pytest.approx(0.1 / 25)
    peak = max(range(20), key=lambda k: lrs[k])
    assert peak == 3 and lrs[peak] == pytest.approx(0.1)  # the peak after 20% of the steps
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] < 1e-5
    # the momentum moves against the learning rate: 0.95 at the ends, 0.85 at the peak
    assert momenta[0] == pytest.approx(0.95) and momenta[peak] == pytest.approx(0.85)
    assert momenta[-1] == pytest.approx(0.95, abs=1e-3)
