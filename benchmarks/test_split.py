"""The one scorer for the held-out test split: every quality number in the model card (and sharpen-bench's
test-split section) comes from here.

Frames: the photo pool's ``test/`` split (``kd-data photos``; whole source packages that neither training nor
checkpoint selection ever see), at their own sizes (314x314 faces up to 1920x1080 and larger), sorted by name.
A frame's index is its position in that sorted list; with ``max_frames`` the frames are shared out between the
sources (the pool names files ``<source>-<name>``) and evenly spaced within each, and the index is the position
in the chosen list.

Damage: every frame goes through every test family of :data:`kd_trainer.chain.TEST_FAMILIES` (step variants
that training never draws), seeded by (family, frame index), so a result is reproducible. Degraded frames are
cached as PNG under ``cache_dir()/test-degraded/`` keyed by (frame pixels, family, index, source of
:mod:`kd_trainer.chain` and :mod:`kd_trainer.degrade`, PyAV version): the H.264 and VP8 families take 1-3 s per
1080p frame.

Scores, per family (PSNR in dB against the ground truth, data range 255, **capped at 100 dB**):

* ``psnr_gain``: mean over frames of PSNR(output) - PSNR(degraded input); ``ssim_gain`` likewise;
* ``worst_gain`` (and ``worst_frame``): the smallest per-frame PSNR gain;
* ``share_worse``: fraction of frames whose PSNR gain is below 0;
* ``psnr``/``ssim`` (output) and ``psnr_in``/``ssim_in`` (degraded input), means over frames; ``frames``.

For the ``clean`` family the input *is* the ground truth, so its capped PSNR is 100 dB and the gain is
PSNR(output) - 100: exactly 0.0 for a method that returns the input unchanged, and strongly negative (e.g.
-50 dB for an output 50 dB away from the input) for any method that changes it at all. ``overall`` averages the
family means over the *degraded* families (clean excluded: its gain lives on that other scale and is reported on
its own as ``clean_gain``).

Baselines: the identity; one unsharp-mask setting tuned on crops of the **val** split degraded by (non-clean)
*training* chains (what a shipped filter would be tuned on; never test frames); and, as an upper bound for a fixed filter,
one setting per family tuned on val frames degraded by that very family.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from benchmarks.baselines import UnsharpParams, tune_unsharp, unsharp_mask
from benchmarks.frames import BenchInputError, crops
from kd_trainer import chain as chain_module
from kd_trainer import degrade as degrade_module
from kd_trainer.chain import (
    TEST_FAMILIES,
    VIDEO_CODECS,
    apply_chain,
    degrade_family,
    family_chain,
    sample_train_chain,
)
from kd_trainer.io import ImageReadError, list_images, read_image, write_image
from kd_trainer.metrics import psnr, ssim
from kd_trainer.paths import cache_dir

Restorer = Callable[[np.ndarray], np.ndarray]
#: A restorer, or one restorer per family (e.g. a filter tuned per family).
Method = Restorer | Mapping[str, Restorer]

#: PSNR of identical images (the clean family's input), so means and gains stay finite.
PSNR_CAP = 100.0
#: Targets (dB of mean PSNR gain per family): never harm, and a clear gain on realistic call pipelines.
NO_HARM_DB = -0.05
CALL_GAIN_DB = 1.0
#: On clean frames the output must stay this close to the input (PSNR, dB): changes nobody can see.
CLEAN_PSNR_DB = 50.0
CLEAN_FAMILY = "clean"
#: Families held to the +1 dB call target besides those marked ``realistic_call``.
EXTRA_CALL_FAMILIES = ("mixed",)
CACHE_SUBDIR = "test-degraded"


class Degraded(NamedTuple):
    """One test item: a frame degraded by one family."""

    family: str
    name: str  # frame file name
    index: int  # the frame's position in the sorted frame list (seeds the family's chain)
    degraded: np.ndarray
    gt: np.ndarray
    chain: str  # the chain's one-line description


# ------------------------------------------------------------------------------------------------ frames
def pool_split_dir(split: str) -> Path:
    """``cache_dir()/photos/<split>``: where ``kd-data photos`` puts the split."""
    return cache_dir() / "photos" / split


def source_of(name: str) -> str:
    """The source prefix of a pool file name (``mate-Aqua.png`` -> ``mate``; no dash -> ``""``)."""
    head, sep, _ = name.partition("-")
    return head if sep else ""


def spread(paths: Sequence[Path], count: int) -> list[Path]:
    """``count`` of the sorted ``paths``, shared round-robin between source prefixes (:func:`source_of`,
    largest source first) and evenly spaced within each source; returned sorted by name."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(paths, key=lambda p: p.name):
        groups.setdefault(source_of(p.name), []).append(p)
    order = sorted(groups, key=lambda g: (-len(groups[g]), g))
    quota = dict.fromkeys(order, 0)
    left = min(count, len(paths))
    while left:
        for g in order:
            if left and quota[g] < len(groups[g]):
                quota[g] += 1
                left -= 1
    picked = []
    for g, n in quota.items():
        if n:
            idx = sorted({int(round(i)) for i in np.linspace(0, len(groups[g]) - 1, n)})
            picked += [groups[g][i] for i in idx]
    return sorted(picked, key=lambda p: p.name)


