"""DDP under torchrun (2 CPU ranks, gloo): same model on every rank, rank 0 alone writes, pause + resume,
and the same samples/steps as one rank with the global batch. Plus the sharding helper."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kd_trainer.cli import train_main
from kd_trainer.distributed import DistInfo, shard
from kd_trainer.models.student import load_student, read_checkpoint
from tests.test_teachers import _affine_onnx

ROOT = Path(__file__).resolve().parents[1]


def test_shard_gives_each_rank_its_slice_of_every_global_batch() -> None:
    batches = np.arange(24).reshape(3, 8)
    parts = [shard(batches, DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert parts[0].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), batches)
    np.testing.assert_array_equal(shard(batches, DistInfo()), batches)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(photo_dirs, out: Path, name: str, teacher: Path, batch: int) -> list[str]:
    train, val = photo_dirs
    return [
        f"train_dir={train}",
        f"val_dir={val}",
        f"out_dir={out}",
        f"name={name}",
        "model=runet-p",
        "crop=48",
        f"batch_size={batch}",
        "samples_per_epoch=48",
        "epochs=2",
        "warmup_steps=2",
        "checkpoint_every=4",
        f"teacher=onnx:{teacher}",
        "beta=0.2",
        "val_presets=gauss1.5,clean",
        "threads=1",
        "--no-progress",
    ]


def _torchrun(args: list[str], tmp_path: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KD_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "kd_trainer.cli",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_torchrun_two_ranks_train_one_model_rank0_writes_and_resume(photo_dirs, tmp_path, capsys) -> None:
    teacher = tmp_path / "teacher.onnx"
    _affine_onnx(teacher)
    run = tmp_path / "ddp"
    args = _args(photo_dirs, tmp_path, "ddp", teacher, batch=4)  # 2 ranks x 4 = global batch 8: 6 steps/epoch

    # pause after 9 steps (mid-epoch 2)
    out = _torchrun([*args, "max_steps=9"], tmp_path)
    assert out.count("plan (") == 1 and out.count("teacher cache") == 1  # rank 0 alone prints
    assert "global batch 8 (2 rank(s) x batch_size=4)" in out
    assert "0 reused, 48 computed" in out  # rank 0 filled the cache once; rank 1 read it
    assert out.index("plan (") < out.index("teacher cache")
    assert "paused at step 9/12" in out
    # rank 0 alone wrote: these files, one log row per step, one validation line per epoch
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",  # rank 0's run lock (kd_trainer.runlock)
        "best.pt",
        "curves.png",
        "last.pt",
        "log.csv",
        "val.jsonl",
    ]
    assert [int(r["step"]) for r in _log(run)] == list(range(1, 10))
    assert read_checkpoint(run / "last.pt")["train"]["step"] == 9
    (epoch1,) = [json.loads(line) for line in (run / "val.jsonl").read_text().splitlines()]
    assert epoch1["ranks"] == 2 and epoch1["rank_weight_spread"] == 0.0  # all-reduced max-min of every weight

    # resume on both ranks from last.pt: the step count continues
    out = _torchrun(["--resume", str(run), "--no-progress"], tmp_path)
    assert "resuming" in out and "at step 9/12" in out and "48 reused, 0 computed" in out
    assert [int(r["step"]) for r in _log(run)] == list(range(1, 13))  # no gap, no duplicate
    assert (run / "val.jsonl").read_text().count("\n") == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["rank_weight_spread"] == 0.0
    assert read_checkpoint(run / "student.pt")["train"]["total_steps"] == 12
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",  # rank 0's run lock (kd_trainer.runlock)
        "best.pt",
        "curves.png",
        "last.pt",
        "log.csv",
        "student.pt",
        "summary.json",
        "val.jsonl",
    ]

    # one process with batch 8 sees the same samples in the same steps: the same losses and weights
    assert train_main(_args(photo_dirs, tmp_path, "single", teacher, batch=8)) == 0
    capsys.readouterr()
    ddp_loss = [float(r["loss"]) for r in _log(run)]
    one_loss = [float(r["loss"]) for r in _log(tmp_path / "single")]
    np.testing.assert_allclose(ddp_loss, one_loss, rtol=1e-4)
    a, _ = load_student(run / "last.pt")
    b, _ = load_student(tmp_path / "single" / "last.pt")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-3)


def test_resume_needs_the_same_global_batch(photo_dirs, tmp_path, capsys) -> None:
    teacher = tmp_path / "teacher.onnx"
    _affine_onnx(teacher)
    args = _args(photo_dirs, tmp_path, "g", teacher, batch=8)
    assert train_main([*args, "max_steps=2"]) == 0
    assert "paused at step 2/12" in capsys.readouterr().out
    assert train_main([*_args(photo_dirs, tmp_path, "g", teacher, batch=4), "--resume"]) == 2
    assert "global batch 4" in capsys.readouterr().err
    assert train_main([*args, "--resume"]) == 0
    assert [int(r["step"]) for r in _log(tmp_path / "g")] == list(range(1, 13))
