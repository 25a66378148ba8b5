"""The engine file format: a small self-describing header in front of a serialized TensorRT plan.

Layout (all integers little-endian)::

    offset 0   8 bytes   magic  b"KDTRTENG"
    offset 8   uint32    header format version (currently 1)
    offset 12  uint32    N = length of the JSON metadata in bytes
    offset 16  N bytes   JSON metadata, UTF-8 (an object; keys below)
    offset 16+N          the TensorRT plan, exactly ``plan_size`` bytes, SHA-256 ``plan_sha256``

Metadata keys written by ``build-engine`` (required ones marked *):
``format``*, ``builder``* (``tensorrt`` or ``tensorrt_rtx``), ``trt_version``*, ``compute_capabilities``*
(list of ``"major.minor"`` the plan runs on), ``compute_capability_forward`` (optional ``"major.minor"``:
devices at or above it are accepted too, for TensorRT-RTX portable engines), ``plan_size``*, ``plan_sha256``*,
``io``* (``uint8_nhwc`` or ``float32_nchw``), ``inputs``/``outputs``* (lists of ``{name, shape, dtype}``),
``color``*, ``precision``*, ``batch``, ``height``, ``width``, ``student``, ``config`` (student config dict),
``validation`` (metrics measured at build time), ``source_onnx``, ``source_sha256``, ``created_utc``, ``tool``.

Nothing here imports TensorRT: reading, writing and checking a header works on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt_engine.errors import (
    MAX_MODEL_SIDE,
    EngineHeaderError,
    EngineMismatchError,
    ModelLoadError,
    check_model_sizes,
)
from trt_engine.io import atomic_write_bytes

MAGIC = b"KDTRTENG"
HEADER_VERSION = 1
ENGINE_FORMAT = "image-sharpening-kd/engine-v1"
_PREFIX = struct.Struct("<8sII")
MAX_JSON_BYTES = 16 << 20
REQUIRED_KEYS = (
    "format",
    "builder",
    "trt_version",
    "compute_capabilities",
    "plan_size",
    "plan_sha256",
    "io",
    "inputs",
    "outputs",
    "color",
    "precision",
)
REBUILD_HINT = (
    "rebuild with build-engine on the target machine (build-engine MODEL.onnx --precision P -o OUT.engine)"
)


@dataclass(frozen=True)
class EngineHeader:
    """A parsed header: the metadata and where the plan lies in the file."""

    metadata: dict[str, Any]
    plan_offset: int
    plan_size: int
    file_size: int


def pack_engine(metadata: dict[str, Any], plan: bytes | bytearray | memoryview) -> bytes:
    """Header + plan as one ``bytes``; ``plan_size`` and ``plan_sha256`` are filled in here."""
    plan = bytes(plan)
    if not plan:
        raise ValueError("refusing to write an engine with an empty plan")
    meta = dict(metadata)
    meta.setdefault("format", ENGINE_FORMAT)
    meta["plan_size"] = len(plan)
    meta["plan_sha256"] = hashlib.sha256(plan).hexdigest()
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"engine metadata lacks required keys {missing}")
    blob = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
    return _PREFIX.pack(MAGIC, HEADER_VERSION, len(blob)) + blob + plan


def write_engine(path: str | os.PathLike[str], metadata: dict[str, Any], plan: bytes) -> Path:
    """Write header + plan atomically (a temporary file renamed onto ``path``)."""
    atomic_write_bytes(path, pack_engine(metadata, plan))
    return Path(path)


def read_header(path: str | os.PathLike[str]) -> EngineHeader:
    """Parse and validate the header of ``path`` without reading the plan."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"engine not found: {p}")
    size = p.stat().st_size
    if size == 0:
        raise EngineHeaderError(f"{p} is empty (0 bytes); {REBUILD_HINT}")
    with open(p, "rb") as fh:
        prefix = fh.read(_PREFIX.size)
        if len(prefix) < len(MAGIC) or prefix[: len(MAGIC)] != MAGIC:
            raise EngineHeaderError(
                f"{p} is not an image-sharpening-kd engine (no {MAGIC!r} header; a raw TensorRT plan from "
                f"trtexec or another tool?). {REBUILD_HINT}"
            )
        if len(prefix) < _PREFIX.size:
            raise EngineHeaderError(f"{p} is truncated inside its header ({size} bytes); {REBUILD_HINT}")
        _, version, json_len = _PREFIX.unpack(prefix)
        if version != HEADER_VERSION:
            raise EngineHeaderError(
                f"{p} has engine header version {version}, this SDK reads version {HEADER_VERSION}; {REBUILD_HINT}"
            )
        if json_len == 0 or json_len > MAX_JSON_BYTES:
            raise EngineHeaderError(f"{p} has an implausible metadata length {json_len}; the file is corrupt")
        blob = fh.read(json_len)
    if len(blob) < json_len:
        raise EngineHeaderError(
            f"{p} is truncated inside its metadata ({len(blob)} of {json_len} bytes); {REBUILD_HINT}"
        )
    try:
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineHeaderError(f"{p} has corrupt header metadata ({exc}); {REBUILD_HINT}") from exc
    if not isinstance(meta, dict):
        raise EngineHeaderError(f"{p} header metadata is not a JSON object; the file is corrupt")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise EngineHeaderError(f"{p} header metadata lacks {missing}; {REBUILD_HINT}")
    if meta["format"] != ENGINE_FORMAT:
        raise EngineHeaderError(
            f"{p} has engine format {meta['format']!r}, expected {ENGINE_FORMAT!r}; {REBUILD_HINT}"
        )
    _check_header_sizes(p, meta)
    plan_offset = _PREFIX.size + json_len
    plan_size = meta["plan_size"]
    if size - plan_offset < plan_size:
        raise EngineHeaderError(
            f"{p} is truncated: the header announces a {plan_size}-byte plan but only {size - plan_offset} bytes "
            f"follow (an interrupted copy or download?); {REBUILD_HINT}"
        )
    if size - plan_offset > plan_size:
        raise EngineHeaderError(
            f"{p} has {size - plan_offset - plan_size} unexpected bytes after the plan; the file is corrupt"
        )
    return EngineHeader(meta, plan_offset, plan_size, size)


