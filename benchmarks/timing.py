"""Throughput and latency at 1920x1080 per backend x precision x batch, end to end and compute only.

- **end to end**: a host uint8 BGR frame (or a list of ``batch`` frames) in, host frames out, through
  ``trt_engine.Sharpener`` (colour conversion, padding/cropping, upload/download included).
- **compute only**: the model runtime on input that is already converted (and on a GPU already on the device).

Each case is warmed up, then repeated until both ``min_iters`` and the per-case time budget are reached
(or ``max_iters``). On a GPU, compute-only calls are timed with CUDA events after synchronising; end to end
is timed on the host clock (the call returns host memory, so it is synchronous). Latency is per call (one
batch); fps = frames / total timed seconds. Percentiles use numpy's linear interpolation; ``n`` is reported
with every row, because p99 of a few samples is only the maximum.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .frames import BenchInputError

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------- statistics
def latency_stats(samples_s: Sequence[float], batch: int = 1) -> dict[str, float | int]:
    """Summary of per-call latencies in seconds: ms figures, percentiles and throughput.

    ``fps`` is ``batch * n / sum(samples)``; ``ms_per_frame`` is the mean call latency divided by ``batch``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    a = np.asarray(list(samples_s), dtype=np.float64)
    if a.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("latency samples must be finite and positive")
    ms = a * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "n": int(a.size),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)) if a.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
        "fps": float(batch * a.size / a.sum()),
        "ms_per_frame": float(ms.mean() / batch),
    }


