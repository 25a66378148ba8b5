"""scripts/gpu_check.sh: the prepared GPU check parses, and names only steps it runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_summary_lists_every_step_and_the_limits_fit_one_device_command() -> None:
    text = SCRIPT.read_text()
    steps = re.findall(r"^\s*step (\w+) (\d+) ", text, flags=re.M)
    summary = re.search(r"for name in ([\w ]+); do", text)
    assert summary is not None and [s for s, _ in steps] == summary.group(1).split()
    assert sum(int(limit) for _, limit in steps) <= 570  # a device command may run 600 s
