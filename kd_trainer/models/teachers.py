"""Teachers by name, and the on-disk cache of their outputs.

Names: ``none``, ``maxim-deblur`` (the offline MAXIM-3S ONNX made by ``kd-data teacher maxim-deblur``),
``onnx:PATH`` (any RGB image-to-image ONNX, NCHW or NHWC, values in [0,1]) and ``restormer:PATH`` (the official
``motion_deblurring.pth``). Every teacher maps an HxWx3 uint8 RGB image to one of the same shape.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from kd_trainer.io import atomic_write_bytes, sha256_file
from kd_trainer.paths import cache_subdir


class TeacherError(ValueError):
    """A teacher cannot be created or returned output of the wrong shape."""


class Teacher:
    """Base class: ``key`` identifies the teacher and its weights (used in cache keys)."""

    key: str = ""

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check(self, rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
        if out.shape != rgb.shape:
            raise TeacherError(f"teacher {self.key} returned shape {out.shape} for input {rgb.shape}")
        return out


def _pad_reflect(x: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    h, w = x.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    return x, h, w


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


class OnnxTeacher(Teacher):
    """Any image-to-image ONNX; layout detected from the input shape (channel dim of size 3)."""

    def __init__(
        self, path: str | Path, multiple: int = 8, output_name: str | None = None, threads: int = 0
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise TeacherError(f"teacher ONNX not found: {self.path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise TeacherError(f"cannot load teacher ONNX {self.path}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise TeacherError(f"{self.path}: expected a 4-D RGB image input, got {inp.name} {shape}")
        self.nhwc = shape[3] == 3 and shape[1] != 3
        names = [o.name for o in self.session.get_outputs()]
        if output_name is not None and output_name not in names:
            raise TeacherError(f"{self.path}: no output named {output_name!r}; outputs: {names}")
        self.output_name = output_name or names[0]
        self.multiple = multiple
        self.key = f"onnx:{sha256_file(self.path)[:16]}:{self.output_name}"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x, h, w = _pad_reflect(rgb.astype(np.float32) / 255.0, self.multiple)
        x = x[None] if self.nhwc else x.transpose(2, 0, 1)[None]
        (y,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x)})
        y = y[0] if self.nhwc else y[0].transpose(1, 2, 0)
        padded_hw = x.shape[1:3] if self.nhwc else x.shape[2:]
        if y.ndim != 3 or y.shape[:2] != padded_hw or y.shape[2] != 3:
            raise TeacherError(f"teacher {self.key} returned {y.shape} for padded input {x.shape}")
        return self._check(rgb, _to_u8(y[:h, :w]))


class RestormerTeacher(Teacher):
    """The official Restormer motion-deblurring checkpoint, run with PyTorch."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from kd_trainer.models.restormer import load_restormer

        self.path = Path(path)
        if not self.path.is_file():
            raise TeacherError(f"Restormer checkpoint not found: {self.path}")
        try:
            self.model = load_restormer(str(self.path)).to(device)
        except (ValueError, RuntimeError) as exc:
            raise TeacherError(str(exc)) from exc
        self.device = device
        self.torch = torch
        self.key = f"restormer:{sha256_file(self.path)[:16]}"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(self.device)
        with torch.no_grad():
            y = self.model(x)[0].permute(1, 2, 0).cpu().numpy()
        return self._check(rgb, _to_u8(y))


def student_teacher_path(value: str) -> Path:
    """The checkpoint a ``student:VALUE`` teacher loads: a shipped student or teacher assistant by name (in
    ``kd_trainer/assets/students`` or ``kd_trainer/assets/assistants``), else a path."""
    from kd_trainer.paths import ASSISTANTS_DIR, SHIPPED_STUDENTS_DIR

    if "/" not in value:
        for folder in (SHIPPED_STUDENTS_DIR, ASSISTANTS_DIR):
            if (folder / f"{value}.pt").is_file():
                return folder / f"{value}.pt"
    return Path(value)


