"""trt_engine stands alone: one-way imports, and .onnx models run with torch and the trainer unimportable."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Imported by trt_engine only inside functions that need them (the file being opened, a build, a video).
HEAVY = {
    "torch",
    "tensorrt",
    "tensorrt_rtx",
    "cuda",
    "polygraphy",
    "onnx",
    "onnxruntime",
    "skimage",
    "av",
    "tqdm",
}
#: What a runtime-only process may not import at all while running an .onnx model.
BLOCKED = ("torch", "kd_trainer", "benchmarks", "skimage", "onnx", "tensorrt", "tensorrt_rtx", "cuda")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module name, imported at module level?) for every import statement in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_trt_engine_never_imports_the_trainer_or_benchmarks() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in _modules("trt_engine")
        for name, _ in _imports(p)
        if name in ("kd_trainer", "benchmarks")
    ]
    assert not bad, bad


def test_trt_engine_imports_heavy_runtimes_only_where_needed() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {name} at module level"
        for p in _modules("trt_engine")
        for name, at_top in _imports(p)
        if at_top and name in HEAVY
    ]
    assert not bad, bad


def test_trainer_never_imports_benchmarks() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports benchmarks"
        for p in _modules("kd_trainer")
        for name, _ in _imports(p)
        if name == "benchmarks"
    ]
    assert not bad, bad


_BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None
sys.meta_path.insert(0, Blocker())
"""


def run_isolated(body: str, blocked: tuple[str, ...] = BLOCKED, timeout: float = 300) -> str:
    """Run ``body`` in a fresh interpreter where ``blocked`` modules cannot be imported; return stdout."""
    code = _BLOCKER.format(blocked=blocked) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_shipped_onnx_runs_without_torch_or_trainer(tmp_path) -> None:
    out = run_isolated(
        f"""
        import numpy as np
        from trt_engine import Sharpener
        from trt_engine.paths import shipped_student
        from PIL import Image

        rng = np.random.default_rng(0)
        with Sharpener(shipped_student("fast", ".onnx"), color="rgb") as s:
            for h, w in ((720, 1280), (1080, 1920), (2160, 3840)):
                frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                out = s.process(frame)
                assert out.shape == frame.shape and out.dtype == np.uint8, out.shape
                pil = s.process(Image.fromarray(frame))
                assert isinstance(pil, Image.Image) and pil.size == (w, h)
                assert np.array_equal(np.asarray(pil), out)
                print("ok", h, w)
        from trt_engine.errors import BackendUnavailableError
        try:
            Sharpener(shipped_student("fast", ".pt"))
            raise AssertionError("a .pt model opened without PyTorch")
        except BackendUnavailableError as exc:
            assert "PyTorch is not installed" in str(exc) and "[train]" in str(exc)
        from trt_engine.cli import sharpen_main
        assert sharpen_main(["--demo", "-o", {str(tmp_path / "demo")!r}, "--runs", "1"]) == 0
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        """
    )
    assert out.count("ok ") == 3
    assert (tmp_path / "demo" / "after.png").is_file()


def test_torch_cpu_frames_in_a_process_without_the_trainer() -> None:
    pytest.importorskip("torch")
    out = run_isolated(
        """
        import numpy as np, torch
        from trt_engine import Sharpener
        from trt_engine.paths import shipped_student

        with Sharpener(shipped_student("fast", ".onnx"), color="rgb") as s:
            for h, w in ((720, 1280), (1080, 1920)):
                frame = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8)
                out = s.process(frame)
                assert isinstance(out, torch.Tensor) and out.shape == frame.shape and out.dtype == torch.uint8
                assert np.array_equal(out.numpy(), s.process(frame.numpy()))
                print("ok", h, w)
        assert "kd_trainer" not in sys.modules
        """,
        blocked=("kd_trainer", "benchmarks"),
    )
    assert out.count("ok ") == 2


def test_strength_blends_towards_the_input() -> None:
    import numpy as np

    from trt_engine import Sharpener
    from trt_engine.paths import shipped_student

    frame = np.random.default_rng(1).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    with Sharpener(shipped_student("fast", ".onnx")) as s:
        full = s.process(frame)
        zero = s.process(frame, strength=0)
        assert np.array_equal(zero, frame) and zero is not frame
        half = s.process(frame, strength=0.5).astype(np.int16)
        expected = (frame.astype(np.float32) + full.astype(np.float32)) / 2
        assert np.abs(half - expected).max() <= 1
        assert np.array_equal(s.process_batch([frame], strength=0)[0], frame)
        for bad in (3.5, -0.1, float("nan"), True, "2"):
            with pytest.raises(ValueError, match="strength"):
                s.process(frame, strength=bad)
    with Sharpener(shipped_student("fast", ".onnx"), strength=0.0) as s:
        assert np.array_equal(s.process(frame), frame)
        assert all(np.array_equal(o, frame) for o in s.stream([frame, frame]))


