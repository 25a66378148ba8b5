"""Benchmark report: one markdown file, one JSON file with every figure, a Pareto plot and a crop grid.

Files written (each atomically) into the output folder:
- ``benchmark.md``: machine, speed, quality, seed setting, video check, what was skipped and why;
- ``benchmark.json``: the same figures and more (per-frame rows), non-finite numbers as ``null``;
- ``pareto.png``: fps (log) vs mean PSNR over presets, students x precisions and the unsharp baseline;
- ``crops.png``: before/after crops (ground truth, degraded input, baselines, students, teacher).
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kd_trainer.io import atomic_write_bytes

FILES = {
    "markdown": "benchmark.md",
    "json": "benchmark.json",
    "pareto": "pareto.png",
    "crops": "crops.png",
    "test_split": "test_split.png",
}
LIBRARIES = (
    "image-sharpening-kd",
    "numpy",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python-headless",
    "opencv-python",
    "scikit-image",
    "av",
    "polygraphy",
    "tensorrt",
    "tensorrt-rtx-cu13",
    "tensorrt_rtx_cu13",
    "cuda-python",
    "matplotlib",
)


# ------------------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model and cores, memory, GPU (only queried when ``device`` is CUDA or torch already saw one),
    library versions, thread settings and the git commit of the working tree."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_start": _loadavg(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info["libraries"] = versions
    info["gpu"] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
            }
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    try:
        import cv2

        info["opencv_threads"] = cv2.getNumThreads()
    except ImportError:
        pass
    info["git_commit"] = _git_commit()
    return info


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _git_commit() -> str | None:
    """The checked-out commit, read from ``.git`` files (no git process)."""
    root = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = root / ref
            if ref_file.is_file():
                return ref_file.read_text().strip()[:12]
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0][:12]
            return None
        return head[:12]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------ JSON
def sanitize(obj: Any) -> Any:
    """Make ``obj`` strict-JSON-serialisable: non-finite floats become None, numpy scalars Python ones."""
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return sanitize(obj.tolist())
    return obj


# ------------------------------------------------------------------------------------------ markdown helpers
def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.{digits}f}"
    return str(x)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _speed_section(speed: dict[str, Any]) -> list[str]:
    lines = ["## Speed (1920x1080)", ""]
    rows = speed.get("rows") or []
    cfg = speed.get("config") or {}
    lines.append(
        f"Per case: {cfg.get('warmup', '?')} warm-up call(s), then at least {cfg.get('min_iters', '?')} timed calls and "
        f"more until {cfg.get('budget_s', '?')} s of timed work. Latency is per call (one batch); fps counts frames. "
        "*End to end*: host uint8 BGR frame(s) in, host frame(s) out (colour conversion, padding, I/O copies); "
        "*compute*: the model runtime only, on input already converted; *stream*: `Sharpener.stream` over "
        f"{cfg.get('stream_frames', '?')} frames with its stages overlapped, latency per frame (pass time / "
        "frames). `n` = timed calls: p99 of fewer than 100 calls is close to the maximum."
    )
    lines.append("")
    if rows:
        if any(r.get("weights", "").startswith("random") for r in rows):
            lines += [
                "> Rows marked *random* use registry students with **random weights**: speed is representative "
                "(same graph and shapes), quality is not measured for them.",
                "",
            ]
        table_rows = []
        for r in rows:
            weights = "random" if str(r.get("weights", "")).startswith("random") else r.get("weights", "")
            table_rows.append(
                [
                    r["model"],
                    weights,
                    _fmt(r.get("params"), 0) if r.get("params") is not None else "–",
                    _fmt(r.get("gmac"), 1),
                    r["backend"],
                    r["precision"],
                    r["batch"],
                    r["mode"].replace("_", " "),
                    _fmt(r["fps"], 1),
                    _fmt(r["p50_ms"], 1),
                    _fmt(r["p95_ms"], 1),
                    _fmt(r["p99_ms"], 1),
                    f"{r['n']}*" if r.get("note") else r["n"],
                    r.get("memory", ""),
                ]
            )
        lines += _table(
            [
                "model",
                "weights",
                "params",
                "GMAC",
                "backend",
                "precision",
                "batch",
                "mode",
                "fps",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "n",
                "host memory",
            ],
            table_rows,
            "lllrllrlrrrrrl",
        )
        lines.append("")
        starred = [r for r in rows if r.get("note")]
        if starred:
            lines += [
                f"- \\* {r['model']} {r['backend']} {r['precision']} b{r['batch']}: {r['note']}"
                for r in starred
            ]
            lines.append("")
        tools = sorted({r["precision_tool"] for r in rows if r.get("precision_tool")})
        if tools:
            lines += ["fp16/int8 ONNX made by: " + "; ".join(tools) + ".", ""]
        unsharp = next((r for r in rows if r["model"] == "unsharp mask"), None)
        if unsharp:
            lines.append(
                f"**What the learned model costs over a filter**: the unsharp mask takes "
                f"{unsharp['ms_per_frame']:.1f} ms per 1080p frame ({unsharp['fps']:.0f} fps) on this machine; "
                "per student (onnxruntime fp32, batch 1, end to end):"
            )
            lines.append("")
            for r in rows:
                if (
                    r["backend"] == "onnxruntime"
                    and r["precision"] == "fp32"
                    and r["batch"] == 1
                    and r["mode"] == "end_to_end"
                ):
                    ratio = (
                        r["ms_per_frame"] / unsharp["ms_per_frame"]
                        if unsharp["ms_per_frame"]
                        else float("nan")
                    )
                    lines.append(
                        f"- {r['model']}: {r['ms_per_frame']:.1f} ms/frame, {ratio:.1f}x the filter's time"
                    )
            lines.append("")
    else:
        lines += ["No speed figures.", ""]
    sizes = speed.get("sizes") or []
    if sizes:
        lines += [
            "### Frame sizes (onnxruntime CPU, fp32, end to end)",
            "",
            "A dynamic-size ONNX computes the frame it is given (padded to its size multiple): "
            "cost follows the pixel count.",
            "",
        ]
        lines += _table(
            ["model", "frame", "fps", "p50 ms", "p95 ms", "x vs 1080p fps", "n"],
            [
                [
                    r["model"],
                    r["size"],
                    f"{r['fps']:.1f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p95_ms']:.1f}",
                    f"{r['vs_1080p']:.2f}" if r.get("vs_1080p") else "-",
                    r["n"],
                ]
                for r in sizes
            ],
        )
        lines.append("")
    teacher = speed.get("teacher")
    if teacher:
        lines += [
            f"Teacher (MAXIM-3S, onnxruntime CPU) on a {teacher['input']} crop: {teacher['mean_ms'] / 1e3:.2f} s per "
            f"call (n={teacher['n']}); a linear-in-pixels estimate for 1080p is {teacher['est_1080p_s_linear']:.0f} s "
            "per frame (not measured).",
            "",
        ]
    if speed.get("skipped"):
        lines += ["Skipped cases:", ""]
        lines += [
            f"- {s['model']} {s['backend']} {s['precision']} b{s['batch']}: {s['why']}"
            for s in speed["skipped"]
        ]
        lines.append("")
    return lines


def _live_section(live: dict[str, Any]) -> list[str]:
    cfg = live.get("config") or {}
    lines = [
        "## Live (capture -> sharpen -> sink)",
        "",
        f"`sharpen --camera` as a call uses it: a synthetic camera (photo frames played in real time at "
        f"{_fmt(cfg.get('fps'), 0)} fps) -> `{live.get('model')}` -> a null sink, {_fmt(cfg.get('seconds'), 1)} s "
        "per size, queues of one frame that drop stale frames. Latency is capture to sink per delivered frame; "
        "*kept* = frames out / frames in. *Model input* is the size the model ran at (a fixed-size convolutional "
        "ONNX is re-shaped to the camera; otherwise frames are padded to it).",
        "",
    ]
    rows = live.get("rows") or []
    if rows:
        lines += _table(
            ["size", "model input", "in fps", "out fps", "kept", "dropped", "p50 ms", "p95 ms"],
            [
                [
                    r["size"],
                    r["model_input"],
                    _fmt(r["in_fps"], 1),
                    _fmt(r["out_fps"], 1),
                    f"{100 * r['kept']:.0f}%" if r.get("kept") is not None else "–",
                    r["dropped"],
                    _fmt(r["latency_p50_ms"], 1),
                    _fmt(r["latency_p95_ms"], 1),
                ]
                for r in rows
            ],
            "llrrrrrr",
        )
        lines.append("")
    else:
        lines += ["No live figures.", ""]
    lines += [f"- {n}" for n in live.get("notes") or []]
    if live.get("notes"):
        lines.append("")
    return lines


def _quality_section(q: dict[str, Any]) -> list[str]:
    from .split_quality import LEGACY_TITLE

    lines = [f"## {LEGACY_TITLE}", ""]
    lines.append(
        "The v1 degradation presets on full 1920x1080 evaluation frames (not the held-out test split): kept for "
        "comparison with earlier reports; the section above has the model card's numbers."
    )
    lines.append("")
    frames = q.get("frames") or {}
    lines.append(
        f"Evaluation frames: {frames.get('count')} from {frames.get('source')} ({frames.get('kind')}): "
        f"{', '.join(frames.get('names') or [])}."
    )
    for note in frames.get("notes") or []:
        lines.append(f"> {note}")
    lines.append("")
    lines.append(
        "PSNR in dB and SSIM (scikit-image, RGB, data range 255) against the ground truth, averaged over "
        "frames, one figure per degradation preset (each frame degraded with seed = its index). "
        "Identical images would have infinite PSNR; means cap PSNR at 100 dB."
    )
    lines.append("")
    overall = q.get("overall") or []
    if overall:
        lines += ["### Summary (mean over presets)", ""]
        lines += _table(
            ["method", "PSNR", "SSIM", "ΔPSNR vs input", "PSNR vs teacher (windows)"],
            [
                [
                    o["method"],
                    _fmt(o["psnr"]),
                    _fmt(o["ssim"], 4),
                    _fmt(o.get("delta_psnr")),
                    _fmt(o.get("psnr_vs_teacher")),
                ]
                for o in overall
            ],
        )
        lines.append("")
    summary = q.get("summary") or []
    presets = q.get("presets") or []
    methods = list(dict.fromkeys(e["method"] for e in summary))
    if summary:
        for key, title, digits in (("psnr", "PSNR (dB) per preset", 2), ("ssim", "SSIM per preset", 4)):
            lines += [f"### {title}", ""]
            rows = []
            for m in methods:
                if m.startswith("teacher"):
                    continue
                cells = []
                for p in presets:
                    e = next((e for e in summary if e["method"] == m and e["preset"] == p), None)
                    cells.append(_fmt(e.get(key), digits) if e else "–")
                rows.append([m, *cells])
            lines += _table(["method", *presets], rows)
            lines.append("")
        teacher_entries = [
            e for e in summary if e.get("psnr_vs_teacher") is not None or e["method"].startswith("teacher")
        ]
        if teacher_entries:
            t = q.get("teacher") or {}
            lines += [
                "### Against the teacher",
                "",
                f"The teacher ran on {t.get('window', 'a window')} of each degraded frame "
                f"({t.get('windows_scored', 0)} windows); figures below compare each method's output on the same "
                "windows with the teacher's output (PSNR/SSIM vs teacher), and the teacher's and the methods' own "
                "PSNR vs ground truth on those windows.",
                "",
            ]
            rows = []
            for m in methods:
                cells = []
                for p in presets:
                    e = next((e for e in summary if e["method"] == m and e["preset"] == p), None)
                    if e is None:
                        cells.append("–")
                    elif m.startswith("teacher"):
                        cells.append(f"GT {_fmt(e.get('window_psnr'))}")
                    else:
                        cells.append(f"{_fmt(e.get('psnr_vs_teacher'))} / GT {_fmt(e.get('window_psnr'))}")
                rows.append([m, *cells])
            lines += _table(["method (PSNR vs teacher / vs GT, windows)", *presets], rows)
            lines.append("")
    tuning = q.get("tuning") or {}
    if tuning.get("global"):
        g = tuning["global"]
        imgs = tuning.get("images") or {}
        lines += [
            "### Unsharp-mask baseline",
            "",
            f"Tuned by grid search on {g.get('pairs')} crop pairs ({tuning.get('crop')} px) from "
            f"{imgs.get('count')} images of {imgs.get('source')} ({', '.join(imgs.get('names') or [])}), never "
            f"the evaluation frames; objective: {tuning.get('objective')}. Result: amount {g['amount']}, "
            f"sigma {g['sigma']}, threshold {g['threshold']} ({_fmt(g.get('identity_psnr'))} -> "
            f"{_fmt(g.get('psnr'))} dB on the tuning pairs).",
        ]
        per = tuning.get("per_preset") or {}
        if per:
            lines.append(
                "Per preset: "
                + "; ".join(f"{p}: {v['amount']}/{v['sigma']}/{v['threshold']}" for p, v in per.items())
                + " (amount/sigma/threshold)."
            )
        lines.append("")
    seed = q.get("seed_setting") or {}
    if seed.get("summary"):
        lines += [
            "### The seed's setting",
            "",
            f"{seed['setting']}. The seed reported SSIM {seed['seed_reported_ssim_pct']}% "
            "for its student (on its own, unavailable, data set).",
            "",
        ]
        lines += _table(
            ["method", "frames", "PSNR", "SSIM %"],
            [[s["method"], s["n"], _fmt(s["psnr"]), _fmt(s["ssim_pct"])] for s in seed["summary"]],
        )
        lines.append("")
    video = q.get("video") or {}
    if video.get("rows"):
        d = video.get("degradation") or {}
        lines += [
            "### Video check (temporal stability)",
            "",
            f"Clip: {video['source']}; {video['frames']} frames at {video['size']}. Degradation: `call` preset "
            f"parameters {json.dumps({k: v for k, v in d.items() if k != 'preset'})}, applied to every frame, "
            "fresh sensor noise per frame, the codec as one stream.",
            "",
            "Mean |frame(t) - frame(t-1)| of the output vs of the ground truth (levels, 0-255): a ratio above 1 "
            "means change that the truth does not have (flicker, shimmering noise); temporal error is "
            "mean |Δoutput - Δtruth|, lower is better.",
            "",
        ]
        lines += _table(
            ["method", "PSNR", "mean abs Δ out", "mean abs Δ truth", "ratio", "temporal error"],
            [
                [
                    r["method"],
                    _fmt(r["psnr"]),
                    _fmt(r["mean_abs_change"], 3),
                    _fmt(r["gt_mean_abs_change"], 3),
                    _fmt(r["change_ratio"], 3),
                    _fmt(r["temporal_error"], 3),
                ]
                for r in video["rows"]
            ],
        )
        lines.append("")
    for note in q.get("notes") or []:
        lines.append(f"- {note}")
    if q.get("notes"):
        lines.append("")
    return lines


def render_markdown(result: dict[str, Any], files: dict[str, str]) -> str:
    lines = ["# sharpen-bench report", ""]
    lines.append(
        f"- Run: {result.get('started')} ({result.get('mode')} mode, {_fmt(result.get('duration_s'), 0)} s), "
        f"command `{result.get('command')}`"
    )
    lines.append(f"- Exit status: {result.get('exit_code')} ({result.get('status')})")
    lines.append("")
    m = result.get("machine") or {}
    lines += ["## Machine", ""]
    lines.append(
        f"- CPU: {m.get('cpu')}, {m.get('logical_cores')} logical cores"
        + (f" ({m.get('physical_cores')} physical)" if m.get("physical_cores") else "")
        + (f", {m.get('memory_gb')} GB RAM" if m.get("memory_gb") else "")
    )
    gpu = m.get("gpu")
    lines.append(
        f"- GPU: {gpu['name']} (compute {gpu['compute_capability']}, {gpu['memory_gb']} GB, CUDA {gpu['cuda']})"
        if gpu
        else "- GPU: none used"
    )
    lines.append(f"- {m.get('platform')}, Python {m.get('python')}, git {m.get('git_commit')}")
    load0, load1 = m.get("load_avg_start"), m.get("load_avg_end")
    if load0 or load1:
        busy = any(v and v[0] > (m.get("logical_cores") or 1) for v in (load0, load1))
        lines.append(
            f"- Load average (1/5/15 min) at start {load0}, at end {load1}"
            + (
                ": other processes shared the CPU, so speed figures are noisier and lower than on an idle machine"
                if busy
                else ""
            )
        )
    libs = m.get("libraries") or {}
    lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    lines.append(
        f"- Threads: torch {m.get('torch_threads')}, OpenCV {m.get('opencv_threads')}; onnxruntime providers "
        f"{', '.join(m.get('onnxruntime_providers') or [])}"
    )
    lines.append("")
    models = result.get("models") or []
    if models:
        lines += ["## Models", ""]
        lines += _table(
            ["model", "weights", "params", "GMAC/1080p", "config", "files"],
            [
                [
                    s["label"],
                    s["weights"],
                    s.get("params") if s.get("params") is not None else "–",
                    _fmt(s.get("gmac_1080p"), 2),
                    json.dumps(s.get("config")) if s.get("config") else "–",
                    ", ".join(Path(p).name for p in (s.get("pt"), s.get("onnx"), s.get("engine")) if p),
                ]
                for s in models
            ],
            "llrrll",
        )
        lines.append("")
    t = result.get("teacher") or {}
    lines += [f"**Teacher**: {t.get('status', 'skipped')}" + (f": {t['why']}" if t.get("why") else ""), ""]
    if result.get("speed"):
        lines += _speed_section(result["speed"])
    else:
        lines += ["## Speed", "", f"Not run: {result.get('speed_skipped', 'disabled')}.", ""]
    if result.get("live"):
        lines += _live_section(result["live"])
    else:
        lines += ["## Live", "", f"Not run: {result.get('live_skipped', 'disabled')}.", ""]
    from .split_quality import LEGACY_TITLE
    from .split_quality import render as render_test_split

    lines += render_test_split(result.get("test_split"), result.get("test_split_skipped", ""))
    if result.get("quality"):
        lines += _quality_section(result["quality"])
    else:
        lines += [f"## {LEGACY_TITLE}", "", f"Not run: {result.get('quality_skipped', 'disabled')}.", ""]
    errors = result.get("errors") or []
    lines += ["## Errors", ""]
    lines += [f"- {e}" for e in errors] if errors else ["None."]
    lines.append("")
    notes = result.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ plots
def _png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def pareto_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """(fps, PSNR) per method that has both: trained students x precision (onnxruntime, batch 1, end to end)
    and the unsharp mask."""
    speed = (result.get("speed") or {}).get("rows") or []
    overall = ((result.get("quality") or {}).get("overall")) or []
    points = []
    for o in overall:
        label = o["method"]
        if o.get("psnr") is None:
            continue
        if label.startswith("unsharp mask (tuned)"):
            row = next((r for r in speed if r["model"] == "unsharp mask"), None)
            kind = "baseline"
        else:
            row = next(
                (
                    r
                    for r in speed
                    if f"{r['model']} {r['precision']}" == label
                    and r["backend"] == "onnxruntime"
                    and r["batch"] == 1
                    and r["mode"] == "end_to_end"
                ),
                None,
            )
            kind = "student"
        if row is not None:
            points.append({"label": label, "fps": row["fps"], "psnr": o["psnr"], "kind": kind})
    return points


def pareto_front(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points not dominated in (higher fps, higher PSNR), sorted by fps."""
    front = [
        p
        for p in points
        if not any(
            (q["fps"] >= p["fps"] and q["psnr"] > p["psnr"])
            or (q["fps"] > p["fps"] and q["psnr"] >= p["psnr"])
            for q in points
        )
    ]
    return sorted(front, key=lambda p: p["fps"])


