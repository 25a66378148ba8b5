"""The package photo sources: splits held out by whole package."""

from kd_trainer.fetch import TEST_PACKAGES, TRAIN_DOWNSCALE
from kd_trainer.sources import PACKAGE_SOURCES


def test_every_package_source_belongs_to_exactly_one_split():
    keys = [s.key for s in PACKAGE_SOURCES]
    assert len(keys) == len(set(keys))
    packages = {}
    for s in PACKAGE_SOURCES:
        assert s.split in ("train", "val", "test"), s
        assert s.registry in ("pypi-wheel", "pypi-sdist", "npm"), s
        assert ("@" in s.spec) if s.registry == "npm" else ("==" in s.spec), f"{s.key}: pin the version"
        assert s.members and len(set(s.members)) == len(s.members), s.key
        name = s.spec.split("==")[0].rsplit("@", 1)[0]
        assert packages.setdefault(name, s.split) == s.split, f"{name} is split across {s.split} and more"
        if s.split == "train":
            assert s.downscale >= TRAIN_DOWNSCALE


def test_held_out_splits_hold_people_and_text():
    by_split = {split: [s for s in PACKAGE_SOURCES if s.split == split] for split in ("train", "val", "test")}
    assert all(by_split.values())
    assert {"pyfeat", "facerec", "ocrmypdf"} <= {s.key for s in by_split["test"]}
    assert "mate" in TEST_PACKAGES