def _check_header_sizes(p: Path, meta: dict[str, Any]) -> None:
    """Range-check every size in the metadata before anything is allocated from it (crafted headers)."""
    plan_size = meta["plan_size"]
    if isinstance(plan_size, bool) or not isinstance(plan_size, int) or plan_size < 1:
        raise EngineHeaderError(f"{p} has an invalid plan_size {plan_size!r}; the file is corrupt")
    sizes = [meta.get(k) for k in ("batch", "height", "width")]  # str: a symbolic (dynamic) ONNX dim
    try:
        check_model_sizes(p, *(None if isinstance(v, str) and len(v) <= 64 else v for v in sizes))
    except ModelLoadError as exc:
        raise EngineHeaderError(str(exc)) from None
    for key in ("inputs", "outputs"):
        tensors = meta[key]
        if not isinstance(tensors, list) or not 1 <= len(tensors) <= 8:
            raise EngineHeaderError(f"{p} header {key} must be a list of 1..8 tensors; the file is corrupt")
        for t in tensors:
            shape = t.get("shape") if isinstance(t, dict) else None
            if (
                not isinstance(shape, list)
                or len(shape) != 4
                or any(
                    not (isinstance(d, str) and len(d) <= 64)
                    and (isinstance(d, bool) or not isinstance(d, int) or not -1 <= d <= MAX_MODEL_SIDE)
                    for d in shape
                )
            ):
                raise EngineHeaderError(
                    f"{p} header {key} shape {str(shape)[:80]} is not 4 sizes in -1..{MAX_MODEL_SIDE}; the file is "
                    f"corrupt or crafted; {REBUILD_HINT}"
                )


def read_engine(path: str | os.PathLike[str], verify: bool = True) -> tuple[dict[str, Any], bytes]:
    """Metadata and plan bytes of ``path``; with ``verify`` the plan's SHA-256 is checked."""
    header = read_header(path)
    with open(path, "rb") as fh:
        fh.seek(header.plan_offset)
        plan = fh.read(header.plan_size)
    if verify and hashlib.sha256(plan).hexdigest() != header.metadata["plan_sha256"]:
        raise EngineHeaderError(
            f"{path}: the plan's checksum does not match its header (corrupt file); {REBUILD_HINT}"
        )
    return header.metadata, plan


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _cc_key(cc: str) -> tuple[int, int]:
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)


def check_compatible(
    metadata: dict[str, Any],
    *,
    builder: str,
    trt_version: str,
    compute_capability: str,
    source: str = "engine",
) -> None:
    """Raise :class:`EngineMismatchError` unless this runtime and GPU can deserialize the engine.

    TensorRT plans are tied to the exact TensorRT version (major.minor.patch) and, by default, to the GPU's
    compute capability; the header records both at build time.
    """
    if metadata.get("builder") != builder:
        raise EngineMismatchError(
            f"{source} was built with {metadata.get('builder')!r} but the runtime here is {builder!r}; {REBUILD_HINT}"
        )
    built = str(metadata.get("trt_version"))
    if _version_key(built) != _version_key(trt_version):
        raise EngineMismatchError(
            f"{source} was built with {builder} {built} but {trt_version} is installed; plans only load in the "
            f"TensorRT version that built them: {REBUILD_HINT}"
        )
    targets = [str(c) for c in metadata.get("compute_capabilities") or []]
    forward = metadata.get("compute_capability_forward")
    ok = compute_capability in targets or (
        forward is not None and _cc_key(compute_capability) >= _cc_key(str(forward))
    )
    if not ok:
        wanted = ", ".join(targets) + (f", or >= {forward}" if forward else "")
        raise EngineMismatchError(
            f"{source} was built for GPU compute capability {wanted} but this GPU is {compute_capability}; "
            f"{REBUILD_HINT}"
        )


def format_header(header: EngineHeader, path: str | os.PathLike[str] | None = None) -> str:
    """Human-readable summary of a header (``build-engine --inspect``)."""
    m = header.metadata
    lines = []
    if path is not None:
        lines.append(f"engine        {path}")
    shapes = ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in m.get("inputs", []))
    outs = ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in m.get("outputs", []))
    ccs = ", ".join(m.get("compute_capabilities") or [])
    if m.get("compute_capability_forward"):
        ccs += f" (and >= {m['compute_capability_forward']})"
    lines += [
        f"builder       {m['builder']} {m['trt_version']}",
        f"GPU targets   compute capability {ccs}",
        f"precision     {m['precision']}   io {m['io']}   colour {m['color']}",
        f"inputs        {shapes}",
        f"outputs       {outs}",
        f"plan          {header.plan_size} bytes at offset {header.plan_offset}, sha256 {m['plan_sha256'][:16]}...",
    ]
    if m.get("student") or m.get("config"):
        lines.append(f"student       {m.get('student', '')} {json.dumps(m.get('config', {}))}")
    if m.get("validation"):
        lines.append(f"validation    {json.dumps(m['validation'], sort_keys=True)}")
    for key in ("source_onnx", "source_sha256", "created_utc", "tool"):
        if m.get(key):
            lines.append(f"{key:<13} {m[key]}")
    return "\n".join(lines)
