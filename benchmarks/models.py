"""Which models a benchmark runs, and the ONNX files (batch and precision variants) it times.

A model spec on the command line is one of:
- a registry name (``runet-n``, ``runet-s``, ...): random weights, **speed only** (the quality of an
  untrained student says nothing; its zero-initialised tail even makes it the identity);
- ``fast`` / ``quality``: the students shipped in ``kd_trainer/assets/students`` (trained);
- a path to a trained ``.pt`` checkpoint, an ``.onnx`` export, or a TensorRT ``.engine``/``.plan``.

ONNX variants (batch N, fp16, int8) are derived from the fp32 model and cached under
``cache_dir()/bench`` keyed by the source's content hash, so a second run skips the exports.
Precision ONNX comes from ``trt_engine.precision.make_precision_onnx`` (int8 calibrated on the tuning
images, never the evaluation frames); the report records the calibration set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kd_trainer.paths import SHIPPED_STUDENTS_DIR, cache_subdir

from .frames import BenchInputError

SHIPPED = ("fast", "quality")
ENGINE_SUFFIXES = (".engine", ".plan")
RANDOM_SEED = 0


@dataclass
class ModelSpec:
    """One model to benchmark."""

    label: str
    trained: bool
    student: str = ""  # registry or checkpoint name
    config: dict[str, Any] | None = None
    pt: Path | None = None
    onnx: Path | None = None  # fp32, batch 1, 1080p (as given or exported)
    engine: Path | None = None
    params: int | None = None
    gmac: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def weights(self) -> str:
        return "trained" if self.trained else "random (speed only)"

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "weights": self.weights,
            "student": self.student,
            "config": self.config,
            "params": self.params,
            "gmac_1080p": self.gmac,
            "pt": str(self.pt) if self.pt else None,
            "onnx": str(self.onnx) if self.onnx else None,
            "engine": str(self.engine) if self.engine else None,
            "notes": self.notes,
        }


def bench_cache() -> Path:
    return cache_subdir("bench")


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            st = part.stat()
            h.update(f"{part.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def random_student(name: str):
    """A registry student with seeded random weights; the zero-initialised tail gets small random weights
    too, so the timed graph does real work end to end (speed does not depend on the values)."""
    import torch

    from kd_trainer.models.student import build_student

    torch.manual_seed(RANDOM_SEED)
    model = build_student(name)
    with torch.no_grad():
        torch.nn.init.normal_(model.tail.weight, std=1e-3)
    return model.eval()


def _fill_from_model(spec: ModelSpec, model) -> None:
    from kd_trainer.models.student import count_macs, count_params

    spec.config = model.config.to_dict()
    spec.params = count_params(model)
    spec.gmac = round(count_macs(model, 1080, 1920) / 1e9, 3)


def resolve(names: Sequence[str]) -> tuple[list[ModelSpec], list[str]]:
    """Turn command-line model names into specs; unusable names become error messages (never raise)."""
    from kd_trainer.models.student import STUDENTS

    specs: list[ModelSpec] = []
    errors: list[str] = []
    for name in names:
        try:
            if name in STUDENTS:
                spec = ModelSpec(label=name, trained=False, student=name)
                _fill_from_model(spec, random_student(name))
            elif name in SHIPPED:
                pt, onnx = SHIPPED_STUDENTS_DIR / f"{name}.pt", SHIPPED_STUDENTS_DIR / f"{name}.onnx"
                if not pt.is_file() and not onnx.is_file():
                    raise BenchInputError(
                        f"shipped student {name!r} not found ({pt.name}/{onnx.name} missing in {SHIPPED_STUDENTS_DIR}); "
                        "train and export it first, or name a checkpoint path"
                    )
                spec = _from_files(
                    f"{name} (shipped)", pt if pt.is_file() else None, onnx if onnx.is_file() else None
                )
            else:
                p = Path(name)
                if not p.exists():
                    raise BenchInputError(
                        f"model {name!r}: no such file, and not a registry student ({', '.join(STUDENTS)}) "
                        f"or a shipped one ({', '.join(SHIPPED)})"
                    )
                suffix = p.suffix.lower()
                if suffix == ".pt":
                    spec = _from_files(p.stem, p, None)
                elif suffix == ".onnx":
                    spec = _from_files(p.stem, None, p)
                elif suffix in ENGINE_SUFFIXES:
                    spec = ModelSpec(label=p.stem, trained=True, engine=p)
                else:
                    raise BenchInputError(
                        f"model {name!r}: unsupported suffix {suffix!r} (use .pt, .onnx or .engine)"
                    )
            specs.append(spec)
        except BenchInputError as exc:
            errors.append(str(exc))
        except Exception as exc:  # corrupt checkpoint or ONNX: report and go on
            errors.append(f"model {name!r} cannot be loaded: {type(exc).__name__}: {exc}")
    return specs, errors


def _from_files(label: str, pt: Path | None, onnx_path: Path | None) -> ModelSpec:
    spec = ModelSpec(label=label, trained=True, pt=pt, onnx=onnx_path)
    if pt is not None:
        from kd_trainer.models.student import load_student

        model, ckpt = load_student(pt)
        spec.student = str(ckpt.get("name") or pt.stem)
        _fill_from_model(spec, model)
    if onnx_path is not None:
        import onnx

        from kd_trainer.export import read_onnx_metadata

        onnx.checker.check_model(str(onnx_path))
        meta = read_onnx_metadata(onnx_path)
        spec.student = spec.student or meta.get("student", "")
        if spec.config is None and meta.get("config"):
            from kd_trainer.models.student import ResidualUNet, StudentConfig

            model = ResidualUNet(StudentConfig.from_dict(json.loads(meta["config"])))
            _fill_from_model(spec, model)
        if (meta.get("height"), meta.get("width")) != ("1080", "1920"):
            spec.notes.append(
                f"ONNX shape {meta.get('height')}x{meta.get('width')} (not 1080p): frames are padded/cropped"
            )
    return spec


def _load_torch_model(spec: ModelSpec):
    if spec.pt is not None:
        from kd_trainer.models.student import load_student

        return load_student(spec.pt)[0]
    if not spec.trained and spec.student:
        return random_student(spec.student)
    raise BenchInputError(f"{spec.label}: no PyTorch checkpoint to export from")


def checkpoint_for(spec: ModelSpec) -> Path | None:
    """A ``.pt`` for the torch backend: the given checkpoint, or a cached one of a random-weight student."""
    if spec.pt is not None:
        return spec.pt
    if spec.trained or not spec.student:
        return None
    from kd_trainer.models.student import save_checkpoint

    path = bench_cache() / f"{spec.student}-random{RANDOM_SEED}-{_digest(spec.config)}.pt"
    if not path.is_file():
        save_checkpoint(path, random_student(spec.student), name=f"{spec.student} (random weights)")
    return path


def onnx_for(spec: ModelSpec, batch: int = 1) -> Path:
    """The fp32 float32-NCHW 1080p ONNX of ``spec`` at ``batch`` (exported and cached when needed).

    The same I/O form as ``kd-export``'s default and the shipped files: on a CPU, onnxruntime runs it faster
    than a uint8-NHWC graph (the SDK converts on the host into reused buffers)."""
    if batch == 1 and spec.onnx is not None:
        return spec.onnx
    path = _static_export(spec, batch, f"batch {batch}")
    if batch == 1:
        spec.onnx = path
    return path


def fixed_onnx_for(spec: ModelSpec) -> Path:
    """The fp32 1080p ONNX of ``spec`` with a fixed frame size, as fp16/int8 conversion needs.

    The shipped ONNX files are dynamic-size (any frame size on onnxruntime), so they are timed as they are,
    and their fp16/int8 variants are converted from a static 1080p export of the ``.pt`` (cached)."""
    path = onnx_for(spec, 1)
    from kd_trainer.export import read_onnx_metadata

    meta = read_onnx_metadata(path)
    if meta.get("height", "dynamic") != "dynamic" and meta.get("width", "dynamic") != "dynamic":
        return path
    return _static_export(spec, 1, "an fp16/int8 variant of its dynamic-size ONNX")


def _static_export(spec: ModelSpec, batch: int, need: str) -> Path:
    """A cached fixed-size 1080p fp32 export of ``spec``'s checkpoint (or seeded random weights) at ``batch``."""
    if spec.pt is None and spec.trained:
        raise BenchInputError(f"{spec.label}: only an ONNX file was given; {need} needs the .pt checkpoint")
    source = spec.pt if spec.pt is not None else f"random{RANDOM_SEED}"
    key = _digest(source, spec.config, batch, "float32_nchw", 1080, 1920)
    path = bench_cache() / "onnx" / f"{_safe(spec.label)}-b{batch}-fp32-{key}.onnx"
    if not path.is_file():
        from kd_trainer.export import export_onnx

        export_onnx(
            _load_torch_model(spec),
            path,
            height=1080,
            width=1920,
            batch=batch,
            name=spec.student,
        )
    return path


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:40]


