import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kd_trainer.data import (
    SOFT_TRUTH_SIGMA,
    DataError,
    TrainBank,
    find_pairs,
    find_photos,
    gate_teacher,
    soften,
    spread,
    stretch_contrast,
    validation_frames,
    vivid_colours,
)
from kd_trainer.io import ImageReadError, read_image, write_image
from kd_trainer.losses import DistillLoss, edge_l1, fft_l1, neg_psnr, psnr_harm


def _pairs(root, names_blur, names_sharp, size=(48, 40)):
    rng = np.random.default_rng(0)
    for sub, names in (("blur_Image", names_blur), ("sharp_Image", names_sharp)):
        for n in names:
            write_image(root / sub / n, rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def test_paired_layout_matches_names(tmp_path) -> None:
    _pairs(tmp_path, ["001.png", "002.png"], ["001.png", "002.png"])
    pairs = find_pairs(tmp_path)
    assert [(b.name, s.name) for b, s in pairs] == [("001.png", "001.png"), ("002.png", "002.png")]


def test_paired_layout_mismatch_names_the_files(tmp_path) -> None:
    _pairs(tmp_path, ["001.png", "003.png"], ["001.png", "002.png"])
    with pytest.raises(
        DataError, match=r"only in blur_Image: \['003.png'\].*only in sharp_Image: \['002.png'\]"
    ):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="missing"):
        find_pairs(tmp_path / "nowhere")


def test_paired_size_mismatch_is_reported(tmp_path) -> None:
    _pairs(tmp_path, ["001.png"], [])
    _pairs(tmp_path, [], ["001.png"], size=(40, 40))
    bank = TrainBank([], find_pairs(tmp_path), crop=32, size=2)
    with pytest.raises(DataError, match="pair size mismatch"):
        bank[0]


def test_unreadable_images_name_the_file(tmp_path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="junk.jpg"):
        read_image(tmp_path / "junk.jpg")
    bank = TrainBank([tmp_path / "junk.jpg"], [], crop=16, size=1)
    with pytest.raises(DataError, match="junk.jpg"):
        bank[0]
    with pytest.raises(DataError, match="no images"):
        find_photos(tmp_path / "sub") if (tmp_path / "sub").mkdir() is None else None


def test_bank_is_deterministic_and_augments_per_epoch(photo_dirs) -> None:
    train, _ = photo_dirs
    photos = find_photos(train)
    a = TrainBank(photos, [], crop=48, size=8, seed=1)
    b = TrainBank(photos, [], crop=48, size=8, seed=1)
    for i in range(8):
        assert np.array_equal(a.sample(i).inp, b.sample(i).inp)
        assert np.array_equal(a.sample(i).gt, b.sample(i).gt)
    item = a[0]
    assert item["inp"].shape == (3, 48, 48) and item["inp"].dtype == torch.float32
    assert 0.0 <= float(item["inp"].min()) and float(item["inp"].max()) <= 1.0
    per_epoch = []
    for epoch in range(4):
        a.set_epoch(epoch)
        per_epoch.append(a[3]["gt"])
    assert any(not torch.equal(per_epoch[0], t) for t in per_epoch[1:])  # new orientation per epoch
    c = TrainBank(photos, [], crop=48, size=8, seed=2)
    assert not all(np.array_equal(a.sample(i).gt, c.sample(i).gt) for i in range(8))


def test_fresh_bank_redraws_all_but_the_teacher_samples(photo_dirs) -> None:
    """With ``fresh`` the samples past ``teacher_count`` change each epoch (new crops and damage); the first
    ``teacher_count`` (the ones with cached teacher outputs) stay the same, so their teacher outputs still match."""
    train, _ = photo_dirs
    bank = TrainBank(find_photos(train), [], crop=32, size=6, seed=3, fresh=True, teacher_count=2)
    first = [bank.sample(i) for i in range(6)]
    bank.set_epoch(1)
    second = [bank.sample(i) for i in range(6)]
    for i in range(2):
        assert np.array_equal(first[i].inp, second[i].inp) and np.array_equal(first[i].gt, second[i].gt)
    assert all(not np.array_equal(first[i].gt, second[i].gt) for i in range(2, 6))
    assert bank.distinct_samples(epochs=3) == 2 + 4 * 3
    bank.set_epoch(0)
    assert all(np.array_equal(first[i].inp, bank.sample(i).inp) for i in range(6))  # a resume sees the same
    still = TrainBank(find_photos(train), [], crop=32, size=6, seed=3)  # not fresh: every sample is fixed
    assert still.distinct_samples(epochs=3) == 6 and not still.is_fresh(5)
    every = TrainBank(find_photos(train), [], crop=32, size=6, seed=3, fresh=True)  # no teacher samples given
    assert every.distinct_samples(epochs=3) == 18 and every.is_fresh(0)


