"""ONNX -> precision ONNX -> strongly typed TensorRT engine with a header (the ``build-engine`` CLI's engine room).

Steps of :func:`build_engine`:

1. :func:`trt_engine.precision.make_precision_onnx` writes ``<stem>.<precision>.onnx`` (uint8 NHWC I/O folded
   in by default, batch dimension set to ``--batch``) and verifies it with onnxruntime on held-out frames.
2. If a TensorRT-family builder is importable (``tensorrt``, else ``tensorrt_rtx``; detected lazily), the
   network is parsed *strongly typed* with Polygraphy's ``NetworkFromOnnxPath(strongly_typed=True)``, configured
   with ``CreateConfig`` (``CreateConfigRTX`` for TensorRT-RTX) and a persistent timing cache, built with
   ``EngineBytesFromNetwork`` and written with the JSON header (:mod:`trt_engine.header`). On a GPU with full
   TensorRT, Polygraphy's ``Comparator`` then runs ORT and the engine on the held-out frames and the result goes
   into the header's ``validation``.
3. Without a builder, step 1's ONNX is kept and :func:`finish_instructions` says how to finish on a GPU
   machine (the CLI exits with status 3 in that case; see docs/engines.md).

TensorRT-RTX builds "ahead of time" without a GPU; its engines run on RTX-class GPUs (compute capability
8.0, 8.6, 8.9, 12.0 and later by default), not on this machine and not on an H100.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.header import ENGINE_FORMAT, write_engine
from trt_engine.io import sha256_file
from trt_engine.meta import ModelMeta
from trt_engine.precision import PRECISIONS, get_metadata, load_onnx, make_precision_onnx

FLAVOURS = ("tensorrt", "tensorrt_rtx")
#: TensorRT-RTX's default targets ("8.0, 8.6, 8.9, 12.0 and later", TensorRT-RTX documentation).
RTX_DEFAULT_CCS = ["8.0", "8.6", "8.9", "12.0"]
EXIT_NO_BUILDER = 3


def detect_tensorrt(prefer: str | None = None) -> tuple[str, Any] | None:
    """``(flavour, module)`` for the first importable TensorRT builder, or None.

    Order: ``prefer`` (or ``$KD_TRT_FLAVOUR``), then ``tensorrt``, then ``tensorrt_rtx``.
    """
    prefer = prefer or os.environ.get("KD_TRT_FLAVOUR") or None
    order = [prefer] if prefer else list(FLAVOURS)
    for name in order:
        if name not in FLAVOURS:
            raise ValueError(f"unknown TensorRT flavour {name!r}; use one of {FLAVOURS}")
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    return None


def _polygraphy_trt(flavour: str) -> Any:
    """Polygraphy's TensorRT backend bound to ``flavour`` (it picks the module when first imported)."""
    import polygraphy.config as pconfig

    want = flavour == "tensorrt_rtx"
    if "polygraphy.backend.trt" in sys.modules and bool(pconfig.USE_TENSORRT_RTX) != want:
        raise RuntimeError(
            "Polygraphy's TensorRT backend was already imported for the other TensorRT flavour in this process; "
            f"set POLYGRAPHY_USE_TENSORRT_RTX={int(want)} before starting Python"
        )
    pconfig.USE_TENSORRT_RTX = want
    from polygraphy.backend import trt as ptrt
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.WARNING
    return ptrt


def local_gpu_cc() -> str | None:
    """Compute capability of GPU 0, via cuda-python or PyTorch; None without a GPU."""
    try:
        from trt_engine.backends.tensorrt import gpu_compute_capability, import_cudart

        return gpu_compute_capability(import_cudart(), 0)
    except Exception:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"{major}.{minor}"
    except Exception:
        pass
    return None


def default_timing_cache(flavour: str, version: str) -> Path:
    from trt_engine.paths import cache_subdir

    return cache_subdir("trt") / f"timing-{flavour}-{version}.cache"


def build_plan(
    onnx_path: str | os.PathLike[str],
    flavour: str,
    timing_cache: str | os.PathLike[str] | None = None,
    compute_capabilities: list[str] | None = None,
) -> bytes:
    """Serialized plan of a strongly typed network parsed from ``onnx_path`` (Polygraphy loaders)."""
    ptrt = _polygraphy_trt(flavour)
    network = ptrt.NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    cache = str(timing_cache) if timing_cache else None
    if flavour == "tensorrt_rtx":
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        ccs = (
            [tuple(int(x) for x in cc.split(".")) for cc in compute_capabilities]
            if compute_capabilities
            else None
        )
        config = CreateConfigRTX(load_timing_cache=cache, compute_capabilities=ccs)
    else:
        config = ptrt.CreateConfig(load_timing_cache=cache)
    plan = ptrt.EngineBytesFromNetwork(network, config, save_timing_cache=cache)()
    if plan is None:
        raise RuntimeError(f"{flavour} failed to build an engine from {onnx_path} (see the log above)")
    return bytes(plan)


