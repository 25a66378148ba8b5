"""Sharpener.stream delivers every processed frame before a source error, with no extra frame of latency;
a model whose output size differs from its input is refused, never cropped."""

import threading

import numpy as np
import pytest

from kd_trainer.testing import make_student
from trt_engine import Sharpener
from trt_engine.errors import FrameError, ModelLoadError


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("student"), uint8=False)


def _frames(n, h=32, w=48):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("batch", [1, 3])
def test_every_good_frame_is_delivered_before_the_source_error(student, batch):
    frames = _frames(5)

    def source():
        yield from frames
        raise OSError("camera unplugged")

    got = []
    with Sharpener(student.pt, batch=batch) as sh:
        with pytest.raises(OSError, match="camera unplugged"):
            for out in sh.stream(source()):
                got.append(out)
        expected = [sh.process(f) for f in frames]
    assert len(got) == 5
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_frames_before_a_bad_frame_are_delivered(student):
    frames = [*_frames(3), np.zeros((4, 4), np.uint8)]
    got = []
    with Sharpener(student.pt) as sh, pytest.raises(FrameError, match="frame 3"):
        for out in sh.stream(iter(frames)):
            got.append(out)
    assert len(got) == 3


def test_no_extra_frame_of_latency(student):
    """Frame i comes out while the source is still blocked waiting for frame i+1 (a live camera)."""
    frames = _frames(3)
    release = [threading.Event() for _ in frames]

    def camera():
        for i, frame in enumerate(frames):
            yield frame
            assert release[i].wait(10), "the next frame was never asked for in time"

    with Sharpener(student.pt) as sh:
        it = sh.stream(camera())
        for i in range(len(frames)):
            out = next(it)  # would hang until frame i+1 arrives if the reader held frame i back
            assert out.shape == frames[i].shape
            release[i].set()
        assert list(it) == []


class _Cropping:
    """A backend wrapper whose model returns a frame 8 pixels smaller than its input."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, batch):
        return np.ascontiguousarray(self.inner.run(batch)[:, :-8])

    def stream(self, batches):
        for b in batches:
            yield self.run(b)


def test_model_whose_output_size_differs_is_refused(student):
    with Sharpener(student.pt) as sh:
        sh._backend = _Cropping(sh._backend)
        frame = _frames(1)[0]
        with pytest.raises(ModelLoadError, match="must keep the frame size"):
            sh.process(frame)
        with pytest.raises(ModelLoadError, match="must keep the frame size"):
            sh.process_batch([frame, frame])
        with pytest.raises(ModelLoadError, match="must keep the frame size"):
            list(sh.stream(iter([frame])))


def test_onnx_that_shrinks_its_input_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 48])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 24])
    k = numpy_helper.from_array(np.array([2, 2], np.int64), "k")
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[k])
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with Sharpener(path) as sh, pytest.raises(ModelLoadError, match=str(path)):
        sh.process(_frames(1)[0])