def test_crop_larger_than_photo_is_explained(photo_dirs) -> None:
    train, _ = photo_dirs
    with pytest.raises(DataError, match="smaller than the training crop"):
        TrainBank(find_photos(train), [], crop=512, size=1).sample(0)


def test_validation_frames_cover_every_preset(photo_dirs) -> None:
    _, val = photo_dirs
    frames = validation_frames(val, ["gauss1.5", "clean"], max_frames=5)
    assert [f.preset for f in frames] == ["gauss1.5", "clean"]
    assert frames[0].inp.shape == frames[0].gt.shape == (96, 160, 3)
    assert np.array_equal(frames[1].inp, frames[1].gt)


def test_spread_picks_evenly_over_all_sources() -> None:
    names = [f"{src}-{i}" for src in "abcd" for i in range(3)]  # 4 sources of 3 photos, sorted by name
    assert spread(names, 4) == ["a-0", "b-0", "c-0", "d-0"]
    assert spread(names, 100) == names
    assert spread(names, 1) == ["a-0"]
    assert len(set(spread(names, 7))) == 7


def test_loss_terms_are_reported_separately() -> None:
    s, gt, t = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    total, terms = DistillLoss(0.8, 0.2)(s, gt, t)
    assert terms["l1_gt"] == pytest.approx(1.0) and terms["l1_teacher"] == pytest.approx(0.5)
    assert float(total) == pytest.approx(0.8 * 1.0 + 0.2 * 0.5)
    total, terms = DistillLoss(1.0, 0.0, fft_weight=0.1, edge_weight=0.1)(s, gt)
    assert set(terms) == {"loss", "l1_gt", "fft", "edge"}
    with pytest.raises(ValueError, match="no teacher output"):
        DistillLoss(0.8, 0.2)(s, gt)
    with pytest.raises(ValueError, match="teacher output shape"):
        DistillLoss(0.8, 0.2)(s, gt, torch.zeros(1, 3, 4, 4))


def test_psnr_term_is_per_crop_psnr_and_weights_near_clean_crops_up() -> None:
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    student = gt.clone()
    student[0] += 0.002  # an almost clean crop
    student[1] += 0.05  # a badly degraded one
    total, terms = DistillLoss(1.0, 0.0, psnr_weight=0.01, psnr_cap_db=50)(student, gt)
    mse = ((student - gt) ** 2).flatten(1).mean(1).double().numpy()
    expected = np.mean(10 * np.log10(mse + 1e-5))  # -PSNR per crop, soft cap at 50 dB
    assert terms["neg_psnr"] == pytest.approx(float(expected), abs=1e-3)
    assert float(total) == pytest.approx(terms["l1_gt"] + 0.01 * terms["neg_psnr"], rel=1e-5)

    # L1 pulls hardest on the bad crop; the PSNR term pulls hardest on the nearly clean one.
    def pull(loss_fn) -> torch.Tensor:
        x = student.clone().requires_grad_(True)
        loss_fn(x, gt).backward()
        return x.grad.abs().flatten(1).sum(1)

    l1 = pull(F.l1_loss)
    assert l1[0] == pytest.approx(l1[1])
    per_psnr = pull(lambda a, b: neg_psnr(a, b, cap_db=50))
    assert per_psnr[0] > 5 * per_psnr[1]
    low_cap = pull(lambda a, b: neg_psnr(a, b, cap_db=30))  # a low cap makes it MSE-like: the bad crop wins
    assert low_cap[1] > 5 * low_cap[0]
    assert math.isfinite(float(neg_psnr(gt, gt)))  # exact copies are capped, not -inf
    assert "neg_psnr" not in DistillLoss(1.0, 0.0)(student, gt)[1]