def _tensor_specs(model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from onnx import helper

    def spec(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        return {
            "name": vi.name,
            "shape": dims,
            "dtype": str(np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))),
        }

    inits = {t.name for t in model.graph.initializer}
    return [spec(i) for i in model.graph.input if i.name not in inits], [spec(o) for o in model.graph.output]


def compare_engine(plan: bytes, onnx_path: Path, inputs: list[np.ndarray], io: str) -> dict[str, Any]:
    """Polygraphy Comparator: onnxruntime vs the engine on ``inputs`` (needs a GPU and full TensorRT)."""
    ptrt = _polygraphy_trt("tensorrt")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, CompareFunc

    name = load_onnx(onnx_path).graph.input[0].name
    runners = [OnnxrtRunner(SessionFromOnnx(str(onnx_path))), ptrt.TrtRunner(ptrt.EngineFromBytes(plan))]
    results = Comparator.run(runners, data_loader=[{name: x} for x in inputs])
    atol = 2.0 if io == "uint8_nhwc" else 2.0 / 255.0
    accuracy = Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol, rtol=0.0))
    (_, ort_iters), (_, trt_iters) = list(results.items())
    max_diff = 0.0
    for a, b in zip(ort_iters, trt_iters, strict=True):
        for key in a.keys():
            diff = np.abs(np.asarray(a[key], np.float64) - np.asarray(b[key], np.float64))
            max_diff = max(max_diff, float(diff.max()))
    return {"ort_vs_engine_passed": bool(accuracy), "ort_vs_engine_max_abs_diff": max_diff, "atol": atol}


@dataclass
class BuildResult:
    precision_onnx: Path
    precision: str
    io: str
    metrics: dict[str, Any] = field(default_factory=dict)
    engine: Path | None = None
    flavour: str | None = None
    trt_version: str | None = None
    build_seconds: float | None = None
    engine_bytes: int | None = None
    calibration: str = ""


def precision_onnx_path(model: Path, out: Path, precision: str) -> Path:
    """``<out stem>.<precision>.onnx`` beside ``out``, never the input model itself."""
    candidate = out.with_name(f"{out.stem}.{precision}.onnx")
    if candidate.resolve() == model.resolve():
        candidate = out.with_name(f"{out.stem}.{precision}.built.onnx")
    return candidate


def finish_instructions(precision_onnx: Path, out: Path, precision: str) -> str:
    return (
        "No TensorRT builder is installed here, so no engine was built. The precision ONNX above is complete;\n"
        "to finish on a machine with an NVIDIA GPU (the engine is built for that GPU and TensorRT version):\n"
        "  pip install 'image-sharpening-kd[trt]' tensorrt      # TensorRT 10.x + cuda-python\n"
        f"  build-engine {precision_onnx} --precision {precision} -o {out}\n"
        "It is already in its final precision, so that run only parses, builds and writes the header.\n"
        "For RTX-class GPUs the builder can also run here: pip install tensorrt-rtx-cu13, then the same command."
    )


