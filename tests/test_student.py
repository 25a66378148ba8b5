import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kd_trainer.models.student import (
    STUDENTS,
    BlockUp,
    CheckpointError,
    StudentConfig,
    build_student,
    count_macs,
    load_student,
    registry_name,
    save_checkpoint,
    scale_residual,
)
from tests.helpers import perturbed_student


@pytest.mark.parametrize("name", list(STUDENTS))
def test_fresh_student_is_identity_and_keeps_odd_shapes(name: str) -> None:
    model = build_student(name).eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.equal(y, x)  # zero-initialised tail: out = x + 0


def test_perturbed_student_changes_the_image_but_keeps_shape() -> None:
    model = perturbed_student("runet-n")
    x = torch.rand(2, 3, 45, 70)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and (y - x).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["runet-f", "runet-n", "runet-p", "runet-m"])
def test_mac_count_matches_torch_flop_counter(name: str) -> None:
    model = build_student(name)
    h, w = 64, 96  # a multiple of every student's padding multiple: no padding involved
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, h, w))
    assert count_macs(model, h, w) == counter.get_total_flops() // 2


def test_registry_name_finds_a_shape() -> None:
    assert registry_name(build_student("runet-f").config) == "runet-f"
    assert registry_name(StudentConfig(4, (16,), (3,))) is None


def test_fast_students_are_within_their_budget() -> None:
    assert count_macs(build_student("runet-p")) < 1.2e9  # "roughly <= 1 GMAC" for 30 fps on 2 cores
    assert count_macs(build_student("runet-f")) < 1.5e9  # the shipped fast student's budget
    assert count_macs(build_student("runet-s")) < 120e9


