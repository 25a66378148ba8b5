"""Packaged recipes: ``--config NAME``, ``--list-configs`` (from an installed wheel), and a bare ``kd-train``."""

import importlib.resources
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kd_trainer.cli import train_main
from kd_trainer.config import ConfigError, load_config, packaged_configs

ROOT = Path(__file__).resolve().parents[1]


def test_bare_name_resolves_to_the_packaged_recipe(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing checkout-relative
    assert load_config("fast").model == "runet-fh"
    assert load_config("quality", ["epochs=1"]).epochs == 1
    own = tmp_path / "fast"  # an existing path wins over the packaged name
    own.write_text("model: runet-p\nbeta: 0\n")
    assert load_config("fast").model == "runet-p"
    with pytest.raises(ConfigError, match="neither a file nor a packaged recipe"):
        load_config("fastest")
    recipes = packaged_configs()
    assert {"fast", "quality"} <= set(recipes)
    folder = importlib.resources.files("kd_trainer") / "configs"
    assert recipes["fast"].read_text() == (folder / "fast.yaml").read_text()


def test_list_configs(capsys) -> None:
    assert train_main(["--list-configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["fast", "quality", "quality-e48"]
    assert lines[0].split(None, 1)[1].startswith("The shipped `fast` student")


def test_bare_kd_train_prints_what_it_needs(capsys) -> None:
    assert train_main([]) == 2
    err = capsys.readouterr().err
    for needed in ("kd-train --config fast", "kd-data photos", "torchrun --nproc_per_node 2", "quality"):
        assert needed in err


def test_list_configs_from_an_installed_wheel(tmp_path) -> None:
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("kd_trainer", "trt_engine"):  # the trainer builds on the runtime
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-500:]}")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        packaged = set(zf.namelist())
        assert {"kd_trainer/configs/fast.yaml", "kd_trainer/configs/quality.yaml"} <= packaged
        assert "kd_trainer/assets/assistants/quality-m2.pt" in packaged  # the fast recipe's teacher
        assert "kd_trainer/assets/assistants/quality-e48.pt" in packaged  # where the quality recipe starts
        zf.extractall(site)
    code = (
        "import sys, kd_trainer; from kd_trainer.cli import train_main; "
        f"assert kd_trainer.__file__.startswith({str(site)!r}), kd_trainer.__file__; "
        "sys.exit(train_main(['--list-configs']))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()] == ["fast", "quality", "quality-e48"]


#: Keys that only say where or how fast a run went, not what it trained.
RUN_ONLY_KEYS = {"name", "out_dir", "threads", "workers", "device", "max_steps", "checkpoint_every"}


@pytest.mark.parametrize("name", ["fast", "quality", "quality-e48"])
def test_shipped_students_were_trained_by_their_packaged_recipe(name: str) -> None:
    """``kd-train --config NAME`` reproduces the shipped student (or the packaged base ``quality-e48`` that warm
    restarts start from): the checkpoint's saved training config is the recipe's, key by key (a retrained student
    shipped without updating its recipe fails here)."""
    from kd_trainer.models.student import read_checkpoint
    from kd_trainer.models.teachers import init_checkpoint_path

    saved = read_checkpoint(init_checkpoint_path(f"student:{name}"))["train_config"]
    recipe = load_config(name)
    differs = {
        key: (value, getattr(recipe, key))
        for key, value in saved.items()
        if key not in RUN_ONLY_KEYS and value != getattr(recipe, key)
    }
    assert not differs, f"shipped {name}.pt vs kd_trainer/configs/{name}.yaml (saved, recipe): {differs}"


def test_student_checkpoints_the_recipes_name_ship_with_the_package() -> None:
    """A recipe that learns from a student (``teacher: student:NAME``, as ``fast`` does) or warm restarts from one
    (``init_from: student:NAME``, as ``quality`` does) names a checkpoint in the package assets, so a fresh
    checkout can run it; the teacher loads as a student, the starting weights as one that can warm start the
    recipe's architecture (its plain form, or that form without the frame filter it grows, as ``quality`` does)."""
    from kd_trainer.models.student import get_config, read_checkpoint, warm_start_fits
    from kd_trainer.models.teachers import init_checkpoint_path, student_teacher_path
    from kd_trainer.paths import ASSETS_DIR

    teachers, starts = [], []
    for name in packaged_configs():
        config = load_config(name)
        kind, _, value = config.teacher.partition(":")
        if kind == "student":
            path = student_teacher_path(value)
            assert path.is_file() and ASSETS_DIR in path.parents, (name, path)
            assert read_checkpoint(path)["name"].startswith("runet-"), (name, path)
            teachers.append(name)
        if config.init_from.startswith("student:"):
            path = init_checkpoint_path(config.init_from)
            assert path.is_file() and ASSETS_DIR in path.parents, (name, path)
            init = get_config(read_checkpoint(path)["name"])
            assert warm_start_fits(get_config(config.model), init), (name, path)
            starts.append(name)
    assert "fast" in teachers and "quality" in starts
