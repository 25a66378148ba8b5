"""Engine header: round trip, damage detection, and TensorRT-version / GPU mismatch errors."""

from __future__ import annotations

import json
import struct

import pytest

from trt_engine.cli import build_engine_main
from trt_engine.errors import EngineHeaderError, EngineMismatchError
from trt_engine.header import (
    MAGIC,
    check_compatible,
    format_header,
    pack_engine,
    read_engine,
    read_header,
    write_engine,
)

PLAN = bytes(range(256)) * 40


def _meta(**over):
    meta = {
        "builder": "tensorrt",
        "trt_version": "10.9.0.34",
        "compute_capabilities": ["9.0"],
        "io": "uint8_nhwc",
        "inputs": [{"name": "frames", "shape": [1, 1080, 1920, 3], "dtype": "uint8"}],
        "outputs": [{"name": "frames_out", "shape": [1, 1080, 1920, 3], "dtype": "uint8"}],
        "color": "rgb",
        "precision": "fp16",
        "student": "runet-n",
        "config": {"unshuffle": 4, "widths": [16, 32], "blocks": [1, 1]},
        "validation": {"onnxruntime": {"psnr_vs_fp32_db": 67.4}},
    }
    meta.update(over)
    return meta


def test_round_trip(tmp_path):
    path = write_engine(tmp_path / "a.engine", _meta(), PLAN)
    header = read_header(path)
    assert header.plan_size == len(PLAN) and header.file_size == path.stat().st_size
    meta, plan = read_engine(path)
    assert plan == PLAN
    assert (
        meta["config"]["widths"] == [16, 32] and meta["validation"]["onnxruntime"]["psnr_vs_fp32_db"] == 67.4
    )
    assert meta["format"] == "image-sharpening-kd/engine-v1" and len(meta["plan_sha256"]) == 64
    assert path.read_bytes()[:8] == MAGIC
    text = format_header(header, path)
    assert (
        "tensorrt 10.9.0.34" in text
        and "9.0" in text
        and "fp16" in text
        and "frames [1, 1080, 1920, 3]" in text
    )


def test_inspect_cli(tmp_path, capsys):
    path = write_engine(tmp_path / "a.engine", _meta(), PLAN)
    assert build_engine_main(["--inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "runet-n" in out and "uint8_nhwc" in out and "psnr_vs_fp32_db" in out
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\x00" * 100)
    assert build_engine_main(["--inspect", str(bad)]) == 1
    assert "not an image-sharpening-kd engine" in capsys.readouterr().err


def test_atomic_write_keeps_old_file(tmp_path):
    path = write_engine(tmp_path / "a.engine", _meta(), PLAN)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_engine(path, {"builder": "tensorrt"}, PLAN)  # invalid metadata: nothing written
    with pytest.raises(ValueError):
        write_engine(path, _meta(), b"")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.engine"]


def test_wrong_magic_and_raw_plans(tmp_path):
    raw = tmp_path / "raw.plan"
    raw.write_bytes(b"ftrt" + PLAN)  # what trtexec writes: a bare plan
    with pytest.raises(EngineHeaderError, match="not an image-sharpening-kd engine.*build-engine"):
        read_header(raw)
    empty = tmp_path / "empty.engine"
    empty.write_bytes(b"")
    with pytest.raises(EngineHeaderError, match="empty"):
        read_header(empty)
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "missing.engine")


@pytest.mark.parametrize("cut", [5, 12, 40, -1, -len(PLAN) + 1])
def test_truncated_files(tmp_path, cut):
    data = pack_engine(_meta(), PLAN)
    path = tmp_path / "t.engine"
    path.write_bytes(data[:cut])
    with pytest.raises(EngineHeaderError, match="truncated|not an image-sharpening-kd"):
        read_engine(path)


def test_corruption_detected(tmp_path):
    data = bytearray(pack_engine(_meta(), PLAN))
    path = tmp_path / "c.engine"
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    path.write_bytes(bytes(flipped))
    read_header(path)  # the header itself is fine...
    with pytest.raises(EngineHeaderError, match="checksum"):
        read_engine(path)  # ...but the plan is not
    path.write_bytes(bytes(data) + b"extra")
    with pytest.raises(EngineHeaderError, match="unexpected bytes"):
        read_header(path)
    json_len = struct.unpack("<I", bytes(data[12:16]))[0]
    broken = bytes(data[:16]) + b"{" + b" " * (json_len - 1) + bytes(data[16 + json_len :])
    path.write_bytes(broken)
    with pytest.raises(EngineHeaderError, match="corrupt header metadata"):
        read_header(path)
    other_version = bytes(data[:8]) + struct.pack("<I", 99) + bytes(data[12:])
    path.write_bytes(other_version)
    with pytest.raises(EngineHeaderError, match="header version 99"):
        read_header(path)


def test_missing_keys(tmp_path):
    meta = _meta()
    blob = json.dumps(
        {k: v for k, v in meta.items() if k != "trt_version"} | {"format": "image-sharpening-kd/engine-v1"}
    )
    data = MAGIC + struct.pack("<II", 1, len(blob)) + blob.encode() + PLAN
    path = tmp_path / "m.engine"
    path.write_bytes(data)
    with pytest.raises(EngineHeaderError, match="trt_version"):
        read_header(path)


def test_compatibility_checks():
    meta = _meta()
    check_compatible(meta, builder="tensorrt", trt_version="10.9.0.34", compute_capability="9.0")
    check_compatible(
        meta, builder="tensorrt", trt_version="10.9.0.1", compute_capability="9.0"
    )  # build no. ok
    with pytest.raises(
        EngineMismatchError, match=r"10\.9\.0\.34 but 10\.13\.3 is installed.*rebuild with build-engine"
    ):
        check_compatible(meta, builder="tensorrt", trt_version="10.13.3", compute_capability="9.0")
    with pytest.raises(
        EngineMismatchError, match=r"compute capability 9\.0 but this GPU is 8\.9.*rebuild with build-engine"
    ):
        check_compatible(meta, builder="tensorrt", trt_version="10.9.0", compute_capability="8.9")
    with pytest.raises(EngineMismatchError, match="tensorrt_rtx.*rebuild with build-engine"):
        check_compatible(meta, builder="tensorrt_rtx", trt_version="10.9.0", compute_capability="9.0")
    rtx = _meta(
        builder="tensorrt_rtx",
        trt_version="1.7.1.116",
        compute_capabilities=["8.0", "8.6", "8.9", "12.0"],
        compute_capability_forward="12.0",
    )
    for cc in ("8.6", "12.0", "12.1"):
        check_compatible(rtx, builder="tensorrt_rtx", trt_version="1.7.1.116", compute_capability=cc)
    for cc in ("7.5", "9.0"):
        with pytest.raises(EngineMismatchError, match="or >= 12.0"):
            check_compatible(rtx, builder="tensorrt_rtx", trt_version="1.7.1.116", compute_capability=cc)
