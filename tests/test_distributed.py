"""Data parallelism (chapter 20): two gloo processes on the CPU train exactly like one process on the whole batch."""

import contextlib
import io
import os
import socket
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import d2l_support as d2l
from d2l_support import distributed

WORLD = 2
TIMEOUT_S = 60  # a test whose workers have not finished by then kills them and fails
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, worker, port: int, folder, args) -> None:
    """Set up one rank as torchrun would, run the worker and save what it returns."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    distributed.setup(timeout_s=30)
    try:
        torch.save(worker(rank, folder, *args), folder / f"rank{rank}.pt")
    finally:
        distributed.teardown()


def run_ranks(worker, folder, *args) -> list:
    """Run `worker(rank, folder, *args)` in two gloo processes and return what each rank returned."""
    context = mp.start_processes(_entry, args=(worker, free_port(), folder, args), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the workers did not finish within {TIMEOUT_S} s")
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


def mlp() -> nn.Module:
    """A small float64 classifier without batch norm, the same on every rank."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def classification_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n float64 examples of 5 features and labels from 3 classes, the same on every rank."""
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(n, 5, generator=generator, dtype=torch.float64)
    return X, (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()


def gradients(net: nn.Module) -> list[torch.Tensor]:
    """Copies of the gradients of a network's parameters."""
    return [p.grad.clone() for p in net.parameters()]


# ---------------------------------------------------------------- gradients and weights


def _gradient_worker(rank, folder):
    X, y = classification_data(8)
    local = slice(rank * 4, rank * 4 + 4)  # this rank's half of the global batch
    ddp, scratch = distributed.wrap(mlp()), mlp()
    nn.functional.cross_entropy(ddp(X[local]), y[local]).backward()
    nn.functional.cross_entropy(scratch(X[local]), y[local]).backward()
    own = gradients(scratch)
    distributed.average_gradients(scratch)
    return {"ddp": gradients(ddp), "scratch": gradients(scratch), "own": own}


def test_ddp_and_averaged_gradients_equal_the_gradient_of_the_whole_batch(tmp_path):
    X, y = classification_data(8)
    single = mlp()
    nn.functional.cross_entropy(single(X), y).backward()
    for result in run_ranks(_gradient_worker, tmp_path):
        for name in ("ddp", "scratch"):
            assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(result[name], gradients(single)))
        assert not all(torch.allclose(a, b) for a, b in zip(result["own"], gradients(single)))  # a real test