def test_strength_above_one_extrapolates_the_change() -> None:
    import numpy as np

    from trt_engine import Sharpener
    from trt_engine.paths import shipped_student
    from trt_engine.sharpener import blend

    frame = np.array([[[250, 10, 100]]], dtype=np.uint8)
    sharpened = np.array([[[254, 4, 101]]], dtype=np.uint8)
    assert blend(frame, sharpened, 2.0).tolist() == [[[255, 0, 102]]]  # 258 and -2 clipped, 102 exact
    assert blend(frame, sharpened, 1.0) is sharpened

    frame = np.random.default_rng(2).integers(0, 256, (72, 128, 3), dtype=np.uint8)
    with Sharpener(shipped_student("fast", ".onnx"), strength=2.0) as s:
        full = s.process(frame, strength=1.0).astype(np.float32)
        double = s.process(frame)
        expected = np.clip(frame + 2.0 * (full - frame), 0, 255)
        assert np.abs(double - expected).max() <= 1
        assert np.abs(double.astype(np.int16) - frame).max() > np.abs(full - frame).max()  # goes further
        assert np.array_equal(s.process_batch([frame])[0], double)
        assert all(np.array_equal(o, double) for o in s.stream([frame, frame]))
        with pytest.raises(ValueError, match="strength"):
            s.strength = 4.0
        assert s.strength == 2.0


def test_metrics_match_scikit_image() -> None:
    np = pytest.importorskip("numpy")
    skm = pytest.importorskip("skimage.metrics")
    from skimage import data

    from trt_engine.degrade import degrade
    from trt_engine.metrics import psnr, ssim

    a = data.astronaut()[:200, :300]
    b = degrade(a, "call", seed=0)
    assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    assert ssim(a, b) == pytest.approx(
        skm.structural_similarity(a, b, channel_axis=-1, data_range=255), abs=1e-9
    )
    assert psnr(a, a) == float("inf") and np.isclose(ssim(a, a), 1.0)


def test_model_meta_round_trips_and_reads_shipped_files() -> None:
    from trt_engine.meta import ModelMeta, read_meta
    from trt_engine.paths import shipped_student

    for name in ("fast", "quality"):
        meta = read_meta(shipped_student(name, ".onnx"))
        assert meta.io == "float32_nchw" and meta.color == "rgb" and meta.student and meta.config
        assert not meta.fixed_size and meta.multiple > 1, "shipped ONNX are dynamic-size exports"
    meta = ModelMeta(io="uint8_nhwc", batch=4, height=None, width=None, multiple=8, metrics={"call": 1.0})
    meta.extra["source"] = "kd-export"  # unknown keys travel unchanged (strings in ONNX metadata)
    back = ModelMeta.from_dict(meta.to_strings())
    assert back == meta and ModelMeta.from_dict(meta.to_dict()) == meta


def test_every_cli_has_version_and_python_m_trt_engine_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trt_engine", "--version"], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("sharpen ")
    from benchmarks.cli import main as bench_main
    from kd_trainer.cli import export_main, train_main
    from kd_trainer.fetch import main as data_main
    from trt_engine.cli import build_engine_main, sharpen_main

    for main in (sharpen_main, build_engine_main, train_main, export_main, data_main, bench_main):
        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        sharpen_main(["--demo", "--strength", "4"])
    assert info.value.code == 2
    assert sharpen_main(["in.png", "-o", "out.png", "--model", str(ROOT / "missing.onnx")]) == 1


def test_sharpen_inspect_prints_the_contract(capsys) -> None:
    from trt_engine.cli import sharpen_main
    from trt_engine.paths import shipped_student

    assert sharpen_main(["--inspect", str(shipped_student("fast", ".onnx"))]) == 0
    out = capsys.readouterr().out
    assert "float32_nchw" in out and "multiple of 4" in out and "runet-f" in out


def test_exported_program_runs_without_the_trainer_and_checkpoints_say_what_they_need(tmp_path) -> None:
    pytest.importorskip("torch")
    from kd_trainer.cli import export_main
    from trt_engine.paths import shipped_student

    program = tmp_path / "fast_program.pt"
    args = [str(shipped_student("fast", ".pt")), "-o", str(program), "--format", "pt"]
    assert export_main([*args, "--height", "72", "--width", "128"]) == 0
    onnx, ckpt = shipped_student("fast", ".onnx"), shipped_student("fast", ".pt")
    from kd_trainer.models.student import read_checkpoint

    student = read_checkpoint(ckpt)["name"]  # the shipped fast student's registry name
    run_isolated(
        f"""
        import numpy as np
        import pytest
        from trt_engine import Sharpener
        from trt_engine.errors import BackendUnavailableError

        frame = np.random.default_rng(0).integers(0, 256, (70, 130, 3), dtype=np.uint8)
        with Sharpener({str(program)!r}) as s:
            out = s.process(frame)
            assert out.shape == frame.shape and s.info["metadata"]["student"] == {student!r}
        with Sharpener({str(onnx)!r}) as o:
            assert np.abs(out.astype(int) - o.process(frame)).max() <= 1
        with pytest.raises(BackendUnavailableError, match="needs the trainer"):
            Sharpener({str(ckpt)!r})
        assert "kd_trainer" not in sys.modules
        """,
        blocked=("kd_trainer", "benchmarks"),
    )
