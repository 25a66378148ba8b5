"""Randomised call chains and the held-out test families (kd_trainer.chain)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kd_trainer.chain import (
    CLEAN_SHARE,
    CV2_SCALERS,
    KERNEL_SCALERS,
    PIL_SCALERS,
    SINGLE_STEP_SHARE,
    TEST_FAMILIES,
    TRAIN_DOWN_SCALERS,
    TRAIN_H264_PRESETS,
    TRAIN_UP_SCALERS,
    WIDE_DOWN_SCALERS,
    WIDE_UP_SCALERS,
    Chain,
    apply_chain,
    degrade_family,
    family_chain,
    resize,
    sample_train_chain,
    video_round_trip,
    with_blur_only,
    with_oversharpened,
    yuv_noise,
)
from kd_trainer.degrade import has_h264
from kd_trainer.metrics import psnr


def _scene(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = np.stack([base, base * 0.8 + 20, 255 - base], axis=-1) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_training_chains_randomise_every_step_and_include_clean_samples() -> None:
    rng = np.random.default_rng(0)
    chains = [sample_train_chain(rng, h264=True) for _ in range(800)]
    clean = sum(c.clean for c in chains) / len(chains)
    assert abs(clean - CLEAN_SHARE) < 0.05
    dirty = [c for c in chains if not c.clean]
    assert {c.down_scaler for c in dirty if c.down > 1} == set(TRAIN_DOWN_SCALERS)
    assert {c.up_scaler for c in dirty if c.down > 1} == set(TRAIN_UP_SCALERS)
    assert {c.codec for c in dirty} == {"none", "jpeg", "h264"}
    assert {c.preset for c in dirty if c.codec == "h264"} == set(TRAIN_H264_PRESETS)
    assert {c.noise for c in dirty} == {"none", "gauss", "signal"}
    assert any(c.oversharpen > 0 for c in dirty) and any(c.motion_len > 1 for c in dirty)
    assert any(c.clip_frames > 1 for c in dirty)
    assert all(1.5 <= c.down <= 3.0 for c in dirty if c.down > 1)


def test_test_families_use_variants_training_never_draws() -> None:
    rng = np.random.default_rng(1)
    train = [sample_train_chain(rng, h264=True, scalers=s) for s in ("opencv", "wide") for _ in range(2000)]
    train_scalers = {c.down_scaler for c in train} | {c.up_scaler for c in train}
    assert not train_scalers & set(PIL_SCALERS)
    assert not any(c.codec in ("vp8", "jpeg444") or c.bitrate_bpp or c.noise == "yuv" for c in train)
    for name in TEST_FAMILIES:
        chain = family_chain(name, 0)
        if chain.clean:
            continue
        held_out = (
            chain.down_scaler in PIL_SCALERS
            or chain.codec in ("vp8", "jpeg444")
            or chain.bitrate_bpp > 0
            or chain.noise == "yuv"
            or chain.preset not in TRAIN_H264_PRESETS
            or chain.codec == "none"  # single-step families: the step's strength is what is tested
        )
        assert held_out, name
    assert {n for n, f in TEST_FAMILIES.items() if f.realistic_call} >= {"call-540p", "mixed"}


def test_apply_chain_is_deterministic_and_clean_is_identity() -> None:
    img = _scene()
    chain = Chain(blur_sigma=1.0, noise="gauss", noise_sigma=3.0, down=2.0, codec="jpeg", quality=40)
    a, b = apply_chain(img, chain, seed=3), apply_chain(img, chain, seed=3)
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8
    assert not np.array_equal(a, apply_chain(img, chain, seed=4))  # fresh noise
    assert np.array_equal(apply_chain(img, Chain(clean=True)), img)
    assert psnr(img, a) < 35


def test_apply_chain_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        apply_chain(np.zeros((8, 8), np.uint8), Chain())


def test_stronger_steps_degrade_more() -> None:
    img = _scene(128, 128)
    mild = apply_chain(img, Chain(blur_sigma=0.5))
    strong = apply_chain(img, Chain(blur_sigma=1.5))
    assert psnr(img, strong) < psnr(img, mild)
    q90 = apply_chain(img, Chain(codec="jpeg", quality=90))
    q20 = apply_chain(img, Chain(codec="jpeg", quality=20))
    assert psnr(img, q20) < psnr(img, q90)


def test_scalers_differ_and_unknown_scaler_is_refused() -> None:
    img = _scene(64, 64)
    outs = {s: resize(img, (128, 128), s) for s in ("bilinear", "bicubic", "pil-bicubic", "pil-lanczos")}
    assert all(o.shape == (128, 128, 3) for o in outs.values())
    assert not np.array_equal(outs["bicubic"], outs["pil-bicubic"])  # a = -0.75 vs -0.5
    with pytest.raises(KeyError, match="unknown scaler"):
        resize(img, (8, 8), "magic")


def _sample_frame() -> np.ndarray:
    from kd_trainer.io import read_image
    from kd_trainer.paths import SAMPLES_DIR

    return read_image(SAMPLES_DIR / "sample_1080p.png")[
        300:660, 600:1140
    ]  # 360 x 540: a face, hair and background


def test_wide_scalers_stay_clear_of_the_held_out_pillow_scalers() -> None:
    """Each kernel of the wide set resamples a real frame, in the direction it is drawn for, at least 0.75x as far
    (mean absolute difference) from every Pillow scaler the test families use as Pillow's bicubic and Lanczos-3
    are from each other, at 2x and 3x: training on them is not training on the held-out scalers under another
    name. (Lanczos-2 would fail, at ~0.2x from Catmull-Rom; a Mitchell down-scale, at ~0.45x from Pillow's
    antialiased triangle at 3x.)"""
    img = _sample_frame()
    h, w = img.shape[:2]

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(float) - b).mean())

    for factor in (2, 3):
        small = (w // factor, h // factor)
        source = resize(img, small, "area")
        steps = {  # direction -> (what is resampled, to which size, the kernels drawn for it)
            "down": (img, small, set(WIDE_DOWN_SCALERS) & set(KERNEL_SCALERS)),
            "up": (source, (w, h), set(WIDE_UP_SCALERS) & set(KERNEL_SCALERS)),
        }
        for direction, (frame, size, kernels) in steps.items():
            assert kernels
            pillow = {name: resize(frame, size, name) for name in PIL_SCALERS}
            unit = gap(pillow["pil-bicubic"], pillow["pil-lanczos"])
            for name in kernels:
                out = resize(frame, size, name)
                nearest = min(gap(out, ref) for ref in pillow.values())
                assert nearest >= 0.75 * unit, (direction, factor, name, nearest / unit)


def test_kernel_resize_keeps_flat_frames_and_antialiases_down_scales() -> None:
    flat = np.full((37, 53, 3), 91, np.uint8)
    for name in KERNEL_SCALERS:
        for size in ((20, 13), (111, 80), (53, 37)):
            out = resize(flat, size, name)
            assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
            assert np.array_equal(out, np.full_like(out, 91)), name
    # stripes 2.5 px apart, down-scaled 3x, lie above the new Nyquist frequency: a scaler that samples without
    # a low-pass (OpenCV's bilinear) folds them into false coarse stripes, an antialiased kernel mostly removes them
    xx = np.arange(300)
    stripes = np.repeat((128 + 100 * np.sin(2 * np.pi * xx / 2.5))[None, :, None], 60, axis=0).repeat(
        3, axis=2
    )
    stripes = stripes.astype(np.uint8)
    aliased = resize(stripes, (100, 20), "bilinear").astype(float).std()
    assert aliased > 20
    for name in ("mitchell", "gaussian", "hermite", "sharp-cubic"):
        assert resize(stripes, (100, 20), name).astype(float).std() < aliased / 3, name
    # up-scales run from soft to sharp: the B-spline is softer than Mitchell, the sharp cubic sharper than OpenCV's
    small = resize(_sample_frame(), (180, 120), "area")
    sharpness = {
        name: np.abs(np.diff(resize(small, (540, 360), name).astype(float), axis=1)).mean()
        for name in ("bspline", "mitchell", "bicubic", "sharp-cubic")
    }
    assert sharpness["bspline"] < sharpness["mitchell"] < sharpness["bicubic"] < sharpness["sharp-cubic"]
    with pytest.raises(ValueError, match="uint8"):
        resize(flat.astype(np.float32), (10, 10), "mitchell")


def test_wide_scaler_set_changes_only_the_scalers() -> None:
    """``scalers="wide"`` draws every scaler of the wide set, and otherwise exactly the chains of the default."""
    for mix in ("call", "balanced"):
        default = [sample_train_chain(np.random.default_rng([7, i]), h264=True, mix=mix) for i in range(600)]
        wide = [
            sample_train_chain(np.random.default_rng([7, i]), h264=True, mix=mix, scalers="wide")
            for i in range(600)
        ]
        same_but_scalers = [
            dataclasses.replace(w, down_scaler=d.down_scaler, up_scaler=d.up_scaler) == d
            for d, w in zip(default, wide, strict=True)
        ]
        assert all(same_but_scalers)
        scaled = [c for c in wide if c.down > 1]
        assert {c.down_scaler for c in scaled} == set(WIDE_DOWN_SCALERS)
        assert {c.up_scaler for c in scaled} == set(WIDE_UP_SCALERS)
        assert sum(c.down_scaler in KERNEL_SCALERS for c in scaled) > len(scaled) / 4
    assert set(WIDE_DOWN_SCALERS) | set(WIDE_UP_SCALERS) <= set(CV2_SCALERS) | set(KERNEL_SCALERS)
    chain = Chain(down=2.5, down_scaler="gaussian", codec="jpeg", quality=50, up_scaler="sharp-cubic")
    out = apply_chain(_scene(), chain, seed=1)
    assert out.shape == _scene().shape and not np.array_equal(out, _scene())
    with pytest.raises(ValueError, match="unknown scaler set"):
        sample_train_chain(np.random.default_rng(0), scalers="pillow")


def test_yuv_noise_is_mostly_luma() -> None:
    img = np.full((64, 64, 3), 128, np.uint8)
    noisy = yuv_noise(img, 4.0, 0.0, np.random.default_rng(0)).astype(float)
    diff = noisy - 128
    assert diff.std() > 2  # there is noise
    assert np.corrcoef(diff[..., 0].ravel(), diff[..., 2].ravel())[0, 1] > 0.9  # same in R and B: luma


@pytest.mark.skipif(not has_h264(), reason="needs PyAV with libx264")
def test_video_round_trip_keeps_every_frame_and_bitrate_controls_quality() -> None:
    frames = [np.roll(_scene(96, 128, 0), i, axis=1) for i in range(4)]
    low = video_round_trip(frames, "libx264", {"preset": "veryfast"}, bit_rate=20_000)
    high = video_round_trip(frames, "libx264", {"preset": "veryfast"}, bit_rate=2_000_000)
    assert len(low) == len(high) == 4 and low[0].shape == frames[0].shape
    assert psnr(frames[-1], low[-1]) < psnr(frames[-1], high[-1])


@pytest.mark.skipif(not has_h264(), reason="needs PyAV with libx264 and libvpx")
def test_every_family_degrades_deterministically() -> None:
    img = _scene(96, 128, 2)
    for name in TEST_FAMILIES:
        out, chain = degrade_family(img, name, 0)
        again, _ = degrade_family(img, name, 0)
        assert np.array_equal(out, again), name
        assert out.shape == img.shape
        if chain.clean:
            assert np.array_equal(out, img)
        else:
            assert psnr(img, out) < 60, name
    with pytest.raises(KeyError, match="unknown test family"):
        family_chain("nope", 0)


def test_balanced_mix_adds_single_step_damage_and_call_mix_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    chains = [sample_train_chain(rng, h264=True, mix="balanced") for _ in range(1500)]
    single = [c for c in chains if not c.clean and sum(_steps(c)) == 1]
    assert 0.2 < len(single) / len(chains) < 0.4
    kinds = {tuple(_steps(c)) for c in single}
    assert len(kinds) >= 6  # blur, noise, JPEG, shake, camera sharpening, scaling, H.264 alone
    # the call mix draws exactly as before (no extra random numbers): same chains for the same seed
    a = [sample_train_chain(np.random.default_rng(9), h264=True) for _ in range(3)]
    b = [sample_train_chain(np.random.default_rng(9), h264=True, mix="call") for _ in range(3)]
    assert a == b
    with pytest.raises(ValueError, match="unknown training mix"):
        sample_train_chain(rng, mix="nope")


def test_single_step_share_sets_how_much_damage_comes_alone() -> None:
    def share(value: float) -> float:
        rng = np.random.default_rng(5)
        chains = [
            sample_train_chain(rng, h264=True, mix="balanced", single_step_share=value) for _ in range(1500)
        ]
        return sum(not c.clean and sum(_steps(c)) == 1 for c in chains) / len(chains)

    assert share(0.0) < 0.1  # a few whole pipelines happen to draw one step only
    assert share(0.6) > share(0.3) + 0.2
    # the default is the balanced mix as it always was: the same chains for the same seed
    a = [sample_train_chain(np.random.default_rng(4), h264=True, mix="balanced") for _ in range(20)]
    b = [
        sample_train_chain(
            np.random.default_rng(4), h264=True, mix="balanced", single_step_share=SINGLE_STEP_SHARE
        )
        for _ in range(20)
    ]
    assert a == b
    with pytest.raises(ValueError, match="single_step_share must be in"):
        sample_train_chain(np.random.default_rng(0), mix="balanced", single_step_share=0.9)


def _draw_replaced(replace, share: float, seed: int, n: int = 1200) -> list[tuple[Chain, Chain, float]]:
    """``(chain, replace(chain, rng, share), the next draw of rng)`` for ``n`` balanced training chains."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        chain = sample_train_chain(rng, h264=True, mix="balanced")
        replaced = replace(chain, rng, share)
        out.append((chain, replaced, rng.random()))  # the draw after it: rng's own stream
    return out


