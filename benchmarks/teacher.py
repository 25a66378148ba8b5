"""The teacher (MAXIM-3S deblurring, ONNX) as an optional benchmark participant.

On this project's CPUs the teacher needs ~5 minutes and ~7.7 GB per 1080p frame, so it is used:
- ``mode="cached"`` (default): only where its output for the exact input is already in the teacher cache
  (``kd_trainer.models.teachers.TeacherCache``, keyed by teacher + input hash; a ``--teacher`` run fills it);
- ``mode="run"`` (``--teacher``): computed on a ``crop`` x ``crop`` window of each degraded frame (the most
  detailed window of the ground truth; ``crop=0`` means the full frame) and cached for later runs.
Every method's quality "vs teacher" is then measured on the same windows of its full-frame output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


class TeacherUnavailable(RuntimeError):
    """The teacher cannot be used here; the message says why and how to enable it."""


class BenchTeacher:
    """Cache-aware teacher access: ``lookup`` never computes, ``__call__`` computes when ``mode == 'run'``."""

    def __init__(self, mode: str = "cached") -> None:
        if mode not in ("cached", "run"):
            raise ValueError(f"teacher mode must be 'cached' or 'run', got {mode!r}")
        self.mode = mode
        self.seconds: list[tuple[tuple[int, int], float]] = []
        try:
            from kd_trainer.maxim import maxim_info, teacher_paths
            from kd_trainer.models.teachers import OnnxTeacher, TeacherCache, make_teacher
        except ImportError as exc:
            raise TeacherUnavailable(f"teacher code not importable ({exc})") from exc
        onnx_path, _ = teacher_paths()
        if mode == "run":
            try:
                teacher = make_teacher("maxim-deblur")  # converts it once when absent (~7 min)
            except Exception as exc:
                raise TeacherUnavailable(f"MAXIM teacher could not be prepared: {exc}") from exc
        else:
            if not onnx_path.is_file():
                raise TeacherUnavailable(
                    f"MAXIM teacher ONNX not found at {onnx_path}; run `kd-data teacher maxim-deblur`, then "
                    "`sharpen-bench --teacher` to compute its outputs"
                )
            try:
                info = maxim_info()
                teacher = OnnxTeacher(
                    onnx_path, multiple=int(info.get("multiple", 64)), output_name=info.get("output_name")
                )
            except Exception as exc:
                raise TeacherUnavailable(f"MAXIM teacher cannot be loaded: {exc}") from exc
        self.teacher = teacher
        self.cache = TeacherCache(teacher)
        self.path = Path(onnx_path)
        self.key = teacher.key

    def lookup(self, rgb: np.ndarray) -> np.ndarray | None:
        """The cached teacher output for exactly this input, or None."""
        path = self.cache.path_for(rgb)
        if not path.is_file():
            return None
        digest = self.cache.input_hash(rgb)
        try:
            with np.load(path, allow_pickle=False) as data:
                out = data["output"]
                ok = str(data["input_sha"]) == digest and str(data["teacher"]) == self.key
        except Exception:
            return None
        return out if ok and out.shape == rgb.shape and out.dtype == np.uint8 else None

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        cached = self.lookup(rgb)
        if cached is not None or self.mode != "run":
            return cached
        t0 = time.perf_counter()
        out = self.cache(rgb)
        self.seconds.append((rgb.shape[:2], time.perf_counter() - t0))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": "MAXIM-3S deblurring (ONNX, onnxruntime CPU)",
            "key": self.key,
            "path": str(self.path),
            "mode": self.mode,
        }