def _load_split(
    folder: str | Path | None, split: str, max_frames: int | None
) -> list[tuple[str, np.ndarray]]:
    root = Path(folder) if folder else pool_split_dir(split)
    hint = f"run `kd-data photos` to build the photo pool (expected its {split}/ split in {root})"
    try:
        paths = list_images(root)
    except FileNotFoundError:
        raise BenchInputError(f"{split} frames not found: {root} is not a folder; {hint}") from None
    if not paths:
        raise BenchInputError(f"{split} folder {root} holds no images; {hint}")
    if max_frames is not None and max_frames < 1:
        raise BenchInputError(f"max_frames must be at least 1, got {max_frames}")
    if max_frames and len(paths) > max_frames:
        paths = spread(paths, max_frames)
    frames = []
    for p in paths:
        try:
            frames.append((p.name, read_image(p)))
        except ImageReadError as exc:
            raise BenchInputError(f"cannot read {split} frame {p}: {exc}") from None
    return frames


def load_test_frames(
    folder: str | Path | None = None, max_frames: int | None = None
) -> list[tuple[str, np.ndarray]]:
    """``[(file name, RGB uint8)]`` of the held-out test split, sorted by name (default folder
    ``cache_dir()/photos/test``). ``max_frames`` keeps that many, spread over the sources (see :func:`spread`)."""
    return _load_split(folder, "test", max_frames)


def load_val_frames(
    folder: str | Path | None = None, max_frames: int | None = None
) -> list[tuple[str, np.ndarray]]:
    """The val split (checkpoint selection and baseline tuning), like :func:`load_test_frames`."""
    return _load_split(folder, "val", max_frames)


