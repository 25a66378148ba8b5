"""The live row of ``sharpen-bench``: capture-to-sink latency and sustained fps of ``sharpen --camera``.

A synthetic camera (photo frames in memory, played in real time at 30 fps) feeds the same
:class:`trt_engine.live.LiveLoop` and model set-up as the CLI (a fixed-size convolutional ONNX re-shaped to the
camera size), into a null sink, for a few seconds per frame size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ((640, 360), (1280, 720), (1920, 1080))


@dataclass
class LiveConfig:
    seconds: float = 3.0
    fps: float = 30.0
    sizes: tuple[tuple[int, int], ...] = SIZES

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def live_config(quick: bool = False, smoke: bool = False) -> LiveConfig:
    return LiveConfig(seconds=0.5 if smoke else 1.5 if quick else 3.0)


def pick_model(specs: Sequence[Any], device: str) -> tuple[str, Path] | None:
    """(label, file) for the live row: the shipped fast student if benchmarked, else the first trained one."""
    ordered = sorted(specs, key=lambda s: (not s.label.startswith("fast"), not s.trained))
    for spec in ordered:
        candidates = ([spec.engine] if device == "cuda" else []) + [spec.onnx, spec.pt]
        for path in candidates:
            if path is not None and Path(path).is_file():
                return spec.label, Path(path)
    return None


def run_live(
    model: Path,
    label: str,
    frames: Sequence[np.ndarray],
    cfg: LiveConfig,
    log: Callable[[str], None],
    device: str,
) -> dict[str, Any]:
    """One row per size: frames in/out, dropped, sustained fps, capture-to-sink latency p50/p95."""
    import cv2

    from trt_engine.live import ArraySource, LiveLoop, NullSink, sharpener_for_frames

    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    notes: list[str] = []
    for w, h in cfg.sizes:
        clip = [
            np.ascontiguousarray(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1])
            for f in frames
        ]
        clip += [np.roll(c, 8, axis=1) for c in clip]  # a little motion: distinct buffers every frame
        try:
            said: list[str] = []
            dev = None if device == "cpu" or model.suffix.lower() in (".engine", ".plan") else device
            with sharpener_for_frames(model, h, w, device=dev, log=said.append) as sharpener:
                shape = f"{sharpener.info['height'] or h}x{sharpener.info['width'] or w}"
                stats = LiveLoop(
                    ArraySource(clip, cfg.fps, cfg.seconds), sharpener.process, [NullSink()]
                ).run()
            d = stats.summary()
            rows.append(
                {
                    "size": f"{w}x{h}",
                    "model": label,
                    "file": str(model),
                    "model_input": shape,
                    "source_fps": cfg.fps,
                    **{k: v for k, v in d.items() if k != "stopped_by"},
                }
            )
            notes += [f"{w}x{h}: {s}" for s in said if "could not" in s]
            log(f"live {w}x{h}: {stats.line()}")
        except Exception as exc:
            errors.append(f"live {w}x{h} ({label}): {type(exc).__name__}: {exc}")
    return {
        "config": cfg.describe(),
        "model": label,
        "file": str(model),
        "rows": rows,
        "errors": errors,
        "notes": notes,
    }