def host_timer(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cuda_event_timer() -> Callable[[Callable[[], Any]], float]:
    """A timer that brackets ``fn`` with CUDA events on the current stream (imports torch lazily)."""
    import torch

    def timer(fn: Callable[[], Any]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return timer


def measure(
    fn: Callable[[], Any],
    *,
    budget_s: float = 3.0,
    warmup: int = 2,
    min_iters: int = 5,
    max_iters: int = 2000,
    timer: Callable[[Callable[[], Any]], float] = host_timer,
) -> list[float]:
    """Per-call seconds of ``fn``: ``warmup`` untimed calls, then at least ``min_iters`` timed calls and more
    until ``budget_s`` of timed work is spent (capped at ``max_iters``)."""
    if min_iters < 1 or max_iters < min_iters:
        raise ValueError(f"need 1 <= min_iters <= max_iters, got {min_iters}, {max_iters}")
    for _ in range(max(0, warmup)):
        fn()
    samples: list[float] = []
    total = 0.0
    while len(samples) < max_iters and (len(samples) < min_iters or total < budget_s):
        dt = timer(fn)
        samples.append(dt)
        total += dt
    return samples


# ------------------------------------------------------------------------------------------- plan
@dataclass
class SpeedConfig:
    """What to time and for how long (see :func:`speed_config` for the CLI presets)."""

    batches: tuple[int, ...] = (1, 4, 8)
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    backends: tuple[str, ...] = ("onnxruntime", "torch")
    modes: tuple[str, ...] = ("end_to_end", "compute")
    budget_s: float = 2.0
    warmup: int = 2
    min_iters: int = 3
    max_iters: int = 2000
    max_batch_s: float = 2.0  # skip batch N when N * (b1 latency) exceeds this
    max_precision_s: float = 0.6  # precision variants only for models whose fp32 b1 call is faster
    max_torch_s: float = 3.0  # torch backend only for models whose ORT b1 call is faster
    max_call_s: float = 3.0  # a first call slower than this: end to end only, slow_iters calls
    slow_iters: int = 2
    max_gmac: float | None = None  # skip models above this many GMAC per 1080p frame
    stream_frames: int = 8  # frames per pass of the stream mode (batch-1 fp32 cases only)
    max_stream_s: float = 4.0  # skip the stream mode when one pass would take longer
    device: str = "cpu"
    teacher_crop: int = 256
    calib_frames: int = 3

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def speed_config(quick: bool = False, smoke: bool = False, device: str = "cpu") -> SpeedConfig:
    if smoke:
        return SpeedConfig(
            batches=(1,),
            precisions=("fp32",),
            backends=("onnxruntime",),
            budget_s=0.2,
            warmup=1,
            min_iters=3,
            max_batch_s=0,
            max_precision_s=0,
            max_torch_s=0,
            stream_frames=3,
            max_stream_s=2.0,
            device=device,
            calib_frames=1,
        )
    if quick:
        return SpeedConfig(
            batches=(1, 4),
            precisions=("fp32", "int8"),
            budget_s=0.6,
            warmup=1,
            min_iters=3,
            max_batch_s=0.8,
            max_precision_s=0.3,
            max_torch_s=0.3,
            max_call_s=1.5,
            slow_iters=1,
            max_gmac=50.0,
            stream_frames=4,
            max_stream_s=2.0,
            device=device,
            calib_frames=2,
        )
    return SpeedConfig(device=device)


@dataclass
class SpeedResults:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    teacher: dict[str, Any] | None = None
    sizes: list[dict[str, Any]] = field(default_factory=list)  # per frame size, onnxruntime CPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "errors": self.errors,
            "teacher": self.teacher,
            "sizes": self.sizes,
        }


def _case_row(
    spec: Any, backend: str, precision: str, batch: int, mode: str, stats: dict, extra: dict
) -> dict:
    row = {
        "model": spec.label,
        "weights": spec.weights,
        "student": spec.student,
        "params": spec.params,
        "gmac": spec.gmac,
        "backend": backend,
        "precision": precision,
        "batch": batch,
        "mode": mode,
        **stats,
        **extra,
    }
    return row


def _mode_fn(runner: Any, cfg: SpeedConfig, batch: int, mode: str) -> tuple[Callable[[], Any], dict, Any]:
    """The callable to time for ``mode``, extra row fields, and the timer to use."""
    info = runner.info
    extra: dict[str, Any] = {
        "runner": info.get("runner", ""),
        "device": info.get("device", cfg.device),
        "memory": info.get("memory", "host"),
        "clock": "host perf_counter",
    }
    if mode == "end_to_end":
        rng = np.random.default_rng(1)
        frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(batch)]
        fn = (lambda: runner.process(frames[0])) if batch == 1 else (lambda: runner.process_batch(frames))
        return fn, extra, host_timer
    if mode == "stream":
        rng = np.random.default_rng(1)
        clip = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(cfg.stream_frames)]
        extra["stream_frames"] = cfg.stream_frames

        def run_stream() -> int:
            return sum(1 for _ in runner.stream(clip))

        return run_stream, extra, host_timer
    fn, how = runner.compute_fn()
    extra["compute_call"] = how
    # CUDA events for asynchronous PyTorch launches; TensorRT's callable synchronises its own stream and
    # onnxruntime's run is synchronous, so the host clock is exact for them.
    if str(extra["device"]).startswith("cuda") and info.get("backend") == "torch":
        extra["clock"] = "cuda events"
        return fn, extra, cuda_event_timer()
    return fn, extra, host_timer


def time_runner(
    runner: Any, cfg: SpeedConfig, batch: int, modes: Sequence[str] | None = None
) -> list[tuple[str, dict, dict]]:
    """Time an opened runner in each mode (default ``cfg.modes``): ``[(mode, stats, extra)]``.

    The first call is a probe (and warm-up). When it takes longer than ``cfg.max_call_s`` the model is too
    slow for this machine's time budget: only end to end is timed, with ``cfg.slow_iters`` calls.
    ``stream`` times ``Sharpener.stream`` over ``cfg.stream_frames`` frames (stages overlapped); its
    latency figures are per frame, averaged over each pass. It runs only when a pass fits ``max_stream_s``.
    """
    out: list[tuple[str, dict, dict]] = []
    slow = False
    probe = 0.0
    for i, mode in enumerate(modes or cfg.modes):
        if mode == "stream" and (slow or probe * cfg.stream_frames > cfg.max_stream_s):
            continue
        fn, extra, timer = _mode_fn(runner, cfg, batch, mode)
        warmup = cfg.warmup
        if i == 0:
            probe = host_timer(fn)
            warmup -= 1
            slow = probe > cfg.max_call_s
        if slow:
            if mode != "end_to_end":
                continue
            samples = measure(
                fn, budget_s=0.0, warmup=0, min_iters=cfg.slow_iters, max_iters=cfg.slow_iters, timer=timer
            )
            extra["note"] = (
                f"slow here (first call {probe:.1f} s > {cfg.max_call_s} s): {cfg.slow_iters} call(s) timed"
            )
        else:
            samples = measure(
                fn,
                budget_s=cfg.budget_s,
                warmup=max(0, warmup),
                min_iters=cfg.min_iters,
                max_iters=cfg.max_iters,
                timer=timer,
            )
        if mode == "stream":  # one sample = one pass over the clip: report per-frame figures
            k = cfg.stream_frames
            out.append((mode, latency_stats([x / k for x in samples], 1), extra))
        else:
            out.append((mode, latency_stats(samples, batch), extra))
    return out


