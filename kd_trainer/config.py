"""Training configuration: one flat dataclass, loaded from YAML, overridden by ``key=value`` pairs."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from importlib.abc import Traversable


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved inside every checkpoint."""

    name: str = "run"
    model: str = "runet-f"
    # optional student checkpoint to start from (same architecture, or the same without the context branch): a
    # path, or student:NAME for one shipped with the package (kd_trainer/assets/students or assistants, e.g.
    # student:quality-e48, the 48-epoch base)
    init_from: str = ""
    teacher: str = "none"  # none | maxim-deblur | onnx:PATH | restormer:PATH
    # data
    train_dir: str = ""  # folder of sharp photos ("" = the fetched pool's train split)
    paired_dir: str = ""  # optional Blur2Sharp/{blur_Image,sharp_Image} folder
    val_dir: str = ""  # folder of sharp validation frames ("" = the fetched pool's val split)
    crop: int = 128
    samples_per_epoch: int = 512
    teacher_samples: int = 0  # only the first N bank samples get teacher outputs (0 = all)
    teacher_gate: bool = False  # KD term only on samples where the teacher beats the input (L1 vs GT)
    # with teacher_gate: 0 = gate whole samples; N > 0 = gate N x N windows: where the teacher is not closer to the
    # ground truth than the input (mean L1 over the window), the KD target there is the ground truth
    teacher_gate_window: int = 0
    # no KD term on samples whose chain added sensor noise (chain degradations only): the ground truth alone
    # teaches what a noisy frame needs; a deblurring teacher sharpens noise with the detail
    teacher_skip_noise: bool = False
    degradations: str = "chains"  # chains (call pipelines, kd_trainer.chain) | chains-balanced | presets (v1)
    # with chains-balanced: share of samples that are one kind of damage alone (noise, JPEG, blur, ...); the
    # rest are clean (15%) or whole call pipelines. More of it teaches what a frame that is only noisy or only
    # compressed needs: no sharpening
    single_step_share: float = 0.30
    # with chain degradations: share of the damaged chains without sensor noise replaced by camera blur alone
    # (Gaussian softness 60%, shake 40%; kd_trainer.chain.with_blur_only), so that a frame that is only soft,
    # which calls rarely draw, is met as often as needed; the other samples (and their teacher outputs) stay
    blur_only_share: float = 0.0
    # with chain degradations: share of the damaged chains whose camera over-sharpens instead (softness and shake
    # removed, its own unsharp mask drawn; noise, scaling and codec kept; kd_trainer.chain.with_oversharpened), so
    # that halos hidden by a down-scale and a codec are met often enough to be left alone (0 = off, the draws
    # of every other sample unchanged)
    oversharpen_share: float = 0.0
    # with chain degradations: the scalers the chains' down- and up-scale steps draw from (kd_trainer.chain.
    # SCALER_SETS): opencv = OpenCV's five; wide = those plus kernels of our own (antialiased Gaussian and
    # sharp-cubic down-scales; Mitchell, Hermite, B-spline and sharp-cubic up-scales). Pillow's are never drawn
    scalers: str = "opencv"
    fresh_degradations: bool = False  # new crops and degradations every epoch, except the teacher_samples
    # share of photo crops whose colours are made vivid before degradation (kd_trainer.data.vivid_colours):
    # saturation x1.3-2.5 with clipping and a channel permutation, so the student sees saturated colours and
    # nearly empty channels, which photos rarely have (0 = off, the draws of every other sample unchanged)
    vivid: float = 0.0
    # share of crops whose ground truth is itself soft: the crop is blurred (Gaussian sigma 0.4-1.2) before the
    # chain, so target and input both start soft (kd_trainer.data.soften). Frames that are soft by nature (small
    # webcam portraits, out-of-focus shading, anti-aliased scans) exist in calls and a student trained only on
    # sharp targets sharpens them (0 = off, the draws of every other sample unchanged)
    soft_truth: float = 0.0
    # share of crops whose contrast is stretched x1.5-3 around their median luma and clipped, half of them made
    # grey first (kd_trainer.data.stretch_contrast): full-range photographic edges and clipped whites and blacks,
    # which otherwise only text and screens show (0 = off, the draws of every other sample unchanged)
    contrast: float = 0.0
    # share of photo crops cut from the rendered screens and scanned pages (kd_trainer.screens) instead of the
    # other photos; -1 = off: every photo equally likely, as always (27 of the 73 training photos are rendered)
    synthetic_share: float = -1.0
    # also train on the photo pool's extra/ split (kd-data photos: people, cafes, offices and screenshots from
    # library examples, website templates and UI kits, added after the shipped students were trained)
    extra_photos: bool = False
    val_presets: list[str] = field(
        default_factory=lambda: [
            "gauss0.5",
            "gauss1.5",
            "downup2",
            "jpeg30",
            "motion9",
            "noise5",
            "h264-540p",
            "call",
            "clean",
        ]
    )
    val_frames: int = 4
    # after training, the residual scale from this list that scores best on val (mean gain minus mean harm,
    # kd_trainer.evaluate.safe_gain) is folded into student.pt; [] keeps the trained residual (scale 1)
    residual_scales: list[float] = field(default_factory=list)
    # the presets that residual scale is chosen on ([] = val_presets); besides the v1 presets, "family:NAME"
    # degrades by a test family (kd_trainer.chain.TEST_FAMILIES), e.g. to weigh the damage the model card scores
    scale_presets: list[str] = field(default_factory=list)
    # after that, a per-frame strength head is fitted on this many training chains of every train photo
    # (kd_trainer.strength: the residual scaled per frame from pooled level-0 features); 0 = no head
    strength_chains: int = 0
    strength_alpha: float = 1.0  # the fit's L2 penalty on the standardised weights
    val_crop: int = 0  # 0 = full frames; else centre crops of this size (faster)
    # loss
    alpha: float = 0.8
    beta: float = 0.2
    fft_weight: float = 0.0
    edge_weight: float = 0.0
    psnr_weight: float = 0.0  # weight of a soft -PSNR(S, GT) per crop, in dB (weights near-clean crops up)
    psnr_cap_db: float = 40.0  # above this PSNR the term flattens into plain MSE
    harm_weight: float = 0.0  # weight of the dB each crop lost against its input (0 for crops it improved)
    # optimisation
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    frame_filter_lr: float = (
        1.0  # the frame filter's learning rate as a multiple of lr (a branch grown from zero)
    )
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    amp: bool = True  # used on CUDA only
    seed: int = 0
    data_seed: int = -1  # seed of the training bank's crops/degradations (-1 = seed); fixing it while varying
    # seed reruns a recipe with new initial weights and batch order but the same, already cached teacher outputs
    device: str = "auto"
    workers: int = 0
    threads: int = 0  # torch CPU threads (0 = torch default)
    # bookkeeping
    out_dir: str = "runs"
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints (resume points)
    max_steps: int = 0  # pause after this many steps in all (0 = run to the end); saves last.pt for --resume

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta <= 0:
            raise ConfigError(
                f"alpha and beta must be >= 0 with a positive sum, got {self.alpha}, {self.beta}"
            )
        if self.beta > 0 and self.teacher in ("", "none"):
            raise ConfigError(
                "beta > 0 needs a teacher (teacher=maxim-deblur, onnx:PATH or restormer:PATH), or set beta=0"
            )
        if self.fresh_degradations and self.beta > 0 and self.teacher_samples == 0:
            raise ConfigError(
                "fresh_degradations=true with a teacher needs teacher_samples > 0: those samples stay fixed "
                "(their teacher outputs are cached) and the rest are drawn anew each epoch; with "
                "teacher_samples=0 every sample needs a teacher output, which would defeat the teacher cache"
            )
        if self.max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.teacher_gate_window < 0 or (self.teacher_gate_window and not self.teacher_gate):
            raise ConfigError(
                f"teacher_gate_window must be 0, or > 0 with teacher_gate=true; got {self.teacher_gate_window}"
            )
        if self.teacher_samples < 0:
            raise ConfigError(f"teacher_samples must be >= 0, got {self.teacher_samples}")
        from kd_trainer.chain import SINGLE_STEP_SHARE, check_single_step_share

        try:
            check_single_step_share(self.single_step_share)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        from kd_trainer.chain import check_scalers

        try:
            check_scalers(self.scalers)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        chain_options = {
            "teacher_skip_noise": self.teacher_skip_noise,
            "blur_only_share": self.blur_only_share,
            "oversharpen_share": self.oversharpen_share,
            "scalers": self.scalers if self.scalers != "opencv" else "",
        }
        used = [f"{key}={str(value).lower()}" for key, value in chain_options.items() if value]
        if used and self.degradations not in ("chains", "chains-balanced"):
            raise ConfigError(
                f"{', '.join(used)} {'needs' if len(used) == 1 else 'need'} chain degradations "
                f"(chains or chains-balanced), got degradations={self.degradations}"
            )
        if self.single_step_share != SINGLE_STEP_SHARE and self.degradations != "chains-balanced":
            raise ConfigError(
                f"single_step_share={self.single_step_share} only applies to degradations=chains-balanced "
                f"(got degradations={self.degradations})"
            )
        if self.synthetic_share != -1.0 and not 0.0 <= self.synthetic_share <= 1.0:
            raise ConfigError(f"synthetic_share must be -1 (off) or in 0..1, got {self.synthetic_share}")
        for key in ("crop", "samples_per_epoch", "epochs", "batch_size", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        bad_scales = [s for s in self.residual_scales if not 0 < s <= 2]
        if bad_scales:
            raise ConfigError(f"residual_scales must lie in (0, 2], got {bad_scales}")
        for key, low, high, hint in _RANGES:
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"{key} must be in {low}..{high}, got {value}{hint}")
        from kd_trainer.degrade import PRESETS
        from kd_trainer.models.student import STUDENTS

        if self.model not in STUDENTS:
            raise ConfigError(f"unknown model {self.model!r}; registered: {', '.join(STUDENTS)}")
        if self.frame_filter_lr != 1.0 and not STUDENTS[self.model].frame_filter:
            raise ConfigError(
                f"frame_filter_lr={self.frame_filter_lr} needs a student with a frame filter (runet-m5, runet-f5, "
                f"...), not {self.model}"
            )
        from kd_trainer.data import DEGRADATIONS

        if self.degradations not in DEGRADATIONS:
            raise ConfigError(
                f"degradations must be one of {', '.join(DEGRADATIONS)}, got {self.degradations!r}"
            )
        from kd_trainer.chain import FAMILY_PRESET, TEST_FAMILIES

        known = [*PRESETS, "chain", *(f"{FAMILY_PRESET}{name}" for name in TEST_FAMILIES)]
        for key in ("val_presets", "scale_presets"):
            unknown = [p for p in getattr(self, key) if p not in known]
            if unknown:
                raise ConfigError(f"unknown {key} {unknown}; known: {', '.join(known)}")
        if self.strength_chains < 0 or self.strength_alpha < 0:
            raise ConfigError(
                f"strength_chains and strength_alpha must be >= 0, got {self.strength_chains}, {self.strength_alpha}"
            )
        if self.scale_presets and not self.residual_scales:
            raise ConfigError("scale_presets chooses among residual_scales; give residual_scales too")


