"""The model card: measured end to end on tiny synthetic test/val splits, and rendered from a result dict."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks import test_split as ts
from benchmarks.model_card import kd_pairs, main, render
from kd_trainer.models.student import save_checkpoint
from tests.helpers import make_pool, perturbed_student

FAMILIES = "soft-camera,jpeg,clean"


@pytest.fixture()
def pool(tmp_path: Path) -> Path:
    """A tiny photo pool (test/ and val/ plus a manifest) in the test's cache directory (KD_CACHE_DIR)."""
    return make_pool([(48, 64), (64, 48), (40, 40)], 96)


def test_model_card_measures_every_method_on_the_test_split(pool: Path, tmp_path: Path) -> None:
    from kd_trainer.export import export_onnx

    model = perturbed_student("runet-p")
    ckpt = save_checkpoint(
        tmp_path / "s.pt", model, name="runet-p", train_config={"teacher": "x", "beta": 0.2}
    )
    twin = save_checkpoint(
        tmp_path / "s0.pt", perturbed_student("runet-p", seed=1), name="runet-p", train_config={"beta": 0.0}
    )
    onnx_path = export_onnx(model, tmp_path / "s.onnx", height=48, width=64).path
    out = tmp_path / "card" / "model_card.md"
    args = ["--student", f"s={ckpt}", "--ablation", f"s-beta0={twin}", "--onnx", f"s={onnx_path}"]
    assert main([*args, "--families", FAMILIES, "--usm-crops", "2", "-o", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert list(data["scores"]) == ["identity", ts.USM_GLOBAL, ts.USM_FAMILY, "s", "s-beta0"]
    assert data["families_scored"] == FAMILIES.split(",")
    assert [(f["name"], f["package"]) for f in data["frames"]] == [(f"t{i}.png", f"pkg{i}") for i in range(3)]
    ident = data["scores"]["identity"]["families"]
    assert all(ident[f]["psnr_gain"] == 0.0 and ident[f]["frames"] == 3 for f in ident)
    # the per-family unsharp mask is the identity on clean frames, and never worse than identity where tuned
    assert data["unsharp_mask"]["per_family"]["clean"]["amount"] == 0.0
    assert data["scores"][ts.USM_FAMILY]["families"]["clean"]["psnr_gain"] == 0.0
    # a perturbed student changes clean frames: a capped, finite, negative gain
    assert -100 < data["scores"]["s"]["families"]["clean"]["psnr_gain"] < 0
    assert set(data["targets"]) == {"s"}  # ablations get no target table
    assert data["targets"]["s"]["total"] == 2 * 2 + 1  # no call family; clean has the no-harm target only
    (pair,) = data["kd_pairs"]
    assert (pair["student"], pair["ablation"]) == ("s", "s-beta0")
    s, t = data["scores"]["s"]["families"], data["scores"]["s-beta0"]["families"]
    assert pair["delta"]["jpeg"] == pytest.approx(s["jpeg"]["psnr_gain"] - t["jpeg"]["psnr_gain"])
    assert data["speed"]["s"]["fps"] > 0 and data["students"]["s"]["model"] == "runet-p"
    assert set(data["chains"]) == set(FAMILIES.split(",")) and data["chains"]["clean"]["t0.png"] == "clean"
    assert data["students"]["s"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert data["command"].startswith("python -m benchmarks.model_card --student s=")
    text = out.read_text()
    assert f"Measured with `{data['command']}`" in text and data["students"]["s"]["sha256"][:16] in text
    assert "**photo** (3 frames):" in text  # the three synthetic test frames are photos (by content)
    for needle in ("| identity |", f"| {ts.USM_GLOBAL} |", "| s-beta0 |", "## Targets", "pkg1", "## Chains"):
        assert needle in text
    # re-rendering from the JSON reproduces the card without measuring anything
    again = tmp_path / "again.md"
    assert main(["--from-json", str(out.with_suffix(".json")), "-o", str(again)]) == 0
    assert again.read_text() == text


def test_model_card_reports_a_missing_test_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--families", "clean", "-o", str(tmp_path / "c.md")]) == 2
    assert "kd-data photos" in capsys.readouterr().out


def _scores(gains: dict[str, float]) -> dict:
    fams = {
        f: {
            "psnr_gain": g,
            "ssim_gain": g / 100,
            "worst_gain": g - 0.5,
            "worst_frame": "a.png",
            "share_worse": 0.5 if g < 0 else 0.0,
            "psnr_harm": max(0.0, -g) / 2,
            "psnr": (100.0 if f == "clean" else 30.0) + g,
            "ssim": 0.9,
            "psnr_in": 30.0,
            "ssim_in": 0.9,
            "frames": 2,
        }
        for f, g in gains.items()
    }
    return {"families": fams, "overall": ts.overall(fams)}


def small_result() -> dict:
    fams = ["call-540p", "jpeg", "clean"]
    usm = {"amount": 0.5, "sigma": 1.0, "threshold": 2, "psnr": 31.0, "identity_psnr": 30.5, "pairs": 8}
    result = {
        "date": "2026-12-02",
        "machine": {"cpu": "test cpu", "logical_cores": 2},
        "frames": [{"index": 0, "name": "a.png", "size": "64x48", "package": "pkg"}],
        "families_scored": fams,
        "family_info": {f: {"description": f"about {f}"} for f in fams},
        "call_families": ts.call_target_families(),
        "chains": {f: {"a.png": f"chain of {f}"} for f in fams},
        "unsharp_mask": {"global": usm, "per_family": {f: usm for f in fams}},
        "students": {"fast": {"role": "student", "model": "runet-f", "params": 10, "gmac_1080p": 1.4}},
        "speed": {"fast": {"fps": 35.04}},
        "scores": {
            "identity": _scores({"call-540p": 0.0, "jpeg": 0.0, "clean": 0.0}),
            ts.USM_GLOBAL: _scores({"call-540p": 0.3, "jpeg": -0.2, "clean": -40.0}),
            "fast": _scores({"call-540p": 0.8, "jpeg": -0.1, "clean": 0.0}),
        },
    }
    result["targets"] = {"fast": ts.targets(result, "fast")}
    result["kd_pairs"] = kd_pairs(result)
    return result


def test_render_from_a_small_result() -> None:
    text = render(small_result())
    assert "| fast | student | runet-f | 10 | 1.40 |" in text and "| 35.0 |" in text
    assert "| fast | +0.80 | -0.10 | +0.00 | +0.35 |" in text  # PSNR gain row, mean over degraded families
    assert "| call-540p | +0.80 | met (+0.85) | met (+0.50) | **missed** (-0.20) |" in text
    assert "| jpeg | -0.10 | **missed** (-0.05) | met (+0.10) |  |" in text
    assert "**fast**: 4/6 met." in text
    assert "| 0 | a.png | 64x48 | pkg |" in text and "| call-540p | about call-540p | yes |" in text
    assert "## What the teacher term adds" not in text  # no ablation in this result
    assert "## By content" in text and "**people**" not in text  # no per-frame rows in this result


def test_cpu_fps_measures_dynamic_models_at_1080p(tmp_path: Path) -> None:
    from benchmarks.model_card import cpu_fps
    from kd_trainer.export import export_onnx

    path = export_onnx(
        perturbed_student("runet-p"), tmp_path / "d.onnx", height=48, width=64, dynamic=True
    ).path
    speed = cpu_fps(path, runs=2)  # a dynamic-size export has no fixed frame: the card times 1920x1080
    assert speed["frame"] == "1920x1080" and speed["fps"] > 0 and speed["p95_ms"] >= speed["median_ms"] > 0
