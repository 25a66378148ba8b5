"""The distillation training loop, readable top to bottom.

``train(cfg)`` builds the student, the data bank and (optionally) the cached teacher, prints the plan of the
heavy work ahead with its estimated cost, then runs AdamW with warm-up + cosine decay, gradient clipping and
AMP + channels_last on CUDA. ``runs/NAME/last.pt`` is rewritten atomically every ``checkpoint_every`` steps and
at each epoch end; ``--resume`` continues from it with the same step count and the same batches
(``max_steps`` pauses a run there on purpose). Each epoch ends with validation (PSNR/SSIM per preset vs
identity); ``best.pt`` keeps the best mean PSNR gain. Losses go to ``log.csv``, validation to ``val.jsonl``,
both drawn into ``curves.png`` (and a TensorBoard log when TensorBoard is installed).

Under ``torchrun`` (see :mod:`kd_trainer.distributed`) the same function runs on every rank: the student is
wrapped in DistributedDataParallel, ``batch_size`` is per rank and each rank takes its slice of every global
batch; rank 0 alone fills the teacher cache (the others wait, then read it), validates, prints and writes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kd_trainer import distributed
from kd_trainer.config import ConfigError, TrainConfig
from kd_trainer.cpu_share import busy_elsewhere, oversubscription_warning
from kd_trainer.curves import tensorboard_writer, write_curves
from kd_trainer.data import DataError, TrainBank, find_pairs, find_photos, validation_frames
from kd_trainer.distributed import DistInfo
from kd_trainer.evaluate import choose_residual_scale, evaluate, format_table, safe_gain, torch_restorer
from kd_trainer.io import atomic_path, atomic_write_bytes
from kd_trainer.losses import DistillLoss
from kd_trainer.models.student import (
    build_student,
    count_macs,
    count_params,
    load_student,
    merge_branches,
    read_checkpoint,
    registry_name,
    save_checkpoint,
    scale_residual,
    warm_start,
)
from kd_trainer.models.teachers import TeacherCache, init_checkpoint_path, make_teacher
from kd_trainer.paths import cache_dir
from kd_trainer.plan import (
    Plan,
    measure_step_seconds,
    teacher_ready,
    teacher_setup_lines,
    teacher_todo,
    time_call,
)
from kd_trainer.runlock import run_lock

LOG_FIELDS = [
    "step",
    "epoch",
    "lr",
    "loss",
    "l1_gt",
    "l1_teacher",
    "fft",
    "edge",
    "neg_psnr",
    "harm",
    "seconds",
]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimiser's parameter groups, each with its ``lr_scale`` (a multiple of ``cfg.lr``).

    One group, unless ``frame_filter_lr`` != 1 (``TrainConfig.validate`` checks that the student has a frame
    filter): then the frame filter, a branch that starts at zero (grown onto a trained student by ``init_from``),
    learns at its own multiple of the learning rate.
    """
    named = list(model.named_parameters())
    if cfg.frame_filter_lr == 1.0:
        return [{"params": [p for _, p in named], "lr_scale": 1.0}]
    branch = [p for name, p in named if name.startswith("frame_filter.")]
    rest = [p for name, p in named if not name.startswith("frame_filter.")]
    return [{"params": rest, "lr_scale": 1.0}, {"params": branch, "lr_scale": cfg.frame_filter_lr}]


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
    """Run (or resume) training; returns the final ``student.pt`` (``last.pt`` when paused by ``max_steps``).

    Under ``torchrun`` every rank calls this; rank 0 alone prints, writes and validates (see the module doc).
    """
    run_dir, last_path = cfg.run_dir, cfg.run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another name="
        )
    if resume and not last_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {last_path}")
    ddp, device = distributed.setup(cfg.device)
    # rank 0 alone writes the run folder, so it alone holds the lock against a second process
    lock = run_lock(run_dir) if ddp.is_main else contextlib.nullcontext()
    try:
        with lock:
            out = _train(cfg, resume, progress, ddp, device)
        # every rank leaves together: a rank that tears its process group down while rank 0 still writes
        # the last checkpoint makes gloo abort the process
        distributed.barrier(ddp)
        return out
    finally:
        distributed.cleanup(ddp)


