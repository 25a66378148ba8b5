"""Crafted model files (.pt, .onnx, .engine header) announcing huge sizes are refused fast, naming the file."""

import json
import struct
import time

import numpy as np
import psutil
import pytest
import torch

from kd_trainer.models.student import (
    CHECKPOINT_FORMAT,
    MAX_BLOCKS,
    MAX_LEVELS,
    MAX_WIDTH,
    CheckpointError,
    load_student,
)
from trt_engine import Sharpener
from trt_engine.errors import EngineHeaderError, ModelLoadError
from trt_engine.header import ENGINE_FORMAT, MAGIC, read_header


def _refused_fast(path, call, exc_type=ValueError):
    rss = psutil.Process().memory_info().rss
    t = time.perf_counter()
    with pytest.raises(exc_type) as info:
        call(path)
    elapsed = time.perf_counter() - t
    grown = psutil.Process().memory_info().rss - rss
    assert str(path) in str(info.value)
    assert elapsed < 1.0, f"took {elapsed:.2f} s to refuse {path}"
    assert grown < 300 << 20, f"memory grew by {grown >> 20} MB refusing {path}"
    return info.value


def crafted_checkpoint(path, widths=(MAX_WIDTH,) * MAX_LEVELS, blocks=(MAX_BLOCKS,) * MAX_LEVELS, state=None):
    config = {"unshuffle": 1, "widths": list(widths), "blocks": list(blocks)}
    torch.save({"format": CHECKPOINT_FORMAT, "name": "x", "config": config, "state_dict": state or {}}, path)
    return path


def test_crafted_checkpoint_with_huge_config_is_refused_in_under_a_second(tmp_path):
    path = crafted_checkpoint(tmp_path / "crafted.pt")
    assert path.stat().st_size < 4096
    _refused_fast(path, load_student, CheckpointError)
    _refused_fast(path, Sharpener, CheckpointError)


def test_checkpoint_with_a_non_tensor_state_dict_is_refused(tmp_path):
    path = crafted_checkpoint(tmp_path / "odd.pt", (16,), (1,), state={"stem.weight": 3})
    _refused_fast(path, load_student, CheckpointError)


def _onnx_identity(path, shape):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.mark.parametrize("shape", [[1, 3, 10**6, 10**6], [100000, 3, 64, 64], [256, 3, 16384, 16384]])
def test_onnx_declaring_huge_input_sizes_is_refused(tmp_path, shape):
    path = _onnx_identity(tmp_path / "huge.onnx", shape)
    _refused_fast(path, Sharpener, ModelLoadError)


def test_onnx_with_a_constant_of_shape_bomb_is_refused_before_running(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    inits = [
        numpy_helper.from_array(np.array([1, 3, 40000, 40000], np.int64), "s"),
        numpy_helper.from_array(np.array([0, 0, 0, 0], np.int64), "st"),
        numpy_helper.from_array(np.array([1, 3, 8, 8], np.int64), "en"),
    ]
    one = numpy_helper.from_array(np.array([1.0], np.float32))
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["big"], value=one),
        helper.make_node("Slice", ["big", "st", "en"], ["small"]),
        helper.make_node("Add", ["x", "small"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    path = tmp_path / "bomb.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    _refused_fast(path, Sharpener, ModelLoadError)


def _engine(path, **override):
    meta = {
        "format": ENGINE_FORMAT,
        "builder": "tensorrt",
        "trt_version": "10.0.0",
        "compute_capabilities": ["9.0"],
        "plan_size": 4,
        "plan_sha256": "0" * 64,
        "io": "uint8_nhwc",
        "inputs": [{"name": "frames", "shape": [1, 1080, 1920, 3], "dtype": "uint8"}],
        "outputs": [{"name": "out", "shape": [1, 1080, 1920, 3], "dtype": "uint8"}],
        "color": "rgb",
        "precision": "fp16",
        "batch": 1,
        "height": 1080,
        "width": 1920,
    }
    meta.update(override)
    blob = json.dumps(meta).encode()
    plan = b"PLAN"
    path.write_bytes(struct.pack("<8sII", MAGIC, 1, len(blob)) + blob + plan)
    return path


@pytest.mark.parametrize(
    "override",
    [
        {"height": 10**9},
        {"batch": 10**6},
        {"width": -5},
        {"height": "1" * 5000},
        {"plan_size": "big"},
        {"plan_size": -1},
        {"inputs": [{"name": "frames", "shape": [1, 10**12, 10**12, 3], "dtype": "uint8"}]},
        {"outputs": [{"name": "o", "shape": "huge"}]},
        {"inputs": [{"name": "f", "shape": [1, 2, 3, 3]}] * 1000},
    ],
)
def test_engine_header_with_huge_or_bad_sizes_is_refused(tmp_path, override):
    path = _engine(tmp_path / "crafted.engine", **override)
    _refused_fast(path, read_header, EngineHeaderError)


def test_a_sane_engine_header_still_reads(tmp_path):
    path = _engine(tmp_path / "ok.engine")
    assert read_header(path).plan_size == 4
    dyn = _engine(tmp_path / "dyn.engine", batch="N", height="H", width="W")
    assert read_header(dyn).metadata["height"] == "H"
