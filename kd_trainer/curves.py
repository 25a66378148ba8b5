"""Training curves: ``curves.png`` from a run's ``log.csv`` and ``val.jsonl``, and an optional TensorBoard log.

matplotlib (Agg backend) is imported only when a plot is drawn; TensorBoard is used only when
``torch.utils.tensorboard`` imports (it needs the ``tensorboard`` package), and skipped silently otherwise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kd_trainer.io import atomic_path

#: log.csv columns drawn as loss terms (those that are zero throughout are left out)
LOSS_TERMS = ("loss", "l1_gt", "l1_teacher", "fft", "edge", "neg_psnr")


def _read_log(path: Path) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {"step": [], **{k: [] for k in LOSS_TERMS}}
    if not path.is_file():
        return columns
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                values = {k: float(row[k]) for k in columns if row.get(k) not in (None, "")}
            except ValueError:
                continue
            if "step" in values:
                for k in columns:
                    columns[k].append(values.get(k, float("nan")))
    return columns


def _read_val(path: Path) -> tuple[list[int], list[float]]:
    epochs, gains = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                gains.append(float(record["metrics"]["score"]["psnr_gain"]))
                epochs.append(int(record["epoch"]) + 1)
            except (ValueError, KeyError, TypeError):
                continue
    return epochs, gains


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def write_curves(run_dir: str | Path) -> Path:
    """Draw loss terms per step and validation PSNR gain per epoch into ``run_dir/curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    log = _read_log(run_dir / "log.csv")
    epochs, gains = _read_val(run_dir / "val.jsonl")
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    steps = log["step"]
    window = max(1, len(steps) // 50)  # long runs: a running mean over ~2% of the steps
    for term in LOSS_TERMS:
        values = log[term]
        if term == "neg_psnr" or not any(v > 0 for v in values):
            continue  # -PSNR (dB) gets its own axis below; absent terms are all NaN or zero
        if any(v <= 0 for v in values):  # the total turns negative with the -PSNR term: terms only
            continue
        ax_loss.plot(steps, _smooth(values, window), label=term, linewidth=1)
    ax_loss.set(xlabel="step", ylabel="L1-type loss terms", title=f"{run_dir.name}: training losses")
    if any(line.get_label() for line in ax_loss.get_lines()):
        ax_loss.set_yscale("log")
    if any(v != 0 and v == v for v in log["neg_psnr"]):  # the soft -PSNR term is in dB: its own axis
        ax_psnr = ax_loss.twinx()
        ax_psnr.plot(steps, _smooth(log["neg_psnr"], window), "k--", linewidth=1, label="neg_psnr (dB)")
        ax_psnr.set_ylabel("neg_psnr (dB)")
        ax_psnr.legend(loc="upper right", fontsize=8)
    if ax_loss.get_lines():
        ax_loss.legend(loc="upper left", fontsize=8)
    ax_val.plot(epochs, gains, marker="o")
    ax_val.axhline(0.0, color="grey", linewidth=0.8)
    ax_val.xaxis.get_major_locator().set_params(integer=True)
    ax_val.set(xlabel="epoch", ylabel="mean PSNR gain vs input (dB)", title="validation")
    ax_val.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


def tensorboard_writer(run_dir: str | Path):
    """A ``SummaryWriter`` on ``run_dir/tensorboard``, or ``None`` when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
