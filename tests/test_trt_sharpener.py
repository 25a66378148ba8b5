"""Sharpener: backend parity with the torch model, padding, colour order, batching, streaming, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kd_trainer.testing import make_student, photo_frames, torch_reference
from trt_engine import Sharpener
from trt_engine.backends.base import (
    PlaneBuffers,
    add_depth_to_space_u8,
    nchw_f32_to_nhwc_u8,
    nhwc_u8_to_nchw_f32,
)
from trt_engine.errors import BackendUnavailableError, EngineHeaderError, FrameError, ModelLoadError

H, W = 64, 96
# Tolerance vs the torch model, in uint8 levels. Measured: 0 on these frames; 1 allows a float rounding tie.
LEVELS = 1


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("student"), height=H, width=W)


@pytest.fixture(scope="module")
def frames():
    inputs, _ = photo_frames(H, W)
    return inputs


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_student_is_not_identity(student, frames):
    out = torch_reference(student.model, frames[0])
    assert _max_diff(out, frames[0]) > 20, "test student must change frames, or parity tests prove nothing"


@pytest.mark.parametrize("which", ["onnx", "onnx_uint8", "pt"])
def test_backend_matches_torch_model(student, frames, which):
    path = {"onnx": student.onnx, "onnx_uint8": student.onnx_uint8, "pt": student.pt}[which]
    with Sharpener(path, color="rgb") as sharpener:
        for frame in frames:
            out = sharpener.process(frame)
            assert out.shape == frame.shape and out.dtype == np.uint8
            assert _max_diff(out, torch_reference(student.model, frame)) <= LEVELS


@pytest.mark.parametrize("which", ["onnx", "onnx_uint8", "pt"])
def test_bgr_is_rgb_reversed(student, frames, which):
    path = {"onnx": student.onnx, "onnx_uint8": student.onnx_uint8, "pt": student.pt}[which]
    with Sharpener(path, color="rgb") as rgb, Sharpener(path) as bgr:
        assert bgr.info["color"] == "bgr" and bgr.info["model_color"] == "rgb"
        out_rgb = rgb.process(frames[0])
        out_bgr = bgr.process(np.ascontiguousarray(frames[0][..., ::-1]))
        assert _max_diff(out_bgr[..., ::-1], out_rgb) <= LEVELS
        # and the colour order really matters for this model (otherwise the test is vacuous)
        wrong = rgb.process(np.ascontiguousarray(frames[0][..., ::-1]))[..., ::-1]
        assert _max_diff(wrong, out_rgb) > 2


def _reflect_reference(model, frame, th, tw):
    """Torch output on the frame reflect-padded (numpy's own padding) to th x tw, cropped back."""
    h, w = frame.shape[:2]
    padded = np.pad(frame, ((0, th - h), (0, tw - w), (0, 0)), mode="reflect")
    return torch_reference(model, padded)[:h, :w]


@pytest.mark.parametrize("size", [(60, 90), (1, 1), (3, 96), (64, 5), (17, 33)])
def test_small_frames_are_padded_and_cropped(student, frames, size):
    h, w = size
    frame = np.ascontiguousarray(frames[1][:h, :w])
    with Sharpener(student.onnx, color="rgb") as fixed, Sharpener(student.pt, color="rgb") as dynamic:
        a, b = fixed.process(frame), dynamic.process(frame)
        assert a.shape == b.shape == (h, w, 3)
        # fixed 64x96 model: padded to 64x96; checkpoint (any size): padded to the next multiple of 8
        assert _max_diff(a, _reflect_reference(student.model, frame, H, W)) <= LEVELS
        assert (
            _max_diff(b, _reflect_reference(student.model, frame, -(-h // 8) * 8, -(-w // 8) * 8)) <= LEVELS
        )
    if (h, w) == (60, 90):  # the torch model's own internal padding agrees
        assert _max_diff(a, torch_reference(student.model, frame)) <= LEVELS


def test_non_contiguous_frames(student, frames):
    big = np.ascontiguousarray(np.repeat(frames[0], 2, axis=1))
    strided = big[:, ::2]  # non-contiguous view equal to frames[0]
    assert not strided.flags.c_contiguous
    with Sharpener(student.onnx, color="rgb") as s:
        assert np.array_equal(s.process(strided), s.process(frames[0]))
        reversed_view = frames[0][..., ::-1]  # negative strides (a BGR view)
        with Sharpener(student.onnx, color="bgr") as sb:
            assert np.array_equal(sb.process(reversed_view)[..., ::-1], s.process(frames[0]))


def test_output_is_a_new_array(student, frames):
    for path in (student.onnx, student.onnx_uint8, student.pt):
        with Sharpener(path, color="rgb") as s:
            first = s.process(frames[0])
            keep = first.copy()
            second = s.process(frames[1])
            assert np.array_equal(first, keep), f"{path.name}: a later call changed an earlier result"
            assert not np.shares_memory(first, second)
            assert not np.shares_memory(first, frames[0])
            first[...] = 0  # writable, and writing it does not disturb the Sharpener
            assert np.array_equal(s.process(frames[0]), keep)


def test_static_onnx_reuses_its_host_buffers(student, frames):
    """No per-frame multi-megabyte allocations on the CPU path: input, output and planes are reused."""
    with Sharpener(student.onnx, color="rgb") as s:
        s.process(frames[0])
        backend = s.backend
        kept = (backend._buffer, backend._output, *backend._planes.get(H, W))
        assert all(isinstance(a, np.ndarray) for a in kept)
        assert _max_diff(s.process(frames[1]), torch_reference(student.model, frames[1])) <= LEVELS
        assert all(
            a is b
            for a, b in zip(kept, (backend._buffer, backend._output, *backend._planes.get(H, W)), strict=True)
        )


def test_host_conversions_with_reused_buffers_are_exact():
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(2)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 12, 20, 3), dtype=np.uint8)
    buffers = PlaneBuffers()
    for swap in (False, True):
        x = nhwc_u8_to_nchw_f32(frames, swap_rb=swap, buffers=buffers)
        src = frames[..., ::-1] if swap else frames
        assert np.array_equal(x, src.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
        y = rng.normal(0.5, 0.6, x.shape).astype(np.float32)
        y[0, 0, 0, 0] = np.nan
        expected = (
            np.round(np.clip(np.nan_to_num(y, nan=0.0), 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        )
        expected = expected[..., ::-1] if swap else expected
        before = y.copy()
        kept = nchw_f32_to_nhwc_u8(y, swap_rb=swap, buffers=buffers)
        assert np.array_equal(kept, expected) and np.array_equal(y, before, equal_nan=True)
        assert np.array_equal(nchw_f32_to_nhwc_u8(y.copy(), swap, buffers, True, pool, 3), expected)
        assert np.array_equal(nchw_f32_to_nhwc_u8(y, swap_rb=swap, buffers=buffers, overwrite=True), expected)
        assert np.nanmin(y) >= 0  # overwrite=True clipped the scratch buffer in place
        # the same conversions in strips on threads
        assert np.array_equal(nhwc_u8_to_nchw_f32(frames, None, swap, buffers, pool, 3), x)


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_host_depth_to_space_is_the_onnx_op_plus_the_conversion(mode):
    """add_depth_to_space_u8 == (image + DepthToSpace(residual)) converted, for both ONNX layouts, in strips on
    a thread pool, with NaN and values outside [0, 1]."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(1)
    n, block, h, w = 2, 4, 12, 20
    image = rng.uniform(0, 1, (n, 3, h, w)).astype(np.float32)
    residual = rng.normal(0, 0.4, (n, 3 * block * block, h // block, w // block)).astype(np.float32)
    residual[1, 5, 1, 2] = np.nan
    if mode == "CRD":  # channel = colour * block^2 + row * block + column
        cells = residual.reshape(n, 3, block, block, h // block, w // block)
    else:  # channel = (row * block + column) * 3 + colour
        cells = residual.reshape(n, block, block, 3, h // block, w // block).transpose(0, 3, 1, 2, 4, 5)
    shuffled = cells.transpose(0, 1, 4, 2, 5, 3).reshape(n, 3, h, w)
    summed = image + shuffled
    assert np.nanmin(summed) < 0 and np.nanmax(summed) > 1, (
        "the sum must leave [0, 1], or clipping is untested"
    )
    expected = nchw_f32_to_nhwc_u8(summed)
    buffers = PlaneBuffers()
    with ThreadPoolExecutor(2) as pool:
        for parts, swap in ((1, False), (2, True), (3, False)):
            got = add_depth_to_space_u8(residual, image, block, mode, swap, buffers, pool, parts)
            assert np.array_equal(got, expected[..., ::-1] if swap else expected), (parts, swap)
    with pytest.raises(ValueError, match="does not fill"):
        add_depth_to_space_u8(residual[:, :12], image, block, mode)


def test_pixel_shuffle_moves_to_the_host_without_changing_a_level(tmp_path):
    """On a CPU the ORT backend runs a student's final DepthToSpace + Add on the host (onnxruntime's is a slow
    single-threaded transpose): the rewritten graph outputs the low-resolution residual, and the frames equal
    the unmodified graph's, in both colour orders and in batches."""
    import onnx
    import onnxruntime as ort

    from trt_engine.backends.onnxrt import _host_pixel_shuffle, _without_final_clip

    files = make_student(tmp_path, name="runet-f2", height=H, width=W, batch=2, uint8=False, tail_std=0.5)
    model = onnx.load(str(files.onnx))
    assert [n.op_type for n in model.graph.node[-3:]] == ["DepthToSpace", "Add", "Clip"]
    assert _host_pixel_shuffle(model) is None, "only after the final Clip is dropped"
    _without_final_clip(model)
    shuffle = _host_pixel_shuffle(model)
    assert shuffle is not None and (shuffle.block, shuffle.mode) == (4, "CRD")
    assert {"DepthToSpace", "Add"}.isdisjoint(n.op_type for n in model.graph.node[-1:])

    inputs, _ = photo_frames(H, W)
    checker = np.kron((np.indices((H // 4, W // 4)).sum(0) % 2) * 255, np.ones((4, 4)))[..., None]
    batch = np.stack([inputs[0], np.repeat(checker, 3, axis=2).astype(np.uint8)])
    session = ort.InferenceSession(str(files.onnx), providers=["CPUExecutionProvider"])
    (reference,) = session.run(None, {session.get_inputs()[0].name: nhwc_u8_to_nchw_f32(batch)})
    expected = nchw_f32_to_nhwc_u8(reference)
    assert _max_diff(expected, batch) > 20, "the student must change the frames, or this shows nothing"
    with Sharpener(files.onnx, color="rgb", batch=2) as rgb, Sharpener(files.onnx, batch=2) as bgr:
        assert rgb.backend._shuffle == shuffle
        assert np.array_equal(rgb.process_batch(batch), expected)
        assert np.array_equal(bgr.process_batch(batch[..., ::-1].copy()), expected[..., ::-1])


def test_shipped_fast_onnx_with_the_host_shuffle_matches_its_checkpoint_at_odd_sizes():
    """The shipped dynamic-size ``fast.onnx`` (its pixel shuffle runs on the host) on frames whose sizes are not
    multiples of 4, in one process_batch call: the torch checkpoint's output, within the float tolerance."""
    from kd_trainer.models.student import load_student
    from kd_trainer.paths import SHIPPED_STUDENTS_DIR

    model, _ = load_student(SHIPPED_STUDENTS_DIR / "fast.pt")
    model.eval()
    inputs, _ = photo_frames(H, W)
    frames = [np.ascontiguousarray(inputs[0][:61, :93]), inputs[1], np.ascontiguousarray(inputs[1][3:, 5:])]
    with Sharpener(SHIPPED_STUDENTS_DIR / "fast.onnx", color="rgb") as sharpener:
        assert sharpener.backend._shuffle is not None
        outs = sharpener.process_batch(frames)
    for frame, out in zip(frames, outs, strict=True):
        reference = torch_reference(model, frame)
        assert out.shape == frame.shape and _max_diff(reference, frame) > 0
        assert _max_diff(out, reference) <= LEVELS


def test_pixel_shuffle_stays_in_graphs_that_use_it_elsewhere(student):
    """runet-n adds a full-resolution detail conv after its pixel shuffle: nothing is moved."""
    import onnx

    from trt_engine.backends.onnxrt import _host_pixel_shuffle, _without_final_clip

    model = onnx.load(str(student.onnx))
    _without_final_clip(model)
    before = model.SerializeToString()
    assert _host_pixel_shuffle(model) is None and model.SerializeToString() == before
    with Sharpener(student.onnx) as sharpener:
        assert sharpener.backend._shuffle is None


def test_process_batch_array_list_and_mixed_sizes(student, frames):
    with Sharpener(student.pt, color="rgb", batch=2) as s:
        stack = np.stack(frames + frames[:1])
        out = s.process_batch(stack)
        assert isinstance(out, np.ndarray) and out.shape == stack.shape
        for i in range(len(stack)):
            assert np.array_equal(out[i], s.process(stack[i]))
        mixed = [frames[0], frames[1][:40, :50], frames[0][:33]]
        outs = s.process_batch(mixed)
        assert isinstance(outs, list) and [o.shape for o in outs] == [m.shape for m in mixed]
        for m, o in zip(mixed, outs, strict=True):
            assert np.array_equal(o, s.process(m))
        assert s.process_batch([]) == []


def test_fixed_batch_model(tmp_path, frames):
    files = make_student(tmp_path, height=H, width=W, batch=2, uint8=False)
    with pytest.raises(ValueError, match="fixed batch of 2"):
        Sharpener(files.onnx, batch=3)
    with Sharpener(files.onnx, color="rgb") as s:
        assert s.batch == 2 and s.info["model_batch"] == 2
        three = [frames[0], frames[1], frames[0][:50, :70]]
        outs = s.process_batch(three)  # 2 + 1 (padded with an unused slot)
        for f, o in zip(three, outs, strict=True):
            assert _max_diff(o, _reflect_reference(files.model, f, H, W)) <= LEVELS
        assert _max_diff(s.process(frames[1]), torch_reference(files.model, frames[1])) <= LEVELS
        streamed = list(s.stream(iter(three)))
        assert all(np.array_equal(a, b) for a, b in zip(streamed, outs, strict=True))


def test_dynamic_shape_onnx(tmp_path, student, frames):
    """An ONNX with symbolic N/H/W: the Sharpener pads to the student's multiple (8) itself."""
    import onnx

    model = onnx.load(str(student.onnx))
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for k, name in ((0, "N"), (2, "H"), (3, "W")):
            dims[k].Clear()
            dims[k].dim_param = name
    del model.graph.value_info[:]
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    big = np.ascontiguousarray(
        np.concatenate([frames[0], frames[1]], axis=1)[:, :150]
    )  # 64x150: not a multiple of 8
    with Sharpener(path, color="rgb") as s:
        assert s.info["height"] is None and s.info["multiple"] == 8
        out = s.process(big)
        assert out.shape == big.shape
        assert _max_diff(out, torch_reference(student.model, big)) <= LEVELS


def test_stream_matches_process_and_keeps_order(student, frames):
    seq = [frames[i % 2][: 64 - (i % 3), : 96 - (i % 5)] for i in range(12)]
    with Sharpener(student.onnx, color="rgb") as s:
        expected = [s.process(f) for f in seq]
        got = list(s.stream(iter(seq)))
        assert len(got) == len(seq)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_stream_bad_frame_raises_at_its_index(student, frames):
    def gen():
        yield frames[0]
        yield frames[1]
        yield frames[0].astype(np.float32)

    with Sharpener(student.onnx) as s:
        it = s.stream(gen())
        with pytest.raises(FrameError, match="frame 2"):
            list(it)


def test_stream_early_break_and_generator_errors(student, frames):
    def endless():
        while True:
            yield frames[0]

    with Sharpener(student.onnx) as s:
        it = s.stream(endless())
        for k, _ in enumerate(it):
            if k == 5:
                break
        it.close()  # the reader thread stops; the Sharpener still works
        assert s.process(frames[0]).shape == frames[0].shape

        def broken():
            yield frames[0]
            raise OSError("decoder died")

        with pytest.raises(OSError, match="decoder died"):
            list(s.stream(broken()))


def test_stream_memory_stays_flat(student, frames):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()

    def many(n):
        for i in range(n):
            yield frames[i % 2]

    with Sharpener(student.onnx) as s:
        for _ in s.stream(many(50)):  # warm-up: allocator pools, ORT arenas
            pass
        before = proc.memory_info().rss
        count = sum(1 for _ in s.stream(many(1500)))
        growth = proc.memory_info().rss - before
    assert count == 1500
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 1500 frames"


BAD_FRAMES = {
    "float32": np.zeros((H, W, 3), np.float32),
    "float64 in [0,1]": np.full((H, W, 3), 0.5),
    "uint16": np.zeros((H, W, 3), np.uint16),
    "int8": np.zeros((H, W, 3), np.int8),
    "bool": np.zeros((H, W, 3), bool),
    "2-D grey": np.zeros((H, W), np.uint8),
    "4 channels": np.zeros((H, W, 4), np.uint8),
    "1 channel": np.zeros((H, W, 1), np.uint8),
    "batch passed to process": np.zeros((2, H, W, 3), np.uint8),
    "empty rows": np.zeros((0, W, 3), np.uint8),
    "empty cols": np.zeros((H, 0, 3), np.uint8),
    "1-D": np.zeros(10, np.uint8),
    "0-D": np.array(3, np.uint8),
    "list": [[[0, 0, 0]]],
    "None": None,
    "too tall for the fixed model": np.zeros((H + 1, W, 3), np.uint8),
    "too wide for the fixed model": np.zeros((H, W + 8, 3), np.uint8),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_frames_are_refused_clearly(student, name):
    with Sharpener(student.onnx) as s:
        with pytest.raises(ValueError) as info:
            s.process(BAD_FRAMES[name])
    assert isinstance(info.value, FrameError)
    text = str(info.value)
    if "fixed model" in name:
        assert f"{H}x{W}" in text and "export" in text
    else:
        assert "HxWx3 uint8" in text and "got" in text


def test_bad_batches_are_refused(student, frames):
    with Sharpener(student.pt) as s:
        with pytest.raises(FrameError, match="frame 1"):
            s.process_batch([frames[0], frames[0].astype(np.float32)])
        with pytest.raises(FrameError):
            s.process_batch(np.zeros((2, H, W), np.uint8))
        with pytest.raises(FrameError):
            s.process_batch("not frames")
        with pytest.raises(FrameError, match="side limit"):
            s.process(np.zeros((1, 20000, 3), np.uint8))


@pytest.fixture(scope="module")
def fuzz_sharpener(student):
    with Sharpener(student.onnx) as s:
        yield s


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(0, 80),
    w=st.integers(0, 110),
    c=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.float32, np.int16]),
    step=st.sampled_from([1, 2, -1]),
)
def test_fuzz_process(fuzz_sharpener, h, w, c, dtype, step):
    """Any array either sharpens to the same shape or raises FrameError; nothing else happens."""
    base = np.arange(h * w * abs(step) * c, dtype=np.int64).reshape(h, w * abs(step), c) % 251
    frame = base.astype(dtype)[:, ::step]
    valid = dtype is np.uint8 and c == 3 and 0 < h <= H and 0 < w <= W
    if valid:
        out = fuzz_sharpener.process(frame)
        assert out.shape == frame.shape and out.dtype == np.uint8
    else:
        with pytest.raises(FrameError):
            fuzz_sharpener.process(frame)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 70), st.integers(1, 100)), min_size=0, max_size=5),
    bad_at=st.one_of(st.none(), st.integers(0, 4)),
)
def test_fuzz_process_batch(fuzz_sharpener, sizes, bad_at):
    frames = [np.full((h, w, 3), (h * 7 + w) % 256, np.uint8) for h, w in sizes]
    if bad_at is not None and bad_at < len(frames):
        frames[bad_at] = frames[bad_at].astype(np.float32)
    fits = all(h <= H and w <= W for h, w in sizes)
    if bad_at is not None and bad_at < len(frames) or not fits:
        with pytest.raises(FrameError):
            fuzz_sharpener.process_batch(frames)
        return
    outs = fuzz_sharpener.process_batch(frames)
    assert [o.shape for o in outs] == [f.shape for f in frames]
    for f, o in zip(frames, outs, strict=True):
        assert np.array_equal(o, fuzz_sharpener.process(f))


def test_unknown_suffix_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"supported: \.engine"):
        Sharpener(tmp_path / "model.tflite")
    with pytest.raises(FileNotFoundError):
        Sharpener(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="color"):
        Sharpener(tmp_path / "missing.onnx", color="yuv")


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".engine"])
def test_zero_byte_and_corrupt_models(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    corrupt = tmp_path / f"corrupt{suffix}"
    corrupt.write_bytes(b"\x08\x07garbage that is not a model" * 10)
    for path in (empty, corrupt):
        with pytest.raises(ValueError) as info:
            Sharpener(path)
        assert path.name in str(info.value)
        if suffix == ".engine":
            assert isinstance(info.value, EngineHeaderError) and "build-engine" in str(info.value)
        elif suffix == ".onnx":
            assert isinstance(info.value, ModelLoadError)


def test_truncated_onnx(tmp_path, student):
    data = student.onnx.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        Sharpener(cut)


def test_wrong_kind_of_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    path = tmp_path / "vector.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelLoadError, match="4-D image batch"):
        Sharpener(path)


def test_engine_needs_gpu_here(tmp_path):
    """A well-formed engine file on a machine without GPU/cuda-python: a clear BackendUnavailableError."""
    from trt_engine.header import write_engine

    meta = {
        "builder": "tensorrt",
        "trt_version": "10.9.0",
        "compute_capabilities": ["9.0"],
        "io": "uint8_nhwc",
        "inputs": [{"name": "frames", "shape": [1, H, W, 3], "dtype": "uint8"}],
        "outputs": [{"name": "frames_out", "shape": [1, H, W, 3], "dtype": "uint8"}],
        "color": "rgb",
        "precision": "fp16",
    }
    path = write_engine(tmp_path / "x.engine", meta, b"not really a plan")
    try:
        from cuda.bindings import runtime as cudart

        has_gpu = cudart.cudaGetDeviceCount()[1] not in (None, 0)
    except ImportError:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is present; see the gpu-marked tests")
    with pytest.raises(BackendUnavailableError, match="GPU|cuda-python"):
        Sharpener(path)
    with pytest.raises(ValueError, match="GPU"):
        Sharpener(path, device="cpu")


def test_info_repr_and_close(student):
    s = Sharpener(student.onnx_uint8, color="rgb")
    info = s.info
    assert info["backend"] == "onnxruntime" and info["io"] == "uint8_nhwc"
    assert info["host_memory"] == "host only (no device copies)"  # CPU: frames never leave host memory
    assert (info["height"], info["width"], info["batch"]) == (H, W, 1)
    assert info["precision"] == "fp32" and info["metadata"]["student"] == "runet-n"
    assert "64x96" in repr(s)
    s.close()
    s.close()
    assert "closed" in repr(s)
    with pytest.raises(RuntimeError, match="closed"):
        s.process(np.zeros((H, W, 3), np.uint8))


def test_import_is_lazy():
    code = (
        "import sys, trt_engine, trt_engine.header, trt_engine.backends;"
        "bad = [m for m in ('tensorrt', 'tensorrt_rtx', 'cuda', 'onnxruntime', 'torch', 'polygraphy') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.gpu
def test_torch_cuda_fp16_matches_cpu(student, frames):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    with Sharpener(student.pt, device="cuda", color="rgb") as gpu, Sharpener(student.pt, color="rgb") as cpu:
        assert gpu.info["precision"] == "fp16"
        for frame in frames:
            assert _max_diff(gpu.process(frame), cpu.process(frame)) <= 3  # fp16 vs fp32: a few levels
        streamed = list(gpu.stream(iter(frames * 5)))
        assert all(np.array_equal(a, gpu.process(b)) for a, b in zip(streamed, frames * 5, strict=True))


@pytest.mark.gpu
def test_onnxruntime_cuda_provider(student, frames):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    with Sharpener(student.onnx, device="cuda", color="rgb") as s:
        assert _max_diff(s.process(frames[0]), torch_reference(student.model, frames[0])) <= LEVELS


def test_cuda_device_refused_without_gpu(student):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("GPU present")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        Sharpener(student.pt, device="cuda")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        Sharpener(student.onnx, device="cuda")


def test_final_clip_is_dropped_without_changing_a_level(student):
    """The ORT backend drops the graph's last Clip(0, 1) (the host conversion saturates anyway): the graph loses
    exactly that node, and the uint8 frames equal those of the unmodified graph on a frame it drives outside
    [0, 1] (a hard checkerboard: sharpening overshoots both ends)."""
    import onnx
    import onnxruntime as ort

    from trt_engine.backends.onnxrt import _without_final_clip

    original = onnx.load(str(student.onnx))
    lean = onnx.ModelProto.FromString(_without_final_clip(onnx.load(str(student.onnx))))
    assert original.graph.node[-1].op_type == "Clip"
    assert len(lean.graph.node) == len(original.graph.node) - 1
    assert "Clip" not in {n.op_type for n in lean.graph.node[-1:]}
    assert _without_final_clip(onnx.load(str(student.onnx_uint8))) is None  # ends in a Cast: nothing to drop

    frame = np.kron((np.indices((H // 4, W // 4)).sum(0) % 2) * 255, np.ones((4, 4)))[..., None]
    frame = np.repeat(frame, 3, axis=2).astype(np.uint8)
    feed = nhwc_u8_to_nchw_f32(frame[None])
    session = ort.InferenceSession(str(student.onnx), providers=["CPUExecutionProvider"])
    (clipped,) = session.run(None, {session.get_inputs()[0].name: feed})
    raw = ort.InferenceSession(lean.SerializeToString(), providers=["CPUExecutionProvider"])
    (unclipped,) = raw.run(None, {raw.get_inputs()[0].name: feed})
    assert unclipped.min() < 0.0 and unclipped.max() > 1.0, (
        "the frame must leave [0, 1], or this shows nothing"
    )
    expected = nchw_f32_to_nhwc_u8(clipped)[0]
    with Sharpener(student.onnx, color="rgb") as sharpener:
        assert np.array_equal(sharpener.process(frame), expected)
