"""Execute notebooks at the scale set by D2L_SCALE: in place (refreshing their committed outputs), or only
timed, recording the seconds each took and the peak memory its provenance reports, for the status page."""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import nbformat
import torch
from make_pages import provenance
from nbclient import NotebookClient


def execute(path: Path, save: bool) -> tuple[float, nbformat.NotebookNode]:
    """Run every cell of one notebook from its own folder, optionally save it; return the seconds and outputs."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    if save:
        nbformat.write(notebook, path)
    return seconds, notebook


def main() -> None:
    """Execute the notebooks named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timings", type=Path, help="only time the runs and write the seconds to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("D2L_PROGRESS", "0")  # no progress bars in committed outputs
    seconds, peaks = {}, {}
    for path in args.notebooks:
        name = path.as_posix()
        taken, notebook = execute(path, save=args.timings is None)
        seconds[name], peaks[name] = round(taken, 1), provenance(notebook).get("peak memory", "—")
        print(f"{path}: {taken:.0f} s, peak memory {peaks[name]}", flush=True)
    if args.timings:
        machine = f"{os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__}"
        record = {"scale": os.environ.get("D2L_SCALE", "full"), "machine": machine, "seconds": seconds,
                  "peak memory": peaks}
        args.timings.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
