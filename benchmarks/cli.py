"""``sharpen-bench``: speed and quality benchmarks at 1080p, written as a report people read.

Exit codes:
  0  everything that was asked for ran (parts skipped for documented reasons, e.g. no cached teacher
     outputs without ``--teacher``, are not failures);
  1  the report was written, but some requested part failed or its input was unusable (missing or corrupt
     models, an engine for another GPU, a frame folder without images, ...): see its "Errors" section;
  2  usage error, or the report itself could not be written;
  130 interrupted (Ctrl-C): a partial report is written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sharpen-bench",
        description="Benchmark sharpening students at 1920x1080: fps and latency per backend x precision x batch "
        "(end to end and compute only), PSNR/SSIM per degradation vs ground truth and teacher, a video "
        "flicker check; writes benchmark.md, benchmark.json, pareto.png and crops.png.",
        epilog="Exit codes: 0 all requested parts ran; 1 report written but some part failed or had unusable input "
        "(see its Errors section); 2 usage error or report not writable; 130 interrupted (partial report).",
    )
    from benchmarks import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-o", "--output", default="reports", help="output folder (default: reports/)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized run (< 2 min on 2 CPU cores): 1 frame, fewer presets and iterations",
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="registry names (random weights, speed only), 'fast'/'quality' (shipped), or .pt/.onnx/.engine "
        "paths; default: every registry student plus the shipped students that exist",
    )
    p.add_argument(
        "--teacher",
        action="store_true",
        help="run the MAXIM teacher (on --teacher-crop windows; ~5 s per 256x256 window on a CPU) and time it; "
        "without it the teacher is used only where its outputs are already cached",
    )
    p.add_argument(
        "--teacher-crop",
        type=int,
        default=256,
        metavar="PX",
        help="teacher window size in pixels (multiple of 64; 0 = full 1080p frame, ~5 min per frame on a CPU)",
    )
    p.add_argument("--no-speed", action="store_true", help="skip the timing part")
    p.add_argument(
        "--no-quality", action="store_true", help="skip both quality parts (test split and legacy)"
    )
    p.add_argument(
        "--no-test-split",
        action="store_true",
        help="skip the quality section on the held-out test split (the model card's numbers)",
    )
    p.add_argument(
        "--test-frames",
        type=int,
        metavar="N",
        help="held-out test frames for the test-split section (0 = all; default: all, quick 2, smoke 1)",
    )
    p.add_argument("--no-video", action="store_true", help="skip the video check")
    p.add_argument(
        "--no-live",
        action="store_true",
        help="skip the live row (capture-to-sink latency and sustained fps at 360p/720p/1080p, 30 fps source)",
    )
    p.add_argument(
        "--live-seconds",
        type=float,
        metavar="S",
        help="seconds of live video per frame size (default 3, quick 1.5)",
    )
    p.add_argument(
        "--frames",
        metavar="DIR",
        help="folder of evaluation frames (default: photo pool val split, bundled sample, or skimage photos)",
    )
    p.add_argument(
        "--tune-frames", metavar="DIR", help="folder of images to tune the unsharp mask and calibrate int8 on"
    )
    p.add_argument(
        "--video", metavar="PATH", help="a real clip for the video check (default: bundled, else synthetic)"
    )
    p.add_argument(
        "--num-frames", type=int, metavar="N", help="evaluation frames to use (default 3, quick 1)"
    )
    p.add_argument(
        "--presets",
        metavar="LIST",
        help="comma-separated degradation presets (default: the evaluation presets)",
    )
    p.add_argument(
        "--budget", type=float, metavar="S", help="timed seconds per speed case (default 2, quick 0.6)"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to run (auto: cuda if available)",
    )
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: tinier than --quick
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _device(choice: str) -> str:
    if choice == "cpu":
        return "cpu"
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if choice == "cuda" and not available:
        raise SystemExit("sharpen-bench: --device cuda, but no CUDA GPU is visible to PyTorch")
    return "cuda" if available else "cpu"


def default_models() -> tuple[list[str], list[str]]:
    from kd_trainer.models.student import STUDENTS
    from kd_trainer.paths import SHIPPED_STUDENTS_DIR

    from .models import SHIPPED

    names = [name for name, cfg in STUDENTS.items() if not cfg.rep]  # a rep shape runs as its plain form
    notes = []
    for s in SHIPPED:
        if (SHIPPED_STUDENTS_DIR / f"{s}.pt").is_file() or (SHIPPED_STUDENTS_DIR / f"{s}.onnx").is_file():
            names.append(s)
        else:
            notes.append(f"shipped student {s!r} not found in {SHIPPED_STUDENTS_DIR}: not benchmarked")
    return names, notes


def run(args: argparse.Namespace, argv: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Do the work; every failure is recorded in ``result['errors']``. Returns (result, crop grid)."""
    from . import frames as F
    from . import models as M
    from . import quality as Q
    from . import timing as T
    from .baselines import UnsharpParams
    from .report import machine_info

    t_start = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "default"
    device = _device(args.device)
    result: dict[str, Any] = {
        "tool": "sharpen-bench",
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": mode,
        "command": "sharpen-bench " + " ".join(shlex.quote(a) for a in argv),
        "device": device,
        "errors": [],
        "notes": [],
        "status": "running",
    }
    errors: list[str] = result["errors"]
    notes: list[str] = result["notes"]
    grid: dict[str, Any] | None = None
    try:
        result["machine"] = machine_info(device)
        qcfg = Q.quality_config(args.quick, args.smoke)
        scfg = T.speed_config(args.quick, args.smoke, device)
        if args.num_frames:
            qcfg.frames = max(1, args.num_frames)
            qcfg.seed_frames = min(qcfg.seed_frames, qcfg.frames) or 1
        if args.presets:
            qcfg.presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
        if args.budget is not None:
            scfg.budget_s = max(0.0, args.budget)
        qcfg.teacher_crop = scfg.teacher_crop = max(0, args.teacher_crop)
        if qcfg.teacher_crop % 64:
            errors.append(f"--teacher-crop {qcfg.teacher_crop} is not a multiple of 64; using 256")
            qcfg.teacher_crop = scfg.teacher_crop = 256

        # ---- models
        if args.models:
            names = list(args.models)
        else:
            names, model_notes = default_models()
            notes.extend(model_notes)
        specs, model_errors = M.resolve(names)
        errors.extend(model_errors)
        result["models"] = [s.describe() for s in specs]
        _log(
            f"sharpen-bench ({mode}): {len(specs)} model(s): {', '.join(s.label for s in specs) or 'none'}; device {device}"
        )

        # ---- frames
        frame_set = tune_set = None
        if not args.no_quality:
            try:
                frame_set = F.eval_frames(qcfg.frames, args.frames)
                _log(f"evaluation frames: {len(frame_set.frames)} from {frame_set.source} ({frame_set.kind})")
            except F.BenchInputError as exc:
                errors.append(f"evaluation frames: {exc}")
                result["quality_skipped"] = f"no usable evaluation frames ({exc})"
        try:
            tune_set = F.tuning_images(qcfg.tune_images, args.tune_frames, frame_set)
        except F.BenchInputError as exc:
            errors.append(f"tuning images: {exc}")
            if frame_set is not None:
                result["quality_skipped"] = f"no usable tuning images for the unsharp baseline ({exc})"
                frame_set = None
        calib = [
            F.fit_1080p(img) for img in (tune_set.frames if tune_set else [])[: max(1, scfg.calib_frames)]
        ]
        if not calib:
            calib = [F.fit_1080p(F._skimage_photo(F.SKIMAGE_TUNE[0]))]

        # ---- teacher
        from .teacher import BenchTeacher, TeacherUnavailable

        teacher = None
        try:
            if args.teacher:
                _log("teacher: preparing MAXIM (first use converts it, ~7 min) ...")
            teacher = BenchTeacher("run" if args.teacher else "cached")
            result["teacher"] = {
                "status": "run on windows" if args.teacher else "cached outputs only",
                **teacher.describe(),
            }
        except TeacherUnavailable as exc:
            if args.teacher:
                errors.append(f"teacher: {exc}")
            result["teacher"] = {"status": "skipped", "why": str(exc)}

        # ---- unsharp tuning (shared by speed and quality)
        tuned = None
        unsharp = UnsharpParams()
        if tune_set is not None:
            try:
                tuned = Q.tune(tune_set, qcfg, _log)
                unsharp = tuned[0]
            except Exception as exc:
                errors.append(f"unsharp tuning: {type(exc).__name__}: {exc}")
        if tuned is None:
            notes.append("the unsharp mask was not tuned; speed uses amount 1, sigma 1, threshold 0")

        # ---- speed
        if args.no_speed:
            result["speed_skipped"] = "--no-speed"
        else:
            speed = T.run_speed(
                specs,
                scfg,
                calib,
                unsharp,
                _log,
                teacher if args.teacher else None,
                quick=args.quick or args.smoke,
            )
            result["speed"] = {"config": scfg.describe(), **speed.to_dict()}
            errors.extend(speed.errors)

        # ---- live
        if args.no_live:
            result["live_skipped"] = "--no-live"
        else:
            from . import live as L

            lcfg = L.live_config(args.quick, args.smoke)
            if args.live_seconds is not None:
                lcfg.seconds = max(0.1, args.live_seconds)
            picked = L.pick_model(specs, device)
            if picked is None:
                result["live_skipped"] = "no benchmarked model has an .onnx, .pt or .engine file"
            else:
                _log(
                    f"live: {picked[0]} at {', '.join(f'{w}x{h}' for w, h in lcfg.sizes)}, "
                    f"{lcfg.seconds:g} s each at {lcfg.fps:g} fps ..."
                )
                live = L.run_live(picked[1], picked[0], calib, lcfg, _log, device)
                errors.extend(live.pop("errors"))
                result["live"] = live

        # ---- quality on the held-out test split (the model card's scorer)
        if args.no_quality or args.no_test_split:
            result["test_split_skipped"] = "--no-quality" if args.no_quality else "--no-test-split"
        else:
            from . import split_quality as SQ

            n = SQ.DEFAULT_FRAMES[mode] if args.test_frames is None else max(0, args.test_frames)
            try:
                result["test_split"] = SQ.measure(specs, SQ.SplitConfig(frames=n, device=device), _log)
            except Exception as exc:  # the rest of the report goes on
                errors.append(f"test split: {type(exc).__name__}: {exc}")
                result["test_split_skipped"] = f"failed ({type(exc).__name__}: {exc})"

        # ---- quality: v1 presets on evaluation frames (legacy)
        if args.no_quality:
            result["quality_skipped"] = "--no-quality"
        elif frame_set is not None and tune_set is not None:
            qres = Q.run_quality(
                frame_set,
                tune_set,
                specs,
                teacher,
                qcfg,
                _log,
                tuned=tuned,
                video=args.video,
                do_video=not args.no_video,
                calib=calib,
            )
            qres.teacher["window"] = (
                (
                    f"a {qcfg.teacher_crop}x{qcfg.teacher_crop} window (the most detailed region of "
                    "the ground truth)"
                )
                if qcfg.teacher_crop
                else "the full frame"
            )
            result["quality"] = {"config": qcfg.describe(), **qres.to_dict()}
            errors.extend(qres.errors)
            grid = qres.grid
            total = len(frame_set.frames) * len(qres.presets)
            scored = qres.teacher.get("windows_scored", 0)
            if teacher is not None and scored:
                result["teacher"]["status"] += (
                    f": teacher output for {scored} of {total} (frame, preset) windows"
                )
            if teacher is not None and not scored:
                result["teacher"] = {
                    "status": "skipped",
                    "why": "no cached teacher outputs for these inputs; MAXIM takes ~5 min per 1080p frame on this CPU, "
                    "so pass --teacher to compute it on 256x256 windows (~5 s each) and cache them",
                }
        elif "quality_skipped" not in result:
            result["quality_skipped"] = "no evaluation frames"
        result["status"] = "complete" if not errors else "partial: see Errors"
    except KeyboardInterrupt:
        result["status"] = "interrupted"
        errors.append("interrupted by the user (Ctrl-C): figures up to that point are reported")
    except Exception as exc:  # last resort: still write what ran
        import traceback

        result["status"] = "failed"
        errors.append(f"unexpected {type(exc).__name__}: {exc}")
        result["traceback"] = traceback.format_exc()
    result["duration_s"] = round(time.perf_counter() - t_start, 1)
    if isinstance(result.get("machine"), dict):
        from .report import _loadavg

        result["machine"]["load_avg_end"] = _loadavg()
    return result, grid


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from .report import write_report

    try:
        result, grid = run(args, argv)
    except SystemExit as exc:  # usage problems found after parsing (e.g. --device cuda without a GPU)
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    code = (
        EXIT_INTERRUPTED
        if result["status"] == "interrupted"
        else EXIT_PARTIAL
        if result["errors"]
        else EXIT_OK
    )
    result["exit_code"] = code
    try:
        written = write_report(result, args.output, grid)
    except OSError as exc:
        print(f"sharpen-bench: cannot write the report to {args.output}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result["errors"]:
        print(f"sharpen-bench: {len(result['errors'])} problem(s):", file=sys.stderr)
        for e in result["errors"]:
            print(f"  - {e}", file=sys.stderr)
    for kind, path in written.items():
        print(f"wrote {kind}: {Path(path).resolve()}")
    print(f"sharpen-bench: {result['status']} in {result['duration_s']:.0f} s (exit {code})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
