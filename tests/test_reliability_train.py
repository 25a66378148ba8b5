"""kd-train --resume RUN_DIR continues the run in RUN_DIR (even moved); out-of-range config values are refused."""

import importlib.util
import shutil

import pytest

from kd_trainer.cli import train_main
from kd_trainer.config import ConfigError, make_config


def _tiny_run_args(photo_dirs, out_dir) -> list[str]:
    """kd-train arguments for a one-epoch, two-step run named ``run`` in ``out_dir``."""
    train, val = photo_dirs
    return [
        f"train_dir={train}",
        f"val_dir={val}",
        f"out_dir={out_dir}",
        "name=run",
        "model=runet-p",
        "crop=32",
        "batch_size=4",
        "samples_per_epoch=8",
        "epochs=1",
        "warmup_steps=1",
        "val_presets=clean",
        "val_frames=1",
        "val_crop=32",
        "teacher=none",
        "beta=0",
        "threads=1",
        "--no-progress",
    ]


def test_resume_run_dir_uses_the_directory_given_even_after_a_move(photo_dirs, tmp_path, capsys):
    first = tmp_path / "first"
    args = _tiny_run_args(photo_dirs, first)
    assert train_main([*args, "max_steps=1"]) == 0
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(first / "run", moved)
    capsys.readouterr()
    assert train_main(["--resume", str(moved), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert f"resuming {moved}" in out.out + out.err
    assert (moved / "student.pt").is_file()
    assert not (first / "run").exists()


@pytest.mark.parametrize(
    "override",
    [
        "vivid=0.5",
        "soft_truth=0.5",
        "contrast=0.5",
        "blur_only_share=0.5",
        "oversharpen_share=0.5",
        "fresh_degradations=true",
        "synthetic_share=0",
        "scalers=wide",
        "extra_photos=true",
    ],
)
def test_resume_refuses_a_change_to_what_the_bank_draws(photo_dirs, tmp_path, capsys, override):
    """The bank's draws depend on these keys: a resume that changed one would train on other data."""
    args = _tiny_run_args(photo_dirs, tmp_path)
    assert train_main([*args, "max_steps=1"]) == 0
    capsys.readouterr()
    assert train_main(["--resume", str(tmp_path / "run"), override, "--no-progress"]) == 2
    key = override.split("=")[0]
    assert f"--resume: {key}=" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override",
    [
        "grad_clip=-1",
        "grad_clip=0",
        "lr=-0.1",
        "lr=5",
        "weight_decay=-1",
        "alpha=-0.5",
        "beta=-1",
        "psnr_cap_db=0",
        "psnr_cap_db=1000",
        "epochs=0",
        "crop=2",
        "crop=100000",
        "workers=-1",
        "threads=-2",
        "val_frames=0",
        "val_crop=-1",
        "warmup_steps=-5",
        "batch_size=0",
        "fft_weight=-1",
        "data_seed=-7",
    ],
)
def test_out_of_range_values_are_refused(override):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=key):
        make_config({"teacher": "none", "beta": 0} if not override.startswith("beta") else {}, [override])


def test_grad_clip_minus_one_is_refused_by_the_cli_with_exit_2(capsys):
    assert train_main(["teacher=none", "beta=0", "grad_clip=-1"]) == 2
    err = capsys.readouterr().err
    assert "grad_clip" in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="needs POSIX advisory locks (fcntl)")
def test_a_second_process_on_the_same_run_folder_is_refused(photo_dirs, tmp_path, capsys):
    """While one kd-train holds runs/NAME, a second one (e.g. a --resume) stops with the holder's pid and
    leaves the run untouched; once the holder is gone, the resume goes ahead (and may extend the epochs)."""
    import subprocess
    import sys

    args = _tiny_run_args(photo_dirs, tmp_path)
    assert train_main([*args, "max_steps=1"]) == 0
    run = tmp_path / "run"
    last = (run / "last.pt").read_bytes()
    holder = subprocess.Popen(  # another process holding the run's lock, as a running kd-train does
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
            "fh.truncate(0); fh.write(str(os.getpid())); fh.flush(); print('locked', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert train_main(["--resume", str(run), "--no-progress"]) == 2
        assert f"in use by another kd-train process (pid {holder.pid})" in capsys.readouterr().err
        assert (run / "last.pt").read_bytes() == last
    finally:
        holder.kill()
        holder.wait()
    assert train_main(["--resume", str(run), "epochs=2", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "epochs 1 -> 2" in out.out + out.err


def test_init_from_starts_from_the_weights_named(photo_dirs, tmp_path, capsys) -> None:
    """``init_from`` takes a path or ``student:PATH``; the run starts from exactly those weights (lr ~ 0 keeps
    them), and a shipped name that does not exist is refused, listing what ships."""
    import torch

    from kd_trainer.models.student import load_student

    args = _tiny_run_args(photo_dirs, tmp_path / "base")
    assert train_main(args) == 0
    base = tmp_path / "base" / "run" / "best.pt"
    still = ["lr=1e-8", "warmup_steps=0", "weight_decay=0"]
    for i, value in enumerate((str(base), f"student:{base}")):
        out = tmp_path / f"warm{i}"
        assert train_main([*_tiny_run_args(photo_dirs, out), f"init_from={value}", *still]) == 0
        started, _ = load_student(base)
        ended, _ = load_student(out / "run" / "last.pt")
        for a, b in zip(started.state_dict().values(), ended.state_dict().values(), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    capsys.readouterr()
    missing = [*_tiny_run_args(photo_dirs, tmp_path / "x"), "init_from=student:no-such-student"]
    assert train_main(missing) == 1
    err = capsys.readouterr().err
    assert "no shipped student 'no-such-student'" in err and "quality-e48" in err
    assert train_main([*missing[:-1], f"init_from={base}"]) == 0  # the refused run left nothing in the way


def test_shipped_warm_start_bases_resolve_and_load() -> None:
    """The packaged bases a recipe can warm-start from (``student:quality-e48``) load as the architecture named."""
    from kd_trainer.models.student import get_config, load_student
    from kd_trainer.models.teachers import init_checkpoint_path
    from kd_trainer.paths import ASSISTANTS_DIR

    path = init_checkpoint_path("student:quality-e48")
    assert path == ASSISTANTS_DIR / "quality-e48.pt"
    model, ckpt = load_student(path, expect=get_config("runet-m3"))
    assert ckpt["train_config"]["epochs"] == 48 and "residual_scale" not in ckpt  # trained weights, unfolded
