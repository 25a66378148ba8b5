"""Command lines: ``build-engine`` (precision ONNX + TensorRT engine, ``--inspect``) and ``sharpen``.

Exit status: 0 success; 1 an error (message on stderr); 2 bad usage; ``build-engine`` returns 3 when it
wrote the precision ONNX but no TensorRT builder is installed to make the engine (pass ``--onnx-only`` to ask
for the ONNX alone and get 0).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine import __version__

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".flv")


# ------------------------------------------------------------------------------------------ helpers
def _progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm progress bar when tqdm is installed (extras), else a silent stand-in with the same calls."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(iterable)
    return tqdm(iterable, **kwargs)


class _NoBar:
    def __init__(self, iterable: Any = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _err(prog: str, exc: BaseException) -> int:
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (temporary-file cleanup) run on a polite kill."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------------------ build-engine
def build_engine_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build-engine",
        description="Write an fp32/fp16/int8 ONNX (precision in the graph, checked with onnxruntime) and build a "
        "strongly typed TensorRT engine with a metadata header from it.",
    )
    parser.add_argument("model", nargs="?", help="exported student .onnx (kd-export)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument(
        "-o", "--output", help="engine path (.engine/.plan); default <model>_<precision>.engine"
    )
    parser.add_argument(
        "--calib", metavar="DIR", help="folder of images for int8 calibration (every 5th held out)"
    )
    parser.add_argument(
        "--calib-preset",
        default="call",
        help="degradation applied to calibration/held-out images to make model inputs ('none': images are "
        "already model inputs, e.g. decoded call frames); default call",
    )
    parser.add_argument("--batch", type=int, help="batch size baked into the engine (default: the model's)")
    parser.add_argument(
        "--io",
        choices=("uint8", "float"),
        default="uint8",
        help="engine I/O: uint8 NHWC frames (default; 4x less PCIe traffic) or the model's float32 NCHW",
    )
    parser.add_argument(
        "--timing-cache", metavar="PATH", help="TensorRT timing cache (default: in the user cache)"
    )
    parser.add_argument("--builder", choices=("tensorrt", "tensorrt_rtx"), help="force a TensorRT flavour")
    parser.add_argument(
        "--compute-capability",
        action="append",
        metavar="X.Y",
        help="TensorRT-RTX target GPU(s), repeatable (default: TensorRT-RTX's portable set 8.0, 8.6, 8.9, 12.0+)",
    )
    parser.add_argument("--onnx-only", action="store_true", help="write the precision ONNX only")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime accuracy check")
    parser.add_argument("--inspect", metavar="ENGINE", help="print an engine's header and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)

    if args.inspect:
        from trt_engine.header import format_header, read_header

        try:
            print(format_header(read_header(args.inspect), args.inspect))
        except (ValueError, OSError) as exc:
            return _err("build-engine", exc)
        return 0
    if not args.model:
        parser.error("MODEL.onnx is required (or --inspect ENGINE)")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be >= 1")
    from trt_engine.build import EXIT_NO_BUILDER, build_engine

    model = Path(args.model)
    out = Path(args.output) if args.output else model.with_name(f"{model.stem}_{args.precision}.engine")
    try:
        with _sigterm_as_exit():
            result = build_engine(
                model,
                out,
                args.precision,
                calib_dir=args.calib,
                calib_preset=args.calib_preset,
                batch=args.batch,
                uint8_io=args.io == "uint8",
                timing_cache=args.timing_cache,
                flavour=args.builder,
                compute_capabilities=args.compute_capability,
                onnx_only=args.onnx_only,
                verify=not args.no_verify,
            )
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        return _err("build-engine", exc)
    if result.engine is None and not args.onnx_only:
        return EXIT_NO_BUILDER
    return 0


# ------------------------------------------------------------------------------------------ video I/O
def _decode_rgb(frame: Any, notes: set[str]) -> np.ndarray:
    """A decoded PyAV frame as RGB uint8, with exact BT.709 limited-range maths where the source allows it."""
    from trt_engine.degrade import yuv420_to_rgb

    h, w = frame.height, frame.width
    exact = (
        frame.format.name == "yuv420p"
        and h % 2 == 0
        and w % 2 == 0
        and frame.color_range in (0, 1)
        and (frame.colorspace == 1 or (frame.colorspace == 2 and h >= 720))
    )
    if exact:
        planes = frame.to_ndarray()
        y = planes[:h]
        u = planes[h : h + h // 4].reshape(h // 2, w // 2)
        v = planes[h + h // 4 :].reshape(h // 2, w // 2)
        return yuv420_to_rgb(y, u, v)
    notes.add(
        f"source frames are {frame.format.name} (range {frame.color_range}, matrix {frame.colorspace}); "
        "converted to RGB by FFmpeg's swscale"
    )
    return frame.to_ndarray(format="rgb24")


def _encode_frame(rgb: np.ndarray, index: int, time_base: Fraction) -> Any:
    import av

    from trt_engine.degrade import rgb_to_yuv420

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = rgb.shape[:2]
    y, u, v = rgb_to_yuv420(rgb)
    frame = av.VideoFrame.from_ndarray(
        np.concatenate([y, u.reshape(-1, w), v.reshape(-1, w)]), format="yuv420p"
    )
    frame.color_range, frame.colorspace = 1, 1  # limited range, BT.709: what rgb_to_yuv420 produced
    frame.pts, frame.time_base = index, time_base
    return frame


def sharpen_video(
    sharpener: Any,
    src: Path,
    dst: Path,
    *,
    side_by_side: bool = False,
    crf: int = 18,
    preset: str = "medium",
    progress: bool = True,
) -> dict[str, Any]:
    """Sharpen every frame of ``src`` into an H.264 ``dst`` (written to a temporary name, then renamed).

    The frame rate is kept (variable-rate sources become constant at their average rate); the first audio
    stream is copied when the output container accepts it, otherwise a notice says it was dropped.
    """
    import av

    from trt_engine.io import atomic_path

    notes: set[str] = set()
    audio_packets: deque[Any] = deque()
    with av.open(str(src)) as inp:
        if not inp.streams.video:
            raise ValueError(f"{src} has no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = Fraction(vin.average_rate or vin.guessed_rate or 30)
        time_base = 1 / rate
        total = vin.frames or None
        ain = inp.streams.audio[0] if inp.streams.audio else None
        demux = [vin] + ([ain] if ain is not None else [])

        def frames() -> Iterator[np.ndarray]:  # runs in the Sharpener's reader thread: touches only `inp`
            for packet in inp.demux(*demux):
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        audio_packets.append(packet)
                    continue
                for frame in packet.decode():  # demux ends with an empty packet that flushes the decoder
                    yield _decode_rgb(frame, notes)

        count = 0
        with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:
            vout = None
            aout = None
            if ain is not None:
                try:
                    aout = out.add_stream_from_template(ain)
                except Exception as exc:
                    notes.add(f"audio dropped: the {ain.codec_context.name} stream cannot be copied ({exc})")

            def mux_audio() -> None:
                nonlocal aout
                while audio_packets and aout is not None:
                    packet = audio_packets.popleft()
                    packet.stream = aout
                    try:
                        out.mux(packet)
                    except Exception as exc:
                        notes.add(f"audio dropped from {count} frames on: the muxer refused it ({exc})")
                        aout = None
                        audio_packets.clear()

            bar = _progress(total=total, unit="frame", desc=f"sharpen {src.name}", disable=not progress)
            source = frames()
            pairs = _with_inputs(source) if side_by_side else None
            stream_in = pairs.inputs() if pairs is not None else source
            # closing(): stop the reader thread (which uses `inp`) before `inp` is closed, even on errors
            with contextlib.closing(sharpener.stream(stream_in)) as results:
                for result in results:
                    picture = np.concatenate([pairs.pop(), result], axis=1) if pairs is not None else result
                    size = (picture.shape[1] + picture.shape[1] % 2, picture.shape[0] + picture.shape[0] % 2)
                    if vout is not None and size != (vout.width, vout.height):
                        raise ValueError(
                            f"{src} changes resolution at frame {count} ({vout.width}x{vout.height} -> "
                            f"{size[0]}x{size[1]}); one H.264 output keeps one size, so nothing was written. "
                            f"Scale it to one size first (ffmpeg -i {src.name} -vf scale={vout.width}:"
                            f"{vout.height} fixed.mp4) or cut it where the size changes"
                        )
                    if vout is None:
                        vout = out.add_stream("libx264", rate=rate)
                        vout.width, vout.height = (
                            picture.shape[1] + picture.shape[1] % 2,
                            picture.shape[0] + picture.shape[0] % 2,
                        )
                        vout.pix_fmt = "yuv420p"
                        vout.codec_context.time_base = time_base
                        vout.codec_context.color_range, vout.codec_context.colorspace = 1, 1
                        vout.codec_context.color_primaries, vout.codec_context.color_trc = 1, 1
                        vout.options = {"crf": str(crf), "preset": preset}
                    for packet in vout.encode(_encode_frame(picture, count, time_base)):
                        out.mux(packet)
                    count += 1
                    bar.update(1)
                    mux_audio()
            if vout is None:
                raise ValueError(f"{src} contains no decodable video frames")
            for packet in vout.encode(None):
                out.mux(packet)
            mux_audio()
            bar.close()
    if ain is not None and aout is None and not any(n.startswith("audio dropped") for n in notes):
        notes.add("audio dropped")
    return {
        "frames": count,
        "fps": float(rate),
        "notes": sorted(notes),
        "audio": ain is not None and aout is not None,
    }


class _with_inputs:
    """Tee a frame iterator: the Sharpener gets the frames, the side-by-side writer gets them back in order."""

    def __init__(self, source: Iterator[np.ndarray]) -> None:
        self.source = source
        self.queue: deque[np.ndarray] = deque()

    def inputs(self) -> Iterator[np.ndarray]:
        for frame in self.source:
            self.queue.append(frame)
            yield frame

    def pop(self) -> np.ndarray:
        return self.queue.popleft()


# ------------------------------------------------------------------------------------------ sharpen
def _default_model() -> Path:
    from trt_engine.paths import shipped_student

    try:
        return shipped_student("fast", ".onnx")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc}. The default model is the shipped 'fast' student; pass --model PATH (a .onnx, .engine or "
            ".pt), or train and export one with kd-train and kd-export"
        ) from None


def _side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.concatenate([before, after], axis=1)


def run_demo(
    model: Path, out_dir: Path, image: Path | None, runs: int, device: str | None, strength: float = 1.0
) -> dict[str, Any]:
    """The README's first command: degrade the bundled 1080p sample, sharpen it, time it, score it."""
    from trt_engine.degrade import degrade
    from trt_engine.io import read_image, write_image
    from trt_engine.metrics import psnr, ssim
    from trt_engine.paths import SAMPLES_DIR
    from trt_engine.sharpener import Sharpener

    path = image or SAMPLES_DIR / "sample_1080p.png"
    if not path.is_file():
        raise FileNotFoundError(f"demo ground-truth frame not found: {path} (pass --demo-image PATH)")
    gt = read_image(path)
    degraded = degrade(gt, "call", seed=0)
    with Sharpener(model, device=device, color="rgb", strength=strength) as sharpener:
        for _ in range(2):
            result = sharpener.process(degraded)
        times = []
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            result = sharpener.process(degraded)
            times.append(time.perf_counter() - t)
        info = sharpener.info
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        write_image(out_dir / "before.png", degraded),
        write_image(out_dir / "after.png", result),
        write_image(out_dir / "side_by_side.png", _side_by_side(degraded, result)),
    ]
    median = float(np.median(times))
    report = {
        "model": str(model),
        "backend": f"{info['backend']} ({info['device']}, {info['precision']})",
        "frame": f"{gt.shape[1]}x{gt.shape[0]}",
        "runs": len(times),
        "fps": 1.0 / median,
        "latency_ms_median": median * 1e3,
        "latency_ms_mean": float(np.mean(times)) * 1e3,
        "psnr_in": psnr(gt, degraded),
        "psnr_out": psnr(gt, result),
        "ssim_in": ssim(gt, degraded),
        "ssim_out": ssim(gt, result),
        "written": [str(p) for p in written],
    }
    print(f"model      {report['model']}  [{report['backend']}]")
    print(f"frame      {report['frame']} from {path}, degraded with the 'call' preset (seed 0)")
    print(
        f"speed      {report['fps']:.1f} fps end to end (median of {len(times)} runs after 2 warm-up runs: "
        f"{report['latency_ms_median']:.1f} ms/frame, mean {report['latency_ms_mean']:.1f} ms)"
    )
    print(f"PSNR       input {report['psnr_in']:.2f} dB -> output {report['psnr_out']:.2f} dB")
    print(f"SSIM       input {report['ssim_in']:.4f} -> output {report['ssim_out']:.4f}")
    for p in written:
        print(f"wrote      {p}")
    return report