#: (key, lowest, highest, hint): out-of-range values are refused before any work starts.
_RANGES: tuple[tuple[str, float, float, str], ...] = (
    ("lr", 1e-8, 1.0, ""),
    ("frame_filter_lr", 1e-3, 100.0, ""),
    ("weight_decay", 0.0, 1.0, ""),
    ("grad_clip", 1e-6, 1e6, " (a gradient-norm bound; <= 0 would zero or reverse the updates)"),
    ("alpha", 0.0, 1e3, ""),
    ("beta", 0.0, 1e3, ""),
    ("fft_weight", 0.0, 1e3, ""),
    ("edge_weight", 0.0, 1e3, ""),
    ("psnr_weight", 0.0, 1e3, ""),
    ("psnr_cap_db", 1.0, 100.0, " (dB)"),
    ("harm_weight", 0.0, 1e3, ""),
    ("vivid", 0.0, 1.0, " (a share of the photo crops)"),
    ("soft_truth", 0.0, 1.0, " (a share of the crops)"),
    ("contrast", 0.0, 1.0, " (a share of the crops)"),
    ("blur_only_share", 0.0, 1.0, " (a share of the damaged chains)"),
    ("oversharpen_share", 0.0, 1.0, " (a share of the damaged chains)"),
    ("epochs", 1, 100_000, ""),
    ("batch_size", 1, 4096, ""),
    ("crop", 8, 4096, " (pixels)"),
    ("val_crop", 0, 16384, " (0 = full frames)"),
    ("val_frames", 1, 10_000, ""),
    ("samples_per_epoch", 1, 10**8, ""),
    ("warmup_steps", 0, 10**8, ""),
    ("workers", 0, 256, ""),
    ("threads", 0, 1024, " (0 = torch default)"),
    ("seed", 0, 2**32 - 1, ""),
    ("data_seed", -1, 2**32 - 1, " (-1 = seed)"),
    ("checkpoint_every", 1, 10**9, ""),
)

