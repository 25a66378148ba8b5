"""Report writing: markdown, strict JSON, plots, Pareto front, machine info."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from benchmarks.report import (
    machine_info,
    pareto_front,
    pareto_points,
    render_markdown,
    sanitize,
    write_report,
)


def _speed_row(model: str, precision: str, fps: float, weights: str = "trained", **kw) -> dict:
    row = {
        "model": model,
        "weights": weights,
        "student": model,
        "params": 1000,
        "gmac": 1.0,
        "backend": "onnxruntime",
        "precision": precision,
        "batch": 1,
        "mode": "end_to_end",
        "n": 10,
        "mean_ms": 1e3 / fps,
        "std_ms": 0.1,
        "min_ms": 1.0,
        "p50_ms": 1e3 / fps,
        "p95_ms": 1e3 / fps,
        "p99_ms": 1e3 / fps,
        "max_ms": 1e3 / fps,
        "fps": fps,
        "ms_per_frame": 1e3 / fps,
        "runner": "trt_engine.Sharpener",
        "memory": "host only",
    }
    row.update(kw)
    return row


def _result() -> dict:
    speed_rows = [
        _speed_row("unsharp mask", "uint8", 120.0, weights="n/a", backend="opencv"),
        _speed_row("fast", "fp32", 30.0),
        _speed_row("fast", "int8", 45.0),
        _speed_row("runet-n", "fp32", 25.0, weights="random (speed only)"),
    ]
    overall = [
        {"method": "identity (degraded input)", "presets": 2, "psnr": 30.0, "ssim": 0.9, "delta_psnr": 0.0},
        {"method": "unsharp mask (tuned)", "presets": 2, "psnr": 30.5, "ssim": 0.91, "delta_psnr": 0.5},
        {"method": "fast fp32", "presets": 2, "psnr": 31.5, "ssim": 0.93, "delta_psnr": 1.5},
        {"method": "fast int8", "presets": 2, "psnr": 31.2, "ssim": 0.92, "delta_psnr": 1.2},
    ]
    summary = [
        {
            "preset": p,
            "method": o["method"],
            "n": 1,
            "psnr": o["psnr"],
            "ssim": o["ssim"],
            "window_psnr": None,
            "psnr_vs_teacher": None,
            "ssim_vs_teacher": None,
            "window_ssim": None,
        }
        for p in ("gauss1.5", "call")
        for o in overall
    ]
    return {
        "started": "2026-01-01T00:00:00",
        "mode": "quick",
        "command": "sharpen-bench --quick",
        "duration_s": 12.0,
        "exit_code": 0,
        "status": "complete",
        "machine": machine_info("cpu"),
        "models": [
            {
                "label": "fast",
                "weights": "trained",
                "params": 1000,
                "gmac_1080p": 1.0,
                "config": {"unshuffle": 4},
                "pt": "/x/fast.pt",
                "onnx": None,
                "engine": None,
                "notes": [],
            }
        ],
        "teacher": {"status": "skipped", "why": "not cached"},
        "speed": {
            "config": {"warmup": 1, "min_iters": 3, "budget_s": 0.5},
            "rows": speed_rows,
            "skipped": [
                {
                    "model": "runet-s",
                    "backend": "onnxruntime",
                    "precision": "fp32",
                    "batch": "8",
                    "why": "slow",
                }
            ],
            "errors": [],
            "teacher": None,
        },
        "quality": {
            "frames": {"source": "x", "kind": "sample", "count": 1, "names": ["a.png"], "notes": []},
            "presets": ["gauss1.5", "call"],
            "overall": overall,
            "summary": summary,
            "rows": [{"psnr": float("inf"), "ssim": float("nan")}],
            "notes": [],
            "errors": [],
            "tuning": {},
            "seed_setting": {},
            "video": {},
            "teacher": {},
        },
        "errors": [],
        "notes": ["a note"],
        "nan_value": float("nan"),
        "array": np.arange(3),
        "scalar": np.float32(1.5),
    }


def test_pareto_points_and_front() -> None:
    points = pareto_points(_result())
    labels = {p["label"] for p in points}
    assert labels == {
        "unsharp mask (tuned)",
        "fast fp32",
        "fast int8",
    }  # identity has no speed; random has no PSNR
    front = [p["label"] for p in pareto_front(points)]
    assert front == ["fast fp32", "fast int8", "unsharp mask (tuned)"]  # each trades speed for quality


def test_pareto_front_keeps_only_non_dominated() -> None:
    pts = [
        {"label": "a", "fps": 10, "psnr": 30},
        {"label": "b", "fps": 20, "psnr": 29},
        {"label": "c", "fps": 5, "psnr": 29.5},
        {"label": "d", "fps": 10, "psnr": 30},
    ]
    assert sorted(p["label"] for p in pareto_front(pts)) == ["a", "b", "d"]


def test_sanitize_makes_strict_json() -> None:
    clean = sanitize(_result())
    text = json.dumps(clean, allow_nan=False)
    back = json.loads(text)
    assert back["nan_value"] is None and back["array"] == [0, 1, 2] and back["scalar"] == 1.5
    assert back["quality"]["rows"][0] == {"psnr": None, "ssim": None}


def test_write_report_writes_every_file(tmp_path: Path) -> None:
    grid = {
        "presets": ["call"],
        "columns": ["ground truth", "fast fp32"],
        "cells": {
            ("call", "ground truth"): np.zeros((32, 32, 3), np.uint8),
            ("call", "fast fp32"): np.full((32, 32, 3), 255, np.uint8),
        },
    }
    written = write_report(_result(), tmp_path / "out", grid)
    assert set(written) == {"markdown", "json", "pareto", "crops"}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    for png in ("pareto", "crops"):
        assert written[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(written["json"].read_text())
    assert data["speed"]["rows"][1]["fps"] == 30.0
    md = written["markdown"].read_text()
    for heading in ("## Machine", "## Speed (1920x1080)", "## Quality", "## Errors", "random weights"):
        assert heading in md
    assert "fast fp32" in md and "slow" in md  # tables and skipped cases
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_report_without_quality_or_grid(tmp_path: Path) -> None:
    result = _result()
    result.pop("quality")
    result["quality_skipped"] = "--no-quality"
    written = write_report(result, tmp_path, None)
    assert "crops" not in written
    assert "Not run: --no-quality" in written["markdown"].read_text()


def test_markdown_lists_errors() -> None:
    result = _result()
    result["errors"] = ["model 'x.pt': no such file"]
    md = render_markdown(result, {})
    assert "- model 'x.pt': no such file" in md


def test_machine_info_is_filled() -> None:
    info = machine_info("cpu")
    assert info["cpu"] and info["logical_cores"] >= 1
    assert "numpy" in info["libraries"] and "onnxruntime" in info["libraries"]
    assert info["gpu"] is None
    assert all(math.isfinite(x) for x in info["load_avg_start"] or [])