def _input_kind(path: Path) -> str:
    from trt_engine.io import IMAGE_SUFFIXES

    if path.is_dir():
        return "folder"
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise ValueError(
        f"cannot tell what {path} is from its suffix {suffix!r}; images: {', '.join(IMAGE_SUFFIXES)}; "
        f"videos: {', '.join(VIDEO_SUFFIXES)}; or pass a folder"
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _overwrites_input(src: Path, dst: Path, kind: str) -> Path | None:
    """The input file (or folder) that writing to ``dst`` would replace, else None (links resolved)."""
    if kind == "folder":
        if _same_file(src, dst):
            return src
        if dst.is_dir():  # a folder linked into the input's files: any name clash would overwrite one
            from trt_engine.io import list_images

            for path in list_images(src):
                if _same_file(path, dst / path.name):
                    return path
        return None
    target = dst
    if dst.is_dir():
        target = dst / (src.name if kind == "image" else src.stem + ".mp4")
    return src if _same_file(src, target) else None


def sharpen_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sharpen",
        description="Sharpen an image, a folder of images or a video (H.264 out) with a student model.",
    )
    parser.add_argument("input", nargs="?", help="image, folder or video")
    parser.add_argument(
        "-o", "--output", help="output file or folder (for --demo: folder, default ./sharpen-demo)"
    )
    parser.add_argument(
        "--model", help="model file (.onnx, .engine/.plan, .pt); default: the shipped fast student"
    )
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:N, or tensorrt (ORT provider); default: backend's own"
    )
    parser.add_argument("--batch", type=int, help="frames per model call")
    parser.add_argument("--side-by-side", action="store_true", help="write input|output side by side")
    parser.add_argument(
        "--color",
        choices=("rgb", "bgr"),
        help="channel order the MODEL expects (default: from its metadata, else rgb); files are handled for you",
    )
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality for videos (lower is better; 18)")
    parser.add_argument("--preset", default="medium", help="x264 speed preset for videos (medium)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--demo", action="store_true", help="run the default model on the bundled sample frame"
    )
    parser.add_argument(
        "--demo-image", help="ground-truth frame for --demo (default: the bundled 1080p sample)"
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs for --demo (10)")
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="0..3: how far along the model's change to go (1: the model's output, the default; 0: the input "
        "unchanged; above 1: the change extrapolated, for sources known to be soft, see docs/sdk.md)",
    )
    parser.add_argument(
        "--inspect",
        metavar="MODEL",
        help="print a model's contract (ModelMeta: .onnx, .engine, .pt) and exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    live = parser.add_argument_group("live (docs/live.md)")
    live.add_argument(
        "--camera",
        metavar="SOURCE",
        help="sharpen live: a camera index (0), a device (/dev/video2), a URL, or a video file played in real "
        "time; sinks: --virtual-camera, --preview, -o FILE (any combination)",
    )
    live.add_argument(
        "--virtual-camera", action="store_true", help="send to a virtual camera (pyvirtualcam: extra [live])"
    )
    live.add_argument(
        "--virtual-camera-device", metavar="DEV", help="e.g. /dev/video10 (default: first free)"
    )
    live.add_argument("--preview", action="store_true", help="show the output in a window (q/Esc to quit)")
    live.add_argument("--size", metavar="WxH", help="ask the camera for this size, e.g. 1280x720")
    live.add_argument("--fps", type=float, help="ask the camera for this frame rate")
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    live.add_argument(
        "--queue", type=int, default=1, choices=(1, 2), help="frames buffered per stage (1: lowest latency)"
    )
    live.add_argument(
        "--pad-to-model",
        action="store_true",
        help="feed small frames to a fixed-size model padded (default: re-shape a convolutional ONNX to the "
        "camera size)",
    )
    args = parser.parse_args(argv)

    from trt_engine.sharpener import MAX_STRENGTH

    if not 0.0 <= args.strength <= MAX_STRENGTH:
        parser.error(f"--strength must be in [0, {MAX_STRENGTH:g}], got {args.strength}")
    if args.inspect:
        return _inspect(args.inspect, args.device)
    if args.camera is not None:
        return _live_main(parser, args)
    live_only = [f for f in ("virtual_camera", "preview", "size", "duration") if getattr(args, f)]
    if live_only:
        parser.error(f"--{live_only[0].replace('_', '-')} needs --camera SOURCE")
    if not args.demo and (not args.input or not args.output):
        parser.error("INPUT and -o OUTPUT are required (or use --demo)")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be >= 1")
    if args.runs < 1 or not 0 <= args.crf <= 51:
        parser.error(f"--runs must be >= 1 and --crf in 0..51, got {args.runs} and {args.crf}")
    try:
        model = Path(args.model) if args.model else _default_model()
        if args.demo:
            out_dir = Path(args.output or "sharpen-demo")
            image = Path(args.demo_image) if args.demo_image else None
            run_demo(model, out_dir, image, args.runs, args.device, args.strength)
            return 0
        src, dst = Path(args.input), Path(args.output)
        kind = _input_kind(src)
        clash = _overwrites_input(src, dst, kind)
        if clash is not None:
            print(
                f"sharpen: error: refusing to write over the input {clash}; choose another -o OUTPUT",
                file=sys.stderr,
            )
            return 1  # like the folder check before it (tests/test_sharpen_cli.py::test_folder)
        with _sigterm_as_exit():
            return _sharpen_files(args, model, src, dst, kind)
    except Exception as exc:  # PyAV raises its own types (av.error.*); decoder ones do not name the file
        decoding = type(exc).__module__.startswith("av") or isinstance(exc, UnicodeDecodeError)
        if decoding and args.input and str(args.input) not in str(exc):
            return _err("sharpen", ValueError(f"{args.input}: cannot decode it: {exc}"))
        if decoding or isinstance(exc, (ValueError, OSError, RuntimeError, KeyError)):
            return _err("sharpen", exc)
        raise


def _inspect(path: str, device: str | None) -> int:
    """``sharpen --inspect MODEL``: the model-file contract, read without a runtime where the file allows."""
    from trt_engine.meta import read_meta

    p = Path(path)
    try:
        if p.suffix.lower() in (".onnx", ".engine", ".plan"):
            meta = read_meta(p)
        else:
            from trt_engine.sharpener import Sharpener

            with Sharpener(p, device=device) as sharpener:
                from trt_engine.meta import ModelMeta

                meta = ModelMeta.from_dict(sharpener.info["metadata"])
        print(f"model         {p}")
        print(meta.describe())
        if p.suffix.lower() in (".engine", ".plan"):
            from trt_engine.header import format_header, read_header

            print(format_header(read_header(p)))
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        return _err("sharpen", exc)
    return 0


def _live_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``sharpen --camera SOURCE``: check the sinks' requirements first (fast), then camera, then model."""
    if args.input or args.demo or args.side_by_side or args.batch:
        parser.error("--camera takes no INPUT, --demo, --side-by-side or --batch")
    if not (args.virtual_camera or args.preview or args.output):
        parser.error("--camera needs at least one sink: --virtual-camera, --preview or -o FILE")
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            size = (w, h)
            if not (0 < w <= 16384 and 0 < h <= 16384):
                raise ValueError
        except ValueError:
            parser.error(f"--size must look like 1280x720, got {args.size!r}")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.fps is not None and not 0 < args.fps <= 1000:
        parser.error(f"--fps must be in (0, 1000], got {args.fps}")
    try:
        from trt_engine import live

        if args.virtual_camera:
            live.require_pyvirtualcam()  # before anything slow: a missing extra fails in well under a second
        if args.output and Path(args.output).suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi"):
            raise ValueError(f"recording {args.output} needs a video suffix (.mp4, .mkv, .mov or .avi)")
        model = Path(args.model) if args.model else _default_model()
        with _sigterm_as_exit(), contextlib.ExitStack() as stack:
            source = live.CaptureSource(args.camera, size=size, fps=args.fps)
            stack.callback(source.close)
            print(
                f"source: {source.name}, {source.width}x{source.height} at {source.fps:g} fps",
                file=sys.stderr,
            )
            sinks: list[Any] = []
            if args.virtual_camera:
                sinks.append(
                    live.VirtualCameraSink(
                        source.width, source.height, source.fps, args.virtual_camera_device
                    )
                )
            if args.preview:
                sinks.append(live.PreviewSink())
            if args.output:
                sinks.append(live.RecordSink(args.output, source.fps))
            sharpener = stack.enter_context(
                live.sharpener_for_frames(
                    model,
                    source.height,
                    source.width,
                    device=args.device,
                    model_color=args.color,
                    pad=args.pad_to_model,
                    log=lambda msg: print(f"notice: {msg}", file=sys.stderr),
                )
            )
            sharpener.strength = args.strength
            print(f"model: {sharpener}", file=sys.stderr)
            print(f"sinks: {', '.join(s.name for s in sinks)}; Ctrl-C stops", file=sys.stderr)
            loop = live.LiveLoop(source, sharpener.process, sinks, queue_size=args.queue)
            stats = loop.run(duration=args.duration, status=live.status_printer())
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        print(f"live: {stats.line()} (stopped by {stats.stopped_by})", file=sys.stderr)
        for sink in sinks:
            for note in getattr(sink, "notes", []):
                print(f"notice: {note}", file=sys.stderr)
            if isinstance(sink, live.RecordSink) and sink.frames:
                print(f"wrote {sink.path}: {sink.frames} frames")
        return 0
    except KeyboardInterrupt:  # before the loop started (opening the camera or the model)
        print("sharpen: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        return _err("sharpen", exc)


def _sharpen_files(args: argparse.Namespace, model: Path, src: Path, dst: Path, kind: str) -> int:
    from trt_engine.io import IMAGE_SUFFIXES, list_images, read_image, write_image
    from trt_engine.sharpener import Sharpener

    with Sharpener(
        model,
        device=args.device,
        color="rgb",
        batch=args.batch,
        model_color=args.color,
        strength=args.strength,
    ) as sharpener:
        print(f"model: {sharpener}", file=sys.stderr)
        if kind == "image":
            if dst.is_dir():
                dst = dst / src.name
            if dst.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"output {dst} needs an image suffix ({', '.join(IMAGE_SUFFIXES)})")
            rgb = read_image(src)
            out = sharpener.process(rgb)
            write_image(dst, _side_by_side(rgb, out) if args.side_by_side else out)
            print(f"wrote {dst}")
            return 0
        if kind == "folder":
            if dst.exists() and not dst.is_dir():
                raise ValueError(f"input is a folder, so the output must be a folder too; {dst} is a file")
            if dst.resolve() == src.resolve():
                raise ValueError("refusing to overwrite the input folder; choose another output folder")
            paths = list_images(src)
            if not paths:
                raise ValueError(f"no images in {src}")
            dst.mkdir(parents=True, exist_ok=True)
            for path in _progress(paths, unit="img", desc="sharpen", disable=args.no_progress):
                rgb = read_image(path)
                out = sharpener.process(rgb)
                write_image(dst / path.name, _side_by_side(rgb, out) if args.side_by_side else out)
            print(f"wrote {len(paths)} images to {dst}")
            return 0
        if dst.is_dir():
            dst = dst / (src.stem + ".mp4")
        if dst.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"output {dst} needs a video suffix (.mp4 recommended)")
        if dst.resolve() == src.resolve():
            raise ValueError("refusing to overwrite the input video; choose another output name")
        t = time.perf_counter()
        info = sharpen_video(
            sharpener,
            src,
            dst,
            side_by_side=args.side_by_side,
            crf=args.crf,
            preset=args.preset,
            progress=not args.no_progress,
        )
        elapsed = time.perf_counter() - t
        for note in info["notes"]:
            print(f"notice: {note}", file=sys.stderr)
        print(
            f"wrote {dst}: {info['frames']} frames at {info['fps']:.3f} fps"
            f"{' with audio' if info['audio'] else ''} ({info['frames'] / max(elapsed, 1e-9):.1f} frames/s)"
        )
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(sharpen_main())
