"""Fuzzing and fault injection for the trainer's inputs and writers (issue: bad input loses nothing)."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd_trainer.config import ConfigError, TrainConfig, make_config
from kd_trainer.io import ImageReadError, atomic_path, read_image

ROOT = Path(__file__).resolve().parents[1]
FIELDS = list(TrainConfig.__dataclass_fields__)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS + ["bogus", "Model", ""]), VALUES, max_size=6))
def test_any_config_mapping_is_accepted_or_refused_with_config_error(data: dict) -> None:
    try:
        cfg = make_config(data)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, TrainConfig)
        assert all(
            math.isfinite(getattr(cfg, k)) for k in ("lr", "alpha", "beta", "weight_decay", "grad_clip")
        )


def _encoded(ext: str) -> bytes:
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 400))
def test_truncated_images_raise_image_read_error_naming_the_file(tmp_path, ext: str, cut: int) -> None:
    data = _encoded(ext)
    path = tmp_path / f"frame{ext}"
    path.write_bytes(data[: min(cut, len(data) - 1)])
    try:
        img = read_image(path)
    except ImageReadError as exc:
        assert path.name in str(exc)
    else:  # decoders may recover a partial JPEG; then it must still be a valid frame
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=256), ext=st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".txt"]))
def test_random_bytes_never_crash_the_reader(tmp_path, blob: bytes, ext: str) -> None:
    path = tmp_path / f"x{ext}"
    path.write_bytes(blob)
    with pytest.raises(ImageReadError):
        read_image(path)


def test_wrong_extension_still_decodes_by_content(tmp_path) -> None:
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(_encoded(".png"))
    assert read_image(path).shape == (24, 32, 3)


def test_atomic_write_failure_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_kill_during_a_write_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous checkpoint")
    code = (
        "import os, signal, sys; from kd_trainer.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous checkpoint"
