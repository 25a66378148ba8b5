import numpy as np
import pytest
from skimage import data

from kd_trainer.degrade import (
    EVAL_PRESETS,
    PRESETS,
    available_presets,
    degrade,
    degrade_with_params,
    h264,
    has_h264,
    rgb_to_yuv420,
    sample_train_preset,
    yuv420_to_rgb,
)
from kd_trainer.metrics import psnr, ssim

IMG = np.ascontiguousarray(data.astronaut()[100:228, 150:310])  # 128x160 real photo crop


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_keeps_shape_dtype_and_is_seeded(preset: str) -> None:
    a, params = degrade_with_params(IMG, preset, seed=3)
    b = degrade(IMG, preset, seed=3)
    assert a.shape == IMG.shape and a.dtype == np.uint8 and params["preset"] == preset
    assert np.array_equal(a, b)


@pytest.mark.parametrize("preset", [p for p in EVAL_PRESETS if p in available_presets()])
def test_eval_presets_actually_degrade(preset: str) -> None:
    out = degrade(IMG, preset, seed=0)
    assert psnr(IMG, out) < 42.0 and ssim(IMG, out) < 0.995


def test_call_preset_varies_with_seed_and_covers_the_documented_ranges() -> None:
    seen = [degrade_with_params(IMG, "call", seed=s)[1] for s in range(40)]
    assert len({round(p["sigma"], 6) for p in seen}) == 40
    assert all(0.5 <= p["sigma"] <= 1.5 and 1.5 <= p["downscale"] <= 3.0 for p in seen)
    jpeg_q = [p["jpeg_quality"] for p in seen if p["codec"] == "jpeg"]
    assert jpeg_q and all(20 <= q <= 60 for q in jpeg_q)
    if has_h264():
        assert any(p["codec"] == "h264" for p in seen)
    assert any("motion_len" in p for p in seen) and any("noise_sigma" in p for p in seen)


def test_clean_preset_is_identity_and_light_is_mild() -> None:
    assert np.array_equal(degrade(IMG, "clean"), IMG)
    assert all(psnr(IMG, degrade(IMG, "light", seed=s)) > 33 for s in range(6))


def test_yuv_conversion_round_trip_is_accurate_and_unbiased() -> None:
    y, u, v = rgb_to_yuv420(IMG)
    assert y.shape == IMG.shape[:2] and u.shape == (IMG.shape[0] // 2, IMG.shape[1] // 2)
    back = yuv420_to_rgb(y, u, v)
    assert psnr(IMG, back) > 35.0
    assert abs(float(back.astype(np.float64).mean() - IMG.astype(np.float64).mean())) < 0.3


@pytest.mark.skipif(not has_h264(), reason="PyAV with libx264 not installed")
def test_h264_round_trip_odd_sizes_and_quality_follows_crf() -> None:
    odd = np.ascontiguousarray(IMG[:37, :51])
    assert h264(odd, 20).shape == odd.shape
    assert psnr(IMG, h264(IMG, 18)) > psnr(IMG, h264(IMG, 40)) + 3


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        degrade(IMG.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        degrade(IMG[..., 0])
    with pytest.raises(KeyError, match="unknown degradation preset"):
        degrade(IMG, "fog")


def test_training_mixture_draws_known_presets() -> None:
    rng = np.random.default_rng(0)
    names = {sample_train_preset(rng) for _ in range(300)}
    assert names <= set(PRESETS) and {"call", "light"} <= names