def precision_onnx(fp32: Path, precision: str, calib_frames: Sequence[np.ndarray]) -> tuple[Path, str]:
    """An fp16 or int8 ONNX derived from ``fp32``; returns ``(path, tool)``, where tool names the converter."""
    if precision == "fp32":
        return fp32, "export"
    if precision not in ("fp16", "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    calib_key = (
        _digest([hashlib.sha256(f.tobytes()).hexdigest()[:16] for f in calib_frames])
        if precision == "int8"
        else ""
    )
    key = _digest(fp32, precision, calib_key)
    out = bench_cache() / "onnx" / f"{fp32.stem[:48]}-{precision}-{key}.onnx"
    tool_file = out.with_suffix(".tool")
    if out.is_file() and tool_file.is_file():
        return out, tool_file.read_text().strip()
    tool = _convert_precision(fp32, out, precision, list(calib_frames))
    tool_file.write_text(tool + "\n")
    return out, tool


def _calib_folder(frames: Sequence[np.ndarray]) -> Path:
    """Calibration frames written once to a cache folder (the converter takes a folder of images)."""
    from kd_trainer.io import write_image

    key = _digest([hashlib.sha256(f.tobytes()).hexdigest()[:16] for f in frames])
    folder = bench_cache() / "calib" / key
    for i, frame in enumerate(frames):
        path = folder / f"calib_{i:03d}.png"
        if not path.is_file():
            write_image(path, frame)
    return folder


def _convert_precision(src: Path, out: Path, precision: str, calib: list[np.ndarray]) -> str:
    """The project's converter (fp16 body with fp32 I/O glue; int8 QDQ, first/last conv kept fp32)."""
    try:
        from trt_engine.precision import make_precision_onnx
    except ImportError as exc:
        raise BenchInputError(
            f"fp16/int8 ONNX needs trt_engine.precision, which cannot be imported: {exc}"
        ) from exc
    calib_dir = None
    if precision == "int8":
        if not calib:
            raise BenchInputError("int8 calibration needs at least one frame")
        calib_dir = _calib_folder(calib)
    result = make_precision_onnx(
        src, out, precision, calib_dir=calib_dir, max_calib_frames=len(calib) or 1, verify=False
    )
    how = "trt_engine.precision.make_precision_onnx"
    if precision == "int8":
        how += f" (calibrated on {result.calibration}, degraded by the call preset)"
    return how
