"""Quality: PSNR/SSIM on full 1080p frames per degradation preset, against ground truth and the teacher.

Methods: identity (the degraded input), the unsharp mask tuned on separate images (one global setting, and
one per preset as an upper bound for a fixed filter), and every *trained* student at fp32, fp16 and int8
(precision ONNX, run through the SDK's ``Sharpener``). Random-weight students are never scored here.

Also:
- the seed's own setting (images resized to 256x256, Gaussian sigma 0.5) so its reported SSIM 95.72% is
  directly comparable;
- a video check: a clip through the ``call`` degradation as a real H.264 stream and back, with temporal
  stability (mean absolute frame-to-frame change of the output vs of the ground truth).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kd_trainer.degrade import (
    EVAL_PRESETS,
    add_noise,
    available_presets,
    degrade,
    degrade_with_params,
    gaussian_blur,
    has_h264,
    jpeg,
    motion_blur,
    resize_down_up,
    rgb_to_yuv420,
    upscale,
    yuv420_to_rgb,
)
from kd_trainer.metrics import psnr, ssim

from .baselines import AMOUNTS, SIGMAS, THRESHOLDS, UnsharpParams, tune_unsharp, unsharp_mask
from .frames import BenchInputError, FrameSet, crops, detail_crop_box, fit_1080p, unpack_yuv420

Log = Callable[[str], None]
PSNR_CAP = 100.0  # identical images: PSNR is infinite; means use this cap and say so


@dataclass
class QualityConfig:
    frames: int = 3
    presets: tuple[str, ...] = EVAL_PRESETS
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    per_preset_unsharp: bool = True
    tune_images: int = 4
    tune_crop: int = 384
    tune_crops_per_image: int = 2
    seed_frames: int = 3
    video_frames: int = 24
    teacher_crop: int = 256
    grid_crop: int = 256
    calib_frames: int = 3

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


QUICK_PRESETS = ("gauss1.5", "motion9", "h264-540p", "call")


def quality_config(quick: bool = False, smoke: bool = False) -> QualityConfig:
    if smoke:
        return QualityConfig(
            frames=1,
            presets=("gauss1.5", "call"),
            precisions=("fp32", "int8"),
            per_preset_unsharp=False,
            tune_images=2,
            tune_crop=192,
            tune_crops_per_image=1,
            seed_frames=1,
            video_frames=3,
            calib_frames=1,
        )
    if quick:
        return QualityConfig(
            frames=1,
            presets=QUICK_PRESETS,
            precisions=("fp32", "int8"),
            per_preset_unsharp=False,
            tune_images=3,
            tune_crop=256,
            tune_crops_per_image=2,
            seed_frames=1,
            video_frames=8,
            calib_frames=1,
        )
    return QualityConfig()


def usable_presets(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split requested presets into usable ones and notes about the rest."""
    have = set(available_presets())
    ok = [p for p in requested if p in have]
    notes = [
        f"preset {p!r} skipped: " + ("needs PyAV with libx264" if p == "h264-540p" else "unknown preset")
        for p in requested
        if p not in have
    ]
    return ok, notes


# ------------------------------------------------------------------------------------------ methods
@dataclass
class Method:
    """One way of turning a degraded RGB frame into an output frame."""

    label: str
    kind: str  # identity | unsharp | student
    fn: Callable[[np.ndarray, str], np.ndarray]
    model: str = ""
    precision: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    stream: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None


def tuning_pairs(
    images: Sequence[np.ndarray], presets: Sequence[str], size: int, per_image: int
) -> dict[str, list]:
    """(degraded, ground-truth) crop pairs per preset from the tuning images (seeds differ from evaluation)."""
    out: dict[str, list] = {p: [] for p in presets}
    for i, img in enumerate(images):
        for j, crop in enumerate(crops(img, size, per_image, seed=100 + i)):
            for preset in presets:
                out[preset].append((degrade(crop, preset, seed=10_000 + 97 * i + j), crop))
    return out


