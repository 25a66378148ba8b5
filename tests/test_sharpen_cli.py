"""The sharpen CLI: images, folders, videos (frame count, rate, audio), --demo, errors and interrupted runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from kd_trainer.degrade import rgb_to_yuv420
from kd_trainer.io import read_image, write_image
from kd_trainer.metrics import psnr
from kd_trainer.testing import make_student, photo_frames
from trt_engine import Sharpener
from trt_engine.cli import sharpen_main

av = pytest.importorskip("av")
H, W = 64, 96
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    # a gentle residual (tail std 0.03): outputs stay picture-like, so H.264 quality checks mean something
    return make_student(tmp_path_factory.mktemp("cli"), height=H, width=W, uint8=False, tail_std=0.03)


@pytest.fixture(scope="module")
def pictures():
    inputs, _ = photo_frames(H, W, names=("chelsea", "coffee", "astronaut"))
    return inputs


def make_video(path: Path, frames: list[np.ndarray], rate: Fraction, audio: bool) -> Path:
    """An H.264 video of ``frames`` (RGB) at ``rate``, with a mono AAC sine track when ``audio``."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "10"}
        a = c.add_stream("aac", rate=48000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            total, pos = int(48000 * len(frames) / rate), 0
            while pos < total:
                k = min(1024, total - pos)
                wave = (0.3 * np.sin(np.arange(pos, pos + k) / 20)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, pos
                pos += k
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "rate": Fraction(v.average_rate),
            "size": (v.height, v.width),
            "codec": v.codec_context.name,
            "audio": len(c.streams.audio),
        }
        info["frames"] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return info


def moving_frames(pictures, n):
    return [np.ascontiguousarray(np.roll(pictures[i % len(pictures)], 3 * i, axis=1)) for i in range(n)]


def test_student_changes_pictures(student, pictures):
    with Sharpener(student.pt, color="rgb") as s:
        assert np.abs(s.process(pictures[0]).astype(int) - pictures[0]).max() > 10


def test_image(student, pictures, tmp_path, capsys):
    src = write_image(tmp_path / "in.png", pictures[0])
    dst = tmp_path / "out" / "sharp.png"
    assert sharpen_main([str(src), "-o", str(dst), "--model", str(student.onnx)]) == 0
    with Sharpener(student.onnx, color="rgb") as s:
        expected = s.process(pictures[0])
    assert np.array_equal(read_image(dst), expected)
    assert str(dst) in capsys.readouterr().out
    side = tmp_path / "side.jpg"
    assert sharpen_main([str(src), "-o", str(side), "--model", str(student.pt), "--side-by-side"]) == 0
    assert read_image(side).shape == (H, 2 * W, 3)


def test_folder(student, pictures, tmp_path):
    folder = tmp_path / "in"
    for i, p in enumerate(pictures):
        write_image(folder / f"{i}.png", p)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert sharpen_main([str(folder), "-o", str(out), "--model", str(student.onnx), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png"]
    assert sharpen_main([str(folder), "-o", str(folder), "--model", str(student.onnx)]) == 1


def test_video_round_trip_with_audio(student, pictures, tmp_path, capsys):
    frames = moving_frames(pictures, 24)
    src = make_video(tmp_path / "call.mp4", frames, Fraction(25), audio=True)
    dst = tmp_path / "sharp.mp4"
    assert sharpen_main([str(src), "-o", str(dst), "--model", str(student.onnx), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "24 frames at 25.000 fps with audio" in captured.out
    src_info, out_info = probe(src), probe(dst)
    assert len(out_info["frames"]) == len(src_info["frames"]) == 24
    assert out_info["rate"] == 25 and out_info["size"] == (H, W) and out_info["codec"] == "h264"
    assert out_info["audio"] == 1
    # content: the output is the model's output on the decoded input, up to H.264 at crf 18. Compare luma:
    # 4:2:0 chroma subsampling alone costs ~29 dB RGB PSNR on this random student's chroma texture.
    with Sharpener(student.onnx, color="rgb") as s:
        scores = [
            psnr(rgb_to_yuv420(s.process(a))[0], rgb_to_yuv420(b)[0])
            for a, b in zip(src_info["frames"], out_info["frames"], strict=True)
        ]
    assert np.mean(scores) > 35, scores
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_video_ntsc_rate_side_by_side_no_audio(student, pictures, tmp_path, capsys):
    frames = moving_frames(pictures, 15)
    src = make_video(tmp_path / "ntsc.mp4", frames, Fraction(30000, 1001), audio=False)
    dst = tmp_path / "side.mkv"
    code = sharpen_main(
        [str(src), "-o", str(dst), "--model", str(student.pt), "--side-by-side", "--no-progress"]
    )
    assert code == 0
    info = probe(dst)
    assert len(info["frames"]) == 15 and info["rate"] == Fraction(30000, 1001)
    assert info["size"] == (H, 2 * W) and info["audio"] == 0
    assert "with audio" not in capsys.readouterr().out


def test_demo(student, tmp_path, capsys):
    import skimage.data

    from trt_engine.precision import fit_frame

    gt = fit_frame(skimage.data.astronaut(), 1080, 1920)  # the bundled sample's size
    image = write_image(tmp_path / "gt.png", gt)
    out = tmp_path / "demo"
    code = sharpen_main(
        ["--demo", "--model", str(student.pt), "--demo-image", str(image), "-o", str(out), "--runs", "2"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "fps end to end" in text and "PSNR       input" in text and "SSIM" in text and "1920x1080" in text
    for name in ("before.png", "after.png", "side_by_side.png"):
        assert (out / name).is_file()
    assert read_image(out / "after.png").shape == (1080, 1920, 3)
    assert read_image(out / "side_by_side.png").shape == (1080, 3840, 3)


def test_demo_default_model(tmp_path, capsys):
    """With the shipped student present the demo runs as is; without it the error says what to do."""
    from kd_trainer.paths import SAMPLES_DIR, SHIPPED_STUDENTS_DIR

    code = sharpen_main(["--demo", "-o", str(tmp_path / "d"), "--runs", "1"])
    shipped = (SHIPPED_STUDENTS_DIR / "fast.onnx").is_file()
    if shipped and (SAMPLES_DIR / "sample_1080p.png").is_file():
        assert code == 0 and "fps end to end" in capsys.readouterr().out
    elif not shipped:
        assert code == 1
        err = capsys.readouterr().err
        assert "fast.onnx" in err and "--model" in err


def test_errors(student, tmp_path, capsys):
    model = ["--model", str(student.onnx)]
    assert sharpen_main([str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"), *model]) == 1
    assert "not found" in capsys.readouterr().err
    odd = tmp_path / "clip.xyz"
    odd.write_bytes(b"1234")
    assert sharpen_main([str(odd), "-o", str(tmp_path / "o.png"), *model]) == 1
    assert "cannot tell what" in capsys.readouterr().err
    for name, data in (("empty.mp4", b""), ("junk.mp4", b"\x00\x01junk" * 100)):
        bad = tmp_path / name
        bad.write_bytes(data)
        assert sharpen_main([str(bad), "-o", str(tmp_path / "o.mp4"), *model]) == 1
        assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert sharpen_main([str(broken_png), "-o", str(tmp_path / "o.png"), *model]) == 1
    assert "cannot decode" in capsys.readouterr().err
    big = write_image(tmp_path / "big.png", np.zeros((H * 2, W, 3), np.uint8))
    assert sharpen_main([str(big), "-o", str(tmp_path / "o.png"), *model]) == 1
    assert "larger than the model's fixed input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        sharpen_main([str(big)])
    assert info.value.code == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_video_run_leaves_no_output(student, pictures, tmp_path, sig):
    frames = moving_frames(pictures, 400)
    src = make_video(tmp_path / "long.mp4", frames, Fraction(25), audio=False)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous result")  # an older output must survive a killed run untouched
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "trt_engine.cli",
        str(src),
        "-o",
        str(dst),
        "--model",
        str(student.onnx),  # the runtime-only path: a .pt checkpoint needs the trainer's installed plugin
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    temp = []
    while time.monotonic() < deadline and proc.poll() is None:
        temp = [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4.") and p.stat().st_size > 0]
        if temp:
            break
        time.sleep(0.02)
    assert temp, f"never saw the temporary output being written: {proc.communicate()}"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert dst.read_bytes() == b"previous result"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4.")]
    if sig == signal.SIGTERM:
        assert not leftovers, "a polite kill must clean up its temporary file"
    for p in leftovers:  # SIGKILL cannot clean up; the leftover is a hidden temp name, never the final one
        assert p.name != dst.name


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_video_fails_cleanly_or_sharpens_what_is_there(student, pictures, tmp_path, capsys, keep):
    """A download cut short: either a clear error naming the file, or the decodable frames, never a crash."""
    frames = [np.ascontiguousarray(np.roll(pictures[0], 3 * i, axis=1)) for i in range(12)]
    src = make_video(tmp_path / "full.mp4", frames, Fraction(25), audio=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    out = tmp_path / "out.mp4"
    code = sharpen_main([str(cut), "-o", str(out), "--model", str(student.onnx)])
    if code == 0:
        assert 0 < len(probe(out)["frames"]) <= len(frames)
    else:
        assert code == 1 and str(cut) in capsys.readouterr().err and not out.exists()
