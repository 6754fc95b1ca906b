"""Execute notebooks in place (at the scale set by D2L_SCALE), refreshing their committed outputs."""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path) -> float:
    """Run every cell of one notebook from its own folder and save it; return the seconds taken."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    os.environ.setdefault("D2L_PROGRESS", "0")  # no progress bars in committed outputs
    for name in sys.argv[1:]:
        print(f"{name}: {execute(Path(name)):.0f} s", flush=True)
