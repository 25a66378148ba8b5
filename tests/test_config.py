import pytest

from kd_trainer.config import ConfigError, load_config, make_config


def test_defaults_follow_the_seed_loss() -> None:
    cfg = make_config(overrides=["beta=0"])
    assert cfg.alpha == 0.8 and cfg.model == "runet-f"
    assert make_config({"teacher": "maxim-deblur"}).beta == 0.2


def test_overrides_are_typed() -> None:
    cfg = make_config(
        overrides=["beta=0", "epochs=3", "lr=1e-3", "fresh_degradations=true", "val_presets=call,clean"]
    )
    assert cfg.epochs == 3 and cfg.lr == 1e-3 and cfg.fresh_degradations is True
    assert cfg.val_presets == ["call", "clean"]


def test_fresh_degradations_with_a_teacher_keep_its_samples_fixed() -> None:
    cfg = make_config(overrides=["teacher=maxim-deblur", "fresh_degradations=true", "teacher_samples=64"])
    assert cfg.fresh_degradations and cfg.beta == 0.2 and cfg.teacher_samples == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epoch=3"], "unknown config keys"),
        (["epochs=three"], "must be an integer"),
        (["epochs=2.5"], "must be an integer"),
        (["lr=fast"], "must be a finite number"),
        ([".inf"], "not key=value"),
        (["lr=.nan"], "must be a finite number"),
        (["amp=maybe"], "true or false"),
        (["beta=0.2"], "needs a teacher"),
        (["beta=0", "model=giant"], "unknown model"),
        (["beta=0", "val_presets=fog"], "unknown val_presets"),
        (["beta=0", "residual_scales=0.5,1", "scale_presets=family:nope"], "unknown scale_presets"),
        (["beta=0", "scale_presets=family:noise"], "give residual_scales too"),
        (["beta=0", "batch_size=0"], "batch_size must be >= 1"),
        (["novalue"], "not key=value"),
        (["teacher=maxim-deblur", "fresh_degradations=true"], "teacher cache"),
        (["beta=0", "teacher_gate_window=7"], "with teacher_gate=true"),
        (["beta=0", "teacher_gate=true", "teacher_gate_window=-1"], "teacher_gate_window must be"),
        (["beta=0", "single_step_share=0.5"], "only applies to degradations=chains-balanced"),
        (["beta=0", "degradations=presets", "teacher_skip_noise=true"], "needs chain degradations"),
        (["beta=0", "degradations=chains-balanced", "single_step_share=0.9"], "single_step_share must be in"),
        (["beta=0", "synthetic_share=2"], "synthetic_share must be -1"),
        (["beta=0", "blur_only_share=1.2"], "blur_only_share must be in"),
        (["beta=0", "degradations=presets", "blur_only_share=0.1"], "needs chain degradations"),
        (["beta=0", "oversharpen_share=-0.1"], "oversharpen_share must be in"),
        (["beta=0", "degradations=presets", "oversharpen_share=0.1"], "needs chain degradations"),
        (["beta=0", "scalers=pillow"], "unknown scaler set"),
        (["beta=0", "degradations=presets", "scalers=wide"], "needs chain degradations"),
    ],
)
def test_bad_configs_raise_clear_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(overrides=overrides)


def test_yaml_files(tmp_path) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("model: runet-p\nbeta: 0\nepochs: 2\n")
    assert load_config(good, ["epochs=4"]).epochs == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("modle: runet-n\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown config keys \['modle'\]"):
        load_config(typo)


def test_residual_scales_parse_as_numbers_and_are_range_checked() -> None:
    assert make_config(overrides=["beta=0", "residual_scales=0.5,0.75,1"]).residual_scales == [0.5, 0.75, 1.0]
    assert make_config(overrides=["beta=0", "residual_scales=[0.5, 1]"]).residual_scales == [0.5, 1.0]
    assert make_config(overrides=["beta=0", "residual_scales=1"]).residual_scales == [1.0]
    assert make_config(overrides=["beta=0"]).residual_scales == []
    for bad, message in (
        ("residual_scales=a,b", "list of finite numbers"),
        ("residual_scales=nan", "list of finite numbers"),
        ("residual_scales=0", r"\(0, 2\]"),
        ("residual_scales=0.5,3", r"\(0, 2\]"),
    ):
        with pytest.raises(ConfigError, match=message):
            make_config(overrides=["beta=0", bad])
