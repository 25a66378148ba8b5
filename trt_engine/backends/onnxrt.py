"""onnxruntime backend for ``.onnx`` files: CPU by default, CUDA / TensorRT execution providers on request.

Runs both graph I/O kinds written by the exporter (``kd-export``) (``float32_nchw`` and ``uint8_nhwc``) and any
image-to-image ONNX with a 3-channel float NCHW or uint8 NHWC input, with fixed or dynamic shapes. For
float graphs the uint8 <-> float conversion runs on the host with OpenCV (a lookup table and a saturating
cast), which on a 2-core CPU is about 2x cheaper than the same casts and transposes inside ORT.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.backends.base import (
    Backend,
    BackendInfo,
    PlaneBuffers,
    add_depth_to_space_u8,
    default_threads,
    nchw_f32_to_nhwc_u8,
    nhwc_u8_to_nchw_f32,
    swap_rb_batch,
)
from trt_engine.errors import BackendUnavailableError, ModelLoadError, check_model_sizes, require_model_file
from trt_engine.meta import ONNX_FORMAT, ModelMeta, image_dims, io_layout, kd_strings

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _dim(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


#: Largest static tensor a graph may declare, in elements, unless its input is larger (64 x the input).
MAX_TENSOR_ELEMENTS = 1 << 28


def _check_graph_sizes(p: Path) -> Any | None:
    """Refuse graphs whose static shapes (after shape inference) are implausibly large, before ORT runs them;
    returns the loaded model (as read, without inferred shapes), or None without the ``onnx`` package.

    A crafted 1 KB graph (``ConstantOfShape`` of 1 x 3 x 40000 x 40000, or an input declared 10^6 pixels
    wide) would otherwise make onnxruntime allocate tens of gigabytes on the first frame.
    """
    try:
        import onnx
    except ImportError:  # the runtime-only install: the input sizes are still checked on the session
        return None
    try:
        loaded = onnx.load(str(p), load_external_data=False)
        model = onnx.shape_inference.infer_shapes(loaded, data_prop=True)
    except Exception as exc:  # DecodeError, ValidationError, InferenceError, ...
        raise ModelLoadError(f"cannot load ONNX model {p} (corrupt or unsupported): {exc}") from exc

    def elements(vi: Any) -> int | None:
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.HasField("tensor_type") or not dims or not all(d.HasField("dim_value") for d in dims):
            return None
        count = 1
        for d in dims:
            count *= max(0, d.dim_value)
        return count

    graph = model.graph
    inputs = [n for vi in graph.input if (n := elements(vi)) is not None]
    limit = max(MAX_TENSOR_ELEMENTS, 64 * max(inputs, default=0))
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        n = elements(vi)
        if n is not None and n > limit:
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            raise ModelLoadError(
                f"{p}: tensor {vi.name!r} has an implausible shape {dims} ({n} elements > {limit}); the file "
                "is corrupt or crafted; re-export it with kd-export"
            )
    for vi in graph.input[:1]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4:
            sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            nhwc = sizes[3] == 3
            n, h, w = (sizes[0], sizes[1], sizes[2]) if nhwc else (sizes[0], sizes[2], sizes[3])
            check_model_sizes(p, n, h, w)
    return loaded


def _without_final_clip(model: Any) -> bytes | None:
    """``model`` (an ``onnx.ModelProto``, changed in place) without its final ``Clip(0, 1)``, serialised; None
    when it has none.

    A float graph's output is clipped to [0, 1] again by the host's uint8 conversion
    (:func:`~trt_engine.backends.base.nchw_f32_to_nhwc_u8` saturates both ends), so the graph's own full-size
    ``Clip`` is a second pass over the frame with no effect on the uint8 result (~4% of a 1080p ``fast`` frame
    on a 2-core CPU). Only a Clip whose bounds are the constants 0 and 1 and whose result is only the output
    is dropped.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    if external or len(graph.output) != 1 or not graph.node:  # bytes cannot point at external data
        return None
    out_name = graph.output[0].name
    clip = graph.node[-1]
    if clip.op_type != "Clip" or list(clip.output) != [out_name] or len(clip.input) != 3:
        return None
    constants = {t.name: t for t in graph.initializer}
    bounds = [numpy_helper.to_array(constants[name]) for name in clip.input[1:] if name in constants]
    if len(bounds) != 2 or any(b.size != 1 for b in bounds):
        return None
    low, high = (float(b.reshape(())) for b in bounds)
    source = clip.input[0]
    inputs = {i.name for i in graph.input}
    used_elsewhere = source in inputs or any(source in node.input for node in graph.node[:-1])
    if (low, high) != (0.0, 1.0) or used_elsewhere:
        return None
    producer = next((node for node in graph.node if source in node.output), None)
    if producer is None:
        return None
    producer.output[list(producer.output).index(source)] = out_name
    graph.node.remove(clip)
    return model.SerializeToString()


