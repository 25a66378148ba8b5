"""Console scripts ``kd-train`` and ``kd-export`` (``kd-data`` lives in :mod:`kd_trainer.fetch`).

``python -m kd_trainer.cli ARGS`` is ``kd-train ARGS``; under torchrun:
``torchrun --nproc_per_node 2 -m kd_trainer.cli --config fast``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from kd_trainer import __version__

try:
    from kd_trainer.config import ConfigError
except ModuleNotFoundError as _exc:  # the runtime-only install: say which extra, not a traceback
    sys.exit(f"error: {_exc}; the trainer needs the [train] extra: pip install 'image-sharpening-kd[train]'")


def _fail(message: str, code: int = 2) -> int:
    """Print one ``error:`` line; exit code 2 for usage/configuration errors, 1 for runtime failures."""
    print(f"error: {message}", file=sys.stderr)
    return code


def list_models() -> str:
    """A table of registered students: parameters and GMAC per 1920x1080 frame."""
    from kd_trainer.models.student import STUDENTS, build_student, count_macs, count_params

    lines = [
        f"{'name':<12} {'params':>10} {'GMAC/1080p':>11} {'stem':>5}  {'widths':<16} {'blocks':<12} description"
    ]
    for name, cfg in STUDENTS.items():
        model = build_student(name)
        lines.append(
            f"{name:<12} {count_params(model):>10,} {count_macs(model) / 1e9:>11.2f} {f'/{cfg.unshuffle}':>5}  "
            f"{str(list(cfg.widths)):<16} {str(list(cfg.blocks)):<12} {cfg.detail or '-':>6}  {cfg.description}"
        )
    return "\n".join(lines)


def usage_hint() -> str:
    """What a bare ``kd-train`` needs, with the exact commands."""
    from kd_trainer.config import list_configs

    recipes = "\n".join(f"  {line}" for line in list_configs().splitlines())
    return f"""kd-train needs a recipe (--config NAME or a YAML path), key=value overrides, or --resume RUN_DIR.

Packaged recipes (kd-train --list-configs):
{recipes}

Train the shipped fast student (the plan, with downloads and time estimates, is printed before any heavy work):
  kd-data photos && kd-train --config fast
On 2 GPUs (or 2 CPU processes, gloo):
  torchrun --nproc_per_node 2 -m kd_trainer.cli --config fast batch_size=8
A one-minute CPU smoke run without a teacher:
  kd-data photos && kd-train name=smoke model=runet-p teacher=none beta=0 epochs=1 samples_per_epoch=64 crop=64 batch_size=8
Continue a stopped run:
  kd-train --resume runs/fast"""


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kd-train",
        description="Distil a Residual UNet student. Overrides are key=value pairs, e.g. model=runet-s epochs=5.",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    parser.add_argument(
        "--config",
        help="YAML config: a packaged recipe's name (fast, quality; see --list-configs) or a file path",
    )
    parser.add_argument("--list-configs", action="store_true", help="print the packaged recipes and exit")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue from the run's last.pt (with a RUN_DIR, its saved config is used)",
    )
    parser.add_argument("--list-models", action="store_true", help="print the student registry and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_intermixed_args(argv)
    if args.list_models:
        print(list_models())
        return 0
    if args.list_configs:
        from kd_trainer.config import list_configs

        print(list_configs())
        return 0
    if not (args.config or args.overrides or args.resume):
        print(usage_hint(), file=sys.stderr)
        return 2

    from kd_trainer.config import load_config, make_config
    from kd_trainer.data import DataError
    from kd_trainer.models.student import CheckpointError, read_checkpoint
    from kd_trainer.models.teachers import TeacherError
    from kd_trainer.train import train

    cfg = None
    try:
        if isinstance(args.resume, str):
            run_dir = Path(args.resume)
            saved = read_checkpoint(run_dir / "last.pt").get("train_config", {})
            saved.pop("max_steps", None)  # a pause point belongs to the paused invocation, not to the recipe
            # the run lives where it was given (it may have been moved or copied since it was saved)
            saved["out_dir"], saved["name"] = str(run_dir.parent), run_dir.name
            cfg = make_config(saved, args.overrides)
        else:
            cfg = load_config(args.config, args.overrides)
        with _terminate_as_interrupt():
            out = train(cfg, resume=bool(args.resume), progress=not args.no_progress)
    except ConfigError as exc:  # the config or the command line is wrong: usage
        return _fail(str(exc))
    except (DataError, CheckpointError, TeacherError, FileNotFoundError) as exc:  # data or files: runtime
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        run = f" {Path(cfg.out_dir) / cfg.name}" if cfg is not None else " RUN_DIR"
        print(f"\ninterrupted; continue with: kd-train --resume{run}", file=sys.stderr)
        return 130
    if out.name == "student.pt" and os.environ.get("RANK", "0") == "0":
        print(f"next: kd-export {out} -o student.onnx")
    return 0


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While training, SIGTERM (``kill``, a job scheduler) stops the run as Ctrl-C does: the run keeps its
    last.pt and says how to resume. (A run started in the background with ``&`` ignores SIGINT.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def export_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kd-export", description="Export a student checkpoint to ONNX.")
    parser.add_argument("checkpoint", help="student .pt from kd-train")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-o", "--output", required=True, help="output .onnx path")
    parser.add_argument(
        "--dynamic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic height/width, any frame size, for onnxruntime (default); --no-dynamic: the fixed "
        "--height x --width shape that build-engine needs",
    )
    parser.add_argument("--static", dest="dynamic", action="store_false", help="same as --no-dynamic")
    parser.add_argument(
        "--format",
        choices=("onnx", "pt"),
        default="onnx",
        help="onnx (default) or pt: a self-contained torch.export program that runs without the trainer",
    )
    parser.add_argument("--height", type=int, default=1080, help="fixed height (checked size when dynamic)")
    parser.add_argument("--width", type=int, default=1920, help="fixed width (checked size when dynamic)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--uint8-io", action="store_true", help="uint8 NHWC RGB input/output in the graph")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(argv)

    from kd_trainer.export import export_checkpoint, export_program
    from kd_trainer.models.student import CheckpointError

    if args.format == "pt":
        try:
            path = export_program(args.checkpoint, args.output, height=args.height, width=args.width)
        except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
            print(f"kd-export: error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {path} (torch.export program, dynamic height/width; runs without the trainer)")
        return 0
    try:
        result = export_checkpoint(
            args.checkpoint,
            args.output,
            height=args.height,
            width=args.width,
            batch=args.batch,
            uint8_io=args.uint8_io,
            dynamic=args.dynamic,
            opset=args.opset,
        )
    except (CheckpointError, ValueError) as exc:
        print(f"kd-export: error: {exc}", file=sys.stderr)
        return 1  # a runtime failure (usage errors exit 2, from argparse)
    except OSError as exc:  # an unwritable output folder, a full disk
        print(f"kd-export: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    unit = "levels" if result.io == "uint8_nhwc" else "(float, [0,1] scale)"
    print(
        f"wrote {result.path} ({result.io}, "
        f"{'dynamic height/width, multiple ' + result.metadata['multiple'] if args.dynamic else f'shape {result.shape}'}"
        "); onnx.checker ok; "
        f"onnxruntime vs torch max abs error {result.max_abs_error:.3g} {unit}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