def test_checkpoint_round_trip(tmp_path) -> None:
    model = perturbed_student("runet-p")
    path = save_checkpoint(tmp_path / "s.pt", model, name="runet-p", metrics={"psnr": 1.0})
    loaded, ckpt = load_student(path)
    assert ckpt["name"] == "runet-p" and ckpt["metrics"] == {"psnr": 1.0}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_student(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_student(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an image-sharpening-kd student checkpoint"):
        load_student(other)
    good = save_checkpoint(tmp_path / "n.pt", build_student("runet-n"))
    with pytest.raises(CheckpointError, match="was expected"):
        load_student(good, expect=STUDENTS["runet-p"])


def test_checkpoint_with_weights_of_another_architecture_fails(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "n.pt", build_student("runet-n"))
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"] = STUDENTS["runet-p"].to_dict()
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_student(path)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        StudentConfig(unshuffle=0)
    with pytest.raises(ValueError):
        StudentConfig(widths=(8, 16), blocks=(1,))
    with pytest.raises(ValueError, match="unknown student config keys"):
        StudentConfig.from_dict({"unshuffle": 2, "widths": [8], "blocks": [1], "depth": 3})
    with pytest.raises(KeyError, match="registered"):
        build_student("runet-xl")


def test_gain_bands_start_as_identity_and_equal_a_luma_unsharp_mask_at_constant_gain() -> None:
    import torch.nn.functional as F

    from kd_trainer.models.student import LUMA, ResidualUNet, StudentConfig, gaussian_kernel

    for scale, kernel in ((4, 5), (2, 5), (4, 3)):
        model = ResidualUNet(StudentConfig(scale, (16,), (1,), bands=2, band_kernel=kernel)).eval()
        x = torch.rand(1, 3, 40, 56)
        with torch.no_grad():
            assert torch.allclose(model(x), x, atol=1e-6)  # zero-initialised gains: identity
            model.bands.gain.bias.copy_(torch.tensor([0.7, 0.3]))
            y = model(x)
            luma = sum(w * x[:, c : c + 1] for c, w in enumerate(LUMA))
            expected = x.clone()
            for band, gain in enumerate((0.7, 0.3)):
                k = gaussian_kernel(kernel, 0.6 * 2**band)[None, None]
                blurred = F.conv2d(F.pad(luma, (kernel // 2,) * 4, mode="reflect"), k)
                expected = expected + gain * (luma - blurred)
        assert torch.allclose(y, expected, atol=1e-5), (scale, kernel)


def test_gain_band_config_is_validated_and_round_trips() -> None:
    from kd_trainer.models.student import StudentConfig

    cfg = StudentConfig(4, (16,), (1,), bands=1, band_kernel=3)
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bands"):
        StudentConfig(4, (16,), (1,), bands=9)
    with pytest.raises(ValueError, match="band_kernel"):
        StudentConfig(4, (16,), (1,), bands=1, band_kernel=4)


@pytest.mark.parametrize(
    "fields",
    [
        {"unshuffle": 4, "widths": (100_000,), "blocks": (1,)},
        {"unshuffle": 4, "widths": (16,), "blocks": (10_000,)},
        {"unshuffle": 1000, "widths": (16,), "blocks": (1,)},
        {"unshuffle": 2, "widths": (16,) * 40, "blocks": (1,) * 40},
        {"unshuffle": 2, "widths": (16,), "blocks": (1,), "detail": 101},
    ],
)
def test_crafted_student_shapes_are_refused_before_allocating(fields) -> None:
    import time

    from kd_trainer.models.student import StudentConfig

    t0 = time.perf_counter()
    with pytest.raises(ValueError):
        StudentConfig(**fields)
    assert time.perf_counter() - t0 < 0.1


def test_frame_context_starts_as_identity_and_sees_the_whole_frame() -> None:
    from kd_trainer.models.student import FrameContext

    ctx = FrameContext(16, 8)
    x = torch.rand(2, 16, 12, 20)
    assert torch.equal(ctx(x), x)  # scales start at exactly 1
    with torch.no_grad():
        ctx.scale.bias.fill_(1.0)
        ctx.scale.weight.normal_()
    y = ctx(x)
    assert not torch.allclose(y, x)
    # one scale per channel and frame, from statistics of the whole frame: a change far away alters it
    ratio = y[0] / x[0]
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-5)
    x2 = x.clone()
    x2[0, :, -1, -1] += 5.0
    assert not torch.allclose(ctx(x2)[0, :, 0, 0], y[0, :, 0, 0])
    cfg = StudentConfig(4, (16,), (1,), bands=1, context=8)
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    assert StudentConfig.from_dict({**cfg.to_dict(), "context": 0}).context == 0
    with pytest.raises(ValueError, match="context"):
        StudentConfig(4, (16,), (1,), context=-1)


def test_frame_context_of_a_deep_student_reads_the_deepest_level() -> None:
    """In a three-level student the branch probes the bottleneck (96 channels) and rescales the 16 level-0 ones."""
    model = build_student("runet-m4")
    assert model.context.probe.in_channels == 96 and model.context.scale.out_channels == 16
    from kd_trainer.models.student import FrameContext

    ctx = FrameContext(16, 8, 32)
    x, deep = torch.rand(1, 16, 16, 16), torch.rand(1, 32, 4, 4)
    with torch.no_grad():
        ctx.scale.weight.normal_()
    y = ctx(x, deep)
    assert not torch.allclose(y, x)
    # the deep features alone set the scales: new level-0 features, the same factors
    x2 = torch.rand(1, 16, 16, 16)
    assert torch.allclose(ctx(x2, deep) / x2, y / x, rtol=1e-4)
    assert not torch.allclose(ctx(x, deep * 2.0), y)


def test_warm_start_grows_a_context_branch_and_refuses_other_shapes() -> None:
    """A context student starts as exactly the same student without the branch; any other shape is refused."""
    from kd_trainer.models.student import warm_start

    base = perturbed_student("runet-m3")
    grown = build_student("runet-m4")
    warm_start(grown, base)
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(grown(x), base(x))
    same = build_student("runet-m3")
    warm_start(same, base)
    pairs = zip(same.state_dict().values(), base.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    for wrong in ("runet-m2", "runet-f3"):  # another shape, and a context student from a different base
        with pytest.raises(CheckpointError, match="without its context branch"):
            warm_start(build_student(wrong), base)


def test_lowcut_residual_is_high_pass_by_construction() -> None:
    model = perturbed_student("runet-m3")
    with torch.no_grad():  # a residual that wants to brighten the whole frame
        model.tail.bias.fill_(0.2)
        x = torch.rand(1, 3, 61, 83) * 0.5
        residual = model(x) - x
        flat = torch.full((1, 3, 64, 96), 0.4)
        assert abs((model(flat) - flat).mean()) < 1e-6  # a flat frame keeps its brightness
    # no shift of broad brightness: block means of the residual stay near zero, though the bias is 0.2
    block_means = torch.nn.functional.avg_pool2d(residual[:, :, :56, :80], 8)
    assert block_means.abs().mean() < 0.01 < residual.abs().mean()
    plain = perturbed_student("runet-m2")
    with torch.no_grad():
        plain.tail.bias.fill_(0.2)
        shifted = torch.nn.functional.avg_pool2d((plain(x) - x)[:, :, :56, :80], 8)
    assert shifted.abs().mean() > 0.1  # the same network without lowcut does shift it


def test_lowcut_config_is_validated_and_sets_the_padding_multiple() -> None:
    cfg = StudentConfig(4, (16,), (1,), bands=1, lowcut=8)
    assert cfg.multiple == 8 and StudentConfig(4, (16,), (1,)).multiple == 4
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    assert StudentConfig.from_dict({**cfg.to_dict(), "lowcut": 0}).lowcut == 0
    for bad in (-1, 3, 64):
        with pytest.raises(ValueError, match="lowcut"):
            StudentConfig(4, (16,), (1,), lowcut=bad)


@pytest.mark.parametrize("name", ["runet-m3", "runet-f2", "runet-f"])
def test_scale_residual_scales_exactly_what_the_student_adds(name: str) -> None:
    model = perturbed_student(name, seed=1)
    if model.detail is not None:
        torch.nn.init.normal_(model.detail.weight, std=0.05)
        torch.nn.init.normal_(model.detail.bias, std=0.01)
    torch.nn.init.normal_(model.tail.bias, std=0.01)
    x = torch.rand(1, 3, 45, 70)  # not a multiple of the padding: the crop after the residual must not matter
    with torch.no_grad():
        full = model(x)
        for factor in (0.5, 0.75, 1.5):
            scaled = scale_residual(model, factor)
            assert torch.allclose(scaled(x), x + factor * (full - x), atol=1e-5)
    assert not torch.equal(full, x)  # the student does add something
    assert torch.equal(model(x), full)  # the original is left untouched
    assert not scaled.training


@pytest.mark.parametrize("channels_in,channels_out,k", [(32, 3, 4), (48, 16, 2)])
def test_block_up_is_the_transposed_conv_it_replaces(channels_in: int, channels_out: int, k: int) -> None:
    """``BlockUp`` (1x1 conv + pixel shuffle) computes exactly what ``nn.ConvTranspose2d(k, stride=k)`` does with
    the same parameters, under the same parameter names (old checkpoints load unchanged)."""
    torch.manual_seed(0)
    reference = torch.nn.ConvTranspose2d(channels_in, channels_out, k, stride=k)
    fast = BlockUp(channels_in, channels_out, k)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, channels_in, 7, 9)
    with torch.no_grad():
        assert torch.allclose(fast(x), reference(x), atol=1e-5)


def test_exported_students_have_no_transposed_convs(tmp_path) -> None:
    """The up-sampling tail exports as Conv + DepthToSpace (onnxruntime's CPU ConvTranspose is slow)."""
    import onnx

    from kd_trainer.export import export_onnx

    result = export_onnx(perturbed_student("runet-m3"), tmp_path / "m3.onnx", height=64, width=64)
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops


def test_half_blocks_are_one_conv_residuals_and_round_trip() -> None:
    model = perturbed_student("runet-fh").eval()
    block = model.encoders[0][0]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in block.modules()) == 1
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.conv2(torch.relu(x)))
    assert count_macs(model) < count_macs(build_student("runet-f2"))
    cfg = model.config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    assert "half" not in build_student("runet-f2").config.to_dict()  # older checkpoints stay as they were
    with pytest.raises(ValueError, match="half"):
        StudentConfig.from_dict(cfg.to_dict() | {"half": "no"})


def test_strength_head_starts_as_the_student_and_scales_each_frames_residual() -> None:
    from kd_trainer.models.student import with_strength_head

    plain = perturbed_student("runet-fh").eval()
    model = with_strength_head(plain).eval()
    assert model.config.strength and StudentConfig.from_dict(model.config.to_dict()) == model.config
    assert "strength" not in plain.config.to_dict()  # older checkpoints stay as they were
    with pytest.raises(ValueError, match="strength"):
        StudentConfig.from_dict(model.config.to_dict() | {"strength": "yes"})
    with pytest.raises(ValueError, match="already"):
        with_strength_head(model)
    x = torch.rand(2, 3, 32, 48)
    x[1] = x[1] * 0.2 + 0.4  # a second, flatter frame: other statistics, another scale
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-6)  # fresh head: scale 1
        model.strength.set_linear(torch.linspace(-1.0, 1.0, model.strength.linear.in_features), 0.5, 1.5)
        features = plain.body(plain.stem(x))[0]
        scales = model.strength(features).flatten()
        assert scales[0] != scales[1] and bool(((scales >= 0) & (scales <= 1.5)).all())
        assert torch.allclose(model(x) - x, (plain(x) - x) * scales.view(-1, 1, 1, 1), atol=1e-6)


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with every parameter moved at random (the rep branches included), so no branch is zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


def test_rep_conv_is_the_sum_of_its_branches() -> None:
    """Written branch by branch with plain convs (zero padding): the merged kernel computes exactly their sum."""
    import torch.nn.functional as F

    from kd_trainer.models.student import EDGE_KERNELS, RepConv3x3

    conv = _randomised(RepConv3x3(4, 5, ratio=2))
    x = torch.randn(2, 4, 9, 11)
    branches = F.conv2d(x, conv.weight, conv.bias, padding=1)
    branches = branches + F.conv2d(x, conv.point[:, :, None, None])
    branches = branches + F.conv2d(F.conv2d(x, conv.expand[:, :, None, None]), conv.squeeze, padding=1)
    for mix, kernel in zip(conv.edges, EDGE_KERNELS, strict=True):
        mixed = F.conv2d(x, mix[:, :, None, None])
        depthwise = torch.tensor(kernel).expand(5, 1, 3, 3)
        branches = branches + F.conv2d(mixed, depthwise, padding=1, groups=5)
    with torch.no_grad():
        assert torch.allclose(conv(x), branches, atol=1e-5)
        assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-3)