def _backend_device(backend: str, device: str) -> str | None:
    """The ``device`` argument for a backend: onnxruntime uses a GPU only when its CUDA provider exists."""
    if device == "cpu":
        return None
    if backend == "onnxruntime":
        import onnxruntime as ort

        return device if "CUDAExecutionProvider" in ort.get_available_providers() else None
    return device


def time_model(spec: Any, cfg: SpeedConfig, calib: Sequence[np.ndarray], log: Log, res: SpeedResults) -> None:
    """Time one model over the configured matrix; failures and skips are recorded, never raised."""
    from . import models as M
    from .runners import Runner

    b1_seconds: float | None = None

    def run_case(
        path: Any, backend: str, precision: str, batch: int, tool: str = "", stream: bool = False
    ) -> float | None:
        """Time one file; returns the mean seconds per call (compute-only when measured)."""
        try:
            device = _backend_device(backend, cfg.device)
            with Runner(path, batch=batch, color="bgr", device=device) as runner:
                mean_s = None
                modes = [*cfg.modes, "stream"] if stream and cfg.stream_frames > 1 else list(cfg.modes)
                for mode, stats, extra in time_runner(runner, cfg, batch, modes):
                    if tool:
                        extra["precision_tool"] = tool
                    res.rows.append(_case_row(spec, backend, precision, batch, mode, stats, extra))
                    log(
                        f"  {spec.label:<18} {backend:<11} {precision} b{batch} {mode:<10} "
                        f"{stats['fps']:8.2f} fps  p50 {stats['p50_ms']:8.1f} ms  (n={stats['n']})"
                    )
                    if mode == "compute" or mean_s is None:
                        mean_s = stats["mean_ms"] / 1e3
                return mean_s
        except BenchInputError as exc:
            res.errors.append(f"{spec.label} {backend} {precision} b{batch}: {exc}")
        except Exception as exc:  # a backend failure must not end the benchmark
            res.errors.append(f"{spec.label} {backend} {precision} b{batch}: {type(exc).__name__}: {exc}")
        return None

    def skip(backend: str, precision: str, batch: int, why: str) -> None:
        res.skipped.append(
            {"model": spec.label, "backend": backend, "precision": precision, "batch": str(batch), "why": why}
        )

    if spec.engine is not None:
        run_case(spec.engine, "tensorrt", "engine", 1)
        return
    if cfg.max_gmac is not None and spec.gmac is not None and spec.gmac > cfg.max_gmac:
        skip(
            "all",
            "all",
            1,
            f"{spec.gmac:.0f} GMAC per frame > {cfg.max_gmac:.0f}: too slow for this mode "
            "(run without --quick)",
        )
        log(f"  {spec.label:<18} skipped in this mode ({spec.gmac:.0f} GMAC per frame)")
        return

    if "onnxruntime" in cfg.backends:
        try:
            fp32 = M.onnx_for(spec, 1)
        except Exception as exc:
            res.errors.append(f"{spec.label}: cannot export/load ONNX: {type(exc).__name__}: {exc}")
            fp32 = None
        if fp32 is not None:
            b1_seconds = run_case(fp32, "onnxruntime", "fp32", 1, stream=True)
            for batch in cfg.batches:
                if batch == 1 or b1_seconds is None:
                    continue
                if batch * b1_seconds > cfg.max_batch_s:
                    skip(
                        "onnxruntime",
                        "fp32",
                        batch,
                        f"est. {batch * b1_seconds:.1f} s per call > {cfg.max_batch_s} s budget",
                    )
                    continue
                try:
                    path = M.onnx_for(spec, batch)
                except Exception as exc:
                    res.errors.append(f"{spec.label} b{batch}: {type(exc).__name__}: {exc}")
                    continue
                run_case(path, "onnxruntime", "fp32", batch)
            for precision in cfg.precisions:
                if precision == "fp32" or b1_seconds is None:
                    continue
                if b1_seconds > cfg.max_precision_s:
                    skip(
                        "onnxruntime",
                        precision,
                        1,
                        f"fp32 call {b1_seconds:.2f} s > {cfg.max_precision_s} s: too slow to time here",
                    )
                    continue
                try:
                    path, tool = M.precision_onnx(M.fixed_onnx_for(spec), precision, calib)
                except Exception as exc:
                    res.errors.append(f"{spec.label} {precision} ONNX: {type(exc).__name__}: {exc}")
                    continue
                run_case(path, "onnxruntime", precision, 1, tool)

    if "torch" in cfg.backends:
        on_gpu = cfg.device.startswith("cuda")
        pt = M.checkpoint_for(spec)
        if pt is None:
            skip("torch", "fp32", 1, "no .pt checkpoint for this model")
        elif not on_gpu and b1_seconds is not None and b1_seconds > cfg.max_torch_s:
            skip(
                "torch",
                "fp32",
                1,
                f"onnxruntime call {b1_seconds:.2f} s > {cfg.max_torch_s} s: too slow to time twice",
            )
        else:
            # PyTorch takes any batch size; on a GPU it runs fp16 channels_last with pinned staging buffers.
            torch_b1 = run_case(pt, "torch", "fp16" if on_gpu else "fp32", 1, stream=on_gpu)
            for batch in cfg.batches if on_gpu else ():
                if batch == 1 or torch_b1 is None:
                    continue
                if batch * torch_b1 > cfg.max_batch_s:
                    skip(
                        "torch",
                        "fp16",
                        batch,
                        f"est. {batch * torch_b1:.1f} s per call > {cfg.max_batch_s} s budget",
                    )
                    continue
                run_case(pt, "torch", "fp16", batch)


