"""Benchmarks for the sharpening students: speed and latency at 1080p, quality vs ground truth and teacher.

Entry point: ``sharpen-bench`` (:func:`benchmarks.cli.main`). Reusable pieces: :mod:`benchmarks.baselines`
(the tuned unsharp mask), :mod:`benchmarks.timing` (latency statistics and the timing loop).
"""

from trt_engine import __version__

__all__ = ["__version__"]