def test_a_rep_student_merges_into_its_plain_form_with_the_same_outputs() -> None:
    from kd_trainer.models.student import RepConv3x3, merge_branches

    model = _randomised(build_student("runet-fhr"))
    assert any(isinstance(m, RepConv3x3) for m in model.modules())
    plain = merge_branches(model)
    assert plain.config == build_student("runet-fh").config and registry_name(plain.config) == "runet-fh"
    assert not any(isinstance(m, RepConv3x3) for m in plain.modules()) and not plain.training
    assert count_macs(plain) == count_macs(model)  # training branches cost nothing per frame
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-5)
        assert not torch.allclose(model(x), x, atol=1e-3)
    assert merge_branches(plain) is plain  # a plain student is left as it is


def test_rep_config_round_trips_validates_and_warm_starts_from_its_plain_form() -> None:
    from kd_trainer.models.student import warm_start

    cfg = build_student("runet-fhr").config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["rep"] == 4
    assert "rep" not in build_student("runet-fh").config.to_dict()  # older checkpoints stay as they were
    for bad in (-1, 9):
        with pytest.raises(ValueError, match="rep"):
            StudentConfig(4, (16,), (1,), rep=bad)
    base = _randomised(build_student("runet-fh"))
    grown = build_student("runet-fhr")
    warm_start(grown, base)  # the extra branches start at zero: the same function
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(grown.eval()(x), base(x))
    with pytest.raises(CheckpointError, match="plain form"):
        warm_start(build_student("runet-fhr"), build_student("runet-f2"))


