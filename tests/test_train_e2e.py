"""End to end: distil a few steps, export, check onnxruntime parity; resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from kd_trainer.cli import export_main, train_main
from kd_trainer.models.student import load_student, read_checkpoint
from tests.test_teachers import _affine_onnx

ROOT = Path(__file__).resolve().parents[1]


def _args(photo_dirs, out: Path, name: str, *extra: str) -> list[str]:
    train, val = photo_dirs
    return [
        f"train_dir={train}",
        f"val_dir={val}",
        f"out_dir={out}",
        f"name={name}",
        "model=runet-p",
        "crop=64",
        "batch_size=8",
        "warmup_steps=2",
        "val_presets=gauss1.5,clean",
        "threads=1",
        "--no-progress",
        *extra,
    ]


def _log_steps(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_teacher_never_sees_samples_it_would_be_skipped_on(photo_dirs, tmp_path, capsys) -> None:
    """With ``teacher_skip_noise`` the teacher stage (plan, progress, cache) covers only the samples whose
    chain added no noise: the noisy ones train on the ground truth alone."""
    teacher = tmp_path / "teacher.onnx"
    _affine_onnx(teacher)
    common = (
        "samples_per_epoch=24",
        "epochs=1",
        "degradations=chains",
        f"teacher=onnx:{teacher}",
        "beta=0.2",
    )
    assert train_main(_args(photo_dirs, tmp_path, "skip", *common, "teacher_skip_noise=true")) == 0
    out = capsys.readouterr().out
    computed = int(out.split(" reused, ")[1].split(" computed")[0])
    assert 0 < computed < 24  # some of the 24 chains added noise
    assert f"teacher inference: {computed} of {computed} samples not in the cache" in out


def test_distil_export_and_parity(photo_dirs, tmp_path, capsys) -> None:
    teacher = tmp_path / "teacher.onnx"
    _affine_onnx(teacher)
    args = _args(
        photo_dirs, tmp_path, "kd", "samples_per_epoch=80", "epochs=2", f"teacher=onnx:{teacher}", "beta=0.2"
    )
    assert train_main(args) == 0
    out = capsys.readouterr().out
    assert "0 reused, 80 computed" in out
    # the plan (with the teacher's cost) comes before the teacher stage, and the teacher stage before training
    assert "teacher inference: 80 of 80 samples not in the cache" in out
    assert out.index("plan (") < out.index("teacher cache") < out.index("global batch 8")
    run = tmp_path / "kd"
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _log_steps(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    assert all(float(r["l1_teacher"]) > 0 for r in rows)
    model, ckpt = load_student(run / "student.pt")
    assert ckpt["train_config"]["teacher"] == f"onnx:{teacher}" and "gauss1.5" in ckpt["metrics"]
    assert (
        ckpt["train"]["elapsed_seconds"] >= ckpt["train"]["step_seconds"] > 0
    )  # elapsed adds data + validation
    assert (run / "val.jsonl").read_text().count("\n") == 2

    # the teacher runs once per sample, ever: a second run over the same bank reuses every output
    assert (
        train_main(
            _args(photo_dirs, tmp_path, "kd2", "samples_per_epoch=80", "epochs=1", f"teacher=onnx:{teacher}")
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "80 reused, 0 computed" in out and "teacher inference: 0 of 80 samples" in out
    # another optimisation seed over the same data bank (data_seed) reuses them too, and trains other weights
    reseeded = _args(photo_dirs, tmp_path, "kd4", "samples_per_epoch=80", "epochs=1", "seed=1", "data_seed=0")
    assert train_main([*reseeded, f"teacher=onnx:{teacher}"]) == 0
    assert "80 reused, 0 computed" in capsys.readouterr().out
    other, _ = load_student(tmp_path / "kd4" / "student.pt")
    first, _ = load_student(tmp_path / "kd2" / "student.pt")
    assert not torch.equal(other.stem.weight, first.stem.weight)

    # a partial teacher bank: only the first teacher_samples samples ever reach the teacher
    partial = _args(
        photo_dirs, tmp_path, "kd3", "samples_per_epoch=80", "epochs=1", "seed=3", "teacher_samples=30"
    )
    assert train_main([*partial, f"teacher=onnx:{teacher}"]) == 0
    assert "0 reused, 30 computed" in capsys.readouterr().out

    onnx_path = tmp_path / "student.onnx"
    assert (
        export_main([str(run / "student.pt"), "-o", str(onnx_path), "--height", "64", "--width", "96"]) == 0
    )
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    (y,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).clamp(0, 1).numpy()
    assert np.abs(y - ref).max() < 1e-5


def test_existing_run_needs_resume_and_resume_needs_a_run(photo_dirs, tmp_path, capsys) -> None:
    assert train_main(_args(photo_dirs, tmp_path, "r", "samples_per_epoch=16", "epochs=1", "beta=0")) == 0
    assert train_main(_args(photo_dirs, tmp_path, "r", "samples_per_epoch=16", "epochs=1", "beta=0")) == 2
    assert "--resume" in capsys.readouterr().err
    assert train_main(_args(photo_dirs, tmp_path, "none", "beta=0", "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert (
        train_main(
            _args(
                photo_dirs, tmp_path, "r", "samples_per_epoch=16", "epochs=2", "beta=0", "seed=5", "--resume"
            )
        )
        == 2
    )
    assert "seed=5" in capsys.readouterr().err


def test_residual_scale_is_chosen_on_val_and_folded_into_a_finished_run(photo_dirs, tmp_path, capsys) -> None:
    base = _args(photo_dirs, tmp_path, "s", "samples_per_epoch=32", "epochs=1", "beta=0", "lr=0.01")
    assert train_main(base) == 0
    run = tmp_path / "s"
    assert read_checkpoint(run / "student.pt")["residual_scale"] == 1.0
    assert not (run / "residual_scale.json").exists()
    trained_steps = len(_log_steps(run))
    capsys.readouterr()
    # a finished run resumed with residual_scales only re-does the last step: choose and fold
    assert train_main([*base, "residual_scales=0.5,1", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "choosing the residual scale on val" in out and "<- folded into student.pt" in out
    report = json.loads((run / "residual_scale.json").read_text())
    chosen = report["chosen"]
    assert set(report["scales"]) == {"0.5", "1"} and chosen in (0.5, 1.0)
    student, ckpt = load_student(run / "student.pt")
    best, _ = load_student(run / "best.pt")
    assert ckpt["residual_scale"] == chosen and ckpt["train_config"]["residual_scales"] == [0.5, 1.0]
    assert ckpt["metrics"] == report["scales"][f"{chosen:g}"]
    assert torch.allclose(student.tail.weight, chosen * best.tail.weight)
    assert torch.equal(student.stem.weight, best.stem.weight)
    assert len(_log_steps(run)) == trained_steps == 4  # no step was trained again
    # scale_presets: the scale is chosen on val frames degraded by test families instead of the val presets
    families = "scale_presets=family:soft-camera,family:clean"
    assert train_main([*base, "residual_scales=0.5,1", families, "--resume"]) == 0
    report = json.loads((run / "residual_scale.json").read_text())
    assert set(report["scales"]["1"]) == {"family:soft-camera", "family:clean", "score"}
    _, ckpt = load_student(run / "student.pt")
    assert ckpt["metrics"] == report["scales"][f"{report['chosen']:g}"]
    assert "family:soft-camera" in ckpt["metrics"] and "gauss1.5" not in ckpt["metrics"]
    assert len(_log_steps(run)) == 4
    # strength_chains: a per-frame strength head is fitted on the train photos after the scale is folded
    assert train_main([*base, "residual_scales=0.5,1", "strength_chains=2", "--resume"]) == 0
    assert "fitting the strength head on 2 chains of each of 2 train photos" in capsys.readouterr().out
    fit = json.loads((run / "strength.json").read_text())
    headed, ckpt = load_student(run / "student.pt")
    assert headed.config.strength and ckpt["strength_fit"]["photos"] == 2
    assert ckpt["metrics"] == fit["val"] and "gauss1.5" in fit["val"]
    chosen = json.loads((run / "residual_scale.json").read_text())["chosen"]
    assert torch.allclose(headed.tail.weight, chosen * best.tail.weight)  # the head comes on top of the fold
    assert len(_log_steps(run)) == 4


def test_extra_photos_adds_the_pools_extra_split(photo_dirs, tmp_path, capsys) -> None:
    from kd_trainer.io import read_image, write_image
    from kd_trainer.paths import cache_dir

    base = _args(photo_dirs, tmp_path, "x", "samples_per_epoch=8", "epochs=1", "beta=0", "extra_photos=true")
    assert train_main(base) == 1  # the pool has no extra/ split yet: say how to get it
    assert "kd-data photos" in capsys.readouterr().err
    extra = cache_dir() / "photos" / "extra"
    write_image(extra / "more.png", read_image(photo_dirs[1] / "chelsea.png"))
    assert train_main(base) == 0
    assert f"photos {photo_dirs[0]} + extra/: 3 images" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_resume_after_kill_continues_the_same_loss_curve(photo_dirs, tmp_path) -> None:
    common = ("samples_per_epoch=240", "epochs=2", "beta=0", "checkpoint_every=4", "crop=48")
    # reference: an uninterrupted run
    assert train_main(_args(photo_dirs, tmp_path, "ref", *common)) == 0
    reference = {int(r["step"]): float(r["loss"]) for r in _log_steps(tmp_path / "ref")}

    code = f"import sys; from kd_trainer.cli import train_main; sys.exit(train_main({_args(photo_dirs, tmp_path, 'victim', *common)!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "victim" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and read_checkpoint(last)["train"]["step"] >= 12):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(last)["train"]["step"]
    assert 12 <= killed_at < 60, "the run finished before it could be killed"

    assert train_main(_args(photo_dirs, tmp_path, "victim", *common, "--resume")) == 0
    rows = _log_steps(tmp_path / "victim")
    assert [int(r["step"]) for r in rows] == list(range(1, 61))  # no gap, no duplicate
    resumed = {int(r["step"]): float(r["loss"]) for r in rows}
    np.testing.assert_allclose(
        [resumed[s] for s in range(1, 61)], [reference[s] for s in range(1, 61)], rtol=1e-5
    )
    assert read_checkpoint(tmp_path / "victim" / "student.pt")["train"]["total_steps"] == 60


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_stops_a_run_like_ctrl_c_and_says_how_to_resume(photo_dirs, tmp_path) -> None:
    args = _args(
        photo_dirs, tmp_path, "termed", "samples_per_epoch=400", "epochs=4", "beta=0", "checkpoint_every=4"
    )
    code = f"import sys; from kd_trainer.cli import train_main; sys.exit(train_main({args!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = tmp_path / "termed" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"interrupted; continue with: kd-train --resume {tmp_path / 'termed'}" in err
    assert read_checkpoint(last)["train"]["step"] < 200  # it stopped early, with a checkpoint to resume from


def test_tensorboard_scalars_when_available(photo_dirs, tmp_path, monkeypatch, capsys) -> None:
    from kd_trainer import curves, train

    calls: list[tuple[str, float, int]] = []

    class FakeWriter:
        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def close(self) -> None:
            calls.append(("closed", 0.0, 0))

    monkeypatch.setattr(train, "tensorboard_writer", lambda run_dir: FakeWriter())
    assert train_main(_args(photo_dirs, tmp_path, "tb", "samples_per_epoch=16", "epochs=1", "beta=0")) == 0
    assert ("train/loss", pytest.approx(float(_log_steps(tmp_path / "tb")[0]["loss"])), 1) in calls
    assert [c[0] for c in calls[-2:]] == ["val/psnr_gain", "closed"]
    # without TensorBoard installed the writer is None and the run goes on silently
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert curves.tensorboard_writer(tmp_path) is None


def test_an_over_parameterised_run_ships_its_merged_plain_student(photo_dirs, tmp_path) -> None:
    """``model=runet-fhr`` trains with extra branches (best.pt, last.pt) and writes a plain runet-fh student.pt
    that computes what best.pt computes; exporting best.pt merges it too."""
    assert (
        train_main(
            _args(
                photo_dirs, tmp_path, "rep", "model=runet-fhr", "samples_per_epoch=16", "epochs=1", "beta=0"
            )
        )
        == 0
    )
    run = tmp_path / "rep"
    best, _ = load_student(run / "best.pt")
    shipped, ckpt = load_student(run / "student.pt")
    assert best.config.rep == 4 and read_checkpoint(run / "last.pt")["config"]["rep"] == 4
    assert "rep" not in ckpt["config"] and ckpt["name"] == "runet-fh"
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(shipped(x), best(x), atol=1e-5) and not torch.allclose(best(x), x, atol=1e-4)
    onnx_path = tmp_path / "best.onnx"
    assert export_main([str(run / "best.pt"), "-o", str(onnx_path), "--height", "40", "--width", "56"]) == 0
    (y,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )
    assert np.abs(y - shipped(x).clamp(0, 1).detach().numpy()).max() < 1e-5


def test_a_cpu_run_warns_when_its_threads_would_compete_with_busy_cores(photo_dirs, tmp_path, capsys) -> None:
    """With every core already kept busy by other processes, a run asking for two threads is told to use fewer
    (kd_trainer.cpu_share), and still trains."""
    spin = "import time\nend = time.time() + 120\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        args = _args(photo_dirs, tmp_path, "busy", "samples_per_epoch=16", "epochs=1", "beta=0")
        args[args.index("threads=1")] = "threads=2"
        assert train_main(args) == 0
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    err = capsys.readouterr().err
    assert "threads=2 will compete" in err and "threads=1 fits beside them" in err
    assert (tmp_path / "busy" / "student.pt").is_file()


def test_a_frame_filter_learns_at_its_own_rate_and_resumes_only_at_it(photo_dirs, tmp_path, capsys) -> None:
    """``frame_filter_lr`` gives the frame filter its own multiple of the learning rate, kept in last.pt's
    optimiser state; a resume at another multiple and the option on a student without the branch are refused."""
    args = ("model=runet-f5", "samples_per_epoch=16", "epochs=1", "beta=0", "frame_filter_lr=10")
    assert train_main(_args(photo_dirs, tmp_path, "ff", *args)) == 0
    groups = read_checkpoint(tmp_path / "ff" / "last.pt")["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"]) and groups[0]["lr"] > 0
    best, _ = load_student(tmp_path / "ff" / "best.pt")
    assert best.frame_filter.weights.weight.abs().max() > 0  # the branch left its zero start
    resumed = (*args[:2], "epochs=2", "beta=0", "frame_filter_lr=5", "--resume")
    assert train_main(_args(photo_dirs, tmp_path, "ff", *resumed)) == 2
    assert "frame_filter_lr=5" in capsys.readouterr().err
    assert train_main(_args(photo_dirs, tmp_path, "plain", *args[1:], "model=runet-p")) == 2
    assert "needs a student with a frame filter" in capsys.readouterr().err
