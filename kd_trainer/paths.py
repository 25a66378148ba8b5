"""Where the project keeps caches and shipped assets (the runtime's locations, :mod:`trt_engine.paths`)."""

from trt_engine.paths import (
    ASSETS_DIR,
    ASSISTANTS_DIR,
    SAMPLES_DIR,
    SHIPPED_STUDENTS_DIR,
    cache_dir,
    cache_subdir,
    shipped_student,
)

__all__ = [
    "ASSETS_DIR",
    "ASSISTANTS_DIR",
    "SAMPLES_DIR",
    "SHIPPED_STUDENTS_DIR",
    "cache_dir",
    "cache_subdir",
    "shipped_student",
]
