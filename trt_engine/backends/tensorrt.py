"""TensorRT backend for ``.engine`` / ``.plan`` files written by ``build-engine`` (header + plan).

Hand-written on the TensorRT 10 Python API (``Runtime``, ``deserialize_cuda_engine``,
``create_execution_context``, ``num_io_tensors``/``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and cuda-python (``cuda.bindings.runtime``) for memory,
streams, events and CUDA graphs, because Polygraphy's ``TrtRunner`` allocates its own (pageable) host output
arrays on every call and has no double-buffered streaming mode. Polygraphy is used for building and
comparing (``trt_engine.build``).

Design: *slots*, each with its own CUDA stream, execution context, device buffers and pinned host
buffers (``cudaHostAlloc``, allocated once and reused). ``run`` uses its own slot synchronously; ``stream``
alternates two more slots so that the host-side preparation and the download of one batch overlap the upload and
compute of the next. With ``cuda_graph=True`` each slot's upload + enqueue + download is captured once into a
CUDA graph and replayed (static shapes only).

Before any TensorRT object is created the backend checks, in order: cuda-python is importable, a CUDA GPU is
present, the TensorRT flavour named in the header (``tensorrt`` or ``tensorrt_rtx``) is importable, and the
header's TensorRT version and compute capability match this machine. Each failure raises a clear error;
a version/GPU mismatch says "rebuild with build-engine".
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trt_engine.backends.base import Backend, BackendInfo, nchw_f32_to_nhwc_u8, nhwc_u8_to_nchw_f32
from trt_engine.errors import BackendUnavailableError, EngineMismatchError, ModelLoadError
from trt_engine.header import REBUILD_HINT, check_compatible, read_engine
from trt_engine.meta import ModelMeta


def import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python), or a clear error."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT engines need cuda-python for GPU memory and streams: pip install "
            "'image-sharpening-kd[trt]' (or pip install cuda-python); on a machine without a GPU use the "
            ".onnx model instead"
        ) from exc
    return cudart


def import_trt(builder: str) -> Any:
    """The TensorRT flavour that built an engine (``tensorrt`` or ``tensorrt_rtx``), or a clear error."""
    import importlib

    if builder not in ("tensorrt", "tensorrt_rtx"):
        raise ModelLoadError(f"engine header names an unknown builder {builder!r}")
    try:
        return importlib.import_module(builder)
    except ImportError as exc:
        pkg = "tensorrt" if builder == "tensorrt" else "tensorrt-rtx-cu13"
        raise BackendUnavailableError(
            f"this engine was built with {builder}, which is not installed here (pip install {pkg}); "
            "or run the .onnx model with onnxruntime"
        ) from exc


def cuda_check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on error."""
    from cuda.bindings import runtime as cudart

    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        text = msg.decode() if isinstance(msg, bytes) else str(msg)
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)} ({text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_compute_capability(cudart: Any, index: int = 0) -> str:
    """``"major.minor"`` of CUDA device ``index``; :class:`BackendUnavailableError` when there is no GPU."""
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        reason = getattr(err, "name", err) if err != cudart.cudaError_t.cudaSuccess else "0 devices"
        raise BackendUnavailableError(
            f"no CUDA GPU available ({reason}); TensorRT engines run only on a GPU. On this machine use the "
            ".onnx model (onnxruntime, CPU) or the .pt checkpoint"
        )
    if not 0 <= index < count:
        raise BackendUnavailableError(f"CUDA device {index} asked for, but only {count} GPU(s) are present")
    attr = cudart.cudaDeviceAttr
    major = cuda_check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, index))
    minor = cuda_check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, index))
    return f"{major}.{minor}"


def _device_index(device: str | None) -> int:
    if device in (None, "", "cuda", "gpu"):
        return 0
    if device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    raise ValueError(
        f"TensorRT engines run on a GPU: device must be None, 'cuda' or 'cuda:N', got {device!r}"
    )


