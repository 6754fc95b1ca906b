"""The provenance line that ends every notebook and feeds the status page (chapter 00)."""

import datetime
import platform
import sys
import time

import torch

from d2l_support.device import describe_device
from d2l_support.scales import current_scale


def start_clock() -> float:
    """Return the start time that `report_provenance` measures the wall time from (chapter 00)."""
    return time.perf_counter()


def report_provenance(started: float, device: torch.device | str, **metrics: float) -> dict:
    """Print and return where, how and how fast this notebook ran, with its headline metrics (chapter 00)."""
    record = {
        "scale": current_scale(),
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "peak memory": peak_memory(device),
        "date": datetime.date.today().isoformat(),
    }
    record.update({name.replace("_", " "): _format(value) for name, value in metrics.items()})
    print("Provenance")
    for key, value in record.items():
        print(f"  {key:<12}  {value}")
    return record


def peak_memory(device: torch.device | str) -> str:
    """Describe the most memory this process has held: resident RAM, and tensors on a CUDA device (chapter 00)."""
    device = torch.device(device)
    parts = [] if (ram := peak_resident_bytes()) is None else [f"{ram / 2**30:.2f} GiB RAM"]
    if device.type == "cuda":
        parts.append(f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU")
    return ", ".join(parts) or "unknown"


def peak_resident_bytes() -> int | None:
    """Return this process's peak resident memory in bytes, or None where the OS does not report it (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kibibytes


def _format(value: float) -> str:
    """Format a metric with three decimals, or as given when it is not a number."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