def test_a_rep_student_exports_as_its_plain_graph(tmp_path) -> None:
    """The ONNX of an over-parameterised student is the plain student's graph (same ops, same cost), and it
    matches the rep student's own outputs (export's parity check, and here once more)."""
    import onnx
    import onnxruntime as ort

    from benchmarks.cli import default_models
    from kd_trainer.export import export_onnx

    model = _randomised(build_student("runet-fhr"))
    rep = export_onnx(model, tmp_path / "rep.onnx", height=32, width=48)
    plain = export_onnx(build_student("runet-fh"), tmp_path / "plain.onnx", height=32, width=48)
    ops = [[n.op_type for n in onnx.load(str(r.path)).graph.node] for r in (rep, plain)]
    assert ops[0] == ops[1]
    x = torch.rand(1, 3, 32, 48)
    (y,) = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )
    with torch.no_grad():
        assert abs(torch.from_numpy(y) - model(x).clamp(0, 1)).max() < 1e-5
    assert "runet-fhr" not in default_models()[0]  # benchmarked as runet-fh, not twice


def _with_frame_filter_on(model):
    """``model`` with its frame filter's last layer randomised, so the branch adds something frame-dependent."""
    with torch.no_grad():
        torch.nn.init.normal_(model.frame_filter.weights.weight, std=0.5)
        model.frame_filter.weights.bias.fill_(0.2)
    return model


