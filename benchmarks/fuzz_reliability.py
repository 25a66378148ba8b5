"""Fuzz every file reader and parser with hypothesis; print the table of docs/reliability.md.

    python -m benchmarks.fuzz_reliability [--scale 1.0] [-o table.md]

Each target gets generated or mutated inputs; a case passes when it is either accepted (a valid result) or
refused with the documented exception type whose message names the file, within the time limit, leaving
no file behind. Anything else (another exception type, a traceback, a slow refusal, a stray file) is
counted as a failure and its first example is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@dataclass
class Result:
    target: str
    tried: str
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    behaviour: str = ""

    def row(self) -> str:
        bad = f"**{len(self.failures)}**" if self.failures else "0"
        return (
            f"| {self.target} | {self.tried} | {self.cases} | {self.refused} | {self.accepted} | {bad} | "
            f"{self.slowest * 1e3:.0f} ms | {self.behaviour} |"
        )


def _case(
    res: Result,
    work: Path,
    fn: Callable[[], object],
    expect: tuple[type[BaseException], ...],
    name: str,
    limit: float = 1.0,
) -> None:
    before = set(work.iterdir())
    t = time.perf_counter()
    try:
        fn()
        outcome = "accepted"
    except expect as exc:
        outcome = "refused"
        if name and name not in str(exc):
            res.failures.append(f"message does not name {name}: {exc}")
    except Exception as exc:  # a crash: the thing this harness exists to find
        outcome = "crash"
        res.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    elapsed = time.perf_counter() - t
    res.cases += 1
    res.slowest = max(res.slowest, elapsed)
    if outcome == "accepted":
        res.accepted += 1
    elif outcome == "refused":
        res.refused += 1
        if elapsed > limit:
            res.failures.append(f"refusal took {elapsed:.2f} s")
    stray = set(work.iterdir()) - before
    if stray and outcome != "accepted":  # an accepted run may write its output (sharpen --demo)
        res.failures.append(f"left files behind: {sorted(p.name for p in stray)}")
        for p in stray:
            p.unlink() if p.is_file() else None


def _mutate(data: bytes, draw: st.DataObject) -> bytes:
    buf = bytearray(data)
    kind = draw.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        return bytes(buf[: draw.draw(st.integers(0, max(0, len(buf) - 1)))])
    for _ in range(draw.draw(st.integers(1, 8))):
        i = draw.draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[i] ^= 1 << draw.draw(st.integers(0, 7))
        else:
            buf[i : i + 4] = draw.draw(st.binary(min_size=4, max_size=4))
    return bytes(buf)


def run(scale: float = 1.0) -> list[Result]:
    import torch

    from kd_trainer.config import ConfigError, make_config
    from kd_trainer.io import ImageReadError, read_image
    from kd_trainer.models.student import CHECKPOINT_FORMAT, CheckpointError, load_student
    from kd_trainer.testing import make_student
    from trt_engine import Sharpener
    from trt_engine.cli import sharpen_main
    from trt_engine.errors import EngineHeaderError, ModelLoadError
    from trt_engine.header import ENGINE_FORMAT, MAGIC, read_header

    def n(k: int) -> int:
        return max(3, int(k * scale))

    torch.set_num_threads(1)
    results: list[Result] = []
    root = Path(tempfile.mkdtemp(prefix="kd-fuzz-"))
    student = make_student(root / "student", name="runet-p", height=32, width=32, uint8=False)
    work = root / "work"
    work.mkdir()
    opts = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}

    # 1. .pt checkpoints: byte mutations of a real one, and crafted configs
    res = Result(".pt checkpoint", "bit flips / truncations / spliced bytes of a real student .pt")
    pt_bytes = student.pt.read_bytes()

    @settings(max_examples=n(120), **opts)
    @given(st.data())
    def pt_bytes_case(data: st.DataObject) -> None:
        p = work / "m.pt"
        p.write_bytes(_mutate(pt_bytes, data))
        _case(res, work, lambda: load_student(p), (CheckpointError,), "m.pt")
        p.unlink()

    pt_bytes_case()
    res.behaviour = "`CheckpointError` naming the file, or the intact weights load"
    results.append(res)

    res = Result(".pt checkpoint", "crafted configs: widths 1..10^6, blocks 0..10^4, 1..8 levels, any keys")
    big = st.integers(-5, 10**6)

    @settings(max_examples=n(120), **opts)
    @given(st.lists(big, min_size=0, max_size=8), st.lists(st.integers(-2, 10**4), max_size=8), big)
    def pt_config_case(widths: list[int], blocks: list[int], unshuffle: int) -> None:
        p = work / "c.pt"
        cfg = {"unshuffle": unshuffle, "widths": widths, "blocks": blocks}
        torch.save({"format": CHECKPOINT_FORMAT, "config": cfg, "state_dict": {}}, p)
        _case(res, work, lambda: load_student(p), (CheckpointError,), "c.pt")
        p.unlink()

    pt_config_case()
    res.behaviour = "`CheckpointError` naming the file, no network built (shapes checked on the meta device)"
    results.append(res)

    # 2. ONNX models: mutations of a real student graph
    res = Result(".onnx model", "bit flips / truncations / spliced bytes of a real student .onnx")
    onnx_bytes = student.onnx.read_bytes()
    frame = np.zeros((32, 32, 3), np.uint8)

    def load_and_run(p: Path) -> object:
        with Sharpener(p, threads=1) as sh:
            return sh.process(frame)

    @settings(max_examples=n(60), **opts)
    @given(st.data())
    def onnx_case(data: st.DataObject) -> None:
        p = work / "m.onnx"
        p.write_bytes(_mutate(onnx_bytes, data))
        _case(res, work, lambda: load_and_run(p), (ModelLoadError, FileNotFoundError), "m.onnx", limit=2.0)
        p.unlink()

    onnx_case()
    res.behaviour = "`ModelLoadError` naming the file, or a model that runs (a flipped weight)"
    results.append(res)

    res = Result(".onnx model", "Identity graphs declaring N x 3 x H x W up to 10^7 per side")

    @settings(max_examples=n(60), **opts)
    @given(st.integers(1, 10**4), st.integers(1, 10**7), st.integers(1, 10**7))
    def onnx_size_case(b: int, h: int, w: int) -> None:
        import onnx
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, 3, h, w])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, 3, h, w])
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        p = work / "s.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), p)
        _case(res, work, lambda: Sharpener(p, threads=1).close(), (ModelLoadError,), "s.onnx")
        p.unlink()

    onnx_size_case()
    res.behaviour = "`ModelLoadError: implausible model height ...` before any buffer; plausible sizes load"
    results.append(res)

    # 3. engine headers
    res = Result(".engine header", "random JSON metadata values, sizes up to 10^15, random prefixes")
    sizes = st.one_of(st.integers(-(10**15), 10**15), st.text(max_size=8), st.none(), st.floats())

    @settings(max_examples=n(200), **opts)
    @given(
        st.fixed_dictionaries(
            {"batch": sizes, "height": sizes, "width": sizes, "plan_size": sizes},
        ),
        st.lists(sizes, min_size=0, max_size=5),
        st.booleans(),
    )
    def engine_case(meta: dict, shape: list, good_magic: bool) -> None:
        full = {
            "format": ENGINE_FORMAT,
            "builder": "tensorrt",
            "trt_version": "10",
            "compute_capabilities": ["9.0"],
            "plan_sha256": "0" * 64,
            "io": "uint8_nhwc",
            "color": "rgb",
            "precision": "fp16",
            "inputs": [{"name": "x", "shape": shape}],
            "outputs": [{"name": "y", "shape": shape}],
            **meta,
        }
        blob = json.dumps(full).encode()
        p = work / "m.engine"
        p.write_bytes(
            struct.pack("<8sII", MAGIC if good_magic else b"KDTRTENX", 1, len(blob)) + blob + b"PLAN"
        )
        _case(res, work, lambda: read_header(p), (EngineHeaderError,), "m.engine")
        p.unlink()

    engine_case()
    res.behaviour = "`EngineHeaderError` naming the file (sizes range-checked before any allocation)"
    results.append(res)

    # 4. training configs
    res = Result(
        "training config", "random mappings over every key: ints, floats incl. NaN/inf, strings, None"
    )
    from kd_trainer.config import TrainConfig

    keys = [*TrainConfig.__dataclass_fields__, "bogus"]
    values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**7), st.floats(), st.text(max_size=6))

    @settings(max_examples=n(300), **opts)
    @given(st.dictionaries(st.sampled_from(keys), values, max_size=6))
    def config_case(data: dict) -> None:
        _case(res, work, lambda: make_config(data), (ConfigError,), "")

    config_case()
    res.behaviour = "`ConfigError` naming the key and its allowed range, before any work"
    results.append(res)

    # 5. images
    import cv2

    res = Result("images", "random bytes, truncated / bit-flipped PNG and JPEG, under 7 suffixes")
    ok_png = cv2.imencode(".png", np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3))[1].tobytes()
    ok_jpg = cv2.imencode(".jpg", np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3))[1].tobytes()

    @settings(max_examples=n(200), **opts)
    @given(st.data(), st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".tif", ".jpeg", ".tiff"]))
    def image_case(data: st.DataObject, ext: str) -> None:
        base = data.draw(st.sampled_from([ok_png, ok_jpg, b""]))
        blob = _mutate(base, data) if base else data.draw(st.binary(max_size=512))
        p = work / f"i{ext}"
        p.write_bytes(blob)
        _case(res, work, lambda: read_image(p), (ImageReadError,), p.name)
        p.unlink()

    image_case()
    res.behaviour = "`ImageReadError` naming the file, or a valid HxWx3 frame (partial JPEGs decode)"
    results.append(res)

    # 6. videos through the sharpen CLI
    import av

    res = Result("videos (`sharpen`)", "truncated / bit-flipped / spliced H.264 MP4s, full CLI run")
    clip = root / "clip.mp4"
    with av.open(str(clip), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(6):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 30 * i, np.uint8), format="rgb24")
            f.pts = i
            for pk in s.encode(f):
                out.mux(pk)
        for pk in s.encode(None):
            out.mux(pk)
    clip_bytes = clip.read_bytes()

    def cli(argv: list[str]) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = sharpen_main(argv)
        if rc not in (0, 1):
            raise RuntimeError(f"exit {rc}")
        if rc == 1:
            raise ValueError(err.getvalue().strip().splitlines()[-1])

    @settings(max_examples=n(40), **opts)
    @given(st.data())
    def video_case(data: st.DataObject) -> None:
        p = work / "v.mp4"
        p.write_bytes(_mutate(clip_bytes, data))
        o = root / "out.mp4"
        _case(
            res,
            work,
            lambda: cli([str(p), "-o", str(o), "--model", str(student.pt), "--no-progress"]),
            (ValueError,),
            "v.mp4",
            limit=5.0,
        )
        p.unlink()
        o.unlink(missing_ok=True)

    video_case()
    res.behaviour = "exit 1 with one line naming the file and no output, or every decodable frame sharpened"
    results.append(res)

    # 7. CLI arguments
    res = Result("CLI arguments", "random argv for sharpen / build-engine / kd-train / kd-export")
    from kd_trainer.cli import export_main, train_main
    from trt_engine.cli import build_engine_main

    mains = {
        "sharpen": sharpen_main,
        "build-engine": build_engine_main,
        "kd-train": train_main,
        "kd-export": export_main,
    }
    flags = [
        "-o",
        "--model",
        "--batch",
        "--crf",
        "--runs",
        "--fps",
        "--size",
        "--device",
        "--precision",
        "--height",
        "--width",
        "--opset",
        "--config",
        "--resume",
        "--inspect",
        "--demo",
        "epochs=",
        "lr=",
        "grad_clip=",
        str(work / "missing.png"),
        str(student.pt),
        "-1",
        "0",
        "1e9",
        "abc",
        "x.png",
    ]

    @settings(max_examples=n(120), **opts)
    @given(st.sampled_from(sorted(mains)), st.lists(st.sampled_from(flags), max_size=5))
    def argv_case(prog: str, argv: list[str]) -> None:
        argv = [a + "-1" if a.endswith("=") else a for a in argv]
        if prog == "kd-train" and not any("--" in a or "=" in a for a in argv):
            argv = ["--list-configs"]

        def call() -> None:
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    rc = mains[prog](argv)
            except SystemExit as exc:
                rc = exc.code
            if rc not in (0, 1, 2, 3):
                raise RuntimeError(f"{prog} {argv}: exit {rc}")
            if rc:
                raise ValueError("refused")

        _case(res, work, call, (ValueError,), "", limit=3.0)

    with contextlib.chdir(work):
        argv_case()
    res.behaviour = "exit 2 (usage) or 1 (runtime) with one line on stderr; never a traceback"
    results.append(res)
    return results


def table(results: list[Result]) -> str:
    head = (
        "| target | what was tried | cases | refused | accepted | failures | slowest case | what happens |\n"
        "|---|---|---:|---:|---:|---:|---:|---|"
    )
    return "\n".join([head, *(r.row() for r in results)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_reliability", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every target's case count")
    parser.add_argument("-o", "--output", help="also write the table here")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    results = run(args.scale)
    text = table(results)
    print(text)
    print(f"\n{sum(r.cases for r in results)} cases in {time.perf_counter() - t:.0f} s")
    for r in results:
        for f in r.failures[:3]:
            print(f"FAIL {r.target}: {f}")
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