def plot_pareto(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = pareto_points(result)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    identity = next(
        (o for o in (result.get("quality") or {}).get("overall") or [] if o["method"].startswith("identity")),
        None,
    )
    if identity and identity.get("psnr") is not None:
        ax.axhline(
            identity["psnr"], color="grey", ls="--", lw=1, label=f"identity (input) {identity['psnr']:.2f} dB"
        )
    for p in points:
        marker = "s" if p["kind"] == "baseline" else "o"
        ax.scatter(p["fps"], p["psnr"], marker=marker, s=50, zorder=3)
        ax.annotate(p["label"], (p["fps"], p["psnr"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    speed_only = [
        r
        for r in (result.get("speed") or {}).get("rows") or []
        if str(r.get("weights", "")).startswith("random")
        and r["backend"] == "onnxruntime"
        and r["precision"] == "fp32"
        and r["batch"] == 1
        and r["mode"] == "end_to_end"
    ]
    for r in speed_only:
        ax.axvline(r["fps"], color="tab:green", ls=":", lw=1, alpha=0.7)
        ax.annotate(
            f"{r['model']} (random weights: speed only)",
            (r["fps"], 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(2, 0),
            textcoords="offset points",
            rotation=90,
            fontsize=7,
            color="tab:green",
            ha="left",
            va="top",
        )
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot(
            [p["fps"] for p in front], [p["psnr"] for p in front], color="tab:red", lw=1, label="Pareto front"
        )
    if points or speed_only:
        ax.set_xscale("log")
    if not points:
        ax.text(
            0.5,
            0.5,
            "no method with both a speed and a quality figure\n(no trained student, or a part was skipped)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    machine = result.get("machine") or {}
    where = (machine.get("gpu") or {}).get("name") or machine.get("cpu") or "?"
    ax.set_xlabel("fps at 1920x1080 (batch 1, end to end) — " + str(where))
    ax.set_ylabel("mean PSNR over presets (dB)")
    ax.set_title("Speed vs quality")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    _png(fig, path)
    plt.close(fig)


def plot_crops(grid: dict[str, Any], path: Path) -> bool:
    """Rows = presets, columns = ground truth, methods, teacher; returns False when there is nothing to draw."""
    cells = grid.get("cells") or {}
    if not cells:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = grid["presets"]
    columns = [c for c in grid["columns"] if any((p, c) in cells for p in presets)]
    fig, axes = plt.subplots(
        len(presets), len(columns), figsize=(2.6 * len(columns), 2.8 * len(presets)), squeeze=False
    )
    for i, p in enumerate(presets):
        for j, c in enumerate(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            img = cells.get((p, c))
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            else:
                ax.text(
                    0.5,
                    0.5,
                    "not computed",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="grey",
                    transform=ax.transAxes,
                )
            if i == 0:
                ax.set_title(c.replace(" (", "\n("), fontsize=8)
            if j == 0:
                ax.set_ylabel(p, fontsize=9)
    fig.suptitle("Before / after (1:1 crops of the first evaluation frame)", fontsize=10)
    _png(fig, path)
    plt.close(fig)
    return True


def write_report(
    result: dict[str, Any], out_dir: str | os.PathLike[str], grid: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write every report file into ``out_dir``; return ``{kind: path}`` of the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    try:
        plot_pareto(result, out / FILES["pareto"])
        written["pareto"] = out / FILES["pareto"]
    except Exception as exc:  # a plot must not cost the report
        result.setdefault("errors", []).append(f"pareto plot: {type(exc).__name__}: {exc}")
    if result.get("test_split"):
        from .split_quality import plot as plot_test_split

        try:
            if plot_test_split(result["test_split"], out / FILES["test_split"]):
                written["test_split"] = out / FILES["test_split"]
        except Exception as exc:
            result.setdefault("errors", []).append(f"test-split plot: {type(exc).__name__}: {exc}")
    if grid:
        try:
            if plot_crops(grid, out / FILES["crops"]):
                written["crops"] = out / FILES["crops"]
        except Exception as exc:
            result.setdefault("errors", []).append(f"crop grid: {type(exc).__name__}: {exc}")
    names = {k: str(v) for k, v in written.items()}
    names["json"] = str(out / FILES["json"])
    names["markdown"] = str(out / FILES["markdown"])
    result["files"] = names
    atomic_write_bytes(
        out / FILES["json"], (json.dumps(sanitize(result), indent=1, allow_nan=False) + "\n").encode()
    )
    written["json"] = out / FILES["json"]
    atomic_write_bytes(out / FILES["markdown"], render_markdown(result, names).encode())
    written["markdown"] = out / FILES["markdown"]
    return written
