"""Photo-pool processing, manifest verification and TF.js model cleaning (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kd_trainer import fetch, maxim
from kd_trainer.fetch import (
    SourceImage,
    assign_splits,
    build_pool,
    center_crop_to_aspect,
    crop_border,
    downscale,
    prepare_train_image,
    prepare_val_frame,
    select_val,
    verify_photo_pool,
)
from kd_trainer.io import read_image, write_image
from kd_trainer.maxim import clean_tfjs_model_json, select_model_json


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ pure functions


def test_crop_border_removes_four_percent_of_each_side():
    img = _noise(100, 200)
    out = crop_border(img, 0.04)
    assert out.shape == (92, 184, 3)
    np.testing.assert_array_equal(out, img[4:96, 8:192])


def test_crop_border_rejects_bad_fraction():
    with pytest.raises(ValueError):
        crop_border(_noise(10, 10), 0.5)


def test_downscale_uses_area_averaging():
    # A 1-pixel checkerboard averages to mid-grey under INTER_AREA (nearest/linear sampling would not).
    checker = ((np.indices((60, 90)).sum(axis=0) % 2) * 255).astype(np.uint8)
    img = np.repeat(checker[..., None], 3, axis=2)
    out = downscale(img, 2.0)
    assert out.shape == (30, 45, 3)
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_prepare_train_image_crops_then_downscales():
    img = np.full((400, 600, 3), 77, np.uint8)
    img[:16] = 255  # top border strip: fully inside the 4% crop
    out, note = prepare_train_image(img, border=0.04, factor=1.5, min_short_side=100)
    # crop 16 px top/bottom, 24 px left/right -> 368x552 -> /1.5 -> 245x368
    assert out.shape == (245, 368, 3)
    assert (out == 77).all(), "the border strip must be cropped away before resizing"
    assert "x1.5" in note


def test_prepare_train_image_keeps_small_images_as_is():
    img = _noise(300, 451)
    out, note = prepare_train_image(img, min_short_side=256)
    assert out is img
    assert "kept as-is" in note


def test_prepare_train_image_refuses_weak_downscale():
    with pytest.raises(ValueError):
        prepare_train_image(_noise(600, 600), factor=1.2)


def test_center_crop_to_aspect():
    img = _noise(1600, 2560)
    out = center_crop_to_aspect(img, 16 / 9)
    assert out.shape[:2] == (1440, 2560)
    np.testing.assert_array_equal(out, img[80:1520])
    tall = center_crop_to_aspect(_noise(100, 400), 2.0)
    assert tall.shape[:2] == (100, 200)


def test_prepare_val_frame_is_exact_1080p_and_centred():
    img = np.full((1600, 2560, 3), 100, np.uint8)
    img[:80] = 255  # removed by the 16:9 centre crop (1600 -> 1440 rows)
    img[-80:] = 0
    out, note = prepare_val_frame(img)
    assert out.shape == (1080, 1920, 3)
    assert (out == 100).all()
    assert "1920x1080" in note


def test_prepare_val_frame_rejects_narrow_sources():
    with pytest.raises(ValueError, match="2560"):
        prepare_val_frame(_noise(1200, 1920))


def test_select_val_rule():
    names = ["f", "c", "a", "k", "b", "e", "d", "h", "g", "j", "i"]
    assert select_val(names) == {"c", "g", "k"}  # sorted indices 2, 6, 10
    assert select_val(["only", "two"]) == set()


def test_assign_splits_only_wide_grouped_sources_can_be_val(tmp_path):
    srcs = [SourceImage(f"p{i}", tmp_path, "pkg", "1", f"m{i}", "g") for i in range(5)]
    srcs.append(SourceImage("skimage-x", tmp_path, "scikit-image", "0", "x"))
    widths = {s.name: 2560 for s in srcs}
    widths["p0"] = 1920  # too narrow: never val, and not counted in the sorted list
    split = assign_splits(srcs, widths)
    assert [n for n, s in split.items() if s == "val"] == ["p3"]  # wide ones p1..p4 -> index 2 is p3


# ------------------------------------------------------------------------------------------ pool + manifest


def _make_sources(tmp_path: Path) -> list[SourceImage]:
    src = tmp_path / "src"
    sources = []
    for i, (h, w) in enumerate([(1600, 2560), (1600, 2560), (1600, 2560), (900, 1200), (300, 400)]):
        path = write_image(src / f"s{i}.png", _noise(h, w, seed=i))
        group = "deb" if i < 4 else ""
        sources.append(SourceImage(f"img{i}", path, "synthetic", "1.0", f"src/s{i}.png", group))
    path = write_image(src / "t.png", _noise(901, 1203, seed=9))
    sources.append(SourceImage("held", path, "synthetic-test", "1.0", "src/t.png", "deb", split="test"))
    path = write_image(src / "e.png", _noise(600, 900, seed=11))
    sources.append(SourceImage("more", path, "synthetic-extra", "1.0", "src/e.png", split="extra"))
    return sources


def test_build_pool_writes_manifest_that_verifies(tmp_path):
    pool = tmp_path / "pool"
    manifest = build_pool(_make_sources(tmp_path), pool)
    assert manifest["counts"] == {"train": 4, "val": 1, "test": 1, "extra": 1}
    by_path = {f["path"]: f for f in manifest["files"]}
    train = {f"train/img{i}.png" for i in (0, 1, 3, 4)}
    assert set(by_path) == train | {"val/img2.png", "test/held.png", "extra/more.png"}
    # the extra split (training photos for recipes with extra_photos) is processed like train
    assert read_image(pool / "extra/more.png").shape == (round(600 * 0.92 / 1.5), round(900 * 0.92 / 1.5), 3)
    # a test source below 2560 px: border cropped, shrunk 1.5x, cut to even sizes for the codecs
    held = read_image(pool / "test/held.png")
    assert held.shape[0] % 2 == 0 and held.shape[1] % 2 == 0
    assert abs(held.shape[1] - 1203 * 0.92 / 1.5) <= 2
    assert read_image(pool / "val/img2.png").shape == (1080, 1920, 3)
    assert read_image(pool / "train/img0.png").shape == (round(1472 / 1.5), round(2356 / 1.5), 3)
    assert read_image(pool / "train/img4.png").shape == (300, 400, 3)  # kept as-is
    assert "kept as-is" in by_path["train/img4.png"]["processing"]
    entry = by_path["val/img2.png"]
    assert entry["source"]["member"] == "src/s2.png" and entry["source"]["package"] == "synthetic"
    assert len(entry["sha256"]) == 64 and entry["bytes"] == (pool / "val/img2.png").stat().st_size
    on_disk = json.loads((pool / "manifest.json").read_text())
    assert on_disk == manifest
    assert verify_photo_pool(pool) == []


def test_verify_detects_corrupted_missing_and_extra_files(tmp_path):
    pool = tmp_path / "pool"
    build_pool(_make_sources(tmp_path), pool)
    target = pool / "train/img1.png"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # same size, different content
    target.write_bytes(bytes(data))
    (pool / "train/img3.png").unlink()
    write_image(pool / "train/stray.png", _noise(8, 8))
    problems = verify_photo_pool(pool)
    assert any("checksum mismatch: train/img1.png" in p for p in problems)
    assert any("missing file: train/img3.png" in p for p in problems)
    assert any("train/stray.png" in p for p in problems)
    assert len(problems) == 3


def test_verify_without_manifest(tmp_path):
    assert verify_photo_pool(tmp_path) == [f"manifest missing: {tmp_path / 'manifest.json'}"]


def test_fetch_returns_verified_pool_without_downloading(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    build_pool(_make_sources(tmp_path), pool)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # any download attempt would fail loudly
    assert fetch.fetch_photo_pool(pool) == pool


def test_fetch_rebuilds_broken_pool_and_explains_missing_tools(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    build_pool(_make_sources(tmp_path), pool)
    (pool / "val/img2.png").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(RuntimeError, match="apt-get"):
        fetch.fetch_photo_pool(pool)
    assert (pool / "manifest.json").exists(), "a failed rebuild must leave the old pool in place"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pool.tmp-")], "staging dir left behind"


def test_fetch_rebuilds_a_pool_that_predates_the_extra_split(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    build_pool(_make_sources(tmp_path), pool)
    manifest = json.loads((pool / "manifest.json").read_text())
    del manifest["counts"]["extra"]
    manifest["files"] = [f for f in manifest["files"] if f["split"] != "extra"]
    (pool / "extra" / "more.png").unlink()
    (pool / "manifest.json").write_text(json.dumps(manifest))
    assert verify_photo_pool(pool) == []  # sound, only older
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert fetch.fetch_photo_pool(pool, faces=False) == pool  # --no-faces: the extra sources are not wanted
    with pytest.raises(RuntimeError, match="apt-get"):  # otherwise it is rebuilt (here: no tools)
        fetch.fetch_photo_pool(pool)


def test_cli_verify_exit_codes(tmp_path, capsys):
    pool = tmp_path / "pool"
    build_pool(_make_sources(tmp_path), pool)
    assert fetch.main(["verify", "--dest", str(pool)]) == 0
    (pool / "train/img0.png").unlink()
    assert fetch.main(["verify", "--dest", str(pool)]) == 1
    assert "missing file: train/img0.png" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ TF.js / teacher


def _tfjs_model() -> dict:
    return {
        "format": "graph-model",
        "signature": {
            "inputs": {"xs_0": {"name": "xs_0:0"}},
            "outputs": {"output_0": {"name": "Identity:0"}},
        },
        "modelTopology": {
            "node": [
                {"name": "xs_0", "op": "Placeholder", "attr": {}, "inputs": []},
                {"name": "Identity", "op": "Identity", "input": ["xs_0"], "inputs": ["xs_0"]},
            ],
            "library": {
                "function": [
                    {"signature": {"name": "f"}, "nodeDef": [{"name": "n", "op": "Neg", "inputs": ["a"]}]}
                ]
            },
            "versions": {"producer": 1395},
        },
        "weightsManifest": [{"paths": [], "weights": []}],
    }


def test_clean_tfjs_model_json_removes_node_inputs_only():
    model = _tfjs_model()
    original = json.loads(json.dumps(model))
    cleaned = clean_tfjs_model_json(model)
    assert model == original, "input must not be modified"
    nodes = cleaned["modelTopology"]["node"]
    assert all("inputs" not in n for n in nodes)
    assert nodes[1]["input"] == ["xs_0"]
    assert "inputs" not in cleaned["modelTopology"]["library"]["function"][0]["nodeDef"][0]
    assert cleaned["signature"]["inputs"] == original["signature"]["inputs"]
    assert cleaned["modelTopology"]["versions"] == {"producer": 1395}


def test_clean_tfjs_model_json_rejects_non_graph_models():
    with pytest.raises(ValueError):
        clean_tfjs_model_json({"format": "layers-model"})


def test_select_model_json_prefers_the_largest_weights(tmp_path):
    for name, size in (("small", 10), ("full", 1000)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "w.bin").write_bytes(b"\0" * size)
        (folder / "model.json").write_text(json.dumps({"weightsManifest": [{"paths": ["w.bin"]}]}))
    chosen = select_model_json(sorted(tmp_path.rglob("model.json")))
    assert chosen == tmp_path / "full" / "model.json"
    with pytest.raises(FileNotFoundError):
        select_model_json([])


def test_maxim_info_missing_tells_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="kd-data teacher maxim-deblur"):
        maxim.maxim_info()


def test_motion_blur_lowers_psnr_of_synthetic_scene():
    sharp = maxim.synthetic_scene(128)
    blurred = maxim.motion_blur(sharp, 9)
    assert sharp.shape == (128, 128, 3) and sharp.dtype == np.float32
    assert 15 < maxim._psnr(blurred, sharp) < 35


def test_fetch_rebuild_is_atomic(tmp_path, monkeypatch):
    """Downloads replaced by local synthetic files: a failed rebuild keeps the old pool, a good one swaps."""
    pool = tmp_path / "pool"
    sources = _make_sources(tmp_path)
    build_pool(sources, pool)
    old_manifest = (pool / "manifest.json").read_text()
    (pool / "train/img0.png").unlink()
    monkeypatch.setattr(fetch, "_require_tools", lambda: None)
    broken = [*sources, SourceImage("gone", tmp_path / "missing.png", "synthetic", "1", "missing.png")]
    monkeypatch.setattr(fetch, "debian_sources", lambda work: (broken, []))
    with pytest.raises(ValueError, match="missing.png"):
        fetch.fetch_photo_pool(pool, faces=False)
    assert (pool / "manifest.json").read_text() == old_manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "src"], "staging folder left behind"

    monkeypatch.setattr(fetch, "debian_sources", lambda work: (list(sources), []))
    monkeypatch.setattr(fetch, "SCREEN_COUNT", 3)
    monkeypatch.setattr(fetch, "SCAN_COUNT", 3)
    assert fetch.fetch_photo_pool(pool, faces=False) == pool
    assert verify_photo_pool(pool) == []
    names = {p.name for p in (pool / "train").iterdir()}
    assert "img0.png" in names and "skimage-astronaut.png" in names
    assert {"screen-00-document.png", "screen-01-code.png"} <= names  # seed % 8 != 2: train
    assert read_image(pool / "val/screen-02-dashboard.png").shape == (1080, 1920, 3)  # seed 2: val, 1080p
    assert {"scan-00-bilevel.png", "scan-01-grey.png"} <= names
    scan = read_image(pool / "val/scan-02-bilevel.png")  # seed 2: val
    assert scan.shape[0] > scan.shape[1] and (scan == 255).mean() > 0.8 and (scan == 0).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "src"]