def load_train_frames(folder: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The train split (for probes that train a network of their own), like :func:`load_test_frames`."""
    return _load_split(folder, "train", None)


def frame_list(
    frames: Sequence[tuple[str, np.ndarray]], folder: str | Path | None = None
) -> list[dict[str, Any]]:
    """The scored frames as report rows: index (by name), name, size and source package (from the manifest)."""
    sources = frame_sources(folder)
    return [
        {
            "index": i,
            "name": n,
            "size": f"{img.shape[1]}x{img.shape[0]}",
            "package": sources.get(n, {}).get("package"),
        }
        for i, (n, img) in enumerate(sorted(frames, key=lambda f: f[0]))
    ]


def frame_sources(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """File name -> ``{package, version, member, width, height}`` from the pool's ``manifest.json`` (beside
    the split folder); empty when there is no manifest (e.g. an explicit folder of frames)."""
    root = Path(folder) if folder else pool_split_dir("test")
    manifest = root.parent / "manifest.json"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for f in files:
        if Path(f.get("path", "")).parent.name != root.name:
            continue
        src = f.get("source", {})
        out[Path(f["path"]).name] = {
            "package": src.get("package"),
            "version": src.get("version"),
            "member": src.get("member"),
            "width": f.get("width"),
            "height": f.get("height"),
        }
    return out


# ------------------------------------------------------------------------------------------------ families
def family_codec_ok(name: str) -> bool:
    """Whether this machine can make family ``name`` (its codec needs PyAV with libx264 / libvpx)."""
    codec = family_chain(name, 0).codec
    if codec not in VIDEO_CODECS:
        return True
    try:
        import av

        av.codec.Codec("libx264" if codec == "h264" else "libvpx", "w")
    except Exception:
        return False
    return True


def available_families(names: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """(families this machine can make, families it cannot), in :data:`TEST_FAMILIES` order."""
    wanted = list(TEST_FAMILIES) if names is None else list(names)
    unknown = [n for n in wanted if n not in TEST_FAMILIES]
    if unknown:
        raise BenchInputError(f"unknown test families {unknown}; known: {', '.join(TEST_FAMILIES)}")
    ok = [n for n in wanted if family_codec_ok(n)]
    return ok, [n for n in wanted if n not in ok]


def call_target_families() -> list[str]:
    """Families held to the +1 dB call target: ``realistic_call`` ones plus :data:`EXTRA_CALL_FAMILIES`."""
    return [n for n, f in TEST_FAMILIES.items() if f.realistic_call or n in EXTRA_CALL_FAMILIES]


# ------------------------------------------------------------------------------------------------ degradation
@lru_cache(maxsize=1)
def chain_source_hash() -> str:
    """Hash of what decides a degraded frame besides its inputs: the source of :mod:`kd_trainer.chain` and
    :mod:`kd_trainer.degrade`, and the PyAV version (its bundled codecs)."""
    h = hashlib.sha256()
    for mod in (chain_module, degrade_module):
        h.update(Path(mod.__file__).read_bytes())
    try:
        import av

        h.update(f"av {av.__version__}".encode())
    except ImportError:
        h.update(b"no av")
    return h.hexdigest()


def frame_sha(rgb: np.ndarray) -> str:
    """SHA-256 of a frame's shape and pixels."""
    h = hashlib.sha256(json.dumps(list(rgb.shape)).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def degraded_key(gt: np.ndarray, family: str, index: int, frame_hash: str | None = None) -> str:
    """Cache key of ``gt`` degraded by ``family`` as the ``index``-th frame."""
    payload = json.dumps([frame_hash or frame_sha(gt), family, int(index), chain_source_hash()])
    return hashlib.sha256(payload.encode()).hexdigest()


def degraded_cache_path(key: str) -> Path:
    return cache_dir() / CACHE_SUBDIR / f"{key}.png"


def degrade_cached(
    gt: np.ndarray, family: str, index: int, frame_hash: str | None = None
) -> tuple[np.ndarray, bool]:
    """``degrade_family(gt, family, index)``'s frame, read from the cache when present (and the right size);
    returns (frame, whether it came from the cache)."""
    path = degraded_cache_path(degraded_key(gt, family, index, frame_hash))
    if path.is_file():
        try:
            img = read_image(path)
            if img.shape == gt.shape:
                return img, True
        except ImageReadError:
            pass  # a truncated entry: make it again
    img, _ = degrade_family(gt, family, index)
    if not img.flags.writeable:  # Pillow's scalers hand back read-only arrays; a cached frame is writable
        img = img.copy()
    write_image(path, img)
    return img, False


def degraded_set(
    frames: Sequence[tuple[str, np.ndarray]],
    families: Iterable[str] | None = None,
    progress: bool = True,
    desc: str = "degrading",
) -> list[Degraded]:
    """Every frame degraded by every family (default: all of :data:`TEST_FAMILIES`), family-major.

    ``frame_index`` is the frame's position in ``frames`` sorted by name. Frames come from the on-disk cache
    when present (see the module docstring).
    """
    names = list(TEST_FAMILIES) if families is None else list(families)
    ordered = sorted(frames, key=lambda f: f[0])
    hashes = [frame_sha(img) for _, img in ordered]
    out, hits = [], 0
    bar = tqdm(total=len(names) * len(ordered), desc=desc, unit="frame", disable=not progress)
    for family in names:
        for index, ((name, gt), fh) in enumerate(zip(ordered, hashes, strict=True)):
            bar.set_postfix_str(f"{family} {name}", refresh=False)
            img, hit = degrade_cached(gt, family, index, fh)
            hits += hit
            out.append(Degraded(family, name, index, img, gt, family_chain(family, index).describe()))
            bar.update()
    bar.close()
    if progress and out:
        print(f"{desc}: {len(out)} frames, {hits} from the cache ({cache_dir() / CACHE_SUBDIR})")
    return out


# ------------------------------------------------------------------------------------------------ baselines
def capped_psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """:func:`kd_trainer.metrics.psnr` capped at :data:`PSNR_CAP` (identical images give the cap)."""
    return min(psnr(ref, img), PSNR_CAP)


def _margin_crops(img: np.ndarray, size: int, count: int, seed: int, margin: int = 16) -> list[np.ndarray]:
    return crops(img, size + 2 * margin, count, seed=seed)


def tune_global_unsharp(
    val_folder: str | Path | None = None,
    crops_per_frame: int = 8,
    size: int = 256,
    seed: int = 0,
    max_frames: int | None = None,
) -> UnsharpParams:
    """One unsharp-mask setting for every family, tuned on ``size`` crops of the **val** frames, each degraded
    by a seeded *training* chain (:func:`kd_trainer.chain.sample_train_chain`), as training samples are, except
    that clean chains are drawn again: with PSNR capped at 100 dB for an untouched crop, a few clean crops
    would outweigh all the damaged ones and the search would always return the identity.

    Test frames are never used. Each crop is degraded with a 16-pixel margin that is then cut away, so the
    chain's own borders (codec padding, pans) do not count.
    """
    margin = 16
    pairs = []
    for i, (_, img) in enumerate(load_val_frames(val_folder, max_frames)):
        for j, region in enumerate(
            _margin_crops(img, size, crops_per_frame, seed=1000 * seed + i, margin=margin)
        ):
            rng = np.random.default_rng([seed, i, j])
            chain = sample_train_chain(rng)
            while chain.clean:  # a clean crop's capped 100 dB would swamp the mean: tune on damage only
                chain = sample_train_chain(rng)
            deg = apply_chain(region, chain, seed=int(rng.integers(2**31)))
            cut = (slice(margin, margin + size), slice(margin, margin + size))
            pairs.append((np.ascontiguousarray(deg[cut]), np.ascontiguousarray(region[cut])))
    return tune_unsharp(pairs)


def tune_family_unsharp(
    val_folder: str | Path | None = None,
    family: str = "call-540p",
    crops_per_frame: int = 6,
    size: int = 256,
    max_frames: int | None = None,
    progress: bool = False,
) -> UnsharpParams:
    """One unsharp-mask setting for ``family``, tuned on ``size`` crops of whole val frames degraded by that
    family (cached like test frames). It knows the family, so it is an upper bound for a fixed filter, not a
    baseline a product could ship; report it as such."""
    frames = load_val_frames(val_folder, max_frames)
    pairs = []
    for k, item in enumerate(degraded_set(frames, [family], progress=progress, desc=f"val {family}")):
        for deg, gt in zip(
            crops(item.degraded, size, crops_per_frame, seed=k),
            crops(item.gt, size, crops_per_frame, seed=k),
            strict=True,
        ):
            pairs.append((deg, gt))
    return tune_unsharp(pairs)


def tune_baselines(
    val_folder: str | Path | None = None,
    families: Iterable[str] | None = None,
    usm_crops: int = 8,
    progress: bool = True,
) -> tuple[UnsharpParams, dict[str, UnsharpParams]]:
    """The two tuned unsharp-mask baselines as the model card and sharpen-bench use them: one global setting
    (:func:`tune_global_unsharp`, ``usm_crops`` val crops per frame) and one per family of ``families``
    (:func:`tune_family_unsharp`; default: all of :data:`TEST_FAMILIES`)."""
    usm_global = tune_global_unsharp(val_folder, crops_per_frame=usm_crops)
    names = list(TEST_FAMILIES) if families is None else list(families)
    usm_family = {
        f: tune_family_unsharp(val_folder, f)
        for f in tqdm(names, desc="tuning unsharp mask per family", unit="family", disable=not progress)
    }
    return usm_global, usm_family


def baseline_methods(usm_global: UnsharpParams, usm_family: Mapping[str, UnsharpParams]) -> dict[str, Method]:
    """:data:`IDENTITY`, :data:`USM_GLOBAL` and :data:`USM_FAMILY` (one restorer per family: the scorer hands
    each frame to its own family's setting), in that order."""
    return {
        IDENTITY: lambda x: x,
        USM_GLOBAL: lambda x: unsharp_mask(x, *usm_global.args),
        USM_FAMILY: {f: (lambda x, p=p: unsharp_mask(x, *p.args)) for f, p in usm_family.items()},
    }


# ------------------------------------------------------------------------------------------------ scoring
def input_metrics(dset: Sequence[Degraded], progress: bool = True) -> list[tuple[float, float]]:
    """(capped PSNR, SSIM) of every degraded input against its ground truth, in ``dset`` order; pass it to
    :func:`score` as ``baseline`` to measure the inputs once for many methods."""
    return [
        (capped_psnr(d.gt, d.degraded), ssim(d.gt, d.degraded))
        for d in tqdm(dset, desc="inputs", unit="frame", disable=not progress)
    ]


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gains = [r["psnr_gain"] for r in rows]
    worst = int(np.argmin(gains))
    return {
        "psnr_gain": float(np.mean(gains)),
        "ssim_gain": float(np.mean([r["ssim_gain"] for r in rows])),
        "worst_gain": float(gains[worst]),
        "worst_frame": rows[worst]["frame"],
        "share_worse": float(np.mean([g < 0 for g in gains])),
        "psnr_harm": float(np.mean([max(0.0, -g) for g in gains])),  # what the frames made worse lost
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "psnr_in": float(np.mean([r["psnr_in"] for r in rows])),
        "ssim_in": float(np.mean([r["ssim_in"] for r in rows])),
        "frames": len(rows),
    }


def overall(families: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean of the family means over the degraded families (``clean`` reported apart as ``clean_gain``)."""
    degraded = {f: m for f, m in families.items() if f != "clean"}
    out: dict[str, Any] = {"families": list(degraded)}
    if degraded:
        out.update(
            psnr_gain=float(np.mean([m["psnr_gain"] for m in degraded.values()])),
            ssim_gain=float(np.mean([m["ssim_gain"] for m in degraded.values()])),
            psnr_harm=float(np.mean([m["psnr_harm"] for m in degraded.values()])),
            worst_gain=float(min(m["worst_gain"] for m in degraded.values())),
            share_worse=float(np.mean([m["share_worse"] for m in degraded.values()])),
        )
    if "clean" in families:
        out["clean_gain"] = families["clean"]["psnr_gain"]
    return out


def pick(method: Method, family: str) -> Restorer:
    """The restorer ``method`` uses on frames of ``family``."""
    if isinstance(method, Mapping):
        try:
            return method[family]
        except KeyError:
            raise KeyError(f"no restorer for family {family!r}; have {', '.join(method)}") from None
    return method


def score(
    restorer: Method,
    dset: Sequence[Degraded],
    baseline: Sequence[tuple[float, float]] | None = None,
    progress: bool = True,
    desc: str = "scoring",
) -> dict[str, Any]:
    """Score ``restorer`` (RGB uint8 HxWx3 -> same, or a mapping family -> such) on a :func:`degraded_set`.

    Returns ``{"families": {family: summary}, "overall": {...}, "per_frame": {family: [row]}}`` with the
    summary keys of the module docstring. ``baseline`` (from :func:`input_metrics`) saves re-measuring inputs.
    """
    if baseline is not None and len(baseline) != len(dset):
        raise ValueError(f"baseline has {len(baseline)} entries for {len(dset)} frames")
    per: dict[str, list[dict[str, Any]]] = {}
    for k, d in enumerate(tqdm(dset, desc=desc, unit="frame", disable=not progress)):
        out = pick(restorer, d.family)(d.degraded)
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != d.gt.shape:
            got = f"{getattr(out, 'shape', None)} {getattr(out, 'dtype', type(out).__name__)}"
            raise ValueError(f"restorer returned {got} for a {d.gt.shape} uint8 frame ({d.name}, {d.family})")
        p_in, s_in = (
            baseline[k] if baseline is not None else (capped_psnr(d.gt, d.degraded), ssim(d.gt, d.degraded))
        )
        if np.array_equal(out, d.degraded):
            p_out, s_out = p_in, s_in
        else:
            p_out, s_out = capped_psnr(d.gt, out), ssim(d.gt, out)
        per.setdefault(d.family, []).append(
            {
                "frame": d.name,
                "psnr_in": p_in,
                "psnr": p_out,
                "psnr_gain": p_out - p_in,
                "ssim_in": s_in,
                "ssim": s_out,
                "ssim_gain": s_out - s_in,
            }
        )
    families = {f: _summary(rows) for f, rows in per.items()}
    return {"families": families, "overall": overall(families), "per_frame": per}


def gains_by_content(scored: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{kind: {family: {"psnr_gain": mean, "frames": n}}}`` from a :func:`score` result's ``per_frame`` rows,
    the frames grouped by content kind (:func:`kd_trainer.sources.frame_kind`: people, photo, text); kinds
    with no frame are left out."""
    from kd_trainer.sources import CONTENT_KINDS, frame_kind

    per_frame = scored.get("per_frame", {})
    kind_of = {r["frame"]: frame_kind(r["frame"]) for rows in per_frame.values() for r in rows}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in CONTENT_KINDS:
        for family, rows in per_frame.items():
            gains = [r["psnr_gain"] for r in rows if kind_of[r["frame"]] == kind]
            if gains:
                out.setdefault(kind, {})[family] = {"psnr_gain": float(np.mean(gains)), "frames": len(gains)}
    return out


# ------------------------------------------------------------------------------------------------ targets
#: Method name of the global tuned unsharp mask in a result's ``scores``.
USM_GLOBAL = "unsharp mask"
USM_FAMILY = "unsharp mask per family (upper bound)"
IDENTITY = "identity"


#: Bootstrap resamples (over test frames) behind each target's 95% interval, and their fixed seed.
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0


def margin_interval(per_frame: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` bootstrap interval (percentile, resampling frames, fixed seed) of the mean of ``per_frame``
    margins; ``None`` for fewer than two frames. Deterministic, so a re-rendered card shows the same interval."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size < 2 or not np.all(np.isfinite(values)):
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = values[rng.integers(0, values.size, (BOOTSTRAP_RESAMPLES, values.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _frame_values(scored: dict[str, Any], family: str, key: str) -> dict[str, float]:
    """``{frame: row[key]}`` of a :func:`score` result's per-frame rows for ``family`` (empty without them)."""
    return {r["frame"]: r[key] for r in scored.get("per_frame", {}).get(family, [])}


def _paired_margins(mine: dict[str, float], theirs: dict[str, float] | float) -> list[float]:
    """Per-frame ``mine - theirs`` (``theirs`` per frame, paired by frame name, or one threshold)."""
    if isinstance(theirs, dict):
        if set(theirs) != set(mine):
            return []
        return [mine[f] - theirs[f] for f in mine]
    return [v - theirs for v in mine.values()]


def targets(result: dict[str, Any], student: str, usm: str | None = None) -> dict[str, Any]:
    """The issue's targets for ``student``, per family, from scores (``result["scores"]`` or a mapping
    method -> :func:`score` output):

    * ``no_harm``: mean PSNR gain >= :data:`NO_HARM_DB` (every degraded family); on the ``clean`` family,
      where the input *is* the ground truth and any change scores about -40 dB against the 100 dB cap, the
      output's mean PSNR against the clean frame must be >= :data:`CLEAN_PSNR_DB` (under ~0.8 levels RMS);
    * ``beats_usm``: gain > the tuned unsharp mask's gain (by default the one tuned *per family*, the
      strongest fixed filter, when it was measured, else the global one; every degraded family);
    * ``call_gain``: gain >= :data:`CALL_GAIN_DB` (the :func:`call_target_families`).

    Each entry is ``{met, margin_db, threshold_db}`` with ``margin_db = gain - threshold`` (>= 0 met, except
    ``beats_usm`` which needs > 0), plus ``ci95_db`` ``[low, high]`` when per-frame scores are there: the 95%
    bootstrap interval of the margin over the test frames (paired frame by frame against the unsharp mask), which
    says whether a small margin is more than the luck of which frames were drawn. Also ``met``, ``total`` and
    ``missed`` (``[{family, target, margin_db}]``).
    """
    scores = result.get("scores", result)
    if student not in scores:
        raise KeyError(f"no scores for {student!r}; have {', '.join(scores)}")
    if usm is None:
        usm = USM_FAMILY if USM_FAMILY in scores else USM_GLOBAL
    if usm not in scores:
        raise KeyError(f"no scores for the baseline {usm!r}; have {', '.join(scores)}")
    mine, theirs = scores[student]["families"], scores[usm]["families"]

    def interval(frames: dict[str, float], baseline: dict[str, float] | float) -> dict[str, list[float]]:
        ci = margin_interval(_paired_margins(frames, baseline))
        return {"ci95_db": list(ci)} if ci is not None else {}

    call = set(call_target_families())
    per: dict[str, dict[str, dict[str, Any]]] = {}
    missed = []
    for family, m in mine.items():
        gain = m["psnr_gain"]
        if family == CLEAN_FAMILY:
            clean_psnr = m["psnr"]
            t = {
                "no_harm": {
                    "threshold_db": CLEAN_PSNR_DB,
                    "met": clean_psnr >= CLEAN_PSNR_DB,
                    "margin_db": clean_psnr - CLEAN_PSNR_DB,
                    **interval(_frame_values(scores[student], family, "psnr"), CLEAN_PSNR_DB),
                }
            }
            for entry in t.values():
                if not entry["met"]:
                    missed.append({"family": family, "target": "no_harm", "margin_db": entry["margin_db"]})
            per[family] = t
            continue
        t = {
            "no_harm": {"threshold_db": NO_HARM_DB, "met": gain >= NO_HARM_DB},
            "beats_usm": {
                "threshold_db": theirs[family]["psnr_gain"],
                "met": gain > theirs[family]["psnr_gain"],
            },
        }
        if family in call:
            t["call_gain"] = {"threshold_db": CALL_GAIN_DB, "met": gain >= CALL_GAIN_DB}
        my_frames = _frame_values(scores[student], family, "psnr_gain")
        usm_frames = _frame_values(scores[usm], family, "psnr_gain")
        for name, entry in t.items():
            entry["margin_db"] = gain - entry["threshold_db"]
            entry |= interval(my_frames, usm_frames if name == "beats_usm" else entry["threshold_db"])
            if not entry["met"]:
                missed.append({"family": family, "target": name, "margin_db": entry["margin_db"]})
        per[family] = t
    total = sum(len(t) for t in per.values())
    return {"families": per, "met": total - len(missed), "total": total, "missed": missed, "baseline": usm}


TARGET_LABELS = {
    "no_harm": f"gain >= {NO_HARM_DB:+.2f} dB (clean: PSNR vs the input >= {CLEAN_PSNR_DB:.0f} dB)",
    "beats_usm": "gain > unsharp mask tuned per family",
    "call_gain": f"gain >= {CALL_GAIN_DB:+.1f} dB (call families)",
}


# ------------------------------------------------------------------------------------------------ rendering
def cell(value: Any, fmt: str) -> str:
    """A table cell: ``value`` formatted, or ``-`` when missing or not finite."""
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def metric_table(
    result: dict[str, Any], key: str, fmt: str, mean_key: str | None, mean_label: str = "mean (degraded)"
) -> list[str]:
    """Markdown rows: one per method (``result["scores"]``), one column per scored family plus the mean."""
    fams = result["families_scored"]
    lines = [
        "| method | " + " | ".join(fams) + (f" | {mean_label} |" if mean_key else " |"),
        "|---|" + "---:|" * (len(fams) + (1 if mean_key else 0)),
    ]
    for name, s in result["scores"].items():
        cells = [cell(s["families"].get(f, {}).get(key), fmt) for f in fams]
        if mean_key:
            cells.append(cell(s["overall"].get(mean_key), fmt))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def content_tables(result: dict[str, Any]) -> list[str]:
    """Markdown: per content kind (people, photo, text), one row per method with its mean PSNR gain per family
    over that kind's frames (:func:`gains_by_content`)."""
    fams = [f for f in result["families_scored"] if f != "clean"]
    by_method = {name: gains_by_content(s) for name, s in result["scores"].items()}
    kinds = list(dict.fromkeys(k for g in by_method.values() for k in g))
    lines: list[str] = []
    for kind in kinds:
        counts = {g[kind][f]["frames"] for g in by_method.values() if kind in g for f in g[kind]}
        frames = f"{max(counts)} frames" if counts else "no frames"
        lines += [
            "",
            f"**{kind}** ({frames}):",
            "",
            "| method | " + " | ".join(fams) + " | mean |",
            "|---|" + "---:|" * (len(fams) + 1),
        ]
        for name, groups in by_method.items():
            gains = [groups.get(kind, {}).get(f, {}).get("psnr_gain") for f in fams]
            known = [g for g in gains if g is not None]
            mean = float(np.mean(known)) if len(known) == len(fams) else None
            lines.append(
                f"| {name} | " + " | ".join(cell(g, "+.2f") for g in gains) + f" | {cell(mean, '+.2f')} |"
            )
    return lines


def verdict_uncertain(entry: dict[str, Any]) -> bool:
    """Whether a target's 95% interval straddles its threshold (the verdict could flip with other frames)."""
    ci = entry.get("ci95_db")
    return ci is not None and ci[0] <= 0 <= ci[1]


def _verdict(entry: dict[str, Any]) -> str:
    """``met (+0.03; -0.01..+0.07)``: the verdict, its margin and, when known, the margin's 95% interval."""
    word = "met" if entry["met"] else "**missed**"
    ci = entry.get("ci95_db")
    interval = f"; {ci[0]:+.2f}..{ci[1]:+.2f}" if ci is not None else ""
    return f"{word} ({entry['margin_db']:+.2f}{interval})"


def target_tables(result: dict[str, Any]) -> list[str]:
    """Markdown: per student, every family's PSNR gain and each target met or missed (with its margin and, when
    per-frame scores are there, the margin's 95% bootstrap interval over the test frames)."""
    lines = [
        "Per student and family (margin in dB, gain minus threshold; after it, where per-frame scores were kept, "
        "the margin's 95% bootstrap interval over the test frames, paired frame by frame against the unsharp "
        "mask): " + "; ".join(f"`{k}`: {v}" for k, v in TARGET_LABELS.items()) + "."
    ]
    for name, t in result.get("targets", {}).items():
        entries = [e for fam in t["families"].values() for e in fam.values()]
        open_calls = sum(verdict_uncertain(e) for e in entries)
        known = sum("ci95_db" in e for e in entries)
        note = (
            f" {open_calls} of the {known} verdicts with an interval could go either way on other frames "
            "(the interval straddles the threshold)."
            if known
            else ""
        )
        lines += [
            "",
            f"**{name}**: {t['met']}/{t['total']} met.{note}",
            "",
            "| family | PSNR gain | " + " | ".join(TARGET_LABELS.values()) + " |",
            "|---|---:|" + "---|" * len(TARGET_LABELS),
        ]
        for f in result["families_scored"]:
            entry = t["families"].get(f)
            if entry is None:
                continue
            gain = result["scores"][name]["families"][f]["psnr_gain"]
            verdicts = ["" if entry.get(k) is None else _verdict(entry[k]) for k in TARGET_LABELS]
            lines.append(f"| {f} | {gain:+.2f} | " + " | ".join(verdicts) + " |")
    return lines
