"""Check that averaging the ranks' gradients gives the gradient of the whole batch, in float64 (chapter 20).

    torchrun --standalone --nproc-per-node=2 ddp_gradients.py
"""

import copy

import torch
from ddp_lenet import bn_lenet
from torch import nn

from d2l_support import distributed

BATCH_PER_RANK = 8


def whole_batch_gradients(net, X, y):
    """The gradients of the mean loss over the whole global batch, in one process."""
    net = copy.deepcopy(net)
    nn.functional.cross_entropy(net(X), y).backward()
    return [p.grad for p in net.parameters()]


def averaged_gradients(net, X, y):
    """From scratch: this rank's gradient on its shard, then the mean over the ranks with all_reduce."""
    net = copy.deepcopy(net)
    nn.functional.cross_entropy(net(X), y).backward()
    distributed.average_gradients(net)
    return [p.grad for p in net.parameters()]


def ddp_gradients(net, X, y):
    """The same with DistributedDataParallel, which all-reduces gradient buckets during backward()."""
    net = distributed.wrap(copy.deepcopy(net))
    nn.functional.cross_entropy(net(X), y).backward()
    return [p.grad for p in net.parameters()]


def equal(grads_a, grads_b) -> bool:
    """Whether two lists of float64 gradients agree to round-off."""
    return all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads_a, grads_b))


def main():
    distributed.setup()
    rank, ranks = distributed.get_rank(), distributed.get_world_size()
    generator = torch.Generator().manual_seed(0)  # the same global batch on every rank
    X = torch.rand(BATCH_PER_RANK * ranks, 1, 28, 28, generator=generator, dtype=torch.float64)
    y = torch.randint(10, (BATCH_PER_RANK * ranks,), generator=generator)
    mine = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
    for name, norms in (("LeNet without batch norm", (nn.Identity, nn.Identity)), ("BN-LeNet", ())):
        torch.manual_seed(0)
        net = bn_lenet(*norms).double()
        reference = whole_batch_gradients(net, X, y)
        scratch = equal(averaged_gradients(net, X[mine], y[mine]), reference)
        ddp = equal(ddp_gradients(net, X[mine], y[mine]), reference)
        if distributed.is_main():
            print(f"{name}, {ranks} ranks: mean of the ranks' gradients equals the whole batch's: "
                  f"all_reduce {scratch}, DDP {ddp}")
    distributed.teardown()


if __name__ == "__main__":
    main()
