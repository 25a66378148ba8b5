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
    "override", ["vivid=0.5", "soft_truth=0.5", "fresh_degradations=true", "synthetic_share=0"]
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