def build_engine(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str = "fp16",
    *,
    calib_dir: str | os.PathLike[str] | None = None,
    calib_preset: str = "call",
    batch: int | None = None,
    uint8_io: bool = True,
    timing_cache: str | os.PathLike[str] | None = None,
    flavour: str | None = None,
    compute_capabilities: list[str] | None = None,
    onnx_only: bool = False,
    verify: bool = True,
    log: Any = print,
) -> BuildResult:
    """Precision ONNX + engine (when a builder is present); see the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model, out = Path(model), Path(out)
    if out.suffix.lower() not in (".engine", ".plan"):
        raise ValueError(f"output must end in .engine or .plan, got {out}")
    ponnx = precision_onnx_path(model, out, precision)
    t0 = time.perf_counter()
    res = make_precision_onnx(
        model,
        ponnx,
        precision,
        uint8_io=uint8_io,
        batch=batch,
        calib_dir=calib_dir,
        calib_preset=calib_preset,
        verify=verify,
    )
    result = BuildResult(ponnx, precision, res.io, dict(res.metrics), calibration=res.calibration)
    log(f"wrote {precision} ONNX ({res.io}) -> {ponnx}  [{time.perf_counter() - t0:.1f} s]")
    if res.calibration and precision == "int8":
        log(f"  calibrated on {res.calibration}")
    if res.metrics:
        m = res.metrics
        line = f"  onnxruntime check on {m['frames']} held-out frames: PSNR vs fp32 output {m['psnr_vs_fp32_db']:.2f} dB"
        line += f" (max diff {m['max_abs_diff_levels']} levels)"
        if "psnr_drop_db" in m:
            line += (
                f"; vs ground truth: input {m['psnr_input_db']:.2f}, fp32 {m['psnr_fp32_db']:.2f}, "
                f"{precision} {m['psnr_db']:.2f} dB (drop {m['psnr_drop_db']:+.3f} dB)"
            )
        log(line)
    if onnx_only:
        return result
    found = detect_tensorrt(flavour)
    if found is None:
        log(finish_instructions(ponnx, out, precision))
        return result
    name, trt = found
    version = str(trt.__version__)
    # TensorRT-RTX has no timing cache (its timing-cache calls are no-ops since 1.2; it tunes at run time).
    cache = (
        None
        if name == "tensorrt_rtx"
        else Path(timing_cache)
        if timing_cache
        else default_timing_cache(name, version)
    )
    gpu_cc = local_gpu_cc()
    forward = None
    if name == "tensorrt":
        if gpu_cc is None:
            raise RuntimeError("TensorRT (non-RTX) needs a CUDA GPU to build engines; none was found")
        targets = [gpu_cc]
    elif compute_capabilities:
        targets = list(compute_capabilities)
    else:
        targets, forward = list(RTX_DEFAULT_CCS), RTX_DEFAULT_CCS[-1]
    log(f"building with {name} {version} (strongly typed{f', timing cache {cache}' if cache else ''}) ...")
    if name == "tensorrt_rtx" and gpu_cc is None:
        log(
            "  (TensorRT-RTX builds ahead of time without a GPU; its CUDA 'driver insufficient' log lines are expected)"
        )
    t1 = time.perf_counter()
    plan = build_plan(ponnx, name, cache, compute_capabilities if name == "tensorrt_rtx" else None)
    result.build_seconds = time.perf_counter() - t1

    proto = load_onnx(ponnx)
    meta_onnx = get_metadata(proto)
    inputs, outputs = _tensor_specs(proto)
    shape = inputs[0]["shape"]
    n, h, w = (shape[0], shape[1], shape[2]) if res.io == "uint8_nhwc" else (shape[0], shape[2], shape[3])
    validation = {"onnxruntime": res.metrics} if res.metrics else {}
    if name == "tensorrt" and gpu_cc is not None and verify:
        try:
            from trt_engine.precision import calibration_sets, model_inputs

            _, held = calibration_sets(calib_dir, int(h), int(w), calib_preset)
            validation["comparator"] = compare_engine(
                plan, ponnx, model_inputs(held.inputs, res.io, int(n)), res.io
            )
            log(f"  Polygraphy Comparator ORT vs engine: {validation['comparator']}")
        except Exception as exc:  # the engine is still good; record why the check did not run
            validation["comparator"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    # The model-file contract travels from the ONNX into the engine header, updated for what was built.
    contract = ModelMeta.from_dict(meta_onnx)
    contract.io, contract.precision = res.io, precision
    contract.batch, contract.height, contract.width = n, h, w
    contract.versions = {**contract.versions, name: version}
    metadata: dict[str, Any] = {
        **contract.to_dict(),
        "format": ENGINE_FORMAT,
        "builder": name,
        "trt_version": version,
        "compute_capabilities": targets,
        "inputs": inputs,
        "outputs": outputs,
        "validation": validation,
        "strongly_typed": True,
        "timing_cache": str(cache) if cache else None,
        "source_onnx": str(model),
        "source_sha256": sha256_file(model),
        "precision_onnx": str(ponnx),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": "image-sharpening-kd build-engine",
    }
    if forward:
        metadata["compute_capability_forward"] = forward
    write_engine(out, metadata, plan)
    result.engine, result.flavour, result.trt_version = out, name, version
    result.engine_bytes = out.stat().st_size
    log(
        f"wrote engine -> {out} ({result.engine_bytes / 1e6:.2f} MB, {name} {version}, "
        f"GPU targets {', '.join(targets)}{' and later' if forward else ''}) [{result.build_seconds:.1f} s]"
    )
    return result
