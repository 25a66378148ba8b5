"""sharpen-bench's test-split quality section: the model card's numbers for the students it benchmarks.

Everything is computed with :mod:`benchmarks.test_split`, the one scorer the model card uses: the pool's held-out
``test/`` split (``kd-data photos``) at the frames' own sizes, every test family of :mod:`kd_trainer.chain`, the
same degraded-frame cache, the same tuned unsharp masks (:func:`~benchmarks.test_split.tune_baselines`, same
defaults), the same :func:`~benchmarks.test_split.score` and :func:`~benchmarks.test_split.targets`. Run on the same
frames with the same checkpoint, ``python -m benchmarks.model_card`` reports identical per-family numbers
(``tests/test_bench_split_quality.py`` checks this).

How a student runs (said per student in the report):

* a ``.pt`` checkpoint (the shipped ``fast``/``quality`` have one): PyTorch fp32 on the CPU through
  :func:`kd_trainer.evaluate.torch_restorer`, exactly as the model card runs it;
* an ``.onnx`` alone: through the SDK's ``trt_engine.Sharpener`` when the ONNX takes any frame size (each test
  frame then runs at its own size); a fixed-size ONNX (e.g. a 1080p export) would pad or refuse the test frames,
  so its matching checkpoint (same name, ``.pt``, beside it) runs instead; without one the student is not scored;
* a TensorRT engine (fixed size) and random-weight registry students are not scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError

Log = Callable[[str], None]

TITLE = "Quality on the held-out test split (the model card's scorer)"
LEGACY_TITLE = "Quality: v1 presets on evaluation frames (legacy)"
PLOT_FILE = "test_split.png"
TORCH_HOW = "PyTorch fp32 checkpoint on the CPU (`kd_trainer.evaluate.torch_restorer`, as the model card)"
#: Test frames per mode when ``--test-frames`` is not given (0 = all).
DEFAULT_FRAMES = {"default": 0, "quick": 2, "smoke": 1}


@dataclass
class SplitConfig:
    frames: int = 0  # 0 = all
    families: list[str] | None = None  # None = all of TEST_FAMILIES (those this machine can make)
    usm_crops: int = 8  # the model card's --usm-crops default
    test_dir: str | Path | None = None  # None = cache_dir()/photos/test
    val_dir: str | Path | None = None
    device: str = "cpu"  # for a size-agnostic ONNX run through the SDK

    def describe(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "families": self.families,
            "usm_crops": self.usm_crops,
            "test_dir": str(self.test_dir or ts.pool_split_dir("test")),
            "val_dir": str(self.val_dir or ts.pool_split_dir("val")),
        }


@dataclass
class StudentRun:
    label: str
    method: ts.Method | None
    how: str
    path: str = ""
    closers: list[Callable[[], None]] = field(default_factory=list)


def _torch_method(pt: Path) -> ts.Method:
    from kd_trainer.evaluate import torch_restorer
    from kd_trainer.models.student import load_student

    model, _ = load_student(pt)
    return torch_restorer(model)


def student_runs(specs: Sequence[Any], device: str = "cpu") -> list[StudentRun]:
    """How each trained student in ``specs`` (:class:`benchmarks.models.ModelSpec`) is scored; ``method`` is None
    (and ``how`` says why) for one that cannot be."""
    runs: list[StudentRun] = []
    for spec in specs:
        if not spec.trained:
            continue
        if spec.pt is not None:
            runs.append(StudentRun(spec.label, _torch_method(spec.pt), TORCH_HOW, str(spec.pt)))
            continue
        if spec.onnx is not None:
            runs.append(_onnx_run(spec.label, Path(spec.onnx), device))
            continue
        runs.append(
            StudentRun(
                spec.label,
                None,
                "not scored: a TensorRT engine has a fixed frame size and no checkpoint; pass its .pt",
                str(spec.engine or ""),
            )
        )
    return runs


def _onnx_run(label: str, onnx: Path, device: str) -> StudentRun:
    from trt_engine import Sharpener

    try:
        sharpener = Sharpener(onnx, device=device, color="rgb")
    except Exception as exc:
        return StudentRun(label, None, f"not scored: the SDK cannot load {onnx.name} ({exc})", str(onnx))
    info = sharpener.backend.info
    if not info.fixed_size:
        return StudentRun(
            label,
            sharpener.process,
            f"the ONNX through `trt_engine.Sharpener` ({info.backend}, {info.device}) at each test frame's own "
            f"size (padded to a multiple of {info.multiple})",
            str(onnx),
            [sharpener.close],
        )
    sharpener.close()
    size = f"{info.height}x{info.width}"
    pt = onnx.with_suffix(".pt")
    if pt.is_file():
        return StudentRun(
            label,
            _torch_method(pt),
            f"its checkpoint {pt.name}: {TORCH_HOW}; the ONNX is fixed at {size}, which would pad or refuse "
            "test frames of other sizes",
            str(pt),
        )
    return StudentRun(
        label,
        None,
        f"not scored: the ONNX is fixed at {size} (test frames have their own sizes) and no {pt.name} lies "
        "beside it; pass the checkpoint",
        str(onnx),
    )


def measure(specs: Sequence[Any], cfg: SplitConfig, log: Log = print) -> dict[str, Any]:
    """The section's figures (JSON-ready). A missing test split gives ``{"skipped": ..., "hint": ...}``."""
    out: dict[str, Any] = {"config": cfg.describe()}
    try:
        families, skipped = ts.available_families(cfg.families)
        frames = ts.load_test_frames(cfg.test_dir, cfg.frames or None)
    except BenchInputError as exc:
        out.update(skipped=str(exc), hint="kd-data photos")
        log(f"test split: skipped ({exc})")
        return out
    runs = student_runs(specs, cfg.device)
    try:
        sizes = sorted({f"{img.shape[1]}x{img.shape[0]}" for _, img in frames})
        log(
            f"test split: {len(frames)} frames ({', '.join(sizes)}) x {len(families)} families"
            + (f" (skipped: {', '.join(skipped)})" if skipped else "")
        )
        dset = ts.degraded_set(frames, families, progress=False)
        usm_global, usm_family = ts.tune_baselines(cfg.val_dir, families, cfg.usm_crops, progress=False)
        g = usm_global
        log(
            f"test split: unsharp masks tuned on val (global: amount {g.amount}, sigma {g.sigma}, threshold {g.threshold})"
        )
        methods = ts.baseline_methods(usm_global, usm_family)
        methods.update({r.label: r.method for r in runs if r.method is not None})
        baseline = ts.input_metrics(dset, progress=False)
        scores = {}
        for name, method in methods.items():
            scores[name] = ts.score(method, dset, baseline, progress=False)
            o = scores[name]["overall"]
            log(f"test split: {name}: mean PSNR gain {o.get('psnr_gain', float('nan')):+.3f} dB (degraded)")
    finally:
        for r in runs:
            for close in r.closers:
                close()
    students = [r.label for r in runs if r.method is not None]
    out.update(
        {
            "frames": ts.frame_list(frames, cfg.test_dir),
            "pool_frames": _pool_count(cfg.test_dir),
            "families_scored": families,
            "families_skipped": skipped,
            "call_families": ts.call_target_families(),
            "unsharp_mask": {
                "global": usm_global.to_dict(),
                "per_family": {f: p.to_dict() for f, p in usm_family.items()},
            },
            "students": {
                r.label: {"how": r.how, "path": r.path, "scored": r.method is not None} for r in runs
            },
            "scores": scores,
            "targets": {s: ts.targets(scores, s) for s in students},
        }
    )
    return out


