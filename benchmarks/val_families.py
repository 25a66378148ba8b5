"""Score student checkpoints on the **val** split with every test family: for design and checkpoint selection.

The test split must never steer a choice, so comparisons between recipes or architectures are made here: the
pool's ``val/`` frames (``kd-data photos``), degraded by the same :data:`kd_trainer.chain.TEST_FAMILIES`, scored
by the same :func:`benchmarks.test_split.score` as the model card. Prints one line per student (mean PSNR gain
per family and over the degraded families) and, with ``--json``, writes the full scores.

    python -m benchmarks.val_families fast=kd_trainer/assets/students/fast.pt mine=runs/mine/best.pt

``--by-content`` adds one line per student and content kind (people, photo, text: :func:`kd_trainer.sources.frame_kind`),
e.g. what a student does on faces under call damage, which the family means hide.

``--scales 0.5,0.75,1`` scores each student at several residual scales (``NAME@SCALE``) from one forward pass
per frame: the output ``x + scale * (student(x) - x)`` is what :func:`kd_trainer.models.student.scale_residual`
folds into the weights, so this shows which global scale a recipe should keep on the families.

``--at-harm 0.010`` (with ``--scales``) adds each student's mean gain at that harm, interpolated linearly between
the two folds that bracket it: two students compared at equal harm, so a student that is only bolder (or more timid)
than another, which a fold undoes, is not mistaken for a better one. ``--from-json a.json b.json`` reads scores
written earlier by ``--json`` instead of scoring again (entries of later files replace earlier ones):

    python -m benchmarks.val_families --from-json runs/shipped.json runs/mine.json --at-harm 0.010

``--vivid`` scores vivid copies of the val frames instead (:func:`kd_trainer.data.vivid_colours`, seeded per
frame): saturated colours and nearly empty channels, where a student can break although the plain frames are
fine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError


def parse_spec(spec: str) -> tuple[str, Path]:
    """``NAME=CHECKPOINT`` (or a bare checkpoint path, named after its folder) -> (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).parent.name or Path(spec).stem, spec
    if not name or not path:
        raise BenchInputError(f"expected NAME=CHECKPOINT, got {spec!r}")
    return name, Path(path)


