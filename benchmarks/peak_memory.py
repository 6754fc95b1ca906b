"""Run a command and print the peak memory of its whole process tree, e.g.
`python3 benchmarks/peak_memory.py make test` (Linux; standard library only).

Memory is the proportional set size (PSS) summed over the command and all its descendants, sampled
twice a second, so that libraries shared by several processes (say, notebook kernels) count once.
"""

import subprocess
import sys
import time
from pathlib import Path


def parent_of_every_process() -> dict[int, int]:
    """Map each running process id to its parent's id."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return parents


def descendants(root: int) -> set[int]:
    """The process root and every process below it."""
    parents, tree, grew = parent_of_every_process(), {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | new, bool(new)
    return tree


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process, 0 when it has ended."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)


def main() -> None:
    """Run the command given as arguments, print its peak memory and exit with its status."""
    command = [arg for arg in sys.argv[1:] if arg != "--"]
    if not command:
        sys.exit(__doc__)
    process, peak, start = subprocess.Popen(command), 0, time.perf_counter()
    while process.poll() is None:
        peak = max(peak, sum(pss_bytes(pid) for pid in descendants(process.pid)))
        time.sleep(0.5)
    print(f"peak memory of `{' '.join(command)}`: {peak / 2**30:.2f} GiB (PSS of the process tree), "
          f"{time.perf_counter() - start:.0f} s, exit status {process.returncode}", flush=True)
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