def existing_student_path(value: str) -> Path:
    """:func:`student_teacher_path`, refusing a bare name that no shipped checkpoint has with a
    :class:`~kd_trainer.models.student.CheckpointError` that lists the shipped names."""
    path = student_teacher_path(value)
    if "/" not in value and not path.is_file():
        from kd_trainer.models.student import CheckpointError
        from kd_trainer.paths import ASSISTANTS_DIR, SHIPPED_STUDENTS_DIR

        shipped = sorted(p.stem for d in (SHIPPED_STUDENTS_DIR, ASSISTANTS_DIR) for p in d.glob("*.pt"))
        raise CheckpointError(f"no shipped student {value!r}; shipped: {', '.join(shipped)}")
    return path


def init_checkpoint_path(value: str) -> Path:
    """The checkpoint ``init_from`` names: ``student:NAME`` as in :func:`existing_student_path`, else a path."""
    from kd_trainer.models.student import CheckpointError

    kind, sep, name = value.partition(":")
    if not (sep and kind == "student"):
        return Path(value)
    try:
        return existing_student_path(name)
    except CheckpointError as exc:
        raise CheckpointError(f"init_from={value}: {exc}") from None


class StudentTeacher(Teacher):
    """A trained student checkpoint as the teacher (a *teacher assistant*: e.g. ``quality`` teaching ``fast``).

    ``student:quality`` or ``student:fast`` name a student shipped with the package, ``student:quality-m2`` a
    shipped teacher assistant (the earlier ``quality`` that the shipped ``fast`` learned from); any other value
    is a path.
    """

    def __init__(self, spec: str) -> None:
        import torch

        from kd_trainer.models.student import CheckpointError, load_student

        try:
            self.path = existing_student_path(spec)
            self.model, _ = load_student(self.path)
        except CheckpointError as exc:
            raise TeacherError(f"student teacher: {exc}") from exc
        self.torch = torch
        self.key = f"student:{sha256_file(self.path)[:16]}"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255)
        with torch.no_grad():
            y = self.model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        return self._check(rgb, _to_u8(y))


def make_teacher(spec: str) -> Teacher | None:
    """Create a teacher from its name; ``none`` gives ``None``."""
    if spec in ("", "none"):
        return None
    if spec == "maxim-deblur":
        from kd_trainer.maxim import ensure_maxim_onnx, maxim_info

        path = ensure_maxim_onnx()
        info = maxim_info()
        return OnnxTeacher(path, multiple=int(info.get("multiple", 64)), output_name=info.get("output_name"))
    kind, sep, path = spec.partition(":")
    if sep and kind == "onnx":
        return OnnxTeacher(path)
    if sep and kind == "restormer":
        return RestormerTeacher(path)
    if sep and kind == "student":
        return StudentTeacher(path)
    raise TeacherError(
        f"unknown teacher {spec!r}; use none, maxim-deblur, onnx:PATH, restormer:PATH or student:PATH|quality"
    )


class TeacherCache:
    """Teacher outputs on disk, one ``.npz`` per input, keyed by teacher key + input hash.

    Each entry stores the input hash and teacher key; a truncated, corrupt or mismatched entry is
    detected on read and recomputed. Writes are atomic.
    """

    def __init__(self, teacher: Teacher, root: str | Path | None = None) -> None:
        self.teacher = teacher
        tag = hashlib.sha256(teacher.key.encode()).hexdigest()[:16]
        self.root = Path(root) if root else cache_subdir("teacher-outputs") / tag
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def input_hash(rgb: np.ndarray) -> str:
        h = hashlib.sha256(json.dumps(rgb.shape).encode())
        h.update(np.ascontiguousarray(rgb).tobytes())
        return h.hexdigest()

    def path_for(self, rgb: np.ndarray) -> Path:
        digest = self.input_hash(rgb)
        return self.root / digest[:2] / f"{digest}.npz"

    def _read(self, path: Path, digest: str, shape: tuple[int, ...]) -> np.ndarray | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                out = data["output"]
                ok = str(data["input_sha"]) == digest and str(data["teacher"]) == self.teacher.key
        except Exception:
            return None
        return out if ok and out.shape == shape and out.dtype == np.uint8 else None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        digest = self.input_hash(rgb)
        path = self.root / digest[:2] / f"{digest}.npz"
        if path.is_file():
            cached = self._read(path, digest, rgb.shape)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        out = self.teacher(rgb)
        buf = io.BytesIO()
        np.savez(buf, output=out, input_sha=np.array(digest), teacher=np.array(self.teacher.key))
        atomic_write_bytes(path, buf.getvalue())
        return out