def tune_baselines(
    images: Sequence[np.ndarray], presets: Sequence[str], cfg: QualityConfig, log: Log
) -> tuple[UnsharpParams, dict[str, UnsharpParams]]:
    t0 = time.perf_counter()
    pairs = tuning_pairs(images, presets, cfg.tune_crop, cfg.tune_crops_per_image)
    all_pairs = [pair for p in presets for pair in pairs[p]]
    global_params = tune_unsharp(all_pairs)
    per_preset = {p: tune_unsharp(pairs[p]) for p in presets} if cfg.per_preset_unsharp else {}
    log(
        f"quality: unsharp mask tuned on {len(all_pairs)} crop pairs in {time.perf_counter() - t0:.1f} s: "
        f"amount {global_params.amount}, sigma {global_params.sigma}, threshold {global_params.threshold} "
        f"({global_params.identity_psnr:.2f} -> {global_params.psnr:.2f} dB on the tuning set)"
    )
    return global_params, per_preset


def baseline_methods(global_params: UnsharpParams, per_preset: dict[str, UnsharpParams]) -> list[Method]:
    methods = [
        Method("identity (degraded input)", "identity", lambda x, p: x),
        Method(
            "unsharp mask (tuned)",
            "unsharp",
            lambda x, p: unsharp_mask(x, *global_params.args),
            info=global_params.to_dict(),
        ),
    ]
    if per_preset:
        methods.append(
            Method(
                "unsharp mask (tuned per preset)",
                "unsharp",
                lambda x, p: unsharp_mask(x, *per_preset[p].args),
                info={p: v.to_dict() for p, v in per_preset.items()},
            )
        )
    return methods


def student_methods(
    specs: Sequence[Any], precisions: Sequence[str], calib: Sequence[np.ndarray], log: Log, errors: list[str]
) -> list[Method]:
    """fp32/fp16/int8 methods for every trained student, run through the SDK (``Sharpener``, RGB)."""
    from . import models as M
    from .runners import Runner

    methods: list[Method] = []
    for spec in specs:
        if not spec.trained:
            continue
        if spec.engine is not None:
            sources = [("engine", spec.engine, "")]
        else:
            try:
                fp32 = M.onnx_for(spec, 1)
            except Exception as exc:
                errors.append(f"{spec.label}: no ONNX for quality: {type(exc).__name__}: {exc}")
                continue
            sources = []
            for precision in precisions:
                try:
                    source = fp32 if precision == "fp32" else M.fixed_onnx_for(spec)
                    path, tool = M.precision_onnx(source, precision, calib)
                except Exception as exc:
                    errors.append(
                        f"{spec.label} {precision}: precision ONNX failed: {type(exc).__name__}: {exc}"
                    )
                    continue
                sources.append((precision, path, tool))
        for precision, path, tool in sources:
            try:
                runner = Runner(path, batch=1, color="rgb")
            except Exception as exc:
                errors.append(f"{spec.label} {precision}: {exc}")
                continue
            log(f"quality: {spec.label} {precision} via {runner.info.get('runner')}")
            methods.append(
                Method(
                    f"{spec.label} {precision}",
                    "student",
                    (lambda x, p, r=runner: r.process(x)),
                    model=spec.label,
                    precision=precision,
                    info={"path": str(path), "tool": tool, "runner": runner.info.get("runner")},
                    stream=(lambda fr, r=runner: list(r.stream(fr))),
                )
            )
    return methods


# ------------------------------------------------------------------------------------------ evaluation
def _cap(x: float) -> float:
    return min(float(x), PSNR_CAP)


@dataclass
class QualityResults:
    frames: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    presets: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per frame x preset x method
    summary: list[dict[str, Any]] = field(default_factory=list)  # per preset x method (means)
    overall: list[dict[str, Any]] = field(default_factory=list)  # per method: mean over presets
    teacher: dict[str, Any] = field(default_factory=dict)
    seed_setting: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    grid: dict[str, Any] = field(default_factory=dict)  # crops for the PNG grid (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "grid"}