def time_unsharp(params: Any, cfg: SpeedConfig, log: Log, res: SpeedResults) -> None:
    """The unsharp-mask baseline on a 1080p BGR frame (OpenCV, per channel: no colour conversion needed)."""
    from .baselines import unsharp_mask

    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    amount, sigma, threshold = params.args
    amount = amount if amount > 0 else 1.0  # an identity setting would time a copy
    samples = measure(
        lambda: unsharp_mask(frame, amount, sigma, threshold),
        budget_s=cfg.budget_s,
        warmup=cfg.warmup,
        min_iters=cfg.min_iters,
        max_iters=cfg.max_iters,
    )
    stats = latency_stats(samples, 1)
    import cv2

    res.rows.append(
        {
            "model": "unsharp mask",
            "weights": "n/a",
            "student": "",
            "params": 0,
            "gmac": None,
            "backend": f"opencv {cv2.__version__} ({cv2.getNumThreads()} threads)",
            "precision": "uint8",
            "batch": 1,
            "mode": "end_to_end",
            **stats,
            "runner": "benchmarks.baselines.unsharp_mask",
            "device": "cpu",
            "memory": "host only (no device copies)",
            "clock": "host perf_counter",
            "unsharp": {"amount": amount, "sigma": sigma, "threshold": threshold},
        }
    )
    log(
        f"  {'unsharp mask':<18} opencv      uint8 b1 end_to_end {stats['fps']:8.2f} fps  p50 {stats['p50_ms']:8.1f} ms"
    )