def test_harm_term_counts_only_the_db_a_crop_lost_against_its_input() -> None:
    gen = torch.Generator().manual_seed(1)
    gt = torch.rand(3, 3, 16, 16, generator=gen)
    degraded = gt + 0.05 * torch.randn(gt.shape, generator=gen)
    degraded[2] = gt[2]  # a clean sample: the input is the ground truth
    out = gt.clone()
    out[0] = 0.5 * (degraded[0] + gt[0])  # improved: no harm
    out[1] = gt[1] + 0.1 * torch.randn(gt[1].shape, generator=gen)  # made worse than its input
    out[2] = gt[2] + 0.003  # a clean crop changed at all
    mse = lambda a: ((a - gt) ** 2).flatten(1).mean(1).double()  # noqa: E731
    floor = 1e-4  # the 40 dB cap
    lost = 10 * torch.log10((mse(out) + floor) / (mse(degraded) + floor))
    assert lost[0] < 0 < lost[1] and lost[2] > 0
    expected = float(lost.clamp(min=0).mean())
    assert float(psnr_harm(out, degraded, gt)) == pytest.approx(expected, rel=1e-4)
    assert float(psnr_harm(degraded, degraded, gt)) == 0.0  # doing nothing is never harm
    total, terms = DistillLoss(1.0, 0.0, harm_weight=0.5)(out, gt, degraded=degraded)
    assert terms["harm"] == pytest.approx(expected, rel=1e-4)
    assert float(total) == pytest.approx(terms["l1_gt"] + 0.5 * terms["harm"], rel=1e-5)
    x = out.clone().requires_grad_(True)  # the improved crop gets no pull from it
    psnr_harm(x, degraded, gt).backward()
    assert float(x.grad[0].abs().sum()) == 0.0 and float(x.grad[1].abs().sum()) > 0
    with pytest.raises(ValueError, match="needs the degraded input"):
        DistillLoss(1.0, 0.0, harm_weight=0.5)(out, gt)
    assert "harm" not in DistillLoss(1.0, 0.0)(out, gt, degraded=degraded)[1]


def test_fft_and_edge_losses_are_zero_only_for_equal_images() -> None:
    flat = torch.full((1, 3, 16, 16), 0.5)
    stripes = flat.clone()
    stripes[..., ::2] += 0.1
    stripes[..., 1::2] -= 0.1
    assert float(edge_l1(stripes, flat)) > 0.1 and float(fft_l1(stripes, flat)) > 1e-3
    assert float(edge_l1(flat, flat)) == 0.0 and float(fft_l1(flat, flat)) == 0.0


def _invert_teacher():
    """A teacher that inverts its input: easy to tell from the ground truth in a test."""
    from kd_trainer.models.teachers import Teacher

    class Invert(Teacher):
        key = "invert"

        def __call__(self, rgb: np.ndarray) -> np.ndarray:
            return 255 - rgb

    return Invert()


def test_teacher_outputs_on_part_of_the_bank_are_masked(photo_dirs) -> None:
    from kd_trainer.models.teachers import TeacherCache

    train, _ = photo_dirs
    cache = TeacherCache(_invert_teacher())
    bank = TrainBank(find_photos(train), [], crop=32, size=4, teacher=cache, teacher_count=2)
    assert len(list(bank.teacher_inputs())) == 2
    items = [bank[i] for i in range(4)]
    assert [float(it["has_teacher"]) for it in items] == [1.0, 1.0, 0.0, 0.0]
    assert torch.allclose(items[0]["teacher"], 1 - items[0]["inp"], atol=1e-6)
    assert torch.equal(items[3]["teacher"], items[3]["gt"])

    student = torch.stack([it["inp"] for it in items])
    teacher = torch.stack([it["teacher"] for it in items])
    mask = torch.stack([it["has_teacher"] for it in items])
    _, terms = DistillLoss(0.8, 0.2)(student, torch.stack([it["gt"] for it in items]), teacher, mask)
    expected = (student[:2] - teacher[:2]).abs().mean()
    assert terms["l1_teacher"] == pytest.approx(float(expected), rel=1e-5)


