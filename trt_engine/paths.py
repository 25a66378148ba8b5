"""Where the project keeps caches and the shipped models and sample frame.

The shipped students and the sample frame are package data installed by every install of the distribution
(the base, runtime-only one included) in ``kd_trainer/assets``. They are located here as files beside this
package, without importing the trainer.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "kd_trainer" / "assets"
SHIPPED_STUDENTS_DIR = ASSETS_DIR / "students"
ASSISTANTS_DIR = ASSETS_DIR / "assistants"  # students kept only to teach another (teacher assistants)
SAMPLES_DIR = ASSETS_DIR / "samples"


def cache_dir() -> Path:
    """Root cache directory: ``$KD_CACHE_DIR`` or ``~/.cache/image-sharpening-kd``."""
    env = os.environ.get("KD_CACHE_DIR")
    root = (
        Path(env)
        if env
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-sharpening-kd"
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_subdir(name: str) -> Path:
    """A named directory inside :func:`cache_dir`, created on demand."""
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def shipped_student(name: str = "fast", suffix: str = ".onnx") -> Path:
    """Path of a student shipped with the package (``fast`` or ``quality``; ``.onnx`` or ``.pt``)."""
    path = SHIPPED_STUDENTS_DIR / f"{name}{suffix}"
    if not path.is_file():
        available = (
            sorted(p.name for p in SHIPPED_STUDENTS_DIR.glob("*")) if SHIPPED_STUDENTS_DIR.is_dir() else []
        )
        raise FileNotFoundError(
            f"shipped student {path.name!r} not found in {SHIPPED_STUDENTS_DIR}; available: {available}"
        )
    return path
