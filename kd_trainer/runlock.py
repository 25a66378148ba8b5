"""One training process per run folder: an advisory lock held for the whole run.

Two ``kd-train`` processes on the same ``runs/NAME`` (a second ``--resume`` while the first still runs, e.g.
after a Ctrl-C that a background job ignored) would both rewrite ``last.pt`` and truncate ``log.csv`` under each
other. The lock is an ``fcntl.flock`` on ``runs/NAME/.lock``: the kernel drops it when the process ends, however
it ends, so a crashed run never leaves a stale lock behind. Platforms without ``fcntl`` run unlocked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kd_trainer.config import ConfigError


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` exclusively; ``ConfigError`` naming the holder's pid when another process has it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; run as before
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ConfigError(
                f"{run_dir} is in use by another kd-train process (pid {holder}); wait for it or stop it "
                "(kill PID) before resuming, or choose another name="
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