def evaluate(
    frame_set: FrameSet,
    presets: Sequence[str],
    methods: Sequence[Method],
    teacher: Any,
    cfg: QualityConfig,
    log: Log,
    res: QualityResults,
) -> None:
    """Score every method on every (frame, preset); teacher figures on the teacher windows when available."""
    grid_presets = [p for p in ("call", "gauss1.5", "motion9", "h264-540p", "jpeg30") if p in presets][
        :4
    ] or list(presets)[:4]
    res.grid = {
        "presets": grid_presets,
        "columns": ["ground truth"] + [m.label for m in methods],
        "cells": {},
    }
    teacher_windows = 0
    failed: set[str] = set()
    for fi, (gt, name) in enumerate(zip(frame_set.frames, frame_set.names, strict=True)):
        box = cfg.teacher_crop
        if box:
            y0, x0 = detail_crop_box(gt, box)
            win = (slice(y0, y0 + box), slice(x0, x0 + box))
        else:
            win = (slice(None), slice(None))
        gy, gx = detail_crop_box(gt, cfg.grid_crop)
        if box:  # centre the grid window inside the teacher window so the teacher column lines up
            gy, gx = y0 + max(0, (box - cfg.grid_crop) // 2), x0 + max(0, (box - cfg.grid_crop) // 2)
        gwin = (slice(gy, gy + cfg.grid_crop), slice(gx, gx + cfg.grid_crop))
        # the grid window relative to the teacher window (the teacher output covers only ``win``)
        twin = (
            (slice(gy - y0, gy - y0 + cfg.grid_crop), slice(gx - x0, gx - x0 + cfg.grid_crop))
            if box
            else gwin
        )
        for preset in presets:
            t0 = time.perf_counter()
            deg, params = degrade_with_params(gt, preset, seed=fi)
            t_out = None
            if teacher is not None:
                try:
                    t_out = teacher(np.ascontiguousarray(deg[win]))
                except Exception as exc:
                    res.errors.append(f"teacher on {name}/{preset}: {type(exc).__name__}: {exc}")
                    teacher = None
            if t_out is not None:
                teacher_windows += 1
                res.rows.append(
                    {
                        "frame": name,
                        "preset": preset,
                        "method": "teacher (MAXIM-3S)",
                        "kind": "teacher",
                        "window_psnr": _cap(psnr(gt[win], t_out)),
                        "window_ssim": ssim(gt[win], t_out),
                    }
                )
                if fi == 0 and preset in grid_presets:
                    res.grid["cells"][(preset, "teacher (MAXIM-3S)")] = t_out[twin].copy()
            if fi == 0 and preset in grid_presets:
                res.grid["cells"][(preset, "ground truth")] = gt[gwin].copy()
            for m in methods:
                if m.label in failed:
                    continue
                try:
                    out = m.fn(deg, preset)
                except Exception as exc:  # reported once; the method is dropped from the rest of the run
                    res.errors.append(
                        f"{m.label} on {name}/{preset}: {type(exc).__name__}: {exc} (method dropped)"
                    )
                    failed.add(m.label)
                    continue
                row = {
                    "frame": name,
                    "preset": preset,
                    "method": m.label,
                    "kind": m.kind,
                    "model": m.model,
                    "precision": m.precision,
                    "psnr": _cap(psnr(gt, out)),
                    "ssim": ssim(gt, out),
                    "window_psnr": _cap(psnr(gt[win], out[win])),
                }
                if t_out is not None:
                    ow = np.ascontiguousarray(out[win])
                    row.update({"psnr_vs_teacher": _cap(psnr(t_out, ow)), "ssim_vs_teacher": ssim(t_out, ow)})
                res.rows.append(row)
                if fi == 0 and preset in grid_presets:
                    res.grid["cells"][(preset, m.label)] = out[gwin].copy()
            log(
                f"quality: {name} {preset:<9} {len(methods)} methods in {time.perf_counter() - t0:.1f} s "
                f"({', '.join(f'{k}={_short(v)}' for k, v in params.items() if k != 'preset') or 'fixed'})"
            )
    if teacher_windows and teacher is not None and "teacher (MAXIM-3S)" not in res.grid["columns"]:
        res.grid["columns"].append("teacher (MAXIM-3S)")
    res.teacher["windows_scored"] = teacher_windows
    _summarise(res, [m.label for m in methods], presets)


def _short(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


def _mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _summarise(res: QualityResults, labels: Sequence[str], presets: Sequence[str]) -> None:
    keys = ("psnr", "ssim", "window_psnr", "psnr_vs_teacher", "ssim_vs_teacher")
    identity = {}
    for preset in presets:
        for label in [*labels, "teacher (MAXIM-3S)"]:
            rows = [r for r in res.rows if r["preset"] == preset and r["method"] == label]
            if not rows:
                continue
            entry: dict[str, Any] = {"preset": preset, "method": label, "n": len(rows)}
            for k in keys + ("window_ssim",):
                entry[k] = _mean([r.get(k) for r in rows])
            if label.startswith("identity"):
                identity[preset] = entry
            res.summary.append(entry)
    for entry in res.summary:
        base = identity.get(entry["preset"])
        if base and entry.get("psnr") is not None and base.get("psnr") is not None:
            entry["delta_psnr"] = entry["psnr"] - base["psnr"]
    for label in labels:
        entries = [e for e in res.summary if e["method"] == label]
        if entries:
            res.overall.append(
                {
                    "method": label,
                    "presets": len(entries),
                    "psnr": _mean([e["psnr"] for e in entries]),
                    "ssim": _mean([e["ssim"] for e in entries]),
                    "delta_psnr": _mean([e.get("delta_psnr") for e in entries]),
                    "psnr_vs_teacher": _mean([e.get("psnr_vs_teacher") for e in entries]),
                }
            )


# ------------------------------------------------------------------------------------------ seed setting
def seed_setting(
    frame_set: FrameSet,
    tune_images: Sequence[np.ndarray],
    specs: Sequence[Any],
    teacher: Any,
    cfg: QualityConfig,
    log: Log,
    res: QualityResults,
) -> None:
    """The seed's evaluation: photos resized to 256x256, Gaussian blur sigma 0.5, SSIM in percent."""
    size, sigma = 256, 0.5

    def prep(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)

    pairs = [(gaussian_blur(c, sigma), c) for img in tune_images for c in [prep(img)]]
    params = tune_unsharp(pairs)
    methods: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("identity (blurred input)", lambda x: x),
        ("unsharp mask (tuned for this setting)", lambda x: unsharp_mask(x, *params.args)),
    ]
    for spec in specs:
        if not spec.trained or spec.pt is None and spec.onnx is None:
            continue
        fn = _student_any_size(spec)
        if fn is not None:
            methods.append((f"{spec.label} fp32", fn))
    rows: list[dict[str, Any]] = []
    for gt_full, name in list(zip(frame_set.frames, frame_set.names, strict=True))[: cfg.seed_frames]:
        gt = prep(gt_full)
        blurred = gaussian_blur(gt, sigma)
        for label, fn in methods:
            out = fn(blurred)
            rows.append(
                {"frame": name, "method": label, "psnr": _cap(psnr(gt, out)), "ssim_pct": 100 * ssim(gt, out)}
            )
        if teacher is not None:
            try:
                t_out = teacher(blurred)
            except Exception as exc:
                res.errors.append(f"teacher at 256x256: {type(exc).__name__}: {exc}")
                t_out, teacher = None, None
            if t_out is not None:
                rows.append(
                    {
                        "frame": name,
                        "method": "teacher (MAXIM-3S)",
                        "psnr": _cap(psnr(gt, t_out)),
                        "ssim_pct": 100 * ssim(gt, t_out),
                    }
                )
    summary = []
    for label in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == label]
        summary.append(
            {
                "method": label,
                "n": len(sel),
                "psnr": _mean([r["psnr"] for r in sel]),
                "ssim_pct": _mean([r["ssim_pct"] for r in sel]),
            }
        )
    res.seed_setting = {
        "setting": "frames resized to 256x256 (INTER_AREA), Gaussian blur sigma 0.5 (OpenCV), SSIM over RGB "
        "(scikit-image, data range 255) in percent",
        "seed_reported_ssim_pct": 95.72,
        "unsharp_params": params.to_dict(),
        "rows": rows,
        "summary": summary,
    }
    log(
        "quality: seed setting (256x256, sigma 0.5): "
        + ", ".join(f"{s['method']} {s['ssim_pct']:.2f}%" for s in summary)
    )


