"""The warning kd-train prints when its threads would compete with work already running on the CPU."""

from pathlib import Path

import pytest

from kd_trainer.cpu_share import busy_elsewhere, oversubscription_warning


def test_no_warning_when_the_threads_fit() -> None:
    assert oversubscription_warning(2, 0, cores=2) is None
    assert oversubscription_warning(1, 1, cores=2) is None
    assert oversubscription_warning(4, 4, cores=8) is None


def test_warns_and_names_the_thread_count_that_fits() -> None:
    warning = oversubscription_warning(2, 1, cores=2)
    assert warning is not None and "threads=2" in warning and "threads=1 fits" in warning
    assert "threads=4 fits" in (oversubscription_warning(8, 4, cores=8) or "")


def test_one_thread_is_never_told_to_use_fewer() -> None:
    """With every core busy there is nothing smaller to suggest than threads=1, so threads=1 gets no warning."""
    assert oversubscription_warning(1, 4, cores=2) is None
    assert "threads=1 fits" in (oversubscription_warning(2, 4, cores=2) or "")


def test_unknown_load_gives_no_warning() -> None:
    assert oversubscription_warning(2, None, cores=2) is None


def test_busy_elsewhere_reads_the_runnable_count_less_the_caller(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.64 2.85 3.04 3/110 30301\n")
    assert busy_elsewhere(samples=2, interval_s=0, loadavg=loadavg) == 2
    loadavg.write_text("0.00 0.01 0.05 1/90 4000\n")
    assert busy_elsewhere(samples=1, interval_s=0, loadavg=loadavg) == 0


@pytest.mark.parametrize("text", ["", "garbage", "1 2 3 x/9 1"])
def test_busy_elsewhere_is_none_on_an_unreadable_file(tmp_path: Path, text: str) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text(text)
    assert busy_elsewhere(samples=1, interval_s=0, loadavg=loadavg) is None
    assert busy_elsewhere(samples=1, interval_s=0, loadavg=tmp_path / "missing") is None