def test_with_blur_only_replaces_a_share_of_damaged_chains_by_blur_alone() -> None:
    def draw(share: float) -> list[tuple[Chain, Chain, float]]:
        return _draw_replaced(with_blur_only, share, seed=3)

    none = draw(0.0)
    assert all(a is b for a, b, _ in none)
    half = draw(0.5)
    # the caller's stream never moves, whatever is replaced: later draws are the ones made without the option
    assert [r for *_, r in half] == [r for *_, r in none]
    changed = [(a, b) for a, b, _ in half if a != b]
    candidates = sum(not a.clean and a.noise == "none" for a, _, _ in half)
    assert 0.4 < len(changed) / candidates < 0.6
    assert all(not a.clean and a.noise == "none" for a, _ in changed)  # clean and noisy chains stay as drawn
    assert any(a.noise != "none" for a, _, _ in half)
    kinds = [("blur" if b.blur_sigma > 0 else "motion") for _, b in changed]
    for _, b in changed:  # one step alone: Gaussian softness or shake, with the single-step variants
        assert sum(_steps(b)) == 1
        assert 0.3 <= b.blur_sigma <= 1.5 or 2 <= b.motion_len <= 7
    assert 0.45 < kinds.count("blur") / len(kinds) < 0.75
    with pytest.raises(ValueError, match="blur_only_share must be in"):
        with_blur_only(Chain(blur_sigma=1.0), np.random.default_rng(0), 1.5)