def time_teacher(teacher: Any, cfg: SpeedConfig, log: Log, res: SpeedResults) -> None:
    """Teacher latency on one ``teacher_crop`` window (1080p does not fit a CPU time budget)."""
    crop = cfg.teacher_crop or 256
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8)
    fn = teacher.teacher  # the raw teacher: timing must not hit the cache
    samples = measure(lambda: fn(x), budget_s=0.0, warmup=1, min_iters=2, max_iters=2)
    stats = latency_stats(samples, 1)
    per_pixel = stats["mean_ms"] / (crop * crop)
    res.teacher = {
        "model": "teacher (MAXIM-3S)",
        "input": f"{crop}x{crop}",
        **stats,
        "est_1080p_s_linear": per_pixel * 1080 * 1920 / 1e3,
        "note": "measured on a crop; the 1080p figure is a linear-in-pixels estimate, not a measurement",
    }
    log(f"  teacher MAXIM-3S {crop}x{crop}: {stats['mean_ms'] / 1e3:.1f} s per call (n={stats['n']})")


#: (width, height) timed per model by :func:`time_sizes`; quick runs drop 4K.
FRAME_SIZES = ((1280, 720), (1920, 1080), (3840, 2160))


def time_sizes(
    specs: Sequence[Any], cfg: SpeedConfig, log: Log, res: SpeedResults, quick: bool = False
) -> None:
    """End-to-end ``Sharpener.process`` fps per frame size for each model's dynamic-size ONNX on onnxruntime
    CPU, with the ratio to the 1080p rate (a dynamic model costs what its frame costs; fixed-size ONNX would
    pad every frame to its size and are skipped)."""
    from trt_engine import Sharpener
    from trt_engine.meta import read_meta

    sizes = FRAME_SIZES[:2] if quick else FRAME_SIZES
    rng = np.random.default_rng(0)
    for spec in specs:
        if spec.onnx is None:
            continue
        try:
            if read_meta(spec.onnx).fixed_size:
                res.skipped.append(
                    {"model": spec.label, "backend": "onnxruntime", "precision": "fp32", "batch": "1",
                     "why": "frame sizes: fixed-size ONNX (re-export with kd-export, dynamic by default)"}
                )  # fmt: skip
                continue
            rows: list[dict[str, Any]] = []
            with Sharpener(spec.onnx, device=None) as sharpener:
                for w, h in sizes:
                    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                    probe = host_timer(lambda f=frame: sharpener.process(f))
                    if probe > cfg.max_call_s and rows:
                        log(f"  sizes {spec.label}: {w}x{h} skipped (first call {probe:.1f} s)")
                        break
                    samples = measure(
                        lambda f=frame: sharpener.process(f),
                        budget_s=cfg.budget_s,
                        warmup=max(0, cfg.warmup - 1),
                        min_iters=cfg.min_iters,
                        max_iters=cfg.max_iters,
                    )
                    stats = latency_stats(samples, 1)
                    rows.append({"model": spec.label, "backend": "onnxruntime", "device": "cpu",
                                 "size": f"{w}x{h}", "pixels": w * h, **stats})  # fmt: skip
            ref = next((r["fps"] for r in rows if r["size"] == "1920x1080"), None)
            for r in rows:
                r["vs_1080p"] = r["fps"] / ref if ref else None
                log(
                    f"  sizes {spec.label} {r['size']}: {r['fps']:.1f} fps (x{r['vs_1080p'] or 0:.2f} vs 1080p)"
                )
            res.sizes += rows
        except Exception as exc:
            res.errors.append(f"frame sizes {spec.label}: {type(exc).__name__}: {exc}")


def run_speed(
    specs: Sequence[Any],
    cfg: SpeedConfig,
    calib: Sequence[np.ndarray],
    unsharp: Any,
    log: Log,
    teacher: Any = None,
    quick: bool = False,
) -> SpeedResults:
    res = SpeedResults()
    log(
        f"speed: {len(specs)} model(s), batches {list(cfg.batches)}, precisions {list(cfg.precisions)}, "
        f"budget {cfg.budget_s} s per case, device {cfg.device}"
    )
    try:
        time_unsharp(unsharp, cfg, log, res)
    except Exception as exc:
        res.errors.append(f"unsharp mask timing: {type(exc).__name__}: {exc}")
    for spec in specs:
        time_model(spec, cfg, calib, log, res)
    time_sizes(specs, cfg, log, res, quick=quick)
    if teacher is not None:
        try:
            time_teacher(teacher, cfg, log, res)
        except Exception as exc:
            res.errors.append(f"teacher timing: {type(exc).__name__}: {exc}")
    return res


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
