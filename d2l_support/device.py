"""Devices and seeding (chapter 00)."""

import ctypes
import ctypes.util
import random

import torch


def get_device() -> torch.device:
    """Return the fastest available device: CUDA, then Apple MPS, then CPU (chapter 00)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse, for the whole process; return whether it applied (chapter 09).

    Nothing calls this for you: a notebook that trains on a CPU opts in once. The setting lasts until the
    process ends, which costs memory that other programs could use but saves the page faults of
    re-allocating every large tensor at every step.
    """
    # By default every large tensor of a CPU training step is a fresh mapping whose pages fault in again:
    # hundreds of thousands of page faults per epoch, a fifth of LeNet's training time.
    name = ctypes.util.find_library("c")
    if name is None or not hasattr(libc := ctypes.CDLL(name), "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20) and libc.mallopt(m_trim_threshold, 2**30))


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's and PyTorch's generators and return a CPU generator seeded the same (chapter 00)."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device | str) -> str:
    """Name a device for reports, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu' (chapter 02)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
