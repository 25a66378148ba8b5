"""Every CLI answers bad input with one line naming the file and the fix (exit 2 usage, 1 runtime)."""

import pytest

from kd_trainer.cli import export_main, train_main
from kd_trainer.paths import shipped_student
from trt_engine.cli import sharpen_main


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    (tmp_path / "bad.yaml").write_text(": : :\n")
    return tmp_path


def _one_line(capsys):
    """The error line (argparse puts its usage lines before it); never a traceback."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err and "Traceback" not in "\n".join(err), err
    assert all(ln.startswith(("usage:", " ")) for ln in err[:-1]), err
    return err[-1]


@pytest.mark.parametrize(
    "main, argv, code, needle",
    [
        (export_main, ["bad.pt", "-o", "x.onnx"], 1, "bad.pt"),  # a corrupt file: a runtime failure
        (train_main, ["--config", "bad.yaml"], 2, "bad.yaml: invalid YAML"),
        (sharpen_main, ["--demo", "--runs", "-3"], 2, "--runs"),
        (sharpen_main, ["in.mp4", "-o", "o.mp4", "--crf", "999"], 2, "--crf"),
        (sharpen_main, ["--camera", "0", "--preview", "--fps", "-5"], 2, "--fps"),
        (sharpen_main, ["--camera", "0", "--preview", "--size", "0x0"], 2, "--size"),
    ],
)
def test_bad_input_is_one_line(files, capsys, main, argv, code, needle):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's parser.error
        rc = exc.code
    assert rc == code
    assert needle in _one_line(capsys)


def test_export_to_an_unwritable_place_is_one_line_exit_1(files, capsys):
    blocker = files / "file"
    blocker.write_text("x")
    argv = [
        str(shipped_student("fast", ".pt")),
        "-o",
        str(blocker / "x.onnx"),
        "--height",
        "16",
        "--width",
        "16",
    ]
    assert export_main(argv) == 1
    assert "cannot write" in _one_line(capsys)
