import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from kd_trainer.models.restormer import Restormer, load_restormer
from kd_trainer.models.teachers import (
    OnnxTeacher,
    RestormerTeacher,
    Teacher,
    TeacherCache,
    TeacherError,
    make_teacher,
)


def _affine_onnx(path, layout: str = "NHWC") -> None:
    """An image-to-image ONNX with symbolic H, W: y = clip(0.5 * x + 0.25)."""
    shape = [1, "h", "w", 3] if layout == "NHWC" else [1, 3, "h", "w"]
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "half"], ["m"]),
            helper.make_node("Add", ["m", "quarter"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "one"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("quarter", TensorProto.FLOAT, [], [0.25]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_onnx_teacher_pads_runs_and_crops(tmp_path, layout: str) -> None:
    path = tmp_path / "t.onnx"
    _affine_onnx(path, layout)
    teacher = make_teacher(f"onnx:{path}")
    rgb = np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    out = teacher(rgb)
    expected = np.clip(np.rint((0.5 * rgb / 255 + 0.25) * 255), 0, 255).astype(np.uint8)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - expected).max() <= 1


def test_teacher_specs_and_errors(tmp_path) -> None:
    assert make_teacher("none") is None
    with pytest.raises(TeacherError, match="unknown teacher"):
        make_teacher("gpt:foo")
    with pytest.raises(TeacherError, match="not found"):
        make_teacher(f"onnx:{tmp_path / 'missing.onnx'}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(TeacherError, match="cannot load"):
        make_teacher(f"onnx:{junk}")


def test_restormer_official_layout_loads_strictly(tmp_path) -> None:
    torch.manual_seed(0)
    reference = Restormer()
    assert 26.0e6 < sum(p.numel() for p in reference.parameters()) < 26.2e6
    path = tmp_path / "motion_deblurring.pth"
    torch.save({"params": reference.state_dict()}, path)
    loaded = load_restormer(str(path))
    x = torch.rand(1, 3, 20, 28)  # not a multiple of 8: padded and cropped
    with torch.no_grad():
        assert torch.equal(loaded(x), reference.eval()(x))
    teacher = make_teacher(f"restormer:{path}")
    assert isinstance(teacher, RestormerTeacher) and teacher(np.zeros((20, 28, 3), np.uint8)).shape == (
        20,
        28,
        3,
    )

    state = reference.state_dict()
    state.pop("output.weight")
    torch.save({"params": state}, path)
    with pytest.raises(TeacherError, match="do not match"):
        make_teacher(f"restormer:{path}")


class CountingTeacher(Teacher):
    """A real (if trivial) teacher that inverts the image and counts its calls."""

    key = "invert-v1"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        return 255 - rgb


def test_teacher_cache_computes_once_and_recovers_from_corruption(tmp_path) -> None:
    teacher = CountingTeacher()
    cache = TeacherCache(teacher, tmp_path / "cache")
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    first = cache(rgb)
    assert np.array_equal(first, 255 - rgb) and teacher.calls == 1
    assert np.array_equal(cache(rgb), first) and teacher.calls == 1  # cached

    entry = cache.path_for(rgb)
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    assert np.array_equal(cache(rgb), first) and teacher.calls == 2

    other = np.zeros_like(rgb)
    cache(other)
    cache.path_for(rgb).write_bytes(cache.path_for(other).read_bytes())  # stale: another input's entry
    assert np.array_equal(cache(rgb), first) and teacher.calls == 4

    fresh = TeacherCache(CountingTeacher(), tmp_path / "cache")
    fresh(rgb)
    assert fresh.teacher.calls == 0  # a new process reuses the cache on disk


def test_teacher_shape_mismatch_is_an_error() -> None:
    class Cropping(Teacher):
        key = "bad"

        def __call__(self, rgb: np.ndarray) -> np.ndarray:
            return self._check(rgb, rgb[:-1])

    with pytest.raises(TeacherError, match="returned shape"):
        Cropping()(np.zeros((8, 8, 3), np.uint8))


def test_onnx_teacher_reports_its_outputs(tmp_path) -> None:
    path = tmp_path / "t.onnx"
    _affine_onnx(path)
    with pytest.raises(TeacherError, match="no output named"):
        OnnxTeacher(path, output_name="nope")


def test_student_teacher_runs_a_checkpoint_like_the_student_itself(tmp_path) -> None:
    from kd_trainer.evaluate import torch_restorer
    from kd_trainer.models.student import save_checkpoint
    from tests.helpers import perturbed_student

    model = perturbed_student("runet-f2")
    ckpt = save_checkpoint(tmp_path / "ta.pt", model, name="runet-f2")
    teacher = make_teacher(f"student:{ckpt}")
    rgb = np.random.default_rng(1).integers(0, 256, (36, 52, 3), dtype=np.uint8)
    out = teacher(rgb)
    assert out.shape == rgb.shape and np.array_equal(out, torch_restorer(model)(rgb))
    assert teacher.key.startswith("student:") and not np.array_equal(out, rgb)
    # a shipped student by name
    assert make_teacher("student:quality").path.name == "quality.pt"
    assistant = make_teacher("student:quality-m2").path  # a teacher assistant shipped for the fast recipe
    assert assistant.name == "quality-m2.pt" and assistant.parent.name == "assistants"
    with pytest.raises(TeacherError, match="student teacher"):
        make_teacher(f"student:{tmp_path / 'missing.pt'}")
    with pytest.raises(TeacherError, match="no shipped student 'qualty'; shipped: .*quality-m2"):
        make_teacher("student:qualty")  # a mistyped name lists what ships