_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any) -> Any:
    """Check/convert ``value`` to the declared type of ``key``."""
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if typing.get_args(hint) == (float,):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
            return [_coerce_float(key, v, "a list of finite numbers") for v in value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if hint is float:
        return _coerce_float(key, value, "a finite number")
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"unsupported type for {key}: {hint}")  # pragma: no cover


def _coerce_float(key: str, value: Any, what: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {what}, got {value!r}") from None


def make_config(data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Build a validated config from a mapping plus ``key=value`` override strings."""
    merged: dict[str, Any] = dict(data or {})
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        merged[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(known))}")
    cfg = TrainConfig(**{k: _coerce(k, v) for k, v in merged.items()})
    cfg.validate()
    return cfg


def packaged_configs() -> dict[str, Traversable]:
    """The recipes shipped inside the package (``kd_trainer/configs/NAME.yaml``), by name.

    Found through :mod:`importlib.resources`, so they work from an installed wheel as well as a checkout.
    """
    folder = importlib.resources.files("kd_trainer") / "configs"
    found = {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.is_file() and f.name.endswith(".yaml")}
    return {name: found[name] for name in sorted(found)}  # by name: quality before quality-e48


def describe_config(text: str) -> str:
    """The first comment line of a recipe (its one-line description)."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def list_configs() -> str:
    """``name  description`` for every packaged recipe."""
    recipes = packaged_configs()
    width = max((len(n) for n in recipes), default=4)
    return "\n".join(f"{name:<{width}}  {describe_config(f.read_text())}" for name, f in recipes.items())


def resolve_config(spec: str | Path) -> tuple[str, Traversable | Path]:
    """(label, file) of ``--config``: an existing path, else a packaged recipe's bare name."""
    p = Path(spec)
    if p.is_file():
        return str(p), p
    recipes = packaged_configs()
    if str(spec) in recipes:
        return f"{spec} (packaged)", recipes[str(spec)]
    raise ConfigError(
        f"config not found: {spec} is neither a file nor a packaged recipe ({', '.join(recipes)}); "
        "see kd-train --list-configs"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (a file path or a packaged recipe's name; optional) and apply overrides."""
    data: dict[str, Any] = {}
    if path:
        label, p = resolve_config(path)
        path = label
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{label}: invalid YAML: {' '.join(str(exc).split())}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{label}: expected a mapping of key: value, got {type(loaded).__name__}")
        data = loaded or {}
    try:
        return make_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