def test_skip_noisy_drops_the_teacher_on_samples_whose_chain_added_noise(photo_dirs) -> None:
    from kd_trainer.models.teachers import TeacherCache

    train, _ = photo_dirs
    size = 40
    plain = TrainBank(
        find_photos(train), [], crop=32, size=size, seed=2, teacher=TeacherCache(_invert_teacher())
    )
    skip = TrainBank(
        find_photos(train),
        [],
        crop=32,
        size=size,
        seed=2,
        teacher=TeacherCache(_invert_teacher()),
        skip_noisy=True,
    )
    noisy = [plain.sample(i).noisy for i in range(size)]
    assert 0 < sum(noisy) < size  # the chains drew both kinds
    # the teacher stage only computes what is used: no teacher output for the noisy samples
    assert plain.teacher_indices() == list(range(size))
    assert skip.teacher_indices() == [i for i in range(size) if not noisy[i]]
    inputs = list(skip.teacher_inputs())
    assert len(inputs) == size - sum(noisy)
    assert all(
        np.array_equal(x, skip.sample(i).inp) for x, i in zip(inputs, skip.teacher_indices(), strict=True)
    )
    for i in range(size):
        a, b = plain[i], skip[i]
        assert torch.equal(a["inp"], b["inp"]) and torch.equal(a["gt"], b["gt"])  # the same samples
        assert float(a["has_teacher"]) == 1.0
        assert float(b["has_teacher"]) == (0.0 if noisy[i] else 1.0)
        assert torch.equal(b["teacher"], b["gt"] if noisy[i] else a["teacher"])


def test_teacher_gate_keeps_only_outputs_better_than_the_input(photo_dirs) -> None:
    from kd_trainer.models.teachers import Teacher, TeacherCache

    class PerfectOnOdd(Teacher):
        """Returns the ground truth for odd-indexed samples, an inverted image otherwise."""

        key = "perfect-on-odd"

        def __init__(self, bank: TrainBank) -> None:
            self.answers = {bank.sample(i).inp.tobytes(): (i, bank.sample(i).gt) for i in range(bank.size)}

        def __call__(self, rgb: np.ndarray) -> np.ndarray:
            i, gt = self.answers[rgb.tobytes()]
            return gt if i % 2 else 255 - rgb

    train, _ = photo_dirs
    bank = TrainBank(find_photos(train), [], crop=32, size=12, seed=4, teacher_gate=True)
    bank.teacher = TeacherCache(PerfectOnOdd(bank))
    flags = [float(bank[i]["has_teacher"]) for i in range(12)]
    better = [float(np.abs(bank.sample(i).inp.astype(int) - bank.sample(i).gt).mean() > 0) for i in range(12)]
    assert flags == [0.0 if i % 2 == 0 else better[i] for i in range(12)]
    assert sum(flags) >= 2


