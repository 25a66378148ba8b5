"""Model card for the shipped students: quality per test family on the held-out test split, beside identity and
tuned unsharp masks, the issue's targets, what distillation added, and CPU speed; every figure is measured here.

    python -m benchmarks.model_card --student fast=kd_trainer/assets/students/fast.pt \
        --student quality=kd_trainer/assets/students/quality.pt \
        --ablation fast-beta0=kd_trainer/assets/ablations/fast-beta0.pt \
        --ablation quality-beta0=kd_trainer/assets/ablations/quality-beta0.pt \
        --onnx fast=kd_trainer/assets/students/fast.onnx -o docs/model_card.md

(``docs/model_card.md`` shows the exact command each card was measured with.)

Quality comes from :mod:`benchmarks.test_split` (the one scorer): the pool's ``test/`` split (whole source
packages never used in training or checkpoint selection) at the frames' own sizes, each degraded by every test
family of :mod:`kd_trainer.chain` (pipelines with step variants training never draws). Baselines: identity; one
unsharp-mask setting tuned on val crops degraded by *training* chains; one setting per family tuned on val frames
of that family (an upper bound for a fixed filter). A student ``X`` and an ablation ``X-beta0`` (same recipe,
no teacher term) are shown side by side as a KD pair. The teacher (MAXIM, minutes per large window on a CPU) is
optional: ``--teacher-crop 256`` compares it on the most detailed window of a few frames of a few families.
``--from-json`` re-renders a previous run's card without measuring anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError, detail_crop_box
from benchmarks.report import machine_info
from kd_trainer.chain import TEST_FAMILIES
from kd_trainer.io import atomic_write_bytes


def cpu_fps(onnx_path: Path, runs: int = 20) -> dict[str, float]:
    """End-to-end ``Sharpener.process`` speed of an exported ONNX on this CPU (BGR uint8 frame in and out),
    at the model's fixed frame size, or 1920x1080 for a dynamic-size model (the shipped students)."""
    from kd_trainer.export import read_onnx_metadata
    from trt_engine import Sharpener

    meta = read_onnx_metadata(onnx_path)
    fixed = str(meta.get("height", "")).isdigit() and str(meta.get("width", "")).isdigit()
    size = (int(meta["height"]), int(meta["width"]), 3) if fixed else (1080, 1920, 3)
    frame = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    with Sharpener(onnx_path) as sharpener:
        for _ in range(3):
            sharpener.process(frame)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sharpener.process(frame)
            times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {
        "fps": 1.0 / median,
        "median_ms": 1000 * median,
        "p95_ms": 1000 * float(np.percentile(times, 95)),
        "frame": f"{size[1]}x{size[0]}",
    }


#: Train-config keys left out of a student's recorded recipe (they do not change what it learns).
RECIPE_FREE_KEYS = frozenset({"name", "out_dir", "threads", "device", "workers"})


def student_meta(path: Path, role: str = "student") -> dict[str, Any]:
    """What the card says about a checkpoint: model, size, recipe and training cost."""
    from kd_trainer.models.student import count_macs, count_params, load_student, registry_name

    model, ckpt = load_student(path)
    cfg = ckpt.get("train_config", {})
    train = ckpt.get("train", {})
    return {
        "role": role,
        "path": str(path),
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "residual_scale": ckpt.get("residual_scale", 1.0),
        "model": registry_name(model.config) or ckpt.get("name"),
        "params": count_params(model),
        "gmac_1080p": count_macs(model) / 1e9,
        "recipe": {k: v for k, v in sorted(cfg.items()) if k not in RECIPE_FREE_KEYS},
        "teacher": cfg.get("teacher"),
        "alpha": cfg.get("alpha"),
        "beta": cfg.get("beta"),
        "steps": train.get("total_steps", train.get("step")),
        "step_seconds": train.get("step_seconds", train.get("final_wall_seconds", train.get("wall_seconds"))),
        "elapsed_seconds": train.get("elapsed_seconds"),
    }