@pytest.mark.parametrize("name", ["runet-m5", "runet-m6"])
def test_frame_filter_starts_as_identity_is_high_pass_and_follows_the_whole_frame(name: str) -> None:
    from kd_trainer.models.student import warm_start

    base = perturbed_student("runet-m3")
    model = build_student(name).eval()
    warm_start(model, base)  # grown onto a runet-m3: exactly that student until the branch learns
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(x), base(x))
        _with_frame_filter_on(model)
        y = model(x)
        added = y - base(x)
        assert added.abs().max() > 1e-3
        assert torch.allclose(added[:, 0], added[:, 1], atol=1e-6)  # luma detail, added to R, G and B alike
        assert torch.allclose(added[:, 1], added[:, 2], atol=1e-6)
        flat = torch.full((1, 3, 48, 64), 0.3)
        assert (model(flat) - base(flat)).abs().max() < 1e-6  # zero-sum kernels: a flat frame gets nothing
        # one filter per frame: a change in one corner changes the filter, hence the output in the other corner
        x2 = x.clone()
        x2[0, :, -8:, -8:] = 1.0
        assert not torch.allclose(model(x2)[0, :, :4, :4], y[0, :, :4, :4], atol=1e-6)
        assert torch.allclose(model(x2)[1], y[1], atol=1e-6)  # and nothing of another frame in the batch