def _student_any_size(spec: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A student callable for frames of any size (PyTorch when a checkpoint exists; the SDK pads otherwise)."""
    if spec.pt is not None:
        import torch

        from kd_trainer.models.student import load_student

        model = load_student(spec.pt)[0]

        def run(rgb: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255.0)
            with torch.inference_mode():
                y = model(x).clamp(0, 1).mul(255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
            return np.ascontiguousarray(y)

        return run
    from .runners import Runner

    try:
        runner = Runner(spec.onnx, batch=1, color="rgb")
    except Exception:
        return None
    return runner.process


# ------------------------------------------------------------------------------------------ video check
def h264_sequence(frames: Sequence[np.ndarray], crf: int, fps: int = 30) -> list[np.ndarray]:
    """Encode RGB frames as one H.264 stream (libx264, zerolatency: I + P frames) and decode it back.

    Colour goes through the project's accurate BT.709 limited-range conversion both ways.
    """
    from fractions import Fraction

    import av

    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(_pack_yuv420(*rgb_to_yuv420(f), h, w), format="yuv420p")
        vf.pts = i
        packets.extend(enc.encode(vf))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    decoded = [df for p in packets for df in dec.decode(p)] + list(dec.decode(None))
    rgb = [yuv420_to_rgb(*unpack_yuv420(df.to_ndarray(), h, w)) for df in decoded]
    if len(rgb) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(rgb)} frames for {len(frames)}")
    return rgb


def _pack_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, h: int, w: int) -> np.ndarray:
    """Planes -> PyAV's flat ``(h*3/2) x w`` yuv420p array (works for any even h, not only h % 4 == 0)."""
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)