@dataclass(frozen=True)
class HostPixelShuffle:
    """The graph's last ``Add(input, DepthToSpace(residual))``, moved to the host (see :func:`_host_pixel_shuffle`)."""

    block: int
    mode: str

    def residual_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The rewritten graph's output shape for an ``N x 3 x H x W`` input."""
        n, _, h, w = shape
        return (n, 3 * self.block * self.block, h // self.block, w // self.block)


def _host_pixel_shuffle(model: Any) -> HostPixelShuffle | None:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place) whose output is ``input + DepthToSpace(residual)`` to
    output ``residual``; returns the block size and mode, or None (model unchanged) for any other graph.

    Our students end this way (their full-resolution tail is a 1x1 conv and a pixel shuffle). onnxruntime's
    CPU ``DepthToSpace`` is a single-threaded, element-by-element transpose (~14 ms of a 35-64 ms 1080p ``fast``
    frame on a 2-core CPU) and the ``Add`` is another full pass; the host does both in the uint8 conversion it
    runs anyway (:func:`~trt_engine.backends.base.add_depth_to_space_u8`), with identical results. Call it after
    :func:`_without_final_clip`.
    """
    from onnx import helper

    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1 or len(graph.node) < 2:
        return None
    image, out_name = graph.input[0].name, graph.output[0].name
    add = graph.node[-1]
    if add.op_type != "Add" or list(add.output) != [out_name] or image not in add.input:
        return None
    if graph.input[0].type.tensor_type.elem_type != 1:  # float32 only
        return None
    shuffled = add.input[1] if add.input[0] == image else add.input[0]
    shuffle = next((node for node in graph.node if shuffled in node.output), None)
    if shuffle is None or shuffle.op_type != "DepthToSpace" or shuffled == image:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in shuffle.attribute}
    block, mode = int(attrs.get("blocksize", 0)), attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    residual = shuffle.input[0]
    consumers = [node for node in graph.node if residual in node.input or shuffled in node.input]
    producer = next((node for node in graph.node if residual in node.output), None)
    if block < 2 or mode not in ("CRD", "DCR") or producer is None or len(consumers) != 2:
        return None  # the residual or the shuffled tensor feeds something else too
    producer.output[list(producer.output).index(residual)] = out_name
    graph.node.remove(add)
    graph.node.remove(shuffle)
    graph.output[0].type.tensor_type.ClearField("shape")
    return HostPixelShuffle(block, mode)


class OnnxRuntimeBackend(Backend):
    """One ``onnxruntime.InferenceSession``; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        swap_rb: bool = False,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        p = require_model_file(path, "model", "re-export it with kd-export")
        dev = (device or "cpu").lower()
        if dev not in _PROVIDERS:
            raise ValueError(
                f"unknown device {device!r} for an ONNX model; use one of {sorted(_PROVIDERS)} or None"
            )
        available = ort.get_available_providers()
        if _PROVIDERS[dev][0] not in available:
            raise BackendUnavailableError(
                f"device {dev!r} needs onnxruntime's {_PROVIDERS[dev][0]}, but this onnxruntime offers "
                f"{available}; install onnxruntime-gpu, or use device=None (CPU)"
            )
        providers = [prov for prov in _PROVIDERS[dev] if prov in available]
        options = ort.SessionOptions()
        self._threads = int(threads) if threads else default_threads()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No busy-waiting between ops: a call app shares the CPU with capture, encode and the UI, and spinning
        # threads would steal it (costs ~1 ms per 1080p frame in wake-ups).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        loaded = _check_graph_sizes(p)
        self._shuffle: HostPixelShuffle | None = None
        try:
            lean = _without_final_clip(loaded) if loaded is not None else None
            if lean is not None and dev == "cpu":  # a GPU runs DepthToSpace fast: only the CPU moves it
                self._shuffle = _host_pixel_shuffle(loaded)
                lean = loaded.SerializeToString() if self._shuffle else lean
            self.session = ort.InferenceSession(lean or str(p), options, providers=providers)
        except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph, NotImplemented, ...
            raise ModelLoadError(f"cannot load ONNX model {p} (corrupt or unsupported): {exc}") from exc

        try:
            meta = ModelMeta.from_dict(kd_strings(self.session.get_modelmeta().custom_metadata_map or {}))
        except UnicodeDecodeError as exc:  # a corrupt metadata string (fuzzing found it)
            raise ModelLoadError(f"{p} has corrupt metadata ({exc}); re-export it with kd-export") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(
                f"{p} has {len(inputs)} inputs and {len(outputs)} outputs; an image model needs exactly one input"
            )
        inp, out = inputs[0], outputs[0]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelLoadError(f"{p}: input {inp.name!r} has shape {shape}; expected a 4-D image batch")
        dtype = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}.get(inp.type, inp.type)
        io = io_layout(dtype, shape)
        if io is None:
            raise ModelLoadError(
                f"{p}: input {inp.name!r} is {inp.type} {shape}; supported are float32 N x 3 x H x W (RGB in "
                "[0,1]) and uint8 N x H x W x 3"
            )
        batch, height, width = image_dims(io, shape)
        check_model_sizes(p, batch, height, width)
        if meta.io and meta.io != io:
            raise ModelLoadError(f"{p}: metadata says io={meta.io!r} but the graph input is {io}")
        self.input_name, self.output_name, self.io = inp.name, out.name, io
        self.swap_rb = swap_rb
        self._buffer: np.ndarray | None = None
        self._planes = PlaneBuffers()
        # A float graph with a static output shape writes into one reused buffer through an IO binding: a fresh
        # 25 MB output per 1080p frame cost ~10 ms of page faults on a 2-core CPU.
        out_shape = [_dim(d) for d in out.shape]
        float_io = io == "float32_nchw" and out.type == "tensor(float)"
        static = float_io and all(out_shape) and self._shuffle is None
        self._out_shape = tuple(out_shape) if static else None
        # A dynamic-size export of ours maps N x 3 x H x W to the same shape (or, with the pixel shuffle moved to
        # the host, to its residual's shape): bind an output buffer per input shape too (re-bound only when the
        # frame size changes).
        self._same_shape = (
            not static and float_io and (meta.format == ONNX_FORMAT or self._shuffle is not None)
        )
        self._output: np.ndarray | None = None
        self._binding: Any = None
        self._pool: ThreadPoolExecutor | None = None  # host threads for the conversions (made on first use)
        self.info = BackendInfo(
            backend="onnxruntime",
            path=str(p),
            device=dev,
            precision=meta.precision,
            io=io,
            batch=batch,
            height=height,
            width=width,
            multiple=meta.multiple,
            color=meta.color,
            providers=self.session.get_providers(),
            metadata=meta.to_dict(),
            host_memory="host only (no device copies)" if dev == "cpu" else "pageable (onnxruntime copies)",
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.io == "uint8_nhwc":
            feed = swap_rb_batch(batch) if self.swap_rb else np.ascontiguousarray(batch)
            (result,) = self.session.run([self.output_name], {self.input_name: feed})
            if result.dtype != np.uint8 or result.ndim != 4 or result.shape[-1] != 3:
                raise RuntimeError(
                    f"model returned {result.dtype} {result.shape}; expected uint8 N x H x W x 3"
                )
            return swap_rb_batch(result) if self.swap_rb else result
        if self._pool is None and self._threads > 1:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="sharpener-host")
        pool, parts = self._pool, self._threads
        buffer = nhwc_u8_to_nchw_f32(batch, self._buffer, self.swap_rb, self._planes, pool, parts)
        if self._out_shape is not None or self._same_shape:
            result = self._run_bound(buffer)
        else:
            (result,) = self.session.run([self.output_name], {self.input_name: buffer})
        self._buffer = buffer
        if self._shuffle is not None:
            shuffle = self._shuffle
            return add_depth_to_space_u8(
                result,
                buffer,
                shuffle.block,
                shuffle.mode,
                self.swap_rb,
                self._planes,
                pool,
                parts,
            )
        if result.ndim != 4 or result.shape[1] != 3:
            raise RuntimeError(f"model returned shape {result.shape}; expected N x 3 x H x W")
        return nchw_f32_to_nhwc_u8(result, self.swap_rb, self._planes, True, pool, parts)

    def _run_bound(self, feed: np.ndarray) -> np.ndarray:
        """``session.run`` into the reused output buffer (bound once; rebound when the input buffer changes)."""
        if self._shuffle is not None:
            shape = self._shuffle.residual_shape(feed.shape)
        else:
            shape = self._out_shape or feed.shape
        if (
            self._binding is None
            or self._buffer is not feed
            or self._output is None
            or self._output.shape != shape
        ):
            self._output = np.empty(shape, np.float32)
            self._binding = self.session.io_binding()
            self._binding.bind_cpu_input(self.input_name, feed)
            self._binding.bind_output(
                self.output_name, "cpu", 0, np.float32, self._output.shape, self._output.ctypes.data
            )
        self.session.run_with_iobinding(self._binding)
        assert self._output is not None
        return self._output

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._buffer = self._output = self._binding = None