class _Slot:
    """One stream + execution context + device and pinned host buffers."""

    def __init__(self, owner: TensorRTBackend) -> None:
        cudart = owner.cudart
        self.owner = owner
        self.stream = cuda_check(
            cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate"
        )
        self.event = cuda_check(
            cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreate"
        )
        self.context = owner.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self.d_in = cuda_check(cudart.cudaMalloc(owner.in_bytes_max), "cudaMalloc")
        self.d_out = cuda_check(cudart.cudaMalloc(owner.out_bytes_max), "cudaMalloc")
        self.h_in_ptr = cuda_check(
            cudart.cudaHostAlloc(owner.in_bytes_max, cudart.cudaHostAllocDefault), "cudaHostAlloc"
        )
        self.h_out_ptr = cuda_check(
            cudart.cudaHostAlloc(owner.out_bytes_max, cudart.cudaHostAllocDefault), "cudaHostAlloc"
        )
        self.h_in = _host_view(self.h_in_ptr, owner.in_bytes_max)
        self.h_out = _host_view(self.h_out_ptr, owner.out_bytes_max)
        if not self.context.set_tensor_address(owner.in_name, int(self.d_in)):
            raise RuntimeError(f"set_tensor_address({owner.in_name!r}) failed")
        if not self.context.set_tensor_address(owner.out_name, int(self.d_out)):
            raise RuntimeError(f"set_tensor_address({owner.out_name!r}) failed")
        self.shape: tuple[int, ...] | None = None
        self.graph: Any = None
        self.graph_exec: Any = None
        self.graph_failed = False

    def set_shape(self, shape: tuple[int, ...]) -> None:
        if self.shape != shape:
            if self.owner.dynamic and not self.context.set_input_shape(self.owner.in_name, shape):
                raise ValueError(f"the engine's optimisation profile does not accept input shape {shape}")
            self.shape = shape
            self._drop_graph()

    def _enqueue_body(self, in_bytes: int, out_bytes: int) -> None:
        cudart = self.owner.cudart
        kind = cudart.cudaMemcpyKind
        cuda_check(
            cudart.cudaMemcpyAsync(
                self.d_in, self.h_in_ptr, in_bytes, kind.cudaMemcpyHostToDevice, self.stream
            ),
            "cudaMemcpyAsync H2D",
        )
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        cuda_check(
            cudart.cudaMemcpyAsync(
                self.h_out_ptr, self.d_out, out_bytes, kind.cudaMemcpyDeviceToHost, self.stream
            ),
            "cudaMemcpyAsync D2H",
        )

    def enqueue(self, in_bytes: int, out_bytes: int) -> None:
        """Upload, compute and download on this slot's stream, then record its event (all asynchronous)."""
        cudart = self.owner.cudart
        if self.graph_exec is not None:
            cuda_check(cudart.cudaGraphLaunch(self.graph_exec, self.stream), "cudaGraphLaunch")
        else:
            self._enqueue_body(in_bytes, out_bytes)
            if self.owner.cuda_graph and not self.owner.dynamic and not self.graph_failed:
                self._capture(in_bytes, out_bytes)
        cuda_check(cudart.cudaEventRecord(self.event, self.stream), "cudaEventRecord")

    def _capture(self, in_bytes: int, out_bytes: int) -> None:
        """Capture upload + enqueue + download once (after a first normal run, as TensorRT requires)."""
        cudart = self.owner.cudart
        cuda_check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            cuda_check(cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
            try:
                self._enqueue_body(in_bytes, out_bytes)
            finally:
                graph = cuda_check(cudart.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
            self.graph = graph
            self.graph_exec = cuda_check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except RuntimeError as exc:
            self.graph_failed = True
            self._drop_graph()
            print(f"[trt_engine] CUDA graph capture failed, running without it: {exc}")

    def wait(self) -> None:
        cuda_check(self.owner.cudart.cudaEventSynchronize(self.event), "cudaEventSynchronize")

    def _drop_graph(self) -> None:
        cudart = self.owner.cudart
        if self.graph_exec is not None:
            cudart.cudaGraphExecDestroy(self.graph_exec)
        if self.graph is not None:
            cudart.cudaGraphDestroy(self.graph)
        self.graph = self.graph_exec = None

    def close(self) -> None:
        cudart = self.owner.cudart
        cudart.cudaStreamSynchronize(self.stream)
        self._drop_graph()
        self.context = None
        self.h_in = self.h_out = None
        for ptr in (self.d_in, self.d_out):
            cudart.cudaFree(ptr)
        for ptr in (self.h_in_ptr, self.h_out_ptr):
            cudart.cudaFreeHost(ptr)
        cudart.cudaEventDestroy(self.event)
        cudart.cudaStreamDestroy(self.stream)


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    """A numpy uint8 view of ``nbytes`` of pinned host memory at ``ptr`` (valid until cudaFreeHost)."""
    buf = (ctypes.c_uint8 * nbytes).from_address(int(ptr))
    return np.frombuffer(buf, dtype=np.uint8, count=nbytes)


class TensorRTBackend(Backend):
    """A deserialized engine with two double-buffered execution slots; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        swap_rb: bool = False,
        threads: int | None = None,
        cuda_graph: bool = False,
    ) -> None:
        p = Path(path)
        meta, plan = read_engine(p)  # header validated: magic, version, truncation, checksum
        index = _device_index(device)
        self.cudart = cudart = import_cudart()
        cc = gpu_compute_capability(cudart, index)
        trt = import_trt(str(meta["builder"]))
        check_compatible(
            meta,
            builder=str(meta["builder"]),
            trt_version=trt.__version__,
            compute_capability=cc,
            source=str(p),
        )
        cuda_check(cudart.cudaSetDevice(index), "cudaSetDevice")

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineMismatchError(
                f"TensorRT could not deserialize {p} (see its log above); {REBUILD_HINT}"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise ModelLoadError(f"{p}: engine has inputs {ins} and outputs {outs}; expected one of each")
        self.in_name, self.out_name = ins[0], outs[0]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.in_name)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out_name)))
        shape = tuple(self.engine.get_tensor_shape(self.in_name))
        self.dynamic = any(d < 0 for d in shape)
        if self.dynamic:
            _, _, max_shape = self.engine.get_tensor_profile_shape(self.in_name, 0)
            self.max_in_shape = tuple(max_shape)
        else:
            self.max_in_shape = shape
        io = str(meta["io"])
        if io == "uint8_nhwc":
            if self.in_dtype != np.uint8 or self.out_dtype != np.uint8 or self.max_in_shape[-1] != 3:
                raise ModelLoadError(
                    f"{p}: header says uint8_nhwc but the engine input is {self.in_dtype} {shape}"
                )
            n, h, w = self.max_in_shape[0], self.max_in_shape[1], self.max_in_shape[2]
        elif io == "float32_nchw":
            if self.in_dtype != np.float32 or self.max_in_shape[1] != 3:
                raise ModelLoadError(
                    f"{p}: header says float32_nchw but the engine input is {self.in_dtype} {shape}"
                )
            n, h, w = self.max_in_shape[0], self.max_in_shape[2], self.max_in_shape[3]
        else:
            raise ModelLoadError(f"{p}: unknown io kind {io!r} in the header")
        self.io = io
        self.in_bytes_max = int(np.prod(self.max_in_shape)) * self.in_dtype.itemsize
        self.out_bytes_max = int(np.prod(self.max_in_shape)) * self.out_dtype.itemsize
        self.swap_rb = swap_rb
        self.cuda_graph = cuda_graph
        # One slot for run(); two more, created on first use, for stream()'s double buffering. Keeping them
        # apart lets a process() call interleave with a running stream() without clobbering its buffers.
        self._run_slot: _Slot | None = None
        self._stream_slots: list[_Slot] = []
        self._run_slot = _Slot(self)
        contract = ModelMeta.from_dict(meta)
        self.info = BackendInfo(
            backend="tensorrt",
            path=str(p),
            device=f"cuda:{index} (compute capability {cc})",
            precision=contract.precision,
            io=io,
            batch=None if self.dynamic else int(n),
            height=None if self.dynamic else int(h),
            width=None if self.dynamic else int(w),
            multiple=contract.multiple,
            color=contract.color,
            providers=[f"{meta['builder']} {trt.__version__}"],
            metadata=meta,
            host_memory="pinned staging buffers, reused",
        )

    # -- host side staging ------------------------------------------------------------------------------
    def _model_shape(self, batch: np.ndarray) -> tuple[int, ...]:
        n, h, w, _ = batch.shape
        return (n, h, w, 3) if self.io == "uint8_nhwc" else (n, 3, h, w)

    def _stage(self, slot: _Slot, batch: np.ndarray) -> tuple[int, int]:
        """Write ``batch`` into the slot's pinned input buffer; return (input bytes, output bytes)."""
        import cv2

        shape = self._model_shape(batch)
        slot.set_shape(shape)
        count = int(np.prod(shape))
        if self.io == "uint8_nhwc":
            view = slot.h_in[:count].reshape(batch.shape)
            for i in range(batch.shape[0]):
                frame = np.ascontiguousarray(batch[i])
                if self.swap_rb:
                    cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=view[i])
                else:
                    view[i] = frame
        else:
            view = slot.h_in[: count * 4].view(np.float32).reshape(shape)
            nhwc_u8_to_nchw_f32(batch, out=view, swap_rb=self.swap_rb)
        return count * self.in_dtype.itemsize, count * self.out_dtype.itemsize

    def _collect(self, slot: _Slot, batch_shape: tuple[int, ...], out_bytes: int) -> np.ndarray:
        """A new array holding the slot's pinned output (colour order restored)."""
        import cv2

        raw = slot.h_out[:out_bytes]
        if self.io == "uint8_nhwc":
            view = raw.reshape(batch_shape)
            if not self.swap_rb:
                return view.copy()
            out = np.empty(batch_shape, np.uint8)
            for i in range(batch_shape[0]):
                cv2.cvtColor(view[i], cv2.COLOR_RGB2BGR, dst=out[i])
            return out
        n, h, w, _ = batch_shape
        view = raw.view(self.out_dtype).reshape(n, 3, h, w)
        return nchw_f32_to_nhwc_u8(view, swap_rb=self.swap_rb)

    # -- public interface -------------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        slot = self._run_slot
        if slot is None:
            raise RuntimeError("backend is closed")
        in_bytes, out_bytes = self._stage(slot, batch)
        slot.enqueue(in_bytes, out_bytes)
        slot.wait()
        return self._collect(slot, batch.shape, out_bytes)

    def stream(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if not self._stream_slots:
            self._stream_slots = [_Slot(self), _Slot(self)]
        pending: deque[tuple[_Slot, tuple[int, ...], int]] = deque()
        for i, batch in enumerate(batches):
            slot = self._stream_slots[i % 2]
            if len(pending) == 2:  # the oldest batch owns the slot about to be reused
                old, shape, nbytes = pending.popleft()
                old.wait()
                yield self._collect(old, shape, nbytes)
            in_bytes, out_bytes = self._stage(slot, batch)
            slot.enqueue(in_bytes, out_bytes)
            pending.append((slot, batch.shape, out_bytes))
        while pending:
            old, shape, nbytes = pending.popleft()
            old.wait()
            yield self._collect(old, shape, nbytes)

    def close(self) -> None:
        for slot in [self._run_slot, *self._stream_slots]:
            if slot is not None:
                slot.close()
        self._run_slot, self._stream_slots = None, []
        self.engine = None
        self.runtime = None
