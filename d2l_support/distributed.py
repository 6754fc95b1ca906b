"""Data parallelism with torch.distributed: the rank-aware parts of training, and one process without torchrun.

A script calls `setup()` once, shards its loaders with `shard`, wraps its network with `wrap` and trains with
`train_classifier` as usual: that sums its metrics over the ranks once per epoch (`sum_over_ranks`) and prints,
plots and writes checkpoints on rank 0 only (`is_main`). Launched without torchrun, every function here falls
back to a single process, so the same script runs on a laptop, on N GPUs and on several machines (chapter 20).
"""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from d2l_support.data import TensorLoader
from d2l_support.device import get_device

SEED_RANGE = 2**62  # epoch seeds are drawn below this, so that seed + rank stays a valid 64-bit seed


def is_distributed() -> bool:
    """Whether this process belongs to an initialised process group (chapter 20)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 in a single process (chapter 20)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes training together, 1 in a single process (chapter 20)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that prints, plots and writes checkpoints (chapter 20)."""
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group, as torchrun's does (chapter 20)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def setup(timeout_s: float = 300.0) -> torch.device:
    """Join torchrun's process group and return this rank's device; without torchrun, one process (chapter 20).

    With a GPU for every local rank, each rank uses NCCL and GPU `LOCAL_RANK`; otherwise gloo on the CPU, whose
    cores the processes of a machine share. A collective that waits longer than `timeout_s` (a stalled peer)
    raises instead of hanging.
    """
    if not launched_by_torchrun():
        return get_device()
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_ranks:
        device, backend = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), "nccl"
        torch.cuda.set_device(device)
    else:
        if torch.cuda.is_available() and os.environ.get("LOCAL_RANK") == "0":
            print(f"{local_ranks} local ranks but {torch.cuda.device_count()} GPUs: every rank uses gloo on the CPU")
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks))
    if not is_distributed():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return device


def teardown() -> None:
    """Leave the process group, if this process joined one (chapter 20)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here; nothing in a single process (chapter 20)."""
    if is_distributed():
        dist.barrier()


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks, in place, and return it; unchanged in a single process (chapter 20)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(net: nn.Module) -> None:
    """Replace every parameter's gradient by its mean over the ranks, one all-reduce per tensor (chapter 20)."""
    for parameter in net.parameters():
        if parameter.grad is not None:
            sum_over_ranks(parameter.grad).div_(get_world_size())


def wrap(net: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Wrap a network in DistributedDataParallel when there are several ranks, else return it (chapter 20)."""
    if get_world_size() == 1:
        return net
    device = torch.device(device) if device is not None else next(net.parameters()).device
    return DistributedDataParallel(net.to(device), device_ids=[device] if device.type == "cuda" else None)


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper, or the network itself (chapter 20)."""
    return net.module if isinstance(net, DistributedDataParallel) else net


class ShardedLoader(TensorLoader):
    """One rank's fixed shard of a loader's examples, cut into that rank's share of every global batch (chapter 20).

    Rank r keeps examples r, r + K, r + 2K, ... of the K ranks. Each epoch every rank draws the same seed from
    the shared generator and shuffles its shard with that seed plus its rank, so the data order differs between
    ranks while the generator's state stays the same on all of them (a checkpoint of rank 0 restores every rank).
    """

    def __init__(self, loader: TensorLoader, rank: int, world_size: int):
        check_split(loader.batch_size, loader.num_examples, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be from 0 to {world_size - 1}, got {rank}")
        shards = [t[rank::world_size].clone() for t in loader.tensors]  # a copy: this rank keeps only its shard
        super().__init__(*shards, batch_size=loader.batch_size // world_size, shuffle=loader.shuffle,
                         transform=loader.transform)
        self.generator, self.rank, self.world_size = loader.generator, rank, world_size
        self.global_batch_size = loader.batch_size

    def order(self) -> torch.Tensor:
        """This epoch's order of the shard's examples: a permutation seeded per rank, or 0, 1, 2, ... unshuffled."""
        n = self.num_examples
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        seed = int(torch.randint(SEED_RANGE, (), generator=self.generator))
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed + self.rank)).to(self.device)

    def __iter__(self):
        order = self.order()
        for start in range(0, self.num_examples, self.batch_size):
            index = order[start:start + self.batch_size]
            batch = [t[index] for t in self.tensors]
            if self.transform is not None:
                batch[0] = self.transform(batch[0])
            yield tuple(batch)


def check_split(batch_size: int, num_examples: int, world_size: int) -> None:
    """Reject a global batch or a data set that does not split into equal shares for `world_size` ranks (chapter 20)."""
    if batch_size % world_size:
        example = batch_size - batch_size % world_size or world_size
        raise ValueError(f"the global batch size {batch_size} does not split into {world_size} equal per-rank "
                         f"batches: use a multiple of {world_size}, e.g. {example}")
    if num_examples % world_size:
        raise ValueError(f"the {num_examples} examples do not split into {world_size} equal shards, which every rank "
                         f"needs to take the same number of steps: use a multiple of {world_size}, "
                         f"e.g. {num_examples - num_examples % world_size or world_size}")


def shard(loader: TensorLoader, rank: int | None = None, world_size: int | None = None) -> TensorLoader:
    """Return this rank's ShardedLoader of `loader`, or `loader` itself in a single process (chapter 20)."""
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    return loader if world_size == 1 else ShardedLoader(loader, rank, world_size)


def launch(script: str | Path, *args, nproc: int | None = None, timeout_s: float | None = None) -> str:
    """Run `script` with torchrun as `nproc` local processes (None: one plain process), print its output (chapter 20).

    Raises RuntimeError when any worker fails: torchrun then stops the other workers and names the failed rank.
    """
    if nproc is not None and (isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1):
        raise ValueError(f"nproc must be a positive int or None, got {nproc!r}")
    command = [sys.executable, str(script), *map(str, args)]
    environment = dict(os.environ)
    if nproc is not None:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        environment.setdefault("OMP_NUM_THREADS", "1")  # setup() sets the threads per rank; this silences torchrun
    run = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=timeout_s)
    print(run.stdout, end="")
    if run.returncode:
        raise RuntimeError(f"{' '.join(command[1:])} exited with code {run.returncode}: a worker failed, "
                           "see its traceback and torchrun's summary above")
    return run.stdout
