"""The model-file contract: one :class:`ModelMeta`, written by the exporter and the engine builder, read by
every backend and by ``sharpen --inspect``.

Where it lives:
- ONNX: ``metadata_props`` entries ``kd.<key>`` with string values (JSON for dicts), see :meth:`to_strings`;
  read here with a few lines of protobuf wire-format parsing, so neither ``onnx`` nor onnxruntime is needed to
  inspect a model (:func:`read_onnx_meta`).
- Engines: the JSON header in front of the plan (:mod:`trt_engine.header`), see :meth:`to_dict`.

Keys: ``io`` (``float32_nchw`` or ``uint8_nhwc``), ``color`` (``rgb``/``bgr``), ``batch``/``height``/``width``
(ints, or absent/``"dynamic"`` for a dynamic axis), ``multiple`` (the height/width multiple a dynamic model
pads to), ``precision``, ``student`` (registry name) and ``config`` (student config dict), ``metrics``
(validation metrics), ``versions`` (producing tools), ``input``/``output`` tensor names, ``format``.
Unknown keys are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt_engine.errors import ModelLoadError

ONNX_FORMAT = "image-sharpening-kd/onnx-v1"
META_PREFIX = "kd."
IO_KINDS = ("float32_nchw", "uint8_nhwc")
DYNAMIC = "dynamic"
_JSON_KEYS = ("config", "metrics", "versions")
_INT_KEYS = ("batch", "height", "width", "multiple")
_STR_KEYS = ("format", "io", "color", "precision", "student", "input", "output")


def _opt_int(value: Any) -> int | None:
    if value is None or value == "" or value == DYNAMIC:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _json_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def _legacy_multiple(config: dict[str, Any]) -> int:
    """Size multiple of a Residual UNet student file written before ``multiple`` was recorded (exporter v1):
    its stem downsamples by ``unshuffle``, each further level by 2. New files carry ``multiple`` itself."""
    try:
        return int(config["unshuffle"]) * 2 ** (len(config["widths"]) - 1)
    except (KeyError, TypeError, ValueError):
        return 1


@dataclass
class ModelMeta:
    """What a model file is: graph I/O, colour order, shape, precision, provenance and quality."""

    io: str | None = None
    color: str = "rgb"
    batch: int | None = None
    height: int | None = None
    width: int | None = None
    multiple: int = 1
    precision: str = "fp32"
    student: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    input: str = ""
    output: str = ""
    format: str = ONNX_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fixed_size(self) -> bool:
        return self.height is not None and self.width is not None

    # ---------------------------------------------------------------------------------- dict forms
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        """From a JSON-style dict (engine header) or the string dict of ONNX metadata (prefix removed)."""
        meta = cls()
        for key, value in data.items():
            if key in _JSON_KEYS:
                setattr(meta, key, _json_dict(value))
            elif key in _INT_KEYS:
                number = _opt_int(value)
                if key == "multiple":
                    meta.multiple = number or 1
                else:
                    setattr(meta, key, number)
            elif key in _STR_KEYS:
                setattr(meta, key, "" if value is None else str(value))
            else:
                meta.extra[key] = value
        if "multiple" not in data:
            meta.multiple = _legacy_multiple(meta.config)
        meta.color = (meta.color or "rgb").lower()
        meta.precision = meta.precision or "fp32"
        meta.io = meta.io or None
        return meta

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (engine headers); dynamic axes are ``None``."""
        data: dict[str, Any] = dict(self.extra)
        for key in _STR_KEYS:
            value = getattr(self, key)
            if value is not None and value != "":
                data[key] = value
        for key in _INT_KEYS:
            data[key] = getattr(self, key)
        for key in _JSON_KEYS:
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data

    def to_strings(self) -> dict[str, str]:
        """String values for ONNX ``metadata_props`` (without the ``kd.`` prefix)."""
        out: dict[str, str] = {}
        for key, value in self.to_dict().items():
            if value is None:
                out[key] = DYNAMIC
            elif isinstance(value, str):
                out[key] = value
            else:
                out[key] = json.dumps(value, sort_keys=True)
        return out

    def describe(self) -> str:
        """Human-readable summary (``sharpen --inspect``)."""
        size = (
            f"fixed {self.height}x{self.width}"
            if self.fixed_size
            else f"any height/width (padded to a multiple of {self.multiple})"
        )
        lines = [
            f"format        {self.format or '?'}",
            f"io            {self.io or '?'}   colour {self.color}   precision {self.precision}",
            f"shape         batch {self.batch or 'dynamic'}, {size}",
        ]
        if self.student or self.config:
            lines.append(f"student       {self.student} {json.dumps(self.config, sort_keys=True)}")
        if self.versions:
            lines.append(f"versions      {json.dumps(self.versions, sort_keys=True)}")
        if self.metrics:
            lines.append(f"metrics       {json.dumps(self.metrics, sort_keys=True)}")
        for key, value in sorted(self.extra.items()):
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            lines.append(f"{key:<13} {text if len(text) < 200 else text[:197] + '...'}")
        return "\n".join(lines)