class ScaledResiduals:
    """A student's outputs at any residual scale from one forward pass per frame.

    ``restorer(scale)`` maps a frame to ``x + scale * (student(x) - x)``; the residual of each frame is kept
    (float32, by the frame's identity) so that scoring more scales costs no more forward passes. That is 12
    bytes per pixel of every degraded frame: about 3 GB for the whole val split and every family.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._residuals: dict[int, tuple[Any, Any]] = {}

    def _residual(self, rgb: Any) -> Any:
        import torch

        from kd_trainer.data import to_tensor

        hit = self._residuals.get(id(rgb))
        if hit is not None and hit[0] is rgb:
            return hit[1]
        x = to_tensor(rgb)[None]
        with torch.no_grad():
            residual = (self.model(x) - x)[0]
        self._residuals[id(rgb)] = (rgb, residual)  # holding rgb keeps its id from being reused
        return residual

    def restorer(self, scale: float) -> Any:
        """``uint8 RGB -> uint8 RGB`` for one residual scale."""
        from kd_trainer.data import to_tensor, to_uint8

        def run(rgb: Any) -> Any:
            return to_uint8(to_tensor(rgb) + scale * self._residual(rgb))

        return run


def parse_scales(text: str) -> list[float]:
    """``"0.5,0.75,1"`` -> ``[0.5, 0.75, 1.0]``; each scale must be a finite number in 0..4."""
    scales = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            value = float(part)
        except ValueError:
            raise BenchInputError(f"--scales: {part!r} is not a number") from None
        if not 0.0 <= value <= 4.0:
            raise BenchInputError(f"--scales: {part} is outside 0..4")
        scales.append(value)
    return scales


def score_students(
    specs: list[tuple[str, Path]],
    val_dir: str | Path | None = None,
    families: list[str] | None = None,
    progress: bool = True,
    vivid: bool = False,
    scales: list[float] | None = None,
) -> dict[str, Any]:
    """``{name: test_split.score(...)}`` for each (name, checkpoint) on the degraded val frames (their
    :func:`vivid_frames` with ``vivid``); with ``scales``, ``{name@scale: ...}`` for each scale instead."""
    from kd_trainer.evaluate import torch_restorer
    from kd_trainer.models.student import load_student

    models = {name: load_student(path)[0] for name, path in specs}  # fail on a bad file before any work
    frames = ts.load_val_frames(val_dir, None)
    if vivid:
        frames = vivid_frames(frames)
    names, _skipped = ts.available_families(families)
    dset = ts.degraded_set(frames, names, progress=progress, desc="degrading val frames")
    baseline = ts.input_metrics(dset, progress=progress)
    if not scales:
        return {
            name: ts.score(torch_restorer(model), dset, baseline, progress=progress, desc=f"scoring {name}")
            for name, model in models.items()
        }
    results = {}
    for name, model in models.items():
        outputs = ScaledResiduals(model)
        for scale in scales:
            key = f"{name}@{scale:g}"
            results[key] = ts.score(
                outputs.restorer(scale), dset, baseline, progress=progress, desc=f"scoring {key}"
            )
    return results


def vivid_frames(frames: list[tuple[str, Any]], seed: int = 0) -> list[tuple[str, Any]]:
    """``[("vivid-" + name, vivid_colours(frame))]``, each frame with its own seeded draw (by sorted position)."""
    import numpy as np

    from kd_trainer.data import vivid_colours

    ordered = sorted(frames, key=lambda f: f[0])
    return [
        (f"vivid-{name}", vivid_colours(img, np.random.default_rng([seed, i])))
        for i, (name, img) in enumerate(ordered)
    ]


def summary_line(name: str, result: dict[str, Any]) -> str:
    """``name: family +0.12 ... | mean (degraded) +0.05, harm 0.01``, from the scorer's own figures (harm: the
    mean over the degraded families of what their frames made worse lost, ``max(0, -gain)``)."""
    overall, families = result["overall"], result["families"]
    gains = [f"{f} {families[f]['psnr_gain']:+.3f}" for f in overall["families"]]
    clean = f" | clean {100 + overall['clean_gain']:.1f} dB vs input" if "clean_gain" in overall else ""
    mean = f"{overall['psnr_gain']:+.3f}" if "psnr_gain" in overall else "n/a"
    if "psnr_harm" in overall:
        mean += f", harm {overall['psnr_harm']:.3f}"
    return f"{name}: " + ", ".join(gains) + clean + f" | mean (degraded) {mean}"


def split_fold(key: str) -> tuple[str, float | None]:
    """``("mine", 0.5)`` for the key ``mine@0.5`` that ``--scales`` writes, ``("mine", None)`` for ``mine``."""
    name, at, scale = key.rpartition("@")
    return (name, float(scale)) if at else (key, None)


def _folds_at_harm(
    results: dict[str, Any], name: str, harm: float
) -> tuple[dict[str, Any], dict[str, Any], float] | None:
    """The two of ``name``'s scored folds (``NAME@SCALE`` entries, else ``NAME`` alone) whose mean harms bracket
    ``harm``, and how far ``harm`` lies from the first to the second (0-1); None when no two folds bracket it."""
    folds = sorted(
        (r["overall"]["psnr_harm"], key)
        for key, r in results.items()
        if split_fold(key)[0] == name and "psnr_harm" in r.get("overall", {})
    )
    for (h0, k0), (h1, k1) in zip(folds, folds[1:], strict=False):
        if h0 <= harm <= h1:
            return results[k0], results[k1], 0.0 if h1 == h0 else (harm - h0) / (h1 - h0)
    if folds and folds[0][0] == harm:  # a single fold exactly at that harm
        return results[folds[0][1]], results[folds[0][1]], 0.0
    return None


def gain_at_harm(results: dict[str, Any], name: str, harm: float) -> float | None:
    """``name``'s mean gain over the degraded families at mean harm ``harm``: linear between the two of its scored
    folds whose harms bracket ``harm``; None when none do (never extrapolated)."""
    bracket = _folds_at_harm(results, name, harm)
    if bracket is None:
        return None
    r0, r1, t = bracket
    g0, g1 = r0["overall"]["psnr_gain"], r1["overall"]["psnr_gain"]
    return g0 + t * (g1 - g0)


def families_at_harm(results: dict[str, Any], name: str, harm: float) -> dict[str, float] | None:
    """Each family's mean PSNR gain at mean harm ``harm`` (for ``clean``: the output's PSNR in dB against the
    untouched frame), interpolated between the same two folds as :func:`gain_at_harm`; None when none bracket it.

    Comparing students family by family at one harm, rather than at the grid fold nearest below it, keeps a
    bolder student from being judged at a timider fold than its rival."""
    bracket = _folds_at_harm(results, name, harm)
    if bracket is None:
        return None
    r0, r1, t = bracket
    values = {}
    for family, f0 in r0["families"].items():
        f1 = r1["families"].get(family)
        metric = "psnr" if family == "clean" else "psnr_gain"
        if f1 is not None and metric in f0 and metric in f1:
            values[family] = f0[metric] + t * (f1[metric] - f0[metric])
    return values


def at_harm_lines(results: dict[str, Any], harm: float) -> list[str]:
    """``name: +0.059 at harm 0.010 (folds x0.8-1.2)`` per student (base name before ``@``), in scoring order,
    each followed by its families at that harm when it has both the gain and the families."""
    keys = [split_fold(key) for key in results]
    lines = []
    for name in dict.fromkeys(n for n, _ in keys):
        folds = sorted(scale for n, scale in keys if n == name and scale is not None)
        span = f" (folds x{folds[0]:g}-{folds[-1]:g})" if folds else ""
        gain = gain_at_harm(results, name, harm)
        value = f"{gain:+.3f}" if gain is not None else "n/a (no folds bracket it)"
        lines.append(f"{name}: {value} at harm {harm:.3f}{span}")
        families = families_at_harm(results, name, harm) or {}
        clean = families.pop("clean", None)
        if families:
            tail = f" | clean {clean:.1f} dB vs input" if clean is not None else ""
            lines.append("  " + ", ".join(f"{f} {g:+.3f}" for f, g in families.items()) + tail)
    return lines


def load_results(paths: list[str]) -> dict[str, Any]:
    """Scores written by ``--json``, merged in order (a later file's entry replaces an earlier one's)."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BenchInputError(f"--from-json: no such file: {path}") from None
        except json.JSONDecodeError as exc:
            raise BenchInputError(f"--from-json: {path} is not JSON ({exc})") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, dict) and "overall" in v for v in data.values()
        ):
            raise BenchInputError(f"--from-json: {path} is not a val_families --json file")
        merged |= data
    return merged


