"""sharpen never writes over its inputs, applies EXIF orientation, and refuses (never squashes) size changes."""

import os

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from kd_trainer.io import read_image, write_image
from kd_trainer.testing import make_student
from trt_engine.cli import sharpen_main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(make_student(tmp_path_factory.mktemp("student"), uint8=False).pt)


def _photo(path, h=24, w=32):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    write_image(path, img)
    return path, path.read_bytes()


@pytest.mark.parametrize("out", ["same", "dot", "abs", "link"])
def test_image_output_onto_its_input_is_refused(model, tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    src, before = _photo(tmp_path / "photo.png")
    target = {"same": "photo.png", "dot": ".", "abs": str(src), "link": "link.png"}[out]
    if out == "link":
        os.symlink(src, tmp_path / "link.png")
    assert sharpen_main(["photo.png", "-o", target, "--model", model, "--no-progress"]) == 1
    assert "refusing to write over the input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_folder_output_onto_its_input_is_refused(model, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    _, before = _photo(folder / "a.png")
    assert sharpen_main([str(folder), "-o", str(folder / ".." / "frames"), "--model", model]) == 1
    os.symlink(folder, tmp_path / "alias")
    assert sharpen_main([str(folder), "-o", str(tmp_path / "alias"), "--model", model]) == 1
    assert (folder / "a.png").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_image_into_another_folder_is_fine(model, tmp_path):
    src, before = _photo(tmp_path / "photo.png")
    (tmp_path / "out").mkdir()
    assert sharpen_main([str(src), "-o", str(tmp_path / "out"), "--model", model, "--no-progress"]) == 0
    assert (tmp_path / "out" / "photo.png").is_file() and src.read_bytes() == before


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_on_read_and_not_reapplied(tmp_path, orientation):
    pixels = np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = read_image(path)
    assert np.array_equal(got, upright)
    out = write_image(tmp_path / "saved.png", got)
    assert np.array_equal(read_image(out), upright)  # written upright, with no tag to rotate it again


def test_portrait_jpeg_comes_out_upright_from_sharpen(model, tmp_path):
    pixels = np.zeros((40, 64, 3), np.uint8)
    pixels[:, :32] = 255  # left half white, stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "p.jpg", exif=exif, quality=95)
    assert sharpen_main([str(tmp_path / "p.jpg"), "-o", str(tmp_path / "o.png"), "--model", model]) == 0
    out = cv2.imread(str(tmp_path / "o.png"))
    assert out.shape[:2] == (64, 40)  # portrait


def _segment(path, w, h, n):
    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path.read_bytes()


def test_video_that_changes_resolution_is_refused_not_squashed(model, tmp_path, capsys):
    src = tmp_path / "call.ts"
    src.write_bytes(_segment(tmp_path / "a.ts", 64, 48, 3) + _segment(tmp_path / "b.ts", 96, 64, 3))
    dst = tmp_path / "out.mp4"
    assert sharpen_main([str(src), "-o", str(dst), "--model", model, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "changes resolution at frame 3" in err and "64x48 -> 96x64" in err
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_video_output_onto_its_input_is_refused(model, tmp_path, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"not really a video")
    assert sharpen_main([str(src), "-o", str(tmp_path), "--model", model]) == 1
    assert src.read_bytes() == b"not really a video"
