"""Warn when a CPU training run's threads would compete with work already running on the machine.

Measured on the 2-core machine this project trains on (a conv stack, forward and backward): one process at
``threads=2`` alone ran 7.8 it/s; two such processes side by side ran 2.6 it/s each (5.3 together), while two at
``threads=1`` ran 4.3 each (8.7 together). Torch's OpenMP threads spin while they wait for a core the other
process holds, so asking for more threads than there are free cores loses speed instead of gaining it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LOADAVG = Path("/proc/loadavg")


def busy_elsewhere(samples: int = 5, interval_s: float = 0.1, loadavg: Path = LOADAVG) -> int | None:
    """How many threads other than the caller are running now: the smallest runnable count in ``/proc/loadavg``
    over a few samples, less one for the caller. None where that file does not exist (not Linux) or cannot
    be read."""
    counts = []
    for i in range(samples):
        try:
            runnable = loadavg.read_text().split()[3].split("/")[0]
            counts.append(int(runnable))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, min(counts) - 1)


def oversubscription_warning(threads: int, busy: int | None, cores: int | None = None) -> str | None:
    """A warning when ``threads`` torch threads plus ``busy`` threads already running ask for more than ``cores``
    cores (default: this machine's), with the thread count that fits; None when they fit or nothing is known."""
    cores = cores or os.cpu_count() or 1
    if not busy:
        return None
    fits = max(1, cores - busy)
    if fits >= threads:  # also every case where threads + busy <= cores
        return None
    return (
        f"warning: {busy} other thread(s) are already running on {cores} CPU core(s), so threads={threads} will "
        f"compete with them and run slower, not faster (measured on 2 cores: two threads=2 runs side by side each "
        f"went at a third of one alone, two threads=1 runs at more than half). threads={fits} fits beside them."
    )