def content_lines(name: str, result: dict[str, Any]) -> list[str]:
    """``name [people, 5 frames]: family +0.12 ... | mean (degraded) +0.05``, one line per content kind."""
    lines = []
    for kind, fams in ts.gains_by_content(result).items():
        degraded = {f: g for f, g in fams.items() if f != "clean"}
        gains = ", ".join(f"{f} {g['psnr_gain']:+.3f}" for f, g in degraded.items())
        mean = sum(g["psnr_gain"] for g in degraded.values()) / len(degraded) if degraded else float("nan")
        frames = max(g["frames"] for g in fams.values())
        lines.append(f"{name} [{kind}, {frames} frames]: {gains} | mean (degraded) {mean:+.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.val_families", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("students", nargs="*", metavar="NAME=CHECKPOINT", help="student checkpoints (.pt)")
    ap.add_argument("--val-dir", default=None, help="val frames (default: the photo pool's val/ split)")
    ap.add_argument("--families", default="", help="comma-separated test families (default: all)")
    ap.add_argument("--json", default="", help="also write the full scores here")
    ap.add_argument(
        "--vivid",
        action="store_true",
        help="score vivid (saturated, channel-permuted) copies of the val frames",
    )
    ap.add_argument(
        "--by-content",
        action="store_true",
        help="also print each student's gains per content kind (people, photo, text)",
    )
    ap.add_argument(
        "--scales",
        default="",
        help="comma-separated residual scales to score each student at (NAME@SCALE), one forward pass per frame",
    )
    ap.add_argument(
        "--at-harm",
        type=float,
        default=None,
        metavar="HARM",
        help="also print each student's mean gain and family gains at this mean harm, interpolated over its --scales folds",
    )
    ap.add_argument(
        "--from-json",
        nargs="+",
        default=[],
        metavar="FILE",
        help="read scores written by --json instead of scoring checkpoints",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.students) == bool(args.from_json):
        ap.error(
            "give either student checkpoints (NAME=CHECKPOINT) or --from-json FILE..., not both or neither"
        )
    scoring_only = {
        "--val-dir": args.val_dir,
        "--families": args.families,
        "--scales": args.scales,
        "--vivid": args.vivid,
    }
    if args.from_json and any(scoring_only.values()):
        used = ", ".join(flag for flag, value in scoring_only.items() if value)
        ap.error(f"{used}: these choose how checkpoints are scored; --from-json reads scores as saved")
    try:
        if args.from_json:
            results = load_results(args.from_json)
        else:
            specs = [parse_spec(s) for s in args.students]
            families = [f for f in args.families.split(",") if f] or None
            results = score_students(
                specs,
                args.val_dir,
                families,
                progress=not args.no_progress,
                vivid=args.vivid,
                scales=parse_scales(args.scales),
            )
    except (BenchInputError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, result in results.items():
        print(summary_line(name, result))
        if args.by_content:
            print("\n".join(content_lines(name, result)))
    if args.at_harm is not None:
        print("\n".join(at_harm_lines(results, args.at_harm)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