def _pool_count(folder: str | Path | None) -> int | None:
    from kd_trainer.io import list_images

    try:
        return len(list_images(Path(folder) if folder else ts.pool_split_dir("test")))
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------ rendering
def _frames(n: int) -> str:
    return f"{n} frame" + ("" if n == 1 else "s")


def render(split: dict[str, Any] | None, why_not: str = "") -> list[str]:
    """The report's markdown lines for the section."""
    lines = [f"## {TITLE}", ""]
    if split is None:
        return lines + [f"Not run: {why_not or 'disabled'}.", ""]
    if split.get("skipped"):
        return lines + [
            f"Not measured: {split['skipped']}.",
            "",
            f"Run `{split.get('hint', 'kd-data photos')}` to build the photo pool (its `test/` split holds the "
            "held-out frames), then run sharpen-bench again. The rest of this report is unaffected.",
            "",
        ]
    fams, frames = split["families_scored"], split["frames"]
    pool = split.get("pool_frames")
    subset = f" of the {pool} in the pool" if pool and pool != len(frames) else ""
    lines += [
        "Computed with `benchmarks.test_split`, the scorer behind the model card (`docs/model_card.md`): same "
        "held-out frames, test families, degraded-frame cache, unsharp-mask tuning, scores and targets. "
        "`python -m benchmarks.model_card` on the same frames gives these very numbers"
        + (f" (this run used {_frames(len(frames))}{subset}: `--test-frames`)." if subset else "."),
        "",
        f"Frames: {_frames(len(frames))}{subset} from `{split['config']['test_dir']}` at their own sizes: "
        + ", ".join(f"{f['name']} ({f['size']})" for f in frames)
        + ".",
        "",
    ]
    if split.get("families_skipped"):
        lines += [f"Families skipped (codec missing here): {', '.join(split['families_skipped'])}.", ""]
    lines += ["| student | scored with | file |", "| --- | --- | --- |"]
    lines += [f"| {n} | {s['how']} | `{Path(s['path']).name}` |" for n, s in split["students"].items()]
    if not split["students"]:
        lines.append("| – | no trained student among the benchmarked models: baselines only | |")
    g = split["unsharp_mask"]["global"]
    lines += [
        "",
        f"Baselines: **{ts.IDENTITY}**; **{ts.USM_GLOBAL}** (amount {g['amount']}, sigma {g['sigma']}, threshold "
        f"{g['threshold']}; one setting tuned on val crops degraded by training chains); **{ts.USM_FAMILY}** "
        "(tuned on val frames of each family: "
        + "; ".join(
            f"{f} {p['amount']}/{p['sigma']}/{p['threshold']}"
            for f, p in split["unsharp_mask"]["per_family"].items()
        )
        + ", amount/sigma/threshold).",
        "",
        "PSNR (dB, capped at 100) and SSIM against the ground truth; *gain* = output minus degraded input, per "
        "frame, then averaged. On `clean` the input is the ground truth, so any change scores far below 0. "
        "*Mean (degraded)* leaves `clean` out.",
        "",
        "Mean PSNR gain (dB):",
        "",
        *ts.metric_table(split, "psnr_gain", "+.2f", "psnr_gain", "mean (degraded)"),
        "",
        "Mean SSIM gain:",
        "",
        *ts.metric_table(split, "ssim_gain", "+.4f", "ssim_gain", "mean (degraded)"),
        "",
        "Worst frame, PSNR gain (dB):",
        "",
        *ts.metric_table(split, "worst_gain", "+.2f", "worst_gain", "worst (degraded)"),
        "",
        "Worst frame per family:",
        "",
        "| method | " + " | ".join(fams) + " |",
        "| --- |" + " --- |" * len(fams),
    ]
    for name, s in split["scores"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(str(s["families"].get(f, {}).get("worst_frame", "–")) for f in fams)
            + " |"
        )
    lines += [
        "",
        "Share of frames made worse (PSNR gain < 0):",
        "",
        *ts.metric_table(split, "share_worse", ".2f", "share_worse", "mean (degraded)"),
        "",
        "Mean PSNR gain (dB) by content (people, other photos, text and screens):",
        *ts.content_tables(split),
        "",
        *ts.target_tables(split),
    ]
    lines += ["", f"Plot: `{PLOT_FILE}` (PSNR gain per degraded family and method).", ""]
    return lines


def plot(split: dict[str, Any], path: Path) -> bool:
    """Grouped bars: mean PSNR gain per degraded family (x) and method; False when there is nothing to draw."""
    if not split or not split.get("scores"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _png

    fams = [f for f in split["families_scored"] if f != ts.CLEAN_FAMILY]
    if not fams:
        return False
    methods = list(split["scores"])
    width = 0.8 / len(methods)
    x = np.arange(len(fams))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(fams) + 2), 5))
    for i, m in enumerate(methods):
        gains = [split["scores"][m]["families"].get(f, {}).get("psnr_gain", np.nan) for f in fams]
        ax.bar(x - 0.4 + width * (i + 0.5), gains, width, label=m)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(ts.CALL_GAIN_DB, color="grey", ls=":", lw=1, label=f"+{ts.CALL_GAIN_DB:g} dB call target")
    ax.set_xticks(x)
    ax.set_xticklabels(fams, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean PSNR gain over the degraded input (dB)")
    ax.set_title(
        f"Held-out test split, {len(split['frames'])} frame(s): PSNR gain per family ({ts.CLEAN_FAMILY} not shown)"
    )
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    _png(fig, path)
    plt.close(fig)
    return True
