"""trt_engine stands alone: one-way imports, and .onnx models run with torch and the trainer unimportable."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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

        rng = np.random.default_rng(0)
        with Sharpener(shipped_student("fast", ".onnx"), color="rgb") as s:
            for h, w in ((720, 1280), (1080, 1920)):
                frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                out = s.process(frame)
                assert out.shape == frame.shape and out.dtype == np.uint8, out.shape
                print("ok", h, w)
        from trt_engine.cli import sharpen_main
        assert sharpen_main(["--demo", "-o", {str(tmp_path / "demo")!r}, "--runs", "1"]) == 0
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        """
    )
    assert out.count("ok ") == 2
    assert (tmp_path / "demo" / "after.png").is_file()
