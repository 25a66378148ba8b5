"""Latency statistics and the timing loop of benchmarks.timing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.timing import latency_stats, measure


def test_percentiles_of_a_known_sample() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    s = latency_stats(samples)
    assert s["n"] == 100
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p95_ms"] == pytest.approx(95.05)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["min_ms"] == pytest.approx(1.0) and s["max_ms"] == pytest.approx(100.0)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["fps"] == pytest.approx(100 / sum(samples))
    assert s["ms_per_frame"] == pytest.approx(50.5)


def test_batch_scales_throughput_not_latency() -> None:
    samples = [0.04, 0.05, 0.06]
    one, eight = latency_stats(samples, 1), latency_stats(samples, 8)
    assert eight["p50_ms"] == pytest.approx(one["p50_ms"]) == pytest.approx(50.0)
    assert eight["fps"] == pytest.approx(8 * one["fps"])
    assert eight["ms_per_frame"] == pytest.approx(one["ms_per_frame"] / 8)


def test_single_sample_is_finite() -> None:
    s = latency_stats([0.02])
    assert all(math.isfinite(v) for v in s.values())
    assert s["std_ms"] == 0.0 and s["p99_ms"] == pytest.approx(20.0)


@pytest.mark.parametrize("bad", [[], [0.0], [-0.01, 0.02], [float("nan")], [float("inf")]])
def test_bad_samples_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        latency_stats(bad)


def test_bad_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        latency_stats([0.01], batch=0)


class _Clock:
    """A deterministic timer: every call of fn 'takes' ``dt`` seconds; counts calls."""

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.timed = 0

    def __call__(self, fn) -> float:  # noqa: ANN001
        fn()
        self.timed += 1
        return self.dt


def test_measure_stops_when_budget_and_min_iters_are_met() -> None:
    calls = []
    clock = _Clock(0.1)
    samples = measure(lambda: calls.append(1), budget_s=0.35, warmup=2, min_iters=3, timer=clock)
    assert len(samples) == 4  # 0.4 s >= 0.35 s budget after 4 calls
    assert len(calls) == 2 + 4  # warm-up calls are made but not timed
    assert clock.timed == 4


def test_measure_honours_min_and_max_iters() -> None:
    assert len(measure(lambda: None, budget_s=0.0, warmup=0, min_iters=5, timer=_Clock(1.0))) == 5
    assert (
        len(measure(lambda: None, budget_s=100.0, warmup=0, min_iters=1, max_iters=7, timer=_Clock(0.001)))
        == 7
    )
    with pytest.raises(ValueError):
        measure(lambda: None, min_iters=0)


def test_measure_with_the_real_clock_times_real_work() -> None:
    a = np.random.default_rng(0).random((200, 200))
    samples = measure(lambda: a @ a, budget_s=0.05, warmup=1, min_iters=3)
    s = latency_stats(samples)
    assert s["n"] >= 3 and s["min_ms"] > 0 and s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