def kd_pairs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each method ``X`` that has an ablation ``X-beta0``: per-family PSNR-gain difference (X minus X-beta0),
    i.e. what the teacher term added on the test split."""
    scores = result["scores"]
    pairs = []
    for name in result.get("students", {}):
        twin = f"{name}-beta0"
        if twin not in scores or name not in scores:
            continue
        fams = [f for f in scores[name]["families"] if f in scores[twin]["families"]]
        delta = {
            f: scores[name]["families"][f]["psnr_gain"] - scores[twin]["families"][f]["psnr_gain"]
            for f in fams
        }
        degraded = [delta[f] for f in fams if f != "clean"]
        pairs.append(
            {
                "student": name,
                "ablation": twin,
                "delta": delta,
                "mean": float(np.mean(degraded)) if degraded else None,
            }
        )
    return pairs


def teacher_windows(
    dset: list[ts.Degraded],
    restorers: dict[str, ts.Method],
    size: int,
    families: list[str],
    max_frames: int,
) -> dict[str, dict[str, dict[str, float]]]:
    """PSNR gain and PSNR vs the teacher on the most detailed ``size`` window of the first ``max_frames``
    frames of ``families``; the other methods run on the whole frame and are cropped to the window."""
    from kd_trainer.models.teachers import TeacherCache, make_teacher

    teacher = TeacherCache(make_teacher("maxim-deblur"))
    chosen = [d for d in dset if d.family in families and d.index < max_frames]
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    for d in tqdm(chosen, desc="teacher windows", unit="window"):
        y, x = detail_crop_box(d.gt, size)
        win = (slice(y, y + size), slice(x, x + size))
        gt, inp = np.ascontiguousarray(d.gt[win]), np.ascontiguousarray(d.degraded[win])
        t_out = teacher(inp)
        outs = {
            "teacher": t_out,
            **{n: np.ascontiguousarray(ts.pick(r, d.family)(d.degraded)[win]) for n, r in restorers.items()},
        }
        p_in = ts.capped_psnr(gt, inp)
        for name, out in outs.items():
            m = acc.setdefault(name, {}).setdefault(d.family, {"psnr_gain": [], "psnr_vs_teacher": []})
            m["psnr_gain"].append(ts.capped_psnr(gt, out) - p_in)
            m["psnr_vs_teacher"].append(ts.capped_psnr(t_out, out))
    return {
        n: {f: {k: float(np.mean(v)) for k, v in m.items()} for f, m in by.items()} for n, by in acc.items()
    }


# ------------------------------------------------------------------------------------------------ rendering
def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


def render(result: dict[str, Any]) -> str:
    """The markdown card from a result dict (see :func:`measure`)."""
    fams = result["families_scored"]
    machine = result.get("machine", {})
    lines = [
        "# Model card: shipped students",
        "",
        "Generated by `python -m benchmarks.model_card` from measurements it made itself (all numbers are in the "
        "JSON beside this file; `--from-json` re-renders it).",
        "",
    ]
    if result.get("command"):
        lines += [f"Measured with `{result['command']}`.", ""]
    lines += [
        f"Machine: {machine.get('cpu')} ({machine.get('logical_cores')} logical cores), load average at start "
        f"{machine.get('load_avg_start')}. Date: {result.get('date')}.",
        "",
        "## Students",
        "",
        "| name | role | model | params | GMAC/1080p | teacher | alpha/beta | steps | step s | elapsed s | "
        "CPU fps (ORT fp32, 1080p, end to end) |",
        "|---|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, s in result.get("students", {}).items():
        speed = result.get("speed", {}).get(name)
        lines.append(
            f"| {name} | {s.get('role', 'student')} | {s.get('model')} | {s.get('params', 0):,} | "
            f"{s.get('gmac_1080p', 0):.2f} | {s.get('teacher')} | {s.get('alpha')}/{s.get('beta')} | "
            f"{_num(s.get('steps'))} | {_num(s.get('step_seconds'))} | {_num(s.get('elapsed_seconds'))} | "
            f"{_num(speed['fps'], '.1f') if speed else '-'} |"
        )
    files = []
    for name, s in result.get("students", {}).items():
        if s.get("sha256"):
            scale = s.get("residual_scale", 1.0)
            note = f", residual scaled by {scale:g} (chosen on val)" if scale != 1.0 else ""
            files.append(f"- {name}: `{s.get('path')}`, sha256 `{s['sha256'][:16]}`{note}")
    lines += ["", *files] if files else []
    frames = result.get("frames", [])
    lines += [
        "",
        f"## Test split: {len(frames)} held-out frames",
        "",
        "Whole source packages that neither training nor checkpoint selection ever saw (`kd-data photos`, "
        "`test/` split), scored at their own sizes.",
        "",
        "| # | frame | size | source package |",
        "|---:|---|---|---|",
    ]
    for f in frames:
        lines.append(f"| {f['index']} | {f['name']} | {f['size']} | {f.get('package') or '-'} |")
    lines += [
        "",
        "## Test families",
        "",
        "Each frame is degraded by every family (`kd_trainer.chain.TEST_FAMILIES`: step variants that training "
        "never draws), seeded by (family, frame index).",
        "",
        "| family | what it does | +1 dB call target |",
        "|---|---|---|",
    ]
    call = set(result.get("call_families", []))
    for f in fams:
        info = result.get("family_info", {}).get(f, {})
        lines.append(f"| {f} | {info.get('description', '')} | {'yes' if f in call else ''} |")
    if result.get("families_skipped"):
        lines += ["", f"Skipped (codec missing on this machine): {', '.join(result['families_skipped'])}."]
    usm = result["unsharp_mask"]
    g = usm["global"]
    lines += [
        "",
        "## Baselines",
        "",
        f"- **{ts.IDENTITY}**: the degraded frame itself.",
        f"- **{ts.USM_GLOBAL}**: amount {g['amount']}, sigma {g['sigma']}, threshold {g['threshold']}; one setting "
        f"for every family, tuned by grid search on {g['pairs']} crops of the *val* split degraded by (non-clean) "
        f"training chains (PSNR {g['identity_psnr']:.2f} -> {g['psnr']:.2f} dB there). Never tuned on test frames."
        + (
            " The search kept amount 0: no single setting raised the mean PSNR of those crops, so this baseline "
            "is the identity."
            if not g["amount"]
            else ""
        ),
        f"- **{ts.USM_FAMILY}**: one setting per family, tuned on val frames degraded by that family. It knows "
        "the family, so it is an upper bound for a fixed filter rather than something a product could ship:",
        "",
        "| family | amount | sigma | threshold |",
        "|---|---:|---:|---:|",
    ]
    for f in fams:
        p = usm["per_family"].get(f)
        if p:
            lines.append(f"| {f} | {p['amount']} | {p['sigma']} | {p['threshold']} |")
    lines += [
        "",
        "## Quality per family",
        "",
        "PSNR in dB against the ground truth, capped at 100 dB for identical images. *Gain* is the method's PSNR "
        "minus the degraded input's, per frame, then averaged. For `clean` the input is the ground truth (100 dB), "
        "so its gain is PSNR(output) - 100: 0.00 for a method that leaves the frame untouched, strongly negative for "
        "any change. *Mean (degraded)* averages the degraded families (clean excluded).",
        "",
        "Degraded input, mean PSNR (dB):",
        "",
        "| | " + " | ".join(fams) + " |",
        "|---|" + "---:|" * len(fams),
    ]
    ident = result["scores"].get(ts.IDENTITY) or next(iter(result["scores"].values()))
    lines.append(
        "| input | " + " | ".join(ts.cell(ident["families"][f]["psnr_in"], ".2f") for f in fams) + " |"
    )
    lines += ["", "Mean PSNR gain (dB):", "", *ts.metric_table(result, "psnr_gain", "+.2f", "psnr_gain")]
    if "clean" in fams:
        clean = [
            f"{n} {ts.cell(s['families']['clean']['psnr'], '.2f')}"
            + (" (capped: unchanged)" if s["families"]["clean"]["psnr"] >= ts.PSNR_CAP else "")
            for n, s in result["scores"].items()
        ]
        lines += [
            "",
            "On `clean`, mean PSNR (dB) of each output against the untouched frame: "
            + "; ".join(clean)
            + ".",
        ]
    lines += ["", "Mean SSIM gain:", "", *ts.metric_table(result, "ssim_gain", "+.4f", "ssim_gain")]
    lines += [
        "",
        "Worst frame, PSNR gain (dB):",
        "",
        *ts.metric_table(result, "worst_gain", "+.2f", "worst_gain", "worst (degraded)"),
    ]
    lines += [
        "",
        "Share of frames made worse (PSNR gain < 0):",
        "",
        *ts.metric_table(result, "share_worse", ".2f", "share_worse"),
    ]
    lines += [
        "",
        "## By content",
        "",
        "Mean PSNR gain (dB) over the frames of each content kind: `people` (faces and people, what a call "
        "shows), `photo` (other photographs), `text` (scans and screens). From the same per-frame scores as above.",
        *ts.content_tables(result),
    ]
    lines += ["", "## Targets", "", *ts.target_tables(result)]
    if result.get("kd_pairs"):
        lines += [
            "",
            "## What the teacher term adds",
            "",
            "PSNR gain of each student minus its `-beta0` ablation (same recipe without the distillation term), "
            "per family, on the test split:",
            "",
            "| student | ablation | " + " | ".join(fams) + " | mean (degraded) |",
            "|---|---|" + "---:|" * (len(fams) + 1),
        ]
        for p in result["kd_pairs"]:
            cells = [ts.cell(p["delta"].get(f), "+.2f") for f in fams]
            lines.append(
                f"| {p['student']} | {p['ablation']} | "
                + " | ".join(cells)
                + f" | {ts.cell(p['mean'], '+.2f')} |"
            )
    tw = result.get("teacher_windows")
    if tw:
        tf = sorted({f for m in tw.values() for f in m})
        size = result.get("teacher_crop")
        lines += [
            "",
            f"## Against the teacher ({size}x{size} most detailed window, first {result.get('teacher_frames')} frames)",
            "",
            "PSNR gain (dB) on the window:",
            "",
            "| method | " + " | ".join(tf) + " |",
            "|---|" + "---:|" * len(tf),
        ]
        lines += [
            f"| {n} | " + " | ".join(ts.cell(m.get(f, {}).get("psnr_gain"), "+.2f") for f in tf) + " |"
            for n, m in tw.items()
        ]
        lines += ["", "PSNR (dB) against the teacher's output:", "", "| method | " + " | ".join(tf) + " |"]
        lines.append("|---|" + "---:|" * len(tf))
        lines += [
            f"| {n} | " + " | ".join(ts.cell(m.get(f, {}).get("psnr_vs_teacher"), ".2f") for f in tf) + " |"
            for n, m in tw.items()
            if n != "teacher"
        ]
    elif result.get("teacher_note"):
        lines += ["", f"Teacher: {result['teacher_note']}"]
    if result.get("timing"):
        lines += ["", "## Timing", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in result["timing"].items()]
    chains = result.get("chains", {})
    if chains:
        lines += [
            "",
            "## Chains",
            "",
            "<details><summary>The chain each family drew for each frame</summary>",
            "",
        ]
        lines += ["| family | frame | chain |", "|---|---|---|"]
        for f in fams:
            for frame, desc in chains.get(f, {}).items():
                lines.append(f"| {f} | {frame} | {desc} |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ measuring
def finish(result: dict[str, Any]) -> dict[str, Any]:
    """Derived entries (targets per student, KD pairs), recomputed from the scores."""
    result["targets"] = {
        n: ts.targets(result, n)
        for n, s in result.get("students", {}).items()
        if s.get("role", "student") == "student" and n in result["scores"]
    }
    result["kd_pairs"] = kd_pairs(result)
    return result


def _spec(value: str, flag: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise BenchInputError(f"{flag} expects NAME=PATH, got {value!r}")
    return name, Path(path)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from kd_trainer.evaluate import torch_restorer
    from kd_trainer.models.student import load_student

    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    families, skipped = ts.available_families(args.families.split(",") if args.families else None)
    frames = ts.load_test_frames(args.test_dir, args.frames or None)
    print(
        f"{len(frames)} test frames x {len(families)} families"
        + (f" (skipped: {skipped})" if skipped else "")
    )
    specs = [(*_spec(s, "--student"), "student") for s in args.student]
    specs += [(*_spec(s, "--ablation"), "ablation") for s in args.ablation]
    students = {name: student_meta(path, role) for name, path, role in specs}

    speed = {}
    for spec in args.onnx:
        name, path = _spec(spec, "--onnx")
        t = time.perf_counter()
        speed[name] = cpu_fps(path)
        timing[f"speed {name}"] = time.perf_counter() - t
        print(f"{name}: {speed[name]['fps']:.1f} fps on this CPU")

    dset = ts.degraded_set(frames, families, desc="degrading test frames")
    timing["degrade test frames"] = time.perf_counter() - t0

    t = time.perf_counter()
    usm_global, usm_family = ts.tune_baselines(args.val_dir, families, args.usm_crops)
    print(f"global unsharp mask (tuned on val crops, training chains): {usm_global}")
    timing["tune unsharp masks"] = time.perf_counter() - t

    restorers: dict[str, ts.Method] = ts.baseline_methods(usm_global, usm_family)
    for name, path, _ in specs:
        model, _ = load_student(path)
        restorers[name] = torch_restorer(model)

    t = time.perf_counter()
    baseline = ts.input_metrics(dset)
    timing["measure inputs"] = time.perf_counter() - t
    scores = {}
    for name, restorer in restorers.items():
        t = time.perf_counter()
        scores[name] = ts.score(restorer, dset, baseline, desc=f"scoring {name}")
        timing[f"score {name}"] = time.perf_counter() - t
        o = scores[name]["overall"]
        print(
            f"{name}: mean PSNR gain {o.get('psnr_gain', float('nan')):+.3f} dB over degraded families, "
            f"clean {o.get('clean_gain', float('nan')):+.2f} dB ({timing[f'score {name}']:.0f} s)"
        )

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info("cpu"),
        "test_dir": str(args.test_dir or ts.pool_split_dir("test")),
        "frames": ts.frame_list(frames, args.test_dir),
        "families_scored": families,
        "families_skipped": skipped,
        "family_info": {
            f: {
                "description": TEST_FAMILIES[f].description,
                "realistic_call": TEST_FAMILIES[f].realistic_call,
            }
            for f in families
        },
        "call_families": ts.call_target_families(),
        "chains": {f: {d.name: d.chain for d in dset if d.family == f} for f in families},
        "unsharp_mask": {
            "global": usm_global.to_dict(),
            "per_family": {f: p.to_dict() for f, p in usm_family.items()},
        },
        "students": students,
        "scores": scores,
        "speed": speed,
        "teacher_crop": args.teacher_crop,
        "teacher_frames": args.teacher_frames,
    }
    if args.teacher_crop:
        t = time.perf_counter()
        tfam = [f for f in args.teacher_families.split(",") if f in families]
        try:
            result["teacher_windows"] = teacher_windows(
                dset, restorers, args.teacher_crop, tfam, args.teacher_frames
            )
        except Exception as exc:  # the card is still useful without the teacher
            result["teacher_note"] = f"skipped ({type(exc).__name__}: {exc})"
        timing["teacher windows"] = time.perf_counter() - t
    else:
        result["teacher_note"] = "not compared in this run (`--teacher-crop 0`)."
    timing["total"] = time.perf_counter() - t0
    result["timing"] = timing
    return finish(result)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.model_card", description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", action="append", default=[], metavar="NAME=CKPT", help="a shipped student")
    ap.add_argument(
        "--ablation", action="append", default=[], metavar="NAME=CKPT", help="an ablation (e.g. fast-beta0)"
    )
    ap.add_argument("--onnx", action="append", default=[], metavar="NAME=ONNX", help="ONNX for CPU speed")
    ap.add_argument("--test-dir", default=None, help="test frames (default: the photo pool's test/ split)")
    ap.add_argument(
        "--val-dir", default=None, help="val frames for tuning the unsharp masks (default: pool val/)"
    )
    ap.add_argument("--frames", type=int, default=0, help="at most this many test frames (0 = all)")
    ap.add_argument("--families", default="", help="comma-separated test families (default: all)")
    ap.add_argument(
        "--usm-crops", type=int, default=8, help="val crops per frame for the global unsharp mask"
    )
    ap.add_argument("--teacher-crop", type=int, default=0, help="teacher window size (0 = skip the teacher)")
    ap.add_argument("--teacher-frames", type=int, default=2, help="frames per family for the teacher")
    ap.add_argument("--teacher-families", default="call-540p,mixed,motion", help="families for the teacher")
    ap.add_argument("-o", "--output", default="docs/model_card.md")
    ap.add_argument(
        "--from-json",
        metavar="JSON",
        help="re-render the card from a previous run's JSON (no measuring; e.g. after changing the layout)",
    )
    args = ap.parse_args(argv)
    try:
        if args.from_json:
            result = finish(json.loads(Path(args.from_json).read_text()))
        else:
            result = measure(args)
            words = sys.argv[1:] if argv is None else argv
            result["command"] = "python -m benchmarks.model_card " + shlex.join(words)
    except BenchInputError as exc:
        print(f"error: {exc}")
        return 2
    _write(result, Path(args.output))
    return 0


def _write(result: dict[str, Any], out: Path) -> None:
    atomic_write_bytes(out, render(result).encode())
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(result, indent=2, default=float).encode())
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    raise SystemExit(main())