def test_frame_filter_config_scales_warm_starts_and_merges() -> None:
    from kd_trainer.models.student import merge_branches, warm_start

    cfg = build_student("runet-m5").config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["frame_filter"] == 4
    assert "frame_filter" not in build_student("runet-m3").config.to_dict()  # older checkpoints unchanged
    for bad in (-1, 9):
        with pytest.raises(ValueError, match="frame_filter"):
            StudentConfig(2, (16,), (1,), frame_filter=bad)
    rep = build_student("runet-m5r")
    warm_start(rep, perturbed_student("runet-m3"))  # plain form and no frame filter at once
    _with_frame_filter_on(rep.eval())
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        full = rep(x)
        half = scale_residual(rep, 0.5)(x)
        assert torch.allclose(half, x + 0.5 * (full - x), atol=1e-5)  # the branch scales with the residual
        merged = merge_branches(rep)
        assert merged.config == build_student("runet-m5").config
        assert torch.allclose(merged(x), full, atol=1e-6)
    with pytest.raises(CheckpointError, match="frame filter"):
        warm_start(build_student("runet-m5"), perturbed_student("runet-m2"))
    m6 = build_student("runet-m6").config
    assert StudentConfig.from_dict(m6.to_dict()) == m6 and m6.to_dict()["frame_filter_log"] is True
    assert "frame_filter_log" not in cfg.to_dict()  # runet-m5 checkpoints unchanged
    with pytest.raises(ValueError, match="frame_filter_log needs a frame filter"):
        StudentConfig(2, (16,), (1,), frame_filter_log=True)
    with pytest.raises(ValueError, match="frame_filter_log must be true or false"):
        StudentConfig.from_dict(m6.to_dict() | {"frame_filter_log": "yes"})
    macs = count_macs(build_student("runet-m5")) - count_macs(build_student("runet-m3"))
    # four bands as a 5x5 conv on 2x2 blocks (4 * 25 * 4 MAC a pixel), the luma mix (3) and the band sum (4 * 4)
    assert macs == 1920 * 1080 * (4 * 100 + 3 + 16)


def test_band_frame_gain_starts_as_identity_and_follows_each_whole_frame() -> None:
    """``runet-fg`` grown onto a ``runet-fh`` is exactly that student; with its per-frame gain on, a change in one
    corner of a frame moves the output in the opposite corner (beyond the local receptive field) and nothing in
    another frame of the batch."""
    from kd_trainer.models.student import warm_start

    base = perturbed_student("runet-fh")
    model = build_student("runet-fg").eval()
    warm_start(model, base)
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(x), base(x))
        torch.nn.init.normal_(model.bands.frame.weights.weight, std=0.5)
        model.bands.frame.weights.bias.fill_(0.2)
        y = model(x)
        assert (y - base(x)).abs().max() > 1e-3
        x2 = x.clone()
        x2[0, :, -8:, -8:] = 1.0
        assert not torch.allclose(model(x2)[0, :, :4, :4], y[0, :, :4, :4], atol=1e-6)
        assert torch.allclose(model(x2)[1], y[1], atol=1e-6)
        stats = model.bands.frame.hidden.in_features
        assert stats == 3 * 16 + 2 * 1  # pooled features and the one band's two log statistics
    cfg = model.config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["band_frame_gain"] is True
    assert "band_frame_gain" not in base.config.to_dict()  # runet-fh checkpoints unchanged
    with pytest.raises(ValueError, match="band_frame_gain needs gain-steered bands"):
        StudentConfig(2, (16,), (1,), band_frame_gain=True)
    with pytest.raises(ValueError, match="band_frame_gain must be true or false"):
        StudentConfig.from_dict(cfg.to_dict() | {"band_frame_gain": 1})
    with pytest.raises(CheckpointError, match="band frame gain"):
        warm_start(build_student("runet-fg"), perturbed_student("runet-f4"))
    assert count_macs(build_student("runet-fg")) == count_macs(base)  # no conv added: pooling and a tiny MLP


def test_log_band_statistics_tell_sparse_halos_from_dense_noise_at_any_contrast() -> None:
    """The log statistics: log mean magnitude per band, then log(rms / mean magnitude), which does not change
    with the frame's contrast, is about 0 on a flat frame, and is larger for sparse detail (an edge's halo) than for
    dense noise of the same mean magnitude."""
    model = build_student("runet-m6").eval()
    ff = model.frame_filter
    rng = torch.Generator().manual_seed(0)
    noise = 0.5 + 0.05 * torch.randn(1, 3, 64, 64, generator=rng)
    edges = torch.full((1, 3, 64, 64), 0.3)
    edges[..., ::16, :] = 0.9  # a grid of thin lines: sparse responses in every band
    edges[..., :, ::16] = 0.9

    def stats(x: torch.Tensor) -> torch.Tensor:
        return ff.band_stats(ff.bands_of(x))[0]

    with torch.no_grad():
        k = ff.basis.weight.shape[0]
        assert torch.allclose(stats(torch.full((1, 3, 64, 64), 0.4))[k:], torch.zeros(k), atol=1e-2)
        low = stats(0.5 + 0.25 * (edges - 0.5))
        high = stats(edges)
        assert torch.allclose(high[k:], low[k:], atol=1e-2)  # contrast-free (up to the floor)
        assert torch.allclose(high[:k] - low[:k], torch.full((k,), math.log(4.0)), atol=1e-2)
        assert (high[k:] > stats(noise)[k:] + 0.3).all()  # sparse lines vs dense noise