def test_with_oversharpened_gives_a_share_of_damaged_chains_a_sharpening_camera() -> None:
    def draw(share: float) -> list[tuple[Chain, Chain, float]]:
        return _draw_replaced(with_oversharpened, share, seed=4)

    none = draw(0.0)
    assert all(a is b for a, b, _ in none)
    some = draw(0.3)
    assert [r for *_, r in some] == [r for *_, r in none]  # the caller's stream never moves
    changed = [(a, b) for a, b, _ in some if a != b]
    assert 0.25 < len(changed) / sum(not a.clean for a, _, _ in some) < 0.35
    for a, b in changed:
        assert not a.clean
        assert b.blur_sigma == 0 and b.motion_len == 0  # the camera is sharp and still ...
        assert 0.3 <= b.oversharpen <= 1.2 and 0.8 <= b.oversharpen_sigma <= 2.0  # ... and over-sharpens
        # everything but the camera is the chain drawn
        camera = ("blur_sigma", "motion_len", "oversharpen", "oversharpen_sigma")
        assert dataclasses.replace(b, **{k: getattr(a, k) for k in camera}) == a
    assert any(a.down > 1 and a.codec == "h264" for a, _ in changed)
    assert all(b is a for a, b, _ in some if a.clean)
    with pytest.raises(ValueError, match="oversharpen_share must be in"):
        with_oversharpened(Chain(blur_sigma=1.0), np.random.default_rng(0), -0.1)


def _steps(c: Chain) -> list[bool]:
    return [
        c.blur_sigma > 0,
        c.noise != "none",
        c.codec != "none",
        c.motion_len > 1,
        c.oversharpen > 0,
        c.down > 1,
    ]
