"""The distillation training loop, readable top to bottom.

``train(cfg)`` builds the student, the data bank and (optionally) the cached teacher, then runs AdamW with
warm-up + cosine decay, gradient clipping and AMP on CUDA. ``runs/NAME/last.pt`` is rewritten atomically
every ``checkpoint_every`` steps and at each epoch end; ``--resume`` continues from it with the same step
count and the same batches. Each epoch ends with validation (PSNR/SSIM per preset vs identity);
``best.pt`` keeps the best mean PSNR gain. Losses go to ``log.csv``, validation to ``val.jsonl``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kd_trainer.config import ConfigError, TrainConfig
from kd_trainer.data import TrainBank, find_pairs, find_photos, validation_frames
from kd_trainer.evaluate import evaluate, format_table, torch_restorer
from kd_trainer.io import atomic_path, atomic_write_bytes
from kd_trainer.losses import DistillLoss
from kd_trainer.models.student import (
    build_student,
    count_macs,
    count_params,
    load_student,
    read_checkpoint,
    save_checkpoint,
)
from kd_trainer.models.teachers import TeacherCache, make_teacher
from kd_trainer.paths import cache_dir

LOG_FIELDS = ["step", "epoch", "lr", "loss", "l1_gt", "l1_teacher", "fft", "edge", "neg_psnr", "seconds"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} requested but CUDA is not available")
    return torch.device(name)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def _default_dir(value: str, split: str) -> Path:
    return Path(value) if value else cache_dir() / "photos" / split


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log rows after ``last_step`` (they are recomputed after a resume)."""
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= last_step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the final ``student.pt``."""
    run_dir = cfg.run_dir
    last_path, best_path, final_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "student.pt"
    if last_path.exists() and not resume:
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another name="
        )
    if resume and not last_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {last_path}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)

    # --- model, optimiser, state
    model = build_student(cfg.model)
    if cfg.init_from:
        init, _ = load_student(cfg.init_from, expect=model.config)
        model.load_state_dict(init.state_dict())
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, cfg.samples_per_epoch // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    # step_seconds: forward/backward/update only; elapsed_seconds: everything (data, validation, checkpoints)
    state: dict[str, Any] = {
        "step": 0,
        "best_gain": -math.inf,
        "step_seconds": 0.0,
        "elapsed_seconds": 0.0,
        "teacher_seconds": 0.0,
    }
    best_metrics: dict = {}
    if resume:
        ckpt = read_checkpoint(last_path)
        saved = ckpt.get("train_config", {})
        keys = (
            "model",
            "teacher",
            "teacher_samples",
            "teacher_gate",
            "crop",
            "samples_per_epoch",
            "batch_size",
            "seed",
            "data_seed",
            "degradations",
            "alpha",
            "beta",
        )
        defaults = TrainConfig()  # keys added later than a checkpoint count as their default
        for key in keys:
            was = saved.get(key, getattr(defaults, key))
            if was != getattr(cfg, key):
                raise ConfigError(
                    f"--resume: {key}={getattr(cfg, key)!r} differs from the checkpoint's {was!r} in "
                    f"{last_path}; resume with the original config or start a new name="
                )
        resumed, _ = load_student(last_path, expect=model.config)
        model.load_state_dict(resumed.state_dict())
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["train"])
        if best_path.exists():
            best_metrics = read_checkpoint(best_path).get("metrics", {})
        _truncate_log(run_dir / "log.csv", state["step"])
        print(f"resuming {run_dir} at step {state['step']}/{total_steps}")

    # --- data and teacher
    photos = (
        find_photos(_default_dir(cfg.train_dir, "train")) if (cfg.train_dir or not cfg.paired_dir) else []
    )
    pairs = find_pairs(cfg.paired_dir) if cfg.paired_dir else []
    teacher = make_teacher(cfg.teacher) if cfg.beta > 0 else None
    cache = TeacherCache(teacher) if teacher is not None else None
    bank = TrainBank(
        photos,
        pairs,
        cfg.crop,
        cfg.samples_per_epoch,
        cfg.seed if cfg.data_seed < 0 else cfg.data_seed,
        cfg.fresh_degradations,
        cache,
        cfg.teacher_samples,
        cfg.teacher_gate,
        cfg.degradations,
    )
    if cache is not None:
        t0 = time.perf_counter()
        total = bank.teacher_count
        for inp in tqdm(
            bank.teacher_inputs(), total=total, desc=f"teacher {cfg.teacher}", disable=not progress
        ):
            cache(inp)
        state["teacher_seconds"] += time.perf_counter() - t0
        print(f"teacher cache {cache.root}: {cache.hits} reused, {cache.misses} computed")
    val_frames = validation_frames(
        _default_dir(cfg.val_dir, "val"), cfg.val_presets, cfg.val_frames, cfg.val_crop
    )
    loss_fn = DistillLoss(
        cfg.alpha, cfg.beta, cfg.fft_weight, cfg.edge_weight, cfg.psnr_weight, cfg.psnr_cap_db
    )
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    macs = count_macs(model)
    print(
        f"training {cfg.model} ({count_params(model):,} params, {macs / 1e9:.2f} GMAC/1080p) on {device}: "
        f"{len(photos)} photos, {len(pairs)} pairs, teacher={cfg.teacher}, {cfg.epochs} epochs x {steps_per_epoch} steps"
    )
    log_path = run_dir / "log.csv"
    new_log = not log_path.exists()
    log_fh = open(log_path, "a", newline="")  # noqa: SIM115
    log = csv.DictWriter(log_fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
    if new_log:
        log.writeheader()

    start_epoch = state["step"] // steps_per_epoch
    loop_start, elapsed_before = time.perf_counter(), state["elapsed_seconds"]

    def save(path: Path, metrics: dict) -> None:
        """Checkpoint the student, optimiser, training state and metrics (atomically)."""
        state["elapsed_seconds"] = elapsed_before + time.perf_counter() - loop_start
        save_checkpoint(
            path,
            model,
            name=cfg.model,
            train_config=cfg.to_dict(),
            train=dict(state),
            metrics=metrics or {},
            optimizer=optimizer.state_dict(),
        )

    bar = tqdm(
        total=total_steps, initial=state["step"], desc=cfg.name, disable=not progress, dynamic_ncols=True
    )
    try:
        for epoch in range(start_epoch, cfg.epochs):
            bank.set_epoch(epoch)
            order = np.random.default_rng([cfg.seed, epoch, 7]).permutation(len(bank))[
                : steps_per_epoch * cfg.batch_size
            ]
            first = state["step"] - epoch * steps_per_epoch
            batches = order.reshape(steps_per_epoch, cfg.batch_size)[first:]
            loader = DataLoader(bank, batch_sampler=batches.tolist(), num_workers=cfg.workers)
            model.train()
            t_epoch = time.perf_counter()
            for batch in loader:
                t0 = time.perf_counter()
                for g in optimizer.param_groups:
                    g["lr"] = cfg.lr * lr_factor(state["step"], cfg.warmup_steps, total_steps)
                inp, gt = batch["inp"].to(device), batch["gt"].to(device)
                tch = batch["teacher"].to(device) if "teacher" in batch else None
                tmask = batch["has_teacher"].to(device) if "has_teacher" in batch else None
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out = model(inp)
                loss, terms = loss_fn(out.float(), gt, tch, tmask)
                if not math.isfinite(terms["loss"]):
                    raise FloatingPointError(
                        f"loss became {terms['loss']} at step {state['step']}; lower lr="
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                state["step"] += 1
                dt = time.perf_counter() - t0
                state["step_seconds"] += dt
                log.writerow(
                    {
                        "step": state["step"],
                        "epoch": epoch,
                        "lr": optimizer.param_groups[0]["lr"],
                        "seconds": round(dt, 4),
                        **terms,
                    }
                )
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.4f}")
                if state["step"] % cfg.checkpoint_every == 0:
                    log_fh.flush()
                    save(last_path, best_metrics)
            # --- end of epoch: validate, checkpoint
            model.eval()
            metrics = evaluate(torch_restorer(model, device), val_frames)
            gain = metrics["score"]["psnr_gain"]
            record = {
                "epoch": epoch,
                "step": state["step"],
                "epoch_seconds": time.perf_counter() - t_epoch,
                "metrics": metrics,
            }
            with open(run_dir / "val.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            tqdm.write(
                f"epoch {epoch + 1}/{cfg.epochs} validation ({len(val_frames)} frames):\n{format_table(metrics)}"
            )
            if gain > state["best_gain"]:
                state["best_gain"], best_metrics = gain, metrics
                save(best_path, metrics)
            log_fh.flush()
            save(last_path, best_metrics)
    finally:
        bar.close()
        log_fh.close()

    if not best_path.exists():  # killed after the last step but before its validation
        model.eval()
        best_metrics = evaluate(torch_restorer(model, device), val_frames)
        state["best_gain"] = best_metrics["score"]["psnr_gain"]
        save(best_path, best_metrics)
    best, ckpt = load_student(best_path)
    save_checkpoint(
        final_path,
        best,
        name=cfg.model,
        train_config=cfg.to_dict(),
        train={**ckpt["train"], **state, "total_steps": state["step"], "best_step": ckpt["train"]["step"]},
        metrics=ckpt["metrics"],
    )
    summary = {
        "student": str(final_path),
        "steps": state["step"],
        "best_gain_db": state["best_gain"],
        "metrics": best_metrics,
    }
    atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    print(
        f"wrote {final_path} (best mean PSNR gain {state['best_gain']:+.3f} dB), {last_path}, {run_dir / 'log.csv'}"
    )
    return final_path
