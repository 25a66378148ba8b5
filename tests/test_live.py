"""Live sharpening (``sharpen --camera``): a clip played as a camera into a recording, sinks that are not
installed, stale-frame dropping under a slow sink, Ctrl-C, and the model re-shaped to the camera size."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from trt_engine import live
from trt_engine.cli import sharpen_main

REPO = Path(__file__).resolve().parents[1]
FAST = REPO / "kd_trainer" / "assets" / "students" / "fast.onnx"
needs_fast = pytest.mark.skipif(not FAST.is_file(), reason="the shipped fast student is not in this checkout")


def _picture(w: int = 640, h: int = 360) -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut()[..., ::-1], (w, h), interpolation=cv2.INTER_AREA)  # BGR, a real photo


def make_clip(path: Path, seconds: float, fps: int = 30, size: tuple[int, int] = (640, 360)) -> Path:
    """A clip of a slightly soft photo panning sideways (mp4v: what OpenCV's pip wheels write)."""
    soft = cv2.GaussianBlur(_picture(*size), (0, 0), 1.2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(round(seconds * fps)):
        writer.write(np.roll(soft, 3 * i, axis=1))
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def sharpness(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _default_sigint() -> None:
    # A test runner started in the background (nohup, `cmd &` in a script) passes SIGINT on as ignored, and
    # Python then installs no KeyboardInterrupt handler: restore the default so Ctrl-C tests mean something.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "trt_engine.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
        **kw,
    )


# ------------------------------------------------------------------------------------------ the CLI, end to end
@needs_fast
def test_clip_as_camera_is_sharpened_live_into_a_recording(tmp_path: Path, capsys) -> None:
    clip = make_clip(tmp_path / "call.mp4", seconds=2.0)
    out = tmp_path / "rec" / "sharp.mp4"
    code = sharpen_main(["--camera", str(clip), "-o", str(out)])  # default model: the shipped fast student
    err = capsys.readouterr().err
    assert code == 0, err
    summary = re.search(
        r"live: (\d+) frames in .*?, (\d+) out .*?(\d+) dropped, latency p50 (\d+) ms p95 (\d+) ms", err
    )
    assert summary, err
    frames_in, frames_out, dropped, p50, p95 = map(int, summary.groups())
    assert frames_in == 60 and frames_out + dropped == frames_in
    recorded = read_frames(out)
    assert len(recorded) == frames_out >= 45, err  # at least three quarters of the 60 frames on 2 CPU cores
    assert recorded[0].shape == (360, 640, 3)
    assert p50 <= p95 < 1000
    # it was sharpened, not copied: the recording has more fine detail than the soft camera frames (the
    # shipped student is deliberately conservative on mildly soft input, so the margin is small)
    source = read_frames(clip)
    assert np.median([sharpness(f) for f in recorded]) > 1.03 * np.median([sharpness(f) for f in source])
    assert not list(out.parent.glob(".*tmp*")), "temporary recording left behind"


def test_virtual_camera_without_pyvirtualcam_or_loopback_fails_fast(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5)
    t = time.perf_counter()
    proc = run_cli("--camera", str(clip), "--virtual-camera")
    _, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - t
    if proc.returncode == 0:
        pytest.skip("a virtual camera is available here (covered by the next test)")
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("sharpen: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "pip install" in lines[0] or "v4l2loopback" in lines[0] or "OBS" in lines[0], err
    assert elapsed < 5.0, (
        f"took {elapsed:.1f} s (includes interpreter start-up); must fail before the model loads"
    )


def test_virtual_camera_receives_frames() -> None:
    pytest.importorskip("pyvirtualcam")
    try:
        sink = live.VirtualCameraSink(640, 360, 30)
    except live.LiveError as exc:
        pytest.skip(f"no virtual camera device here: {exc}")
    device = sink._cam.device
    source = live.ArraySource([_picture()], fps=30, seconds=2.0)
    got: list[np.ndarray] = []

    def read_back() -> None:
        time.sleep(0.3)
        cap = cv2.VideoCapture(device)
        ok, frame = cap.read()
        if ok:
            got.append(frame)
        cap.release()

    import threading

    reader = threading.Thread(target=read_back)
    reader.start()
    stats = live.LiveLoop(source, lambda f: f, [sink]).run()
    reader.join()
    assert stats.delivered >= 30
    if sys.platform.startswith("linux"):
        assert got and got[0].shape[:2] == (360, 640), "nothing could be read back from the loopback device"


def test_camera_that_does_not_exist_is_one_line_exit_1(tmp_path: Path) -> None:
    proc = run_cli("--camera", "97", "-o", str(tmp_path / "x.mp4"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.strip().count("\n") == 0 and err.startswith("sharpen: error:") and "97" in err, err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        sharpen_main(["--camera", "0"])  # no sink
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        sharpen_main(["--preview"])  # a sink without a camera
    assert e.value.code == 2


@needs_fast
def test_ctrl_c_finalises_the_recording(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", seconds=10.0, size=(320, 180))
    out = tmp_path / "rec.mp4"
    proc = run_cli("--camera", str(clip), "-o", str(out))
    started = False
    for line in proc.stderr:  # wait until frames flow, then run ~1 s and interrupt
        if line.startswith("sinks:"):
            started = True
            break
    assert started, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by Ctrl-C" in err and "Traceback" not in err, err
    frames = read_frames(out)
    assert 10 <= len(frames) < 300, (len(frames), err)  # a playable file with about a second of video
    assert f"wrote {out}: {len(frames)} frames" in stdout
    assert not list(tmp_path.glob(".*tmp*"))


# ------------------------------------------------------------------------------------------ the loop itself
def test_latest_queue_drops_the_stale_item() -> None:
    q = live.LatestQueue(1)
    assert q.put("a") == 0 and q.put("b") == 1 and q.put("c") == 1
    assert q.get(0.01) == "c" and q.get(0.01) is None and q.dropped == 2


def test_slow_sink_costs_frames_not_latency() -> None:
    """60 fps in, a sink that takes 50 ms: ~20 fps out, the rest dropped, latency flat (no backlog)."""
    source = live.ArraySource([_picture(320, 180)], fps=60, seconds=2.0)
    seen: list[float] = []

    def slow_sink(frame: np.ndarray) -> None:
        time.sleep(0.05)
        seen.append(time.perf_counter())

    stats = live.LiveLoop(source, lambda f: cv2.GaussianBlur(f, (3, 3), 0), [slow_sink], queue_size=1).run()
    assert stats.captured == 120
    assert stats.delivered == len(seen) and 20 <= stats.delivered <= 50
    assert stats.dropped == stats.captured - stats.delivered >= 60
    lat = list(stats.latencies)
    quarter = len(lat) // 4
    # an unbounded queue would grow to ~1.4 s by the end; a bounded one waits at most ~2 sink calls
    assert max(lat) < 0.5, max(lat)
    assert np.median(lat[-quarter:]) < np.median(lat[:quarter]) + 0.05


def test_loop_error_is_raised_after_sinks_close() -> None:
    closed = []

    class Sink:
        name = "probe"

        def send(self, frame):
            pass

        def close(self):
            closed.append(True)

    def broken(frame):
        raise ValueError("model failed")

    source = live.ArraySource([_picture(64, 32)], fps=100, seconds=0.5)
    with pytest.raises(ValueError, match="model failed"):
        live.LiveLoop(source, broken, [Sink()]).run()
    assert closed == [True]


def test_sinks_close_only_after_the_frame_being_sent() -> None:
    """A stop while a sink is mid-send (longer than the thread joins wait) must not close it under the send."""
    events: list[str] = []

    class SlowSink:
        name = "slow"

        def send(self, frame):
            events.append("send")
            time.sleep(1.0)
            events.append("sent")

        def close(self):
            events.append("close")

    source = live.ArraySource([_picture(64, 32)], fps=100, seconds=5.0)

    def ctrl_c(stats: live.LiveStats) -> None:  # the status callback runs on the main thread, as Ctrl-C does
        raise KeyboardInterrupt

    loop = live.LiveLoop(source, lambda f: f, [SlowSink()])
    loop.join_timeout = 0.01  # the joins give up at once, as a loaded machine's 5 s can
    stats = loop.run(status=ctrl_c, status_every=0.2)
    assert stats.stopped_by == "Ctrl-C"
    assert events.count("close") == 1 and events[-1] == "close", events
    assert events[-2] == "sent", events


@needs_fast
def test_fixed_model_reshaped_to_the_camera_is_the_same_network(tmp_path: Path) -> None:
    from kd_trainer.export import export_checkpoint
    from trt_engine import Sharpener

    assert live.fit_onnx_to_frame(FAST, 360, 640, tmp_path) is None  # shipped ONNX are dynamic: nothing to do
    fixed = export_checkpoint(
        FAST.with_suffix(".pt"), tmp_path / "fast_1080p.onnx", height=1080, width=1920, dynamic=False
    ).path
    fitted = live.fit_onnx_to_frame(fixed, 360, 640, tmp_path)
    assert fitted is not None and live.fit_onnx_to_frame(fixed, 1080, 1920, tmp_path) is None
    frame = _picture()
    with Sharpener(fitted) as small, Sharpener(fixed) as padded:
        assert (small.info["height"], small.info["width"]) == (360, 640)
        a, b = small.process(frame), padded.process(frame)
    # identical away from the bottom/right border, where the padded run saw reflected content instead of zeros
    inner = np.abs(a[:-24, :-24].astype(int) - b[:-24, :-24].astype(int))
    assert inner.max() <= 1


@needs_fast
def test_bench_has_a_live_row_in_json_and_markdown(tmp_path: Path) -> None:
    import json

    from benchmarks.cli import EXIT_OK, main

    out = tmp_path / "r"
    code = main(
        ["--smoke", "--no-speed", "--no-quality", "--models", "fast", "--live-seconds", "0.5", "-o", str(out)]
    )
    assert code == EXIT_OK
    data = json.loads((out / "benchmark.json").read_text())
    rows = data["live"]["rows"]
    assert [r["size"] for r in rows] == ["640x360", "1280x720", "1920x1080"]
    for r in rows:
        assert r["frames_in"] >= 10 and 0 < r["frames_out"] <= r["frames_in"]
        assert r["frames_out"] + r["dropped"] == r["frames_in"]
        assert 0 < r["latency_p50_ms"] <= r["latency_p95_ms"] < 2000
    assert rows[0]["model_input"] == "360x640"  # the 1080p student re-shaped to the camera, not padded
    md = (out / "benchmark.md").read_text()
    assert "## Live (capture -> sharpen -> sink)" in md and "| 1280x720 |" in md
    code = main(["--smoke", "--no-speed", "--no-quality", "--no-live", "--models", "fast", "-o", str(out)])
    assert code == EXIT_OK and "Not run: --no-live" in (out / "benchmark.md").read_text()