def _train(cfg: TrainConfig, resume: bool, progress: bool, ddp: DistInfo, device: torch.device) -> Path:
    run_dir = cfg.run_dir
    last_path, best_path, final_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "student.pt"
    main = ddp.is_main  # rank 0: the only rank that prints and writes
    say = print if main else (lambda *a, **k: None)
    progress = progress and main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = device.type == "cuda"
    if not cuda and ddp.world_size == 1:  # torchrun's own ranks would count as other work
        warning = oversubscription_warning(torch.get_num_threads(), busy_elsewhere())
        if warning:
            print(warning, file=sys.stderr)
    memory_format = torch.channels_last if cuda else torch.contiguous_format

    # --- model, optimiser, state
    model = build_student(cfg.model)
    if cfg.init_from:
        init, _ = load_student(init_checkpoint_path(cfg.init_from))
        warm_start(model, init, f"init_from={cfg.init_from}")
    model.to(device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    global_batch = cfg.batch_size * ddp.world_size  # batch_size is per rank
    steps_per_epoch = max(1, cfg.samples_per_epoch // global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    # step_seconds: forward/backward/update only; elapsed_seconds: everything (data, validation, checkpoints)
    state: dict[str, Any] = {
        "step": 0,
        "best_gain": -math.inf,
        "step_seconds": 0.0,
        "elapsed_seconds": 0.0,
        "teacher_seconds": 0.0,
        "world_size": ddp.world_size,
    }
    best_metrics: dict = {}
    if resume:  # every rank loads last.pt
        ckpt = read_checkpoint(last_path)
        saved = ckpt.get("train_config", {})
        keys = (
            "model",
            "teacher",
            "teacher_samples",
            "teacher_gate",
            "teacher_gate_window",
            "teacher_skip_noise",
            "crop",
            "samples_per_epoch",
            "seed",
            "data_seed",
            "degradations",
            "single_step_share",
            "synthetic_share",
            "fresh_degradations",
            "vivid",
            "soft_truth",
            "contrast",
            "blur_only_share",
            "oversharpen_share",
            "scalers",
            "extra_photos",
            "alpha",
            "beta",
            "frame_filter_lr",  # its parameter groups are part of the optimiser state
        )
        defaults = TrainConfig()  # keys added later than a checkpoint count as their default
        for key in keys:
            was = saved.get(key, getattr(defaults, key))
            if was != getattr(cfg, key):
                raise ConfigError(
                    f"--resume: {key}={getattr(cfg, key)!r} differs from the checkpoint's {was!r} in "
                    f"{last_path}; resume with the original config or start a new name="
                )
        saved_ranks = ckpt["train"].get("world_size", 1)
        was_global = saved.get("batch_size", defaults.batch_size) * saved_ranks
        if was_global != global_batch:
            raise ConfigError(
                f"--resume: global batch {global_batch} ({ddp.world_size} ranks x batch_size={cfg.batch_size}) "
                f"differs from the checkpoint's {was_global} ({saved_ranks} ranks); keep ranks x batch_size "
                "the same (any split of it resumes the same batches)"
            )
        resumed, _ = load_student(last_path, expect=model.config)
        model.load_state_dict(resumed.state_dict())
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["train"])
        state["world_size"] = ddp.world_size
        if best_path.exists():
            best_metrics = read_checkpoint(best_path).get("metrics", {})
        if main:
            _truncate_log(run_dir / "log.csv", state["step"])
        say(f"resuming {run_dir} at step {state['step']}/{total_steps}")
        if saved.get("epochs", cfg.epochs) != cfg.epochs:  # allowed: extends (or shortens) the same run
            say(
                f"epochs {saved['epochs']} -> {cfg.epochs}: the same batches continue; the learning-rate "
                f"schedule is recomputed over {total_steps} steps from here"
            )
    net = model  # what the loop calls: the model itself, or its DDP wrapper (gradients averaged over ranks)
    if ddp.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    # --- data (the bank's samples are deterministic, so every rank builds the same bank)
    photo_dir = _default_dir(cfg.train_dir, "train") if (cfg.train_dir or not cfg.paired_dir) else None
    try:
        photos = find_photos(photo_dir) if photo_dir else []
        if photos and cfg.extra_photos:  # the pool's extra/ split (kd-data photos) on top
            photos += find_photos(_default_dir("", "extra"))
        data_error = None
    except DataError as exc:
        photos, data_error = [], exc
    pairs = find_pairs(cfg.paired_dir) if cfg.paired_dir else []
    use_teacher = cfg.beta > 0
    bank = (
        TrainBank(
            photos,
            pairs,
            cfg.crop,
            cfg.samples_per_epoch,
            cfg.seed if cfg.data_seed < 0 else cfg.data_seed,
            cfg.fresh_degradations,
            None,  # the teacher cache is attached after the teacher stage
            cfg.teacher_samples,
            cfg.teacher_gate,
            cfg.degradations,
            cfg.vivid,
            cfg.teacher_gate_window,
            cfg.single_step_share,
            cfg.teacher_skip_noise,
            cfg.synthetic_share,
            cfg.soft_truth,
            cfg.blur_only_share,
            cfg.scalers,
            cfg.contrast,
            cfg.oversharpen_share,
        )
        if photos or pairs
        else None
    )
    loss_fn = DistillLoss(
        cfg.alpha,
        cfg.beta,
        cfg.fft_weight,
        cfg.edge_weight,
        cfg.psnr_weight,
        cfg.psnr_cap_db,
        cfg.harm_weight,
    )
    use_amp = cfg.amp and cuda
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # --- the plan: every heavy stage and its cost, printed before any of them starts
    remaining_steps = total_steps - state["step"]
    teacher = None
    if main:
        plan = Plan()
        if photo_dir is not None:
            plan.add(
                f"photos {photo_dir}{' + extra/' if cfg.extra_photos else ''}: {len(photos)} images"
                if photos
                else f"photos {photo_dir}: {data_error}"
            )
        if pairs:
            plan.add(f"pairs {cfg.paired_dir}: {len(pairs)}")
        if bank is not None:
            bank.sample(0)  # reads the photos
            t_sample = time_call(lambda: bank.sample(min(1, len(bank) - 1)))
            made = bank.distinct_samples(cfg.epochs) // ddp.world_size
            plan.add(
                f"data bank: {made} crops x {t_sample:.3f} s (measured, per rank)", "data", made * t_sample
            )
        if use_teacher:
            lines, setup_seconds = teacher_setup_lines(cfg.teacher)
            for line in lines[:-1]:
                plan.add(line)
            plan.add(lines[-1], "teacher setup" if setup_seconds else "", setup_seconds)
            if teacher_ready(cfg.teacher):
                teacher = make_teacher(cfg.teacher)
            if bank is not None:
                todo, per, how = teacher_todo(bank, teacher, cfg, progress)
                plan.add(
                    f"teacher inference: {todo} of {len(bank.teacher_indices())} samples not in the cache x {per:.2f} s "
                    f"({how})",
                    "teacher",
                    todo * per,
                )
        t_step = measure_step_seconds(
            model, loss_fn, cfg.batch_size, cfg.crop, device, amp_dtype=amp_dtype if use_amp else None
        )
        plan.add(
            f"training: {remaining_steps} steps x {t_step:.3f} s (measured, per rank) on {device} x {ddp.world_size} "
            f"rank(s); validation of {len(cfg.val_presets)} presets after each epoch",
            "training",
            remaining_steps * t_step,
        )
        if cfg.residual_scales:
            plan.add(
                f"then the residual scale, chosen on val{' (scale_presets)' if cfg.scale_presets else ''}: "
                f"{len(cfg.residual_scales)} more validations "
                f"({', '.join(f'{s:g}' for s in cfg.residual_scales)}) before student.pt is written"
            )
        print(plan.render(), flush=True)
    if data_error is not None:
        raise data_error

    # --- teacher stage: rank 0 fills the cache, the other ranks wait, then read it
    if use_teacher:
        if main:
            t0 = time.perf_counter()
            teacher = teacher or make_teacher(cfg.teacher)  # may download and convert (see the plan)
            bank.teacher = TeacherCache(teacher)
            for inp in tqdm(
                bank.teacher_inputs(),
                total=len(bank.teacher_indices()),
                desc=f"teacher {cfg.teacher}",
                disable=not progress,
            ):
                bank.teacher(inp)
            state["teacher_seconds"] += time.perf_counter() - t0
            print(
                f"teacher cache {bank.teacher.root}: {bank.teacher.hits} reused, {bank.teacher.misses} computed"
            )
        distributed.barrier(ddp)
        if not main:
            with contextlib.redirect_stdout(io.StringIO()):  # rank 0 has said it all
                bank.teacher = TeacherCache(make_teacher(cfg.teacher))
    val_frames = (
        validation_frames(_default_dir(cfg.val_dir, "val"), cfg.val_presets, cfg.val_frames, cfg.val_crop)
        if main
        else []
    )

    macs = count_macs(model)
    say(
        f"training {cfg.model} ({count_params(model):,} params, {macs / 1e9:.2f} GMAC/1080p) on {device}: "
        f"{len(photos)} photos, {len(pairs)} pairs, teacher={cfg.teacher}, {cfg.epochs} epochs x {steps_per_epoch} steps\n"
        f"global batch {global_batch} ({ddp.world_size} rank(s) x batch_size={cfg.batch_size}), "
        f"peak lr {cfg.lr:g} for that global batch (not rescaled by the number of ranks)"
    )
    log_path = run_dir / "log.csv"
    log_fh, log, board = None, None, None
    if main:
        new_log = not log_path.exists()
        log_fh = open(log_path, "a", newline="")  # noqa: SIM115
        log = csv.DictWriter(log_fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if new_log:
            log.writeheader()
        board = tensorboard_writer(run_dir)  # None when TensorBoard is not installed

    start_epoch = state["step"] // steps_per_epoch
    loop_start, elapsed_before = time.perf_counter(), state["elapsed_seconds"]

    def save(path: Path, metrics: dict) -> None:
        """Checkpoint the student, optimiser, training state and metrics (atomically; rank 0 only)."""
        state["elapsed_seconds"] = elapsed_before + time.perf_counter() - loop_start
        if not main:
            return
        save_checkpoint(
            path,
            model,
            name=cfg.model,
            train_config=cfg.to_dict(),
            train=dict(state),
            metrics=metrics or {},
            optimizer=optimizer.state_dict(),
        )

    def paused() -> bool:
        return 0 < cfg.max_steps <= state["step"] < total_steps

    bar = tqdm(
        total=total_steps, initial=state["step"], desc=cfg.name, disable=not progress, dynamic_ncols=True
    )
    try:
        for epoch in range(start_epoch, cfg.epochs):
            bank.set_epoch(epoch)
            order = np.random.default_rng([cfg.seed, epoch, 7]).permutation(len(bank))[
                : steps_per_epoch * global_batch
            ]
            first = state["step"] - epoch * steps_per_epoch
            batches = distributed.shard(order.reshape(steps_per_epoch, global_batch)[first:], ddp)
            loader = DataLoader(bank, batch_sampler=batches.tolist(), num_workers=cfg.workers)
            net.train()
            t_epoch = time.perf_counter()
            for batch in loader:
                t0 = time.perf_counter()
                for g in optimizer.param_groups:
                    g["lr"] = (
                        cfg.lr
                        * g.get("lr_scale", 1.0)
                        * lr_factor(state["step"], cfg.warmup_steps, total_steps)
                    )
                inp = batch["inp"].to(device, memory_format=memory_format)
                gt = batch["gt"].to(device)
                tch = batch["teacher"].to(device) if "teacher" in batch else None
                tmask = batch["has_teacher"].to(device) if "has_teacher" in batch else None
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out = net(inp)
                loss, terms = loss_fn(out.float(), gt, tch, tmask, degraded=inp)
                if not math.isfinite(terms["loss"]):
                    raise FloatingPointError(
                        f"loss became {terms['loss']} at step {state['step']}; lower lr="
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                state["step"] += 1
                dt = time.perf_counter() - t0
                state["step_seconds"] += dt
                terms = distributed.mean_over_ranks(terms, device, ddp)  # the global batch's loss terms
                lr = optimizer.param_groups[0]["lr"]
                if main:
                    log.writerow(
                        {"step": state["step"], "epoch": epoch, "lr": lr, "seconds": round(dt, 4), **terms}
                    )
                    if board is not None:
                        for key, value in terms.items():
                            board.add_scalar(f"train/{key}", value, state["step"])
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.4f}")
                if state["step"] % cfg.checkpoint_every == 0 or paused():
                    if main:
                        log_fh.flush()
                    save(last_path, best_metrics)
                if paused():
                    break
            if state["step"] < (epoch + 1) * steps_per_epoch:
                break  # paused mid-epoch (max_steps): last.pt is saved, --resume continues here
            # --- end of epoch: check the ranks agree, validate (rank 0), checkpoint, draw the curves
            state["rank_weight_spread"] = distributed.weight_spread(model, ddp)
            if main:
                model.eval()
                metrics = evaluate(torch_restorer(model, device), val_frames)
                gain = metrics["score"]["psnr_gain"]
                record = {
                    "epoch": epoch,
                    "step": state["step"],
                    "epoch_seconds": time.perf_counter() - t_epoch,
                    "ranks": ddp.world_size,
                    "rank_weight_spread": state["rank_weight_spread"],
                    "metrics": metrics,
                }
                with open(run_dir / "val.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                tqdm.write(
                    f"epoch {epoch + 1}/{cfg.epochs} validation ({len(val_frames)} frames):\n{format_table(metrics)}"
                )
                if board is not None:
                    board.add_scalar("val/psnr_gain", gain, epoch + 1)
                if gain > state["best_gain"]:
                    state["best_gain"], best_metrics = gain, metrics
                    save(best_path, metrics)
                log_fh.flush()
                save(last_path, best_metrics)
                write_curves(run_dir)
            distributed.barrier(ddp)  # the other ranks wait for validation and the checkpoint
            if paused():
                break
    finally:
        bar.close()
        if main:
            log_fh.close()
            if board is not None:
                board.close()

    if state["step"] < total_steps:
        say(
            f"paused at step {state['step']}/{total_steps} (max_steps={cfg.max_steps}); {last_path} saved; "
            f"continue with: kd-train --resume {run_dir}"
        )
        return last_path
    if not main:
        return final_path
    if not best_path.exists():  # killed after the last step but before its validation
        model.eval()
        best_metrics = evaluate(torch_restorer(model, device), val_frames)
        state["best_gain"] = best_metrics["score"]["psnr_gain"]
        save(best_path, best_metrics)
    best, ckpt = load_student(best_path)
    best = merge_branches(best)  # student.pt is plain: a trained runet-fhr ships as a runet-fh
    final_metrics, scale = ckpt["metrics"], 1.0
    if cfg.residual_scales:
        scale_frames = (
            validation_frames(
                _default_dir(cfg.val_dir, "val"), cfg.scale_presets, cfg.val_frames, cfg.val_crop
            )
            if cfg.scale_presets
            else val_frames
        )
        best, scale, final_metrics = _fold_residual_scale(
            best, scale_frames, cfg.residual_scales, run_dir, say
        )
    strength_fit = {}
    if cfg.strength_chains:
        if not photo_dir:
            raise DataError("strength_chains fits the head on training photos; this run has none (train_dir)")
        best, final_metrics, strength_fit = _fit_strength(
            best, photo_dir, val_frames, cfg, run_dir, say, progress
        )
    save_checkpoint(
        final_path,
        best,
        name=registry_name(best.config) or cfg.model,
        train_config=cfg.to_dict(),
        train={**ckpt["train"], **state, "total_steps": state["step"], "best_step": ckpt["train"]["step"]},
        metrics=final_metrics,
        residual_scale=scale,
        **({"strength_fit": strength_fit} if strength_fit else {}),
    )
    summary = {
        "student": str(final_path),
        "steps": state["step"],
        "best_gain_db": state["best_gain"],
        "residual_scale": scale,
        "ranks": ddp.world_size,
        "rank_weight_spread": state.get("rank_weight_spread", 0.0),
        "metrics": best_metrics,
        "student_metrics": final_metrics,
    }
    atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    write_curves(run_dir)
    print(
        f"wrote {final_path} (best mean PSNR gain {state['best_gain']:+.3f} dB), {last_path}, {run_dir / 'log.csv'}, "
        f"{run_dir / 'curves.png'}"
    )
    return final_path


def _fit_strength(
    model: torch.nn.Module,
    photo_dir: Path,
    val_frames: list,
    cfg: TrainConfig,
    run_dir: Path,
    say: Any,
    progress: bool,
) -> tuple[torch.nn.Module, dict, dict]:
    """Fit a strength head on the train photos (kd_trainer.strength); the report goes to strength.json."""
    from kd_trainer.strength import describe, fit_strength_head, load_photos

    photos = load_photos(photo_dir)
    say(
        f"fitting the strength head on {cfg.strength_chains} chains of each of {len(photos)} train photos ..."
    )
    headed, report = fit_strength_head(
        model, photos, cfg.strength_chains, cfg.strength_alpha, progress=progress
    )
    say(describe(report))
    metrics = evaluate(torch_restorer(headed, "cpu"), val_frames)
    atomic_write_bytes(run_dir / "strength.json", json.dumps(report | {"val": metrics}, indent=2).encode())
    return headed, metrics, report


def _fold_residual_scale(
    model: torch.nn.Module, frames: list, scales: list[float], run_dir: Path, say: Any
) -> tuple[torch.nn.Module, float, dict]:
    """Score ``scales`` on the val frames, fold the best into the student; the table goes to residual_scale.json."""
    say(f"choosing the residual scale on val: {', '.join(f'{s:g}' for s in scales)} ...")
    scale, results = choose_residual_scale(model, frames, scales)
    lines = [f"{'scale':>6} {'gain':>7} {'harm':>6} {'gain-harm':>9}"]
    for s, metrics in results.items():
        mark = "  <- folded into student.pt" if s == scale else ""
        lines.append(
            f"{s:>6g} {metrics['score']['psnr_gain']:>+7.3f} {metrics['score']['psnr_harm']:>6.3f} "
            f"{safe_gain(metrics):>+9.3f}{mark}"
        )
    say("\n".join(lines))
    report = {"chosen": scale, "criterion": "psnr_gain - psnr_harm (kd_trainer.evaluate.safe_gain)"}
    report["scales"] = {f"{s:g}": m for s, m in results.items()}
    atomic_write_bytes(run_dir / "residual_scale.json", json.dumps(report, indent=2).encode())
    return scale_residual(model, scale), scale, results[scale]