def degrade_clip(frames: Sequence[np.ndarray], seed: int = 0) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The ``call`` preset applied to a clip as a sender would: one set of call parameters for the whole
    clip (drawn by the preset itself), fresh sensor noise per frame, and the codec as one video stream."""
    _, params = degrade_with_params(np.ascontiguousarray(frames[0][:64, :64]), "call", seed)
    params = {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}
    rng = np.random.default_rng(seed + 1)
    smalls, size = [], None
    for f in frames:
        x = gaussian_blur(f, params["sigma"])
        if "motion_len" in params:
            x = motion_blur(x, params["motion_len"], params["motion_angle"])
        if "noise_sigma" in params:
            x = add_noise(x, params["noise_sigma"], rng)
        small, size = resize_down_up(x, params["downscale"])
        smalls.append(small)
    if has_h264():
        crf = int(params.get("crf", 35))
        if params.get("codec") != "h264":
            params["note"] = (
                f"the preset drew JPEG q{params.get('jpeg_quality')}; a clip uses H.264 crf {crf}"
            )
        params.pop("jpeg_quality", None)
        params.update({"codec": "h264 stream (I+P frames)", "crf": crf})
        coded = h264_sequence(smalls, crf)
    else:
        q = int(params.get("jpeg_quality", 40))
        params.update({"codec": "jpeg per frame (PyAV/libx264 not available)", "jpeg_quality": q})
        coded = [jpeg(s, q) for s in smalls]
    return [upscale(c, size) for c in coded], params


def temporal_stats(outputs: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> dict[str, float]:
    """Flicker figures for a clip: mean |o_t - o_{t-1}| of the output and of the ground truth (levels), their
    ratio (1 = as much change as the truth; above 1 = added flicker), and the temporal error
    mean |(o_t - o_{t-1}) - (g_t - g_{t-1})|."""
    if len(outputs) != len(gts) or len(outputs) < 2:
        raise ValueError("temporal_stats needs two equally long sequences of at least 2 frames")
    d_out, d_gt, err = [], [], []
    for t in range(1, len(outputs)):
        do = outputs[t].astype(np.int16) - outputs[t - 1].astype(np.int16)
        dg = gts[t].astype(np.int16) - gts[t - 1].astype(np.int16)
        d_out.append(float(np.abs(do).mean()))
        d_gt.append(float(np.abs(dg).mean()))
        err.append(float(np.abs(do - dg).mean()))
    mo, mg = float(np.mean(d_out)), float(np.mean(d_gt))
    return {
        "mean_abs_change": mo,
        "gt_mean_abs_change": mg,
        "change_ratio": mo / mg if mg > 0 else float("nan"),
        "temporal_error": float(np.mean(err)),
    }


def video_check(
    clip: list[np.ndarray], source: str, methods: Sequence[Method], log: Log, res: QualityResults
) -> None:
    t0 = time.perf_counter()
    degraded, params = degrade_clip(clip, seed=0)
    rows = []
    for m in methods:
        if m.kind == "unsharp" and "per preset" in m.label:
            continue
        if m.kind == "student" and m.precision != "fp32":
            continue
        try:
            outs = m.stream(degraded) if m.stream is not None else [m.fn(d, "call") for d in degraded]
        except Exception as exc:
            res.errors.append(f"video: {m.label}: {type(exc).__name__}: {exc}")
            continue
        stats = temporal_stats(outs, clip)
        stats.update(
            {"method": m.label, "psnr": _mean([_cap(psnr(g, o)) for g, o in zip(clip, outs, strict=True)])}
        )
        rows.append(stats)
    res.video = {
        "source": source,
        "frames": len(clip),
        "size": f"{clip[0].shape[1]}x{clip[0].shape[0]}",
        "degradation": params,
        "rows": rows,
    }
    log(f"quality: video check, {len(clip)} frames, {len(rows)} methods in {time.perf_counter() - t0:.1f} s")


def load_clip(video: str | None, frame_set: FrameSet, count: int) -> tuple[list[np.ndarray], str]:
    """A real clip when one is given or bundled, else a synthetic camera-motion clip from an evaluation frame."""
    from .frames import find_sample_clip, read_clip, synth_clip

    path = video or find_sample_clip()
    if path is not None:
        frames, rate = read_clip(path, count)
        return frames, f"real clip {path} ({len(frames)} frames at {rate:.3g} fps, fitted to 1920x1080)"
    if not frame_set.frames:
        raise BenchInputError("no frame to synthesise a clip from")
    return (
        synth_clip(frame_set.frames[0], count),
        f"synthetic: camera pan/zoom/jitter over {frame_set.names[0]} ({frame_set.kind}); no real clip available offline",
    )


def tune(
    tune_set: FrameSet, cfg: QualityConfig, log: Log
) -> tuple[UnsharpParams, dict[str, UnsharpParams], dict]:
    """Tune the unsharp-mask baseline on the tuning images (never the evaluation frames)."""
    presets, _ = usable_presets(cfg.presets)
    global_params, per_preset = tune_baselines(tune_set.frames, presets, cfg, log)
    info = {
        "images": tune_set.describe(),
        "crop": cfg.tune_crop,
        "crops_per_image": cfg.tune_crops_per_image,
        "objective": "mean PSNR over the (degraded, ground truth) crop pairs of all evaluated presets",
        "grid": {"amount": list(AMOUNTS), "sigma": list(SIGMAS), "threshold": list(THRESHOLDS)},
        "global": global_params.to_dict(),
        "per_preset": {p: v.to_dict() for p, v in per_preset.items()},
    }
    return global_params, per_preset, info


def run_quality(
    frame_set: FrameSet,
    tune_set: FrameSet,
    specs: Sequence[Any],
    teacher: Any,
    cfg: QualityConfig,
    log: Log,
    tuned: tuple[UnsharpParams, dict[str, UnsharpParams], dict] | None = None,
    video: str | None = None,
    do_video: bool = True,
    calib: Sequence[np.ndarray] | None = None,
) -> QualityResults:
    """Everything quality-related; failures of one part are recorded in ``errors`` and the rest goes on."""
    res = QualityResults(frames=frame_set.describe())
    presets, notes = usable_presets(cfg.presets)
    res.notes.extend(notes)
    res.presets = presets
    global_params, per_preset, res.tuning = tuned if tuned is not None else tune(tune_set, cfg, log)
    if calib is None:
        calib = [fit_1080p(img) for img in tune_set.frames[: cfg.calib_frames]]
    methods = baseline_methods(global_params, per_preset)
    methods += student_methods(specs, cfg.precisions, calib, log, res.errors)
    if not any(m.kind == "student" for m in methods):
        res.notes.append("no trained student available: quality covers the baselines (and the teacher) only")
    evaluate(frame_set, presets, methods, teacher, cfg, log, res)
    try:
        seed_setting(frame_set, tune_set.frames, specs, teacher, cfg, log, res)
    except Exception as exc:
        res.errors.append(f"seed setting: {type(exc).__name__}: {exc}")
    if do_video and cfg.video_frames >= 2:
        try:
            clip, source = load_clip(video, frame_set, cfg.video_frames)
            video_check(clip, source, methods, log, res)
        except Exception as exc:
            res.errors.append(f"video check: {type(exc).__name__}: {exc}")
    return res
