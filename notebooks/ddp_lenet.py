"""Train chapter 14's BN-LeNet on Fashion-MNIST with DistributedDataParallel (chapter 20).

    python ddp_lenet.py --epochs 10                                          # one process
    torchrun --standalone --nproc-per-node=2 ddp_lenet.py --epochs 10        # two processes on this machine
    torchrun --standalone --nproc-per-node=gpu ddp_lenet.py --epochs 10      # one process per GPU

Every rank runs this same file. `--batch-size` is the global batch, split evenly over the ranks; rank 0 prints
the training log and writes `--out` (the history and the measured step times) and the checkpoint.
"""

import argparse
import json
import time
from contextlib import nullcontext
from dataclasses import asdict

import torch
from torch import nn

import d2l_support as d2l
from d2l_support import distributed


def bn_lenet(norm2d=nn.BatchNorm2d, norm1d=nn.BatchNorm1d):
    """Chapter 14's LeNet with a batch-normalization layer before every sigmoid."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), norm2d(6), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), norm2d(16), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), norm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), norm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )


def init_xavier(module):
    """Xavier-uniform weights for convolutions and dense layers, as in chapter 14."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)


def parse_args():
    """The command line: the training settings and where to write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many epochs, as if killed")
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch, over all ranks")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--subset", type=int, default=None, help="examples per split (default: all)")
    parser.add_argument("--timing-steps", type=int, default=50, help="steps to time after training (0: none)")
    parser.add_argument("--checkpoint", default=None, help="save after every epoch, resume from it if present")
    parser.add_argument("--out", default=None, help="a JSON file for the history and the step times")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def median_seconds(step, steps: int, device) -> float:
    """The median wall time of `step()` over `steps` runs, after three warm-up runs."""
    times = []
    for _ in range(steps + 3):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times[3:])[steps // 2]


def time_steps(net, X, y, steps: int, device) -> dict:
    """Seconds per training step on one batch: the whole step, its compute alone and an all-reduce of its gradients."""
    loss_fn = nn.CrossEntropyLoss()

    def forward_backward(sync=True):
        net.zero_grad(set_to_none=True)
        with nullcontext() if sync or distributed.get_world_size() == 1 else net.no_sync():
            loss_fn(net(X), y).backward()

    gradient = torch.zeros(d2l.num_params(net), device=device)
    return {"step": median_seconds(forward_backward, steps, device),
            "compute": median_seconds(lambda: forward_backward(sync=False), steps, device),
            "all-reduce": median_seconds(lambda: distributed.sum_over_ranks(gradient), steps, device)}


def main():
    args = parse_args()
    device = distributed.setup()
    d2l.seed_everything(args.seed + distributed.get_rank())  # per-rank streams; DDP copies rank 0's weights
    train_iter, test_iter = d2l.load_fashion_mnist(args.batch_size, subset=args.subset, device=device,
                                                   seed=args.seed)  # one data-order seed: shard() adds the rank
    train_iter, test_iter = distributed.shard(train_iter), distributed.shard(test_iter)
    net = bn_lenet()
    net.apply(init_xavier)
    net = distributed.wrap(net.to(device))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_iter))
    history = d2l.train_classifier(net, train_iter, test_iter, nn.CrossEntropyLoss(), optimizer,
                                   args.stop_after or args.epochs, device=device, plot=False, scheduler=schedule,
                                   checkpoint=args.checkpoint)
    X, y = next(iter(train_iter))
    timing = time_steps(net, X, y, args.timing_steps, device) if args.timing_steps else {}
    if distributed.is_main() and args.out:
        backend = torch.distributed.get_backend() if distributed.is_distributed() else None
        result = {"world size": distributed.get_world_size(), "backend": backend, "threads": torch.get_num_threads(),
                  "device": str(device), "local batch": len(y), "parameters": d2l.num_params(net),
                  "history": asdict(history), "seconds per step": timing}
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=1)
    distributed.teardown()


if __name__ == "__main__":
    main()