def train_mlp(net, train_iter, test_iter, epochs, checkpoint=None):
    """Train with SGD and momentum through d2l.train_classifier; return the history and the printed text."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        history = d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(), optimizer, epochs,
                                       device="cpu", plot=False, checkpoint=checkpoint)
    return history, printed.getvalue()


def loaders(shuffle: bool, n: int = 20, batch_size: int = 8):
    """Training and test loaders of `n` examples: global batches of 8, 8 and a partial one of 4."""
    X, y = classification_data(n)
    return (d2l.TensorLoader(X, y, batch_size=batch_size, shuffle=shuffle),
            d2l.TensorLoader(X, y, batch_size=batch_size))


def _training_worker(rank, folder):
    train_iter, test_iter = (distributed.shard(loader) for loader in loaders(shuffle=False))
    net = distributed.wrap(mlp())
    history, printed = train_mlp(net, train_iter, test_iter, epochs=3)
    return {"weights": distributed.unwrap(net).state_dict(), "history": asdict(history), "printed": printed}


def test_two_ranks_train_like_one_process_and_only_rank_0_prints(tmp_path):
    single = mlp()
    history, _ = train_mlp(single, *loaders(shuffle=False), epochs=3)
    results = run_ranks(_training_worker, tmp_path)
    for result in results:
        weights = result["weights"]
        assert all(torch.allclose(weights[k], v, rtol=0, atol=1e-10) for k, v in single.state_dict().items())
        assert result["history"]["train_acc"] == history.train_acc
        assert result["history"]["test_acc"] == history.test_acc
        assert result["history"]["train_loss"] == pytest.approx(history.train_loss, rel=1e-5)
    assert "epoch 3/3: loss" in results[0]["printed"] and results[1]["printed"] == ""


def _resume_worker(rank, folder):
    def run(epochs, checkpoint=None):
        train_iter, test_iter = (distributed.shard(loader) for loader in loaders(shuffle=True))
        net = distributed.wrap(mlp())
        _, printed = train_mlp(net, train_iter, test_iter, epochs, checkpoint)
        return distributed.unwrap(net).state_dict(), printed

    uninterrupted, _ = run(3)
    run(1, folder / "run.pt")  # stopped after one epoch
    resumed, printed = run(3, folder / "run.pt")
    return {"uninterrupted": uninterrupted, "resumed": resumed, "printed": printed}


def test_a_checkpoint_written_by_rank_0_resumes_every_rank_exactly(tmp_path):
    results = run_ranks(_resume_worker, tmp_path)
    for result in results:
        assert all(torch.equal(result["resumed"][k], v) for k, v in result["uninterrupted"].items())
    assert all(torch.equal(results[1]["resumed"][k], v) for k, v in results[0]["resumed"].items())
    assert "resumed from" in results[0]["printed"] and results[1]["printed"] == ""
    assert sorted(p.name for p in tmp_path.glob("run.pt*")) == ["run.pt"]


# ---------------------------------------------------------------- sharding


def epoch_of_rank(rank: int, n: int = 10, batch_size: int = 4, epochs: int = 2) -> list[list[list[int]]]:
    """The example indices rank `rank` of two sees, batch by batch, in each of `epochs` shuffled epochs."""
    loader = distributed.shard(d2l.TensorLoader(torch.arange(n), batch_size=batch_size, shuffle=True), rank, WORLD)
    return [[batch.tolist() for (batch,) in loader] for _ in range(epochs)]


def test_every_example_is_seen_once_per_epoch_with_a_partial_last_batch():
    ranks = [epoch_of_rank(rank) for rank in range(WORLD)]
    for epoch in range(2):
        batches = [ranks[rank][epoch] for rank in range(WORLD)]
        assert [[len(b) for b in rank] for rank in batches] == [[2, 2, 1]] * WORLD  # global batches 4, 4 and 2
        assert sorted(i for rank in batches for batch in rank for i in batch) == list(range(10))
    assert ranks[0][0] != ranks[0][1]  # reshuffled every epoch
    halves = [[[i // WORLD for i in batch] for batch in rank[0]] for rank in ranks]
    assert halves[0] != halves[1]  # each rank shuffles its shard with its own seed


def test_a_rank_keeps_only_its_shard_and_shares_the_data_order_generator():
    base = d2l.TensorLoader(torch.arange(10), batch_size=4, shuffle=True, seed=3)
    shard = distributed.shard(base, 1, WORLD)
    assert shard.tensors[0].tolist() == [1, 3, 5, 7, 9] and shard.batch_size == 2 and len(shard) == 3
    assert shard.generator is base.generator


@pytest.mark.parametrize("n, batch_size, message", [
    (10, 5, "global batch size 5 does not split into 2 equal per-rank batches: use a multiple of 2, e.g. 4"),
    (11, 4, "the 11 examples do not split into 2 equal shards"),
])
def test_a_batch_or_data_size_that_does_not_split_gets_a_clear_error(n, batch_size, message):
    with pytest.raises(ValueError, match=message):
        distributed.shard(d2l.TensorLoader(torch.arange(n), batch_size=batch_size), 0, WORLD)
    with pytest.raises(ValueError, match="rank must be from 0 to 1, got 2"):
        distributed.shard(d2l.TensorLoader(torch.arange(10), batch_size=4), 2, WORLD)


# ---------------------------------------------------------------- one process, and failing workers


def test_without_torchrun_everything_runs_as_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup() == d2l.get_device() and not distributed.is_distributed()
    loader, net, t = d2l.TensorLoader(torch.arange(3), batch_size=2), nn.Linear(2, 1), torch.ones(2)
    assert distributed.shard(loader) is loader and distributed.wrap(net) is net
    assert distributed.sum_over_ranks(t) is t and t.tolist() == [1.0, 1.0]
    assert (distributed.get_rank(), distributed.get_world_size(), distributed.is_main()) == (0, 1, True)


FAILING_WORKER = textwrap.dedent("""
    import os, sys, time
    import torch
    from d2l_support import distributed

    distributed.setup(timeout_s=5)
    if distributed.get_rank() == 1:
        if sys.argv[1] == "dies":
            os._exit(3)
        time.sleep(120)  # stalls
    distributed.sum_over_ranks(torch.ones(1))
""")


@pytest.mark.parametrize("failure", ["dies", "stalls"])
def test_a_worker_that_dies_or_stalls_stops_the_others_with_a_clear_error(tmp_path, monkeypatch, capsys, failure):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    script = tmp_path / "worker.py"
    script.write_text(FAILING_WORKER)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 1: a worker failed"):
        distributed.launch(script, failure, nproc=WORLD, timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < 45
    log = capsys.readouterr().out
    assert "ChildFailedError" in log
    assert ("exitcode: 3" in log) if failure == "dies" else ("timed out" in log.lower() or "timeout" in log.lower())


def test_launch_rejects_a_bad_process_count():
    with pytest.raises(ValueError, match="nproc must be a positive int or None, got 0"):
        distributed.launch("script.py", nproc=0)


@pytest.mark.parametrize("script", ["ddp_lenet.py", "ddp_gradients.py"])
def test_the_committed_scripts_are_the_ones_the_chapter_writes(script):
    cells = [c.source for c in nbformat.read(NOTEBOOKS / "20_data_parallel.ipynb", as_version=4).cells]
    written = [c.split("\n", 1)[1] for c in cells if c.startswith(f"%%writefile {script}\n")]
    assert written == [(NOTEBOOKS / script).read_text(encoding="utf-8").rstrip("\n")]