@pytest.mark.parametrize("block", [2, 3, 4])
def test_blocked_zero_sum_conv_is_the_direct_9x9_conv(block: int) -> None:
    """The space-to-depth form computes the direct reflect-padded conv, sub-pixel (i, j) of each block in
    channel ``o * block**2 + i * block + j``, from the same weights (so checkpoints do not change)."""
    from kd_trainer.models.student import ZeroSumConv

    direct, blocked = ZeroSumConv(3, 9), ZeroSumConv(3, 9, block)
    with torch.no_grad():
        direct.weight.normal_()
        blocked.weight.copy_(direct.weight)
    x = torch.rand(2, 1, 12 * block, 7 * block)
    expected = direct(x)
    got = blocked(x)
    assert got.shape == (2, 3 * block * block, 12, 7)
    for o in range(3):
        placed = torch.nn.functional.pixel_shuffle(got[:, o * block * block : (o + 1) * block * block], block)
        assert torch.allclose(placed[:, 0], expected[:, o], atol=1e-5)
    assert direct(torch.full((1, 1, 24, 24), 0.7)).abs().max() < 1e-5  # zero-sum: flat input, zero output


def test_band_frame_slope_reads_the_spectral_slope_at_any_contrast() -> None:
    """``runet-fs``: its per-frame term also reads a coarse band (luma sampled every 4 pixels minus its 3x3 mean),
    so the band's log magnitude minus the coarse one (the spectrum's slope) falls when a frame is blurred and rises
    when it is over-sharpened, whatever its contrast; grown onto ``runet-fh`` it starts as that student."""
    from kd_trainer.models.student import warm_start

    base = perturbed_student("runet-fh")
    model = build_student("runet-fs").eval()
    warm_start(model, base)
    pooled = 3 * 16
    assert model.bands.frame.hidden.in_features == pooled + 2 + 2
    rng = torch.Generator().manual_seed(0)
    blocks = torch.rand(1, 3, 16, 24, generator=rng)  # 8x8 patches: sharp edges, flat insides
    x = 0.2 + 0.6 * blocks.repeat_interleave(8, 2).repeat_interleave(8, 3)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel[:, None] * kernel[None, :]).repeat(3, 1, 1, 1)

    def blurred(frame: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(
            torch.nn.functional.pad(frame, (1,) * 4, mode="reflect"), kernel, groups=3
        )

    def slope(frame: torch.Tensor) -> float:
        stats = model.bands.frame_stats(frame, model.stem(frame), model.bands.filters(frame))[0]
        return float(stats[pooled] - stats[pooled + 2])  # band log magnitude - coarse log magnitude

    with torch.no_grad():
        assert torch.equal(model(x), base(x))
        soft, halo = blurred(x), x + 1.5 * (x - blurred(x))
        assert slope(soft) < slope(x) - 0.2 and slope(x) < slope(halo) - 0.2
        assert abs(slope(0.5 + 0.3 * (x - 0.5)) - slope(x)) < 1e-2  # contrast-free
    cfg = model.config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["band_frame_slope"] is True
    assert (
        "band_frame_slope" not in build_student("runet-fg").config.to_dict()
    )  # runet-fg checkpoints unchanged
    with pytest.raises(ValueError, match="band_frame_slope needs the per-frame band gain"):
        StudentConfig(2, (16,), (1,), bands=1, band_frame_slope=True)
    assert count_macs(model) == count_macs(base)  # no conv added


def test_edge_profile_reads_how_steep_the_strongest_edges_are_at_any_contrast() -> None:
    """``edge_profile``: about 0 for one-pixel steps, lower for blurred edges, higher with halos, the same at any
    contrast; ``runet-fe`` reads it as one more input and, grown onto ``runet-fh``, starts as that student."""
    from kd_trainer.models.student import LUMA, edge_profile, warm_start

    rng = torch.Generator().manual_seed(0)
    blocks = torch.rand(1, 3, 16, 24, generator=rng)  # 8x8 patches: one-pixel steps, flat insides
    x = 0.2 + 0.6 * blocks.repeat_interleave(8, 2).repeat_interleave(8, 3)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel[:, None] * kernel[None, :]).repeat(3, 1, 1, 1)

    def blurred(frame: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(frame, (1,) * 4, mode="reflect")
        return torch.nn.functional.conv2d(padded, kernel, groups=3)

    luma = torch.tensor(LUMA).view(1, 3, 1, 1)

    def profile(frame: torch.Tensor) -> float:
        return float(edge_profile(frame, luma)[0, 0])

    sharp, soft, halo = profile(x), profile(blurred(x)), profile(x + 1.5 * (x - blurred(x)))
    assert abs(sharp) < 0.05 and soft < sharp - 0.3 and halo > sharp + 0.15
    assert abs(profile(0.5 + 0.3 * (x - 0.5)) - sharp) < 1e-2  # contrast-free
    base = perturbed_student("runet-fh")
    model = build_student("runet-fe").eval()
    warm_start(model, base)
    assert model.bands.frame.hidden.in_features == 3 * 16 + 2 + 2 + 1
    with torch.no_grad():
        assert torch.equal(model(x), base(x))
    cfg = model.config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["band_frame_edge"] is True
    with pytest.raises(ValueError, match="band_frame_edge needs the per-frame band gain"):
        StudentConfig(2, (16,), (1,), bands=1, band_frame_edge=True)


def test_band_coring_soft_thresholds_the_band_and_grows_onto_the_plain_student() -> None:
    """``runet-fc``: the cored copy of the band is ``sign(b) * max(|b| - t, 0)`` (small ripples vanish, large
    values shrink by ``t``), a negative threshold acts as 0, and grown onto ``runet-fh`` it starts as that student;
    once its gain is non-zero it changes the output, and the config round-trips."""
    from kd_trainer.models.student import CORE_THRESHOLD, warm_start

    model = build_student("runet-fc").eval()
    assert model.bands.core_threshold.tolist() == pytest.approx([CORE_THRESHOLD])
    bands = torch.tensor([-0.1, -0.01, 0.0, 0.01, 0.1]).view(1, 5, 1, 1).repeat(1, 16, 1, 1)[:, :16]
    cored = model.bands.cored(bands)
    t = CORE_THRESHOLD
    expected = torch.sign(bands) * torch.clamp(bands.abs() - t, min=0)
    assert torch.allclose(cored, expected)
    assert float(cored.abs().max()) == pytest.approx(0.1 - t)
    with torch.no_grad():
        model.bands.core_threshold.fill_(-0.5)  # kept >= 0: the plain band
    assert torch.equal(model.bands.cored(bands), bands)

    base = perturbed_student("runet-fh")
    grown = build_student("runet-fc").eval()
    warm_start(grown, base)
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(grown(x), base(x))
        torch.nn.init.normal_(grown.bands.core_gain.weight, std=0.5)
        grown.bands.core_gain.bias.fill_(1.0)
        assert not torch.allclose(grown(x), base(x))
    cfg = grown.config
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["band_coring"] is True
    assert "band_coring" not in STUDENTS["runet-fh"].to_dict()  # older checkpoints unchanged
    with pytest.raises(ValueError, match="band_coring needs gain-steered bands"):
        StudentConfig(2, (16,), (1,), band_coring=True)