def test_window_gate_keeps_the_teacher_only_where_it_beats_the_input() -> None:
    """Left half: noisy input, teacher close to the truth -> the teacher is kept. Right half: clean input, the
    teacher adds noise (MAXIM on noisy text) -> the target there is the ground truth."""
    rng = np.random.default_rng(0)
    gt = rng.integers(60, 196, (32, 64, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, gt.shape)
    inp, teacher = gt.copy(), gt.copy()
    inp[:, :32] = np.clip(gt[:, :32] + noise[:, :32], 0, 255)
    teacher[:, :32] = np.clip(gt[:, :32] + noise[:, :32] // 8, 0, 255)
    teacher[:, 32:] = np.clip(gt[:, 32:] + noise[:, 32:] // 2, 0, 255)
    gated = gate_teacher(teacher, inp, gt, 5)
    assert gated.dtype == np.uint8 and gated.shape == gt.shape
    assert np.array_equal(gated[:, :30], teacher[:, :30])  # two columns left of the seam: windows mix halves
    assert np.array_equal(gated[:, 34:], gt[:, 34:])
    assert not np.array_equal(teacher[:, 34:], gt[:, 34:])
    # a sample-wide gate would have kept all of it: the teacher is closer to the truth on average
    assert np.abs(teacher.astype(int) - gt).mean() < np.abs(inp.astype(int) - gt).mean()


def test_window_gate_in_the_bank_replaces_only_the_worse_windows(photo_dirs) -> None:
    from kd_trainer.models.teachers import Teacher, TeacherCache

    def answer(inp: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Halfway to the truth on the left half (better than the input), inverted on the right (worse)."""
        out = 255 - inp
        half = inp.shape[1] // 2
        out[:, :half] = ((inp[:, :half].astype(np.uint16) + gt[:, :half]) // 2).astype(np.uint8)
        return out

    class HalfGood(Teacher):
        key = "half-good"

        def __init__(self, bank: TrainBank) -> None:
            self.truths = {bank.sample(i).inp.tobytes(): bank.sample(i).gt for i in range(bank.size)}

        def __call__(self, rgb: np.ndarray) -> np.ndarray:
            return answer(rgb, self.truths[rgb.tobytes()])

    train, _ = photo_dirs
    # fresh: no per-epoch turn of the images, so the items line up with bank.sample(i)
    bank = TrainBank(find_photos(train), [], crop=32, size=4, fresh=True, teacher_gate=True, gate_window=7)
    bank.teacher = TeacherCache(HalfGood(bank))
    kept = 0
    for i in range(4):
        item, s = bank[i], bank.sample(i)
        teacher = answer(s.inp, s.gt)
        expected = gate_teacher(teacher, s.inp, s.gt, 7)
        assert float(item["has_teacher"]) == 1.0
        assert torch.equal(item["teacher"], torch.from_numpy(expected).permute(2, 0, 1).float().div_(255.0))
        assert np.array_equal(expected[:, 20:], s.gt[:, 20:])  # the inverted right half is never kept
        kept += int((expected != s.gt).any())
    assert kept, "the teacher must be kept somewhere, or this shows nothing"


def test_evaluate_scores_a_chain_that_drew_the_clean_pipeline_by_its_other_frames() -> None:
    from kd_trainer.data import ValFrame
    from kd_trainer.evaluate import evaluate, format_table

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + rng.integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
    frames = [
        ValFrame("a", "chain", noisy, gt),
        ValFrame("b", "chain", gt, gt),
        ValFrame("a", "clean", gt, gt),
    ]
    halfway = lambda rgb: ((rgb.astype(np.uint16) + gt) // 2).astype(np.uint8)  # noqa: E731
    metrics = evaluate(halfway, frames)
    assert math.isinf(metrics["chain"]["psnr_in"])  # the clean draw makes the mean input PSNR infinite ...
    assert metrics["chain"]["psnr_gain"] > 3  # ... but the gain is measured on the degraded frame
    assert metrics["score"]["psnr_gain"] == metrics["chain"]["psnr_gain"]
    assert "-" not in format_table(metrics).splitlines()[1].split()[3]


def test_harm_counts_only_frames_made_worse_and_the_scale_choice_avoids_it() -> None:
    from kd_trainer.data import ValFrame
    from kd_trainer.evaluate import choose_residual_scale, evaluate, safe_gain
    from kd_trainer.models.student import build_student
    from tests.helpers import perturbed_student

    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + rng.integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
    frames = [ValFrame("a", "noise", noisy, gt), ValFrame("b", "noise", gt // 2 + 64, gt)]
    metrics = evaluate(lambda rgb: ((rgb.astype(np.uint16) + gt) // 2).astype(np.uint8), frames)
    assert metrics["noise"]["psnr_harm"] == 0.0 and metrics["score"]["psnr_harm"] == 0.0
    worse = evaluate(lambda rgb: 255 - rgb, frames)
    assert worse["noise"]["psnr_harm"] > 0
    assert worse["noise"]["psnr_harm"] == pytest.approx(-worse["noise"]["psnr_gain"])
    assert safe_gain(worse) == pytest.approx(2 * worse["score"]["psnr_gain"])

    # a student that only adds noise: the smallest scale harms least and is chosen
    noisy_student = perturbed_student("runet-n", seed=2)
    torch.nn.init.normal_(noisy_student.tail.weight, std=0.5)
    scale, results = choose_residual_scale(noisy_student, frames, [1.0, 0.1, 0.5])
    assert scale == 0.1 and set(results) == {1.0, 0.1, 0.5}
    assert safe_gain(results[0.1]) > safe_gain(results[0.5]) > safe_gain(results[1.0])
    # the identity scores the same at every scale: the tie goes to the residual as trained
    assert choose_residual_scale(build_student("runet-n").eval(), frames, [0.5, 1.0, 1.5])[0] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        choose_residual_scale(noisy_student, frames, [])


def _chroma(img: np.ndarray) -> float:
    """Mean spread between a pixel's largest and smallest channel (0 for grey)."""
    rgb = img.astype(np.int16)
    return float((rgb.max(-1) - rgb.min(-1)).mean())


def test_vivid_colours_saturates_colour_and_leaves_grey_alone() -> None:
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), 3, axis=-1)
    assert np.array_equal(vivid_colours(grey, np.random.default_rng(1)), grey)
    leaf = np.zeros((16, 16, 3), np.uint8)
    leaf[...] = (90, 150, 60)  # a muted green
    out = vivid_colours(leaf, np.random.default_rng(2))
    assert out.dtype == np.uint8 and out.shape == leaf.shape
    assert _chroma(out) > 1.25 * _chroma(leaf)
    assert sorted(out[0, 0]) != sorted(leaf[0, 0])  # not just a permutation of the same values


def _default_and_full_share(photos, option: str, size: int) -> tuple[TrainBank, TrainBank]:
    """The default bank and one with ``option=1``, after checking that ``option=0`` draws exactly the default."""
    kwargs = {"crop": 32, "size": size, "seed": 5, "degradations": "chains-balanced"}
    default = TrainBank(photos, [], **kwargs)
    off = TrainBank(photos, [], **kwargs, **{option: 0.0})
    for i in range(size):
        assert np.array_equal(default.sample(i).gt, off.sample(i).gt)
        assert np.array_equal(default.sample(i).inp, off.sample(i).inp)
    return default, TrainBank(photos, [], **kwargs, **{option: 1.0})


def test_vivid_share_changes_only_the_chosen_crops(photo_dirs) -> None:
    """``vivid=0`` draws exactly the default bank; ``vivid=1`` makes every photo crop more colourful, and the
    input is degraded from that vivid ground truth (not from the original colours)."""
    train, _ = photo_dirs
    photos = find_photos(train)
    default, on = _default_and_full_share(photos, "vivid", 4)
    plain = np.mean([_chroma(default.sample(i).gt) for i in range(4)])
    vivid = np.mean([_chroma(on.sample(i).gt) for i in range(4)])
    assert vivid > 1.2 * plain
    for i in range(
        4
    ):  # same crop; the degraded input follows the vivid ground truth, not the original colours
        s, original = on.sample(i), default.sample(i).gt.astype(float)
        inp, gt = s.inp.astype(float), s.gt.astype(float)
        assert np.abs(inp - gt).mean() < np.abs(inp - original).mean()
    with pytest.raises(DataError, match="vivid"):
        TrainBank(photos, [], crop=32, size=4, vivid=1.5)


def _sharpness(img: np.ndarray) -> float:
    """Mean absolute difference between horizontal neighbours: lower for a softer image."""
    return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())


def test_soften_blurs_by_a_drawn_sigma_and_keeps_flat_areas() -> None:
    rng = np.random.default_rng(0)
    edges = np.zeros((32, 32, 3), np.uint8)
    edges[:, ::4] = 255  # thin lines: a blur lowers neighbour differences
    out = soften(edges, rng)
    assert out.dtype == np.uint8 and out.shape == edges.shape
    assert _sharpness(out) < 0.6 * _sharpness(edges)
    flat = np.full((16, 16, 3), 77, np.uint8)
    assert np.array_equal(soften(flat, rng), flat)
    gentle, strong = (
        cv2.GaussianBlur(edges, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for sigma in SOFT_TRUTH_SIGMA
    )
    assert _sharpness(strong) <= _sharpness(out) <= _sharpness(gentle)


def test_soft_truth_share_softens_the_ground_truth_before_the_chain(photo_dirs) -> None:
    """``soft_truth=0`` draws exactly the default bank; ``soft_truth=1`` makes every ground truth softer, and
    the input is degraded from that soft ground truth."""
    train, _ = photo_dirs
    photos = find_photos(train)
    default, on = _default_and_full_share(photos, "soft_truth", 6)
    sharp = np.mean([_sharpness(default.sample(i).gt) for i in range(6)])
    soft = np.mean([_sharpness(on.sample(i).gt) for i in range(6)])
    assert soft < 0.8 * sharp
    many = TrainBank(photos, [], crop=32, size=40, seed=5, degradations="chains-balanced", soft_truth=1.0)
    clean = [s for s in map(many.sample, range(40)) if s.preset == "clean"]
    assert clean  # 15% of samples are clean
    for s in clean:  # a clean sample's input is its (soft) ground truth
        assert np.array_equal(s.inp, s.gt)
    with pytest.raises(DataError, match="soft_truth"):
        TrainBank(photos, [], crop=32, size=4, soft_truth=-0.1)


def _luma_range(img: np.ndarray) -> float:
    """Spread of a frame's luma: 2nd to 98th percentile."""
    luma = img.astype(np.float32).mean(axis=2)
    return float(np.percentile(luma, 98) - np.percentile(luma, 2))


def test_stretch_contrast_widens_the_range_keeps_flat_areas_and_greys_half() -> None:
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(60, 200, 64, dtype=np.float32)[None, :, None], (16, 1, 3))
    ramp[..., 0] += 10  # a little colour
    ramp = ramp.astype(np.uint8)
    outs = [stretch_contrast(ramp, rng) for _ in range(40)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == ramp.shape
        assert _luma_range(out) > 1.4 * _luma_range(ramp)
        assert np.all(np.diff(out.astype(int).mean(axis=2), axis=1) >= 0)  # a ramp stays a ramp
    grey = [np.array_equal(o[..., 0], o[..., 1]) and np.array_equal(o[..., 1], o[..., 2]) for o in outs]
    assert 8 <= sum(grey) <= 32  # half the draws drop the colour
    clipped = [((o == 0) | (o == 255)).mean() for o in outs]
    assert max(clipped) > 0.1  # strong gains clip the ends of the ramp, as a contrasty photo does
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(stretch_contrast(flat, rng), flat)


def test_contrast_share_stretches_the_ground_truth_before_the_chain(photo_dirs) -> None:
    """``contrast=0`` draws exactly the default bank; ``contrast=1`` stretches every ground truth, and the input
    is degraded from the stretched ground truth."""
    train, _ = photo_dirs
    photos = find_photos(train)
    default, on = _default_and_full_share(photos, "contrast", 6)
    plain = np.mean([default.sample(i).gt.astype(np.float32).mean(axis=2).std() for i in range(6)])
    stretched = np.mean([on.sample(i).gt.astype(np.float32).mean(axis=2).std() for i in range(6)])
    assert stretched > 1.2 * plain
    for i in range(6):  # the degraded input follows the stretched ground truth
        d, s = default.sample(i), on.sample(i)
        assert np.abs(s.inp.astype(float) - s.gt).mean() < np.abs(s.inp.astype(float) - d.gt).mean()
    with pytest.raises(DataError, match="contrast"):
        TrainBank(photos, [], crop=32, size=4, contrast=2.0)


def _unchanged_at_half_share(photos, option: str, size: int = 40) -> int:
    """How many of ``size`` samples a bank with ``option=0.5`` draws exactly as the default bank does."""
    kwargs = {"crop": 32, "size": size, "seed": 5, "degradations": "chains-balanced"}
    some, plain = TrainBank(photos, [], **kwargs, **{option: 0.5}), TrainBank(photos, [], **kwargs)
    return sum(np.array_equal(some.sample(i).inp, plain.sample(i).inp) for i in range(size))


def test_blur_only_share_replaces_only_the_chosen_chains(photo_dirs) -> None:
    """``blur_only_share=0`` draws exactly the default bank; with a share, the samples it does not replace are
    the default ones (so their cached teacher outputs stay valid) and the others are blurred, not noisy."""
    train, _ = photo_dirs
    photos = find_photos(train)
    default, every = _default_and_full_share(photos, "blur_only_share", 12)
    softer = 0
    for i in range(12):
        d, e = default.sample(i), every.sample(i)
        assert np.array_equal(d.gt, e.gt)  # the same crop
        if d.preset == "clean" or d.noisy:  # clean and noisy samples are never replaced
            assert np.array_equal(e.inp, d.inp) and e.noisy == d.noisy
        else:  # blur alone: never noisy, never sharper (a gentle blur can leave a smooth crop as it was)
            assert not e.noisy and _sharpness(e.inp) <= _sharpness(e.gt)
            softer += _sharpness(e.inp) < 0.95 * _sharpness(e.gt)
    assert softer >= 5
    assert 5 < _unchanged_at_half_share(photos, "blur_only_share") < 35
    with pytest.raises(DataError, match="blur_only_share"):
        TrainBank(photos, [], crop=32, size=4, blur_only_share=1.5)


def test_oversharpen_share_gives_the_chosen_chains_halos(photo_dirs) -> None:
    """``oversharpen_share=0`` draws exactly the default bank; with a share, the samples it does not replace are
    the default ones, and the replaced ones mostly come out sharper than the samples they replace (the camera's
    softness is gone and its halos added; a later down-scale or codec can take that away again)."""
    train, _ = photo_dirs
    photos = find_photos(train)
    default, every = _default_and_full_share(photos, "oversharpen_share", 12)
    sharper = 0
    for i in range(12):
        d, e = default.sample(i), every.sample(i)
        assert np.array_equal(d.gt, e.gt)  # the same crop
        if d.preset == "clean":
            assert np.array_equal(e.inp, d.inp)
        else:
            assert e.noisy == d.noisy  # the noise step is kept
            sharper += _sharpness(e.inp) > _sharpness(d.inp)
    assert sharper >= 4
    assert 5 < _unchanged_at_half_share(photos, "oversharpen_share") < 35
    with pytest.raises(DataError, match="oversharpen_share"):
        TrainBank(photos, [], crop=32, size=4, oversharpen_share=1.5)


def test_wide_scalers_change_only_the_scaled_samples(photo_dirs) -> None:
    """``scalers="wide"`` cuts the same crops and draws the same chains; only samples whose chain scales (and
    drew one of the new scalers) differ, and an unknown set is refused."""
    train, _ = photo_dirs
    photos = find_photos(train)
    kwargs = {"crop": 32, "size": 40, "seed": 5, "degradations": "chains-balanced"}
    default, wide = TrainBank(photos, [], **kwargs), TrainBank(photos, [], **kwargs, scalers="wide")
    changed = 0
    for i in range(40):
        d, w = default.sample(i), wide.sample(i)
        assert np.array_equal(d.gt, w.gt) and d.preset == w.preset and d.noisy == w.noisy
        changed += not np.array_equal(d.inp, w.inp)
    assert 3 <= changed < 40
    with pytest.raises(DataError, match="unknown scaler set"):
        TrainBank(photos, [], crop=32, size=4, scalers="pillow")


def test_synthetic_share_sets_how_many_crops_come_from_rendered_screens(photo_dirs, tmp_path) -> None:
    from kd_trainer.screens import is_synthetic

    train, _ = photo_dirs
    rendered = [tmp_path / "screen-00-code.png", tmp_path / "scan-01-grey.png"]
    for path in rendered:
        write_image(path, np.full((96, 96, 3), 200, np.uint8))
    photos = find_photos(train) + rendered
    assert [is_synthetic(p) for p in photos] == [False, False, True, True]

    def picks(share: float) -> list[bool]:
        bank = TrainBank(photos, [], crop=32, size=4, synthetic_share=share)
        rng = np.random.default_rng(0)
        return [is_synthetic(bank.pick_photo(rng)) for _ in range(400)]

    assert not any(picks(0.0)) and all(picks(1.0))
    assert 0.15 < np.mean(picks(0.25)) < 0.35
    assert 0.35 < np.mean(picks(-1.0)) < 0.65  # off: every photo equally likely (2 of 4 are rendered)
    # the share changes which photo a sample is cut from, nothing else: samples stay deterministic
    a, b = (TrainBank(photos, [], crop=32, size=4, seed=1, synthetic_share=0.25) for _ in range(2))
    assert all(np.array_equal(a.sample(i).inp, b.sample(i).inp) for i in range(4))


def test_synthetic_share_needs_both_kinds_of_photo(photo_dirs) -> None:
    train, _ = photo_dirs
    with pytest.raises(DataError, match="needs rendered screens or scanned pages"):
        TrainBank(find_photos(train), [], crop=32, size=4, synthetic_share=0.3)
    TrainBank(find_photos(train), [], crop=32, size=4, synthetic_share=0.0)  # no rendered frames needed
    with pytest.raises(DataError, match="-1 \\(off\\) or in 0..1"):
        TrainBank(find_photos(train), [], crop=32, size=4, synthetic_share=1.5)


def test_to_tensor_takes_read_only_frames_without_a_warning() -> None:
    """Decoded video frames can be read-only; converting them must neither warn nor alias the buffer."""
    import warnings

    from kd_trainer.data import to_tensor

    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    frame.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(frame)
    assert t.shape == (3, 4, 5) and float(t[2, 3, 4]) == pytest.approx(frame[3, 4, 2] / 255.0)
