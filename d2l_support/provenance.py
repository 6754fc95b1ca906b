"""The provenance line that ends every notebook and feeds the status page (chapter 00)."""

import datetime
import platform
import time

import torch

from d2l_support.device import describe_device
from d2l_support.scale import current_scale


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
        "date": datetime.date.today().isoformat(),
    }
    record.update({name.replace("_", " "): _format(value) for name, value in metrics.items()})
    print("Provenance")
    for key, value in record.items():
        print(f"  {key:<12}  {value}")
    return record


def _format(value: float) -> str:
    """Format a metric with three decimals, or as given when it is not a number."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