def kd_strings(props: dict[str, str]) -> dict[str, str]:
    """The ``kd.*`` entries of an ONNX model's metadata, prefix removed."""
    return {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}


# ------------------------------------------------------------------------------------------ ONNX reading
def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _read_varint(fh: Any) -> int | None:
    result = shift = 0
    while True:
        b = fh.read(1)
        if not b:
            if shift == 0:
                return None
            raise ValueError("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _entry(blob: bytes) -> tuple[str, str]:
    """A StringStringEntryProto: field 1 key, field 2 value."""
    key = value = ""
    pos = 0
    while pos < len(blob):
        tag, pos = _varint(blob, pos)
        if tag & 7 != 2:
            raise ValueError("unexpected wire type in a metadata entry")
        length, pos = _varint(blob, pos)
        text = bytes(blob[pos : pos + length]).decode("utf-8")
        pos += length
        if tag >> 3 == 1:
            key = text
        elif tag >> 3 == 2:
            value = text
    return key, value


def onnx_metadata_props(path: str | os.PathLike[str]) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file, read from the protobuf wire format (skips the graph bytes)."""
    p = Path(path)
    props: dict[str, str] = {}
    size = p.stat().st_size
    with open(p, "rb") as fh:
        while True:
            tag = _read_varint(fh)
            if tag is None:
                break
            field_no, wire = tag >> 3, tag & 7
            if wire == 0:
                _read_varint(fh)
            elif wire == 1:
                fh.seek(8, 1)
            elif wire == 5:
                fh.seek(4, 1)
            elif wire == 2:
                length = _read_varint(fh)
                if length is None or fh.tell() + length > size:
                    raise ValueError("truncated field")
                if field_no == 14:  # ModelProto.metadata_props
                    key, value = _entry(fh.read(length))
                    props[key] = value
                else:
                    fh.seek(length, 1)
            else:
                raise ValueError(f"unsupported wire type {wire}")
    return props


def read_onnx_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The :class:`ModelMeta` of an ONNX file (defaults for models exported elsewhere)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model not found: {p}")
    try:
        props = onnx_metadata_props(p)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"cannot read ONNX metadata of {p} (corrupt or not an ONNX file): {exc}"
        ) from exc
    return ModelMeta.from_dict(kd_strings(props))


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The :class:`ModelMeta` of a ``.onnx`` or ``.engine``/``.plan`` file, without loading a runtime."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return read_onnx_meta(path)
    if suffix in (".engine", ".plan"):
        from trt_engine.header import read_header

        return ModelMeta.from_dict(read_header(path).metadata)
    raise ValueError(f"read_meta reads .onnx and .engine/.plan files, not {Path(path).name!r}")


# ------------------------------------------------------------------------------------------ layout, protos
def io_layout(dtype: str, shape: list[Any] | tuple[Any, ...]) -> str | None:
    """The graph I/O kind of a 4-D image tensor (the one layout detector): ``uint8_nhwc`` for uint8
    ``N x H x W x 3``, ``float32_nchw`` for float32 ``N x 3 x H x W``, else None. ``dtype`` is a numpy-style
    name (``uint8``, ``float32``); ``shape`` may hold None or strings for dynamic axes."""
    if len(shape) != 4:
        return None
    if dtype == "uint8" and shape[3] == 3:
        return "uint8_nhwc"
    if dtype == "float32" and shape[1] == 3:
        return "float32_nchw"
    return None


def image_dims(io: str, shape: list[Any] | tuple[Any, ...]) -> tuple[int | None, int | None, int | None]:
    """(batch, height, width) of a 4-D tensor of layout ``io``; None for dynamic axes."""
    n, h, w = (shape[0], shape[1], shape[2]) if io == "uint8_nhwc" else (shape[0], shape[2], shape[3])
    return tuple(d if isinstance(d, int) and d > 0 else None for d in (n, h, w))  # type: ignore[return-value]


def proto_metadata(model: Any) -> dict[str, str]:
    """``kd.*`` metadata of an ``onnx.ModelProto``, prefix removed."""
    return kd_strings({p.key: p.value for p in model.metadata_props})


def set_proto_metadata(model: Any, values: ModelMeta | dict[str, Any]) -> None:
    """Set ``kd.*`` entries of an ``onnx.ModelProto``: a whole :class:`ModelMeta`, or some keys (non-strings
    as JSON, None as ``dynamic``)."""
    if isinstance(values, ModelMeta):
        strings = values.to_strings()
    else:
        strings = {
            k: (DYNAMIC if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True))
            for k, v in values.items()
        }
    for key, text in strings.items():
        for prop in model.metadata_props:
            if prop.key == META_PREFIX + key:
                prop.value = text
                break
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, text
