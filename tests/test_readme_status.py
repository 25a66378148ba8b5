"""The README status block, generated from the model card's JSON only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.readme_status import BEGIN, END, StatusError, main, replace_block, summary
from tests.test_model_card import small_result

README = f"# Project\n\nintro\n\n{BEGIN}\nold status, stale numbers 12.3\n{END}\n\n## Next section\n"


def test_summary_takes_its_numbers_from_the_json() -> None:
    text = summary(small_result(), "card.json")
    assert "`card.json`" in text and "1 held-out test frames x 3 degradation families" in text
    assert "| fast | 35.0 | +0.35 dB | 100.0 dB (unchanged) | 4/6 |" in text
    # clean frames are reported as the output's PSNR against the untouched frame (the unsharp mask: 100 - 40)
    assert "| call-540p | +0.30 | +0.80 |" in text and "| clean | 60.0 dB | 100.0 dB (unchanged) |" in text
    missed = "call-540p +1 dB (-0.20 dB), jpeg no harm (-0.05 dB)"
    assert f"- **fast**: 4/6 targets met; missed (margin): {missed}." in text
    assert "CPU: test cpu, 2 cores" in text
    # targets absent from the JSON are computed from its scores, with the same result
    result = small_result()
    del result["targets"]
    assert summary(result, "card.json") == text
    with pytest.raises(StatusError, match="not a model card JSON"):
        summary({"students": {}}, "x.json")


def test_summary_names_the_verdicts_that_could_go_either_way() -> None:
    """With per-frame scores, a verdict whose 95% interval straddles its threshold is listed as open."""
    from benchmarks import test_split as ts

    result = small_result()
    frames = [f"f{i}.png" for i in range(8)]

    def rows(gains: list[float]) -> list[dict]:
        return [{"frame": f, "psnr_gain": g, "psnr": 30 + g} for f, g in zip(frames, gains, strict=True)]

    # the mask gains +0.3 everywhere; fast +0.3 on average, but ahead on half the frames and behind on the rest
    result["scores"][ts.USM_GLOBAL]["per_frame"] = {"call-540p": rows([0.3] * 8)}
    result["scores"]["fast"]["per_frame"] = {"call-540p": rows([0.1, 0.5] * 4)}
    result["scores"]["fast"]["families"]["call-540p"]["psnr_gain"] = 0.3
    result["targets"] = {"fast": ts.targets(result, "fast")}
    text = summary(result, "card.json")
    assert "could go either way" in text and "fast call-540p beat unsharp mask" in text
    assert "fast call-540p no harm" not in text  # +0.35 above -0.05 on every resample: settled
    assert "could go either way" not in summary(small_result(), "card.json")  # no per-frame rows: no claim


def test_replace_block_keeps_everything_outside_the_markers() -> None:
    new = replace_block(README, "fresh\nlines\n")
    assert new == f"# Project\n\nintro\n\n{BEGIN}\nfresh\nlines\n{END}\n\n## Next section\n"
    assert replace_block(new, "fresh\nlines") == new  # idempotent
    with pytest.raises(StatusError, match="status:end"):
        replace_block(README.replace(END, ""), "x")
    with pytest.raises(StatusError, match="status:begin"):
        replace_block("no markers at all", "x")
    with pytest.raises(StatusError, match="before"):
        replace_block(f"{END}\n{BEGIN}\n", "x")


def test_main_rewrites_the_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card, readme = tmp_path / "model_card.json", tmp_path / "README.md"
    card.write_text(json.dumps(small_result()))
    readme.write_text(README)
    assert main([str(card), str(readme)]) == 0
    text = readme.read_text()
    assert "stale numbers" not in text and "| fast | 35.0 |" in text
    assert text.startswith("# Project\n\nintro\n\n") and text.endswith(f"{END}\n\n## Next section\n")
    readme.write_text("# no markers\n")
    assert main([str(card), str(readme)]) == 2
    assert "status:begin" in capsys.readouterr().err and readme.read_text() == "# no markers\n"
