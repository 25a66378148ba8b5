"""benchmarks.val_families: the test families scored on the val split (for selection), never on test frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import test_split as ts
from benchmarks import val_families as vf
from kd_trainer.evaluate import torch_restorer
from kd_trainer.models.student import build_student, save_checkpoint
from tests.helpers import make_pool, perturbed_student

FAMILIES = ["soft-camera", "noise", "clean"]


def test_scores_val_frames_with_the_model_cards_scorer(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    changed = perturbed_student("runet-p")
    ckpts = {
        "fresh": save_checkpoint(tmp_path / "fresh.pt", build_student("runet-p"), name="runet-p"),
        "changed": save_checkpoint(tmp_path / "changed.pt", changed, name="runet-p"),
    }
    out = tmp_path / "val.json"
    argv = [f"{n}={p}" for n, p in ckpts.items()] + ["--families", ",".join(FAMILIES), "--json", str(out)]
    assert vf.main([*argv, "--no-progress", "--by-content"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the val frame (v0.png) is a photo: each student's summary line, then its line for that kind
    assert [line.split(":")[0] for line in lines] == [
        "fresh",
        "fresh [photo, 1 frames]",
        "changed",
        "changed [photo, 1 frames]",
    ]
    assert lines[2].split(":", 1)[1].split(" | clean")[0] == lines[3].split(":", 1)[1].split(" | mean")[0]
    results = json.loads(out.read_text())
    # a fresh student is the identity: no gain anywhere, the clean frame untouched
    assert all(v["psnr_gain"] == 0.0 for v in results["fresh"]["families"].values())
    # the same numbers as scoring the val frames directly with the shared scorer
    dset = ts.degraded_set(ts.load_val_frames(None, None), FAMILIES, progress=False)
    direct = ts.score(torch_restorer(changed), dset, progress=False)
    for family in FAMILIES:
        got = results["changed"]["families"][family]["psnr_gain"]
        assert got == pytest.approx(direct["families"][family]["psnr_gain"], abs=1e-9)
    assert (
        results["changed"]["families"]["clean"]["psnr_gain"] < 0
    )  # a perturbed student changes clean frames
    assert np.isfinite(results["changed"]["families"]["noise"]["psnr_gain"])


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    make_pool([(64, 64)], 96)
    assert vf.main([f"x={tmp_path / 'missing.pt'}", "--no-progress"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    ckpt = save_checkpoint(tmp_path / "s.pt", build_student("runet-p"), name="runet-p")
    assert vf.main([f"s={ckpt}", "--families", "nope", "--no-progress"]) == 2
    assert "unknown test families" in capsys.readouterr().err
    assert vf.parse_spec(str(ckpt)) == (tmp_path.name, ckpt)


def test_vivid_scores_saturated_copies_of_the_val_frames(tmp_path: Path) -> None:
    """``--vivid`` scores the vivid copies (named ``vivid-*``), the same numbers as scoring them directly."""
    make_pool([(64, 64)], 96)
    changed = perturbed_student("runet-p")
    ckpt = save_checkpoint(tmp_path / "changed.pt", changed, name="runet-p")
    out = tmp_path / "vivid.json"
    argv = [f"changed={ckpt}", "--families", "noise", "--json", str(out), "--vivid", "--no-progress"]
    assert vf.main(argv) == 0
    frames = ts.load_val_frames(None, None)
    vivid = vf.vivid_frames(frames)
    ordered = sorted(frames, key=lambda f: f[0])
    assert [n for n, _ in vivid] == [f"vivid-{n}" for n, _ in ordered]
    assert not any(np.array_equal(v, f) for (_, v), (_, f) in zip(vivid, ordered, strict=True))
    direct = ts.score(
        torch_restorer(changed), ts.degraded_set(vivid, ["noise"], progress=False), progress=False
    )
    got = json.loads(out.read_text())["changed"]["families"]["noise"]["psnr_gain"]
    assert got == pytest.approx(direct["families"]["noise"]["psnr_gain"], abs=1e-9)
    plain = ts.score(
        torch_restorer(changed), ts.degraded_set(frames, ["noise"], progress=False), progress=False
    )
    assert got != pytest.approx(plain["families"]["noise"]["psnr_gain"], abs=1e-9)


def test_scales_match_the_folded_residual_scale(tmp_path: Path, capsys) -> None:
    """``--scales`` gives, per scale, the scores of the student with that scale folded into its weights."""
    from kd_trainer.models.student import scale_residual

    make_pool([(64, 64)], 96)
    changed = perturbed_student("runet-p")
    ckpt = save_checkpoint(tmp_path / "changed.pt", changed, name="runet-p")
    out = tmp_path / "scales.json"
    argv = [f"c={ckpt}", "--families", "soft-camera,clean", "--scales", "0,0.5,1", "--json", str(out)]
    assert vf.main([*argv, "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["c@0", "c@0.5", "c@1"]
    results = json.loads(out.read_text())
    rows = results["c@1"]["per_frame"]["soft-camera"]
    harm = np.mean([max(0.0, -r["psnr_gain"]) for r in rows])
    assert results["c@1"]["families"]["soft-camera"]["psnr_harm"] == pytest.approx(harm)
    assert lines[2].endswith(f", harm {harm:.3f}")  # the mean over the one degraded family
    assert all(v["psnr_gain"] == 0.0 for v in results["c@0"]["families"].values())  # scale 0: the input
    dset = ts.degraded_set(ts.load_val_frames(None, None), ["soft-camera", "clean"], progress=False)
    for scale in (0.5, 1.0):
        direct = ts.score(torch_restorer(scale_residual(changed, scale)), dset, progress=False)
        for family in ("soft-camera", "clean"):
            got = results[f"c@{scale:g}"]["families"][family]["psnr_gain"]
            assert got == pytest.approx(direct["families"][family]["psnr_gain"], abs=0.01)
    gains = [results[f"c@{s}"]["families"]["soft-camera"]["psnr_gain"] for s in ("0.5", "1")]
    assert gains[0] != pytest.approx(gains[1], abs=1e-6)
    assert vf.main([f"c={ckpt}", "--scales", "0.5,x", "--no-progress"]) == 2
    assert "not a number" in capsys.readouterr().err
    assert vf.main([f"c={ckpt}", "--scales", "9", "--no-progress"]) == 2
    assert "outside 0..4" in capsys.readouterr().err


def _entry(gain: float, harm: float) -> dict:
    return {"overall": {"psnr_gain": gain, "psnr_harm": harm, "families": []}, "families": {}}


def test_gain_at_harm_interpolates_between_the_bracketing_folds() -> None:
    results = {
        "a@0.5": _entry(0.04, 0.005),
        "a@1": _entry(0.06, 0.010),
        "a@1.5": _entry(0.07, 0.020),
        "ab@1": _entry(0.50, 0.015),  # another student whose name starts with "a": not one of a's folds
        "b": _entry(0.08, 0.010),
    }
    assert vf.gain_at_harm(results, "a", 0.015) == pytest.approx(0.065)
    assert vf.gain_at_harm(results, "a", 0.005) == pytest.approx(0.04)
    assert vf.gain_at_harm(results, "a", 0.030) is None  # beyond its boldest fold: not extrapolated
    assert vf.gain_at_harm(results, "b", 0.010) == pytest.approx(
        0.08
    )  # one unscaled entry at exactly that harm
    assert vf.gain_at_harm(results, "b", 0.011) is None
    lines = vf.at_harm_lines(results, 0.015)
    assert lines[0] == "a: +0.065 at harm 0.015 (folds x0.5-1.5)"
    assert lines[2].startswith("b: n/a")  # no family figures saved here, so no family lines


def test_families_at_harm_use_the_same_bracketing_folds() -> None:
    def entry(gain: float, harm: float, noise: float, clean_db: float) -> dict:
        families = {"noise": {"psnr_gain": noise}, "clean": {"psnr": clean_db, "psnr_gain": clean_db - 100}}
        return {"overall": {"psnr_gain": gain, "psnr_harm": harm}, "families": families}

    results = {"a@0.5": entry(0.04, 0.005, 0.02, 60.0), "a@1": entry(0.06, 0.010, -0.02, 56.0)}
    at = vf.families_at_harm(results, "a", 0.0075)
    assert at == {"noise": pytest.approx(0.0), "clean": pytest.approx(58.0)}  # clean in dB, not its gain
    assert vf.families_at_harm(results, "a", 0.02) is None
    assert vf.at_harm_lines(results, 0.0075) == [
        "a: +0.050 at harm 0.007 (folds x0.5-1)",
        "  noise +0.000 | clean 58.0 dB vs input",
    ]


def test_from_json_compares_saved_scores_at_equal_harm(tmp_path: Path, capsys) -> None:
    """Scores saved with ``--json`` are read back with ``--from-json`` (later files win) and compared at a harm."""
    make_pool([(64, 64)], 96)
    ckpt = save_checkpoint(tmp_path / "c.pt", perturbed_student("runet-p"), name="runet-p")
    out = tmp_path / "c.json"
    argv = [f"c={ckpt}", "--families", "soft-camera,noise,clean", "--scales", "0.5,1,2", "--json", str(out)]
    assert vf.main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    saved = json.loads(out.read_text())
    harms = sorted(v["overall"]["psnr_harm"] for v in saved.values())
    assert harms[0] < harms[-1]  # a bolder fold harms more, so there is a harm to compare at
    harm = (harms[0] + harms[-1]) / 2
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"d@1": saved["c@1"]}))
    assert vf.main(["--from-json", str(out), str(other), "--at-harm", str(harm)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith("  ")] == [
        "c@0.5",
        "c@1",
        "c@2",
        "d@1",
        "c",
        "d",
    ]
    expected = vf.gain_at_harm(saved, "c", harm)
    assert expected is not None and lines[4] == f"c: {expected:+.3f} at harm {harm:.3f} (folds x0.5-2)"
    families = vf.families_at_harm(saved, "c", harm)
    assert families is not None and lines[5].startswith(
        f"  soft-camera {families['soft-camera']:+.3f}, noise"
    )
    assert lines[5].endswith(f"| clean {families['clean']:.1f} dB vs input")
    assert lines[6].startswith("d: n/a")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert vf.main(["--from-json", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"x": 1}))
    assert vf.main(["--from-json", str(bad)]) == 2
    assert "not a val_families --json file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        vf.main([f"c={ckpt}", "--from-json", str(out)])  # both: refused by the parser
    with pytest.raises(SystemExit):
        vf.main(["--from-json", str(out), "--scales", "0.5"])  # would be silently ignored: refused
    assert "--scales: these choose how checkpoints are scored" in capsys.readouterr().err
