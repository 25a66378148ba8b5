import json
import math

from benchmarks.model_card import main
from kd_trainer.export import export_onnx
from kd_trainer.models.student import save_checkpoint
from tests.helpers import perturbed_student


def test_model_card_measures_every_method(photo_dirs, tmp_path, capsys) -> None:
    train, val = photo_dirs
    model = perturbed_student("runet-p")
    ckpt = save_checkpoint(
        tmp_path / "s.pt", model, name="runet-p", train_config={"teacher": "none", "beta": 0.0}
    )
    onnx_path = export_onnx(model, tmp_path / "s.onnx", height=96, width=160).path
    out = tmp_path / "card" / "model_card.md"
    args = [
        "--student",
        f"tiny={ckpt}",
        "--onnx",
        f"tiny={onnx_path}",
        "--val-dir",
        str(val),
        "--train-dir",
        str(train),
    ]
    assert main([*args, "--frames", "1", "--teacher-crop", "0", "-o", str(out)]) == 0
    text = out.read_text()
    assert "| identity |" in text and "| unsharp mask |" in text and "| tiny |" in text
    assert "## Targets" in text and "- **tiny**: beat identity and the tuned unsharp mask: met" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["quality"]) == {"identity", "unsharp mask", "tiny"}
    for method, per_preset in data["quality"].items():
        for preset, metrics in per_preset.items():
            if preset != "score":
                assert math.isfinite(metrics["psnr_out"]) or (method == "identity" and preset == "clean")
    assert data["speed"]["tiny"]["fps"] > 0
    assert data["students"]["tiny"]["model"] == "runet-p"
    usm = data["unsharp_mask"]
    assert usm["psnr"] >= usm["identity_psnr"]  # the grid holds the identity, so tuning never loses


def test_model_card_pairs_each_distilled_run_with_its_beta0_twin(photo_dirs, tmp_path) -> None:
    train, val = photo_dirs
    recipe = {"model": "runet-p", "crop": 64, "seed": 0, "lr": 0.001}
    runs = {
        "kd": ({**recipe, "beta": 0.2, "teacher": "onnx:t.onnx", "name": "kd"}, 1),
        "twin": ({**recipe, "beta": 0.0, "teacher": "none", "name": "twin"}, 2),
        "other seed twin": ({**recipe, "seed": 1, "beta": 0.0, "teacher": "none"}, 3),
    }
    args = []
    for name, (cfg, seed) in runs.items():
        path = save_checkpoint(
            tmp_path / f"{seed}.pt", perturbed_student("runet-p", seed=seed), name="runet-p", train_config=cfg
        )
        args += ["--ablation", f"{name}={path}"]
    out = tmp_path / "card.md"
    common = ["--val-dir", str(val), "--train-dir", str(train), "--frames", "1", "--teacher-crop", "0"]
    assert main([*args, *common, "-o", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    (pair,) = data["kd_pairs"]  # the seed-1 run has no distilled partner and the twins are not paired
    assert (pair["kd"], pair["twin"], pair["seed"]) == ("kd", "twin", 0)
    q = data["quality"]
    assert pair["delta"]["call"] == q["kd"]["call"]["psnr_out"] - q["twin"]["call"]["psnr_out"]
    assert "## What the teacher term adds" in out.read_text()
    # re-rendering from the JSON reproduces the card without measuring anything again
    again = tmp_path / "again.md"
    assert main(["--from-json", str(out.with_suffix(".json")), "-o", str(again)]) == 0
    assert again.read_text() == out.read_text()
