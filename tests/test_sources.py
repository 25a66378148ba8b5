"""The package photo sources: splits held out by whole package."""

from kd_trainer.fetch import TEST_PACKAGES, TRAIN_DOWNSCALE
from kd_trainer.sources import CONTENT_KINDS, PACKAGE_SOURCES, frame_kind, member_stem


def test_every_package_source_belongs_to_exactly_one_split():
    keys = [s.key for s in PACKAGE_SOURCES]
    assert len(keys) == len(set(keys))
    packages = {}
    for s in PACKAGE_SOURCES:
        assert s.split in ("train", "val", "test", "extra"), s
        assert s.registry in ("pypi-wheel", "pypi-sdist", "npm"), s
        assert ("@" in s.spec) if s.registry == "npm" else ("==" in s.spec), f"{s.key}: pin the version"
        assert s.members and len(set(s.members)) == len(s.members), s.key
        name = s.spec.split("==")[0].rsplit("@", 1)[0]
        assert packages.setdefault(name, s.split) == s.split, f"{name} is split across {s.split} and more"
        if s.split in ("train", "extra"):
            assert s.downscale >= TRAIN_DOWNSCALE


def test_pool_file_names_are_unique():
    names = [f"{s.key}-{member_stem(m)}" for s in PACKAGE_SOURCES for m in s.members]
    assert len(names) == len(set(names))


def test_held_out_splits_hold_people_and_text():
    splits = ("train", "val", "test", "extra")
    by_split = {split: [s for s in PACKAGE_SOURCES if s.split == split] for split in splits}
    assert all(by_split.values())
    assert {"pyfeat", "facerec", "ocrmypdf"} <= {s.key for s in by_split["test"]}
    assert "mate" in TEST_PACKAGES


def test_content_kinds_name_real_members_and_known_kinds():
    for s in PACKAGE_SOURCES:
        assert s.kind in CONTENT_KINDS, s.key
        for member, kind in s.member_kinds:
            assert member in s.members, f"{s.key}: {member} is not one of its members"
            assert kind in CONTENT_KINDS and kind != s.kind, (s.key, member)
    # every package member's pool file name maps back to that member's kind
    for s in PACKAGE_SOURCES:
        for member in s.members:
            assert frame_kind(f"{s.key}-{member_stem(member)}.png") == s.member_kind(member)
    # the held-out splits hold people and text (photos come from the wallpaper packages too)
    for split in ("val", "test"):
        kinds = {s.member_kind(m) for s in PACKAGE_SOURCES if s.split == split for m in s.members}
        assert {"people", "text"} <= kinds, split


def test_frame_kind_of_pool_file_names():
    assert frame_kind("pyfeat-single_face.png") == "people"
    assert frame_kind("ocrmypdf-linn.png") == "text"
    assert frame_kind("opencv-newspaper.png") == "text"  # a member exception
    assert frame_kind("opencv-group1.png") == "people"
    assert frame_kind("opencv-castle.png") == "photo"  # the package's own kind
    assert frame_kind("screen-03-chat.png") == "text" and frame_kind("scan-05-letter.png") == "text"
    assert frame_kind("mate-Aqua.png") == "photo"  # a wallpaper
    assert frame_kind("skimage-astronaut.png") == "people"  # OTHER_KINDS
    assert frame_kind("unknown.png") == "photo"
