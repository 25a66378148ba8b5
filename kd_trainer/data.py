"""Training and validation data.

Sources: folders of sharp photos (degraded on the fly by seeded presets) and the seed's paired layout
``Blur2Sharp/{blur_Image,sharp_Image}/NAME``. Training samples form a *bank*: sample ``i`` of an epoch is a
deterministic function of (seed, i[, epoch]) -- a random crop, flip/rotation and degradation -- so teacher
outputs can be computed once and cached, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from kd_trainer.chain import (
    FAMILY_PRESET,
    SINGLE_STEP_SHARE,
    apply_chain,
    check_scalers,
    degrade_family,
    sample_train_chain,
    with_blur_only,
    with_oversharpened,
)
from kd_trainer.degrade import degrade, sample_train_preset
from kd_trainer.io import ImageReadError, list_images, read_image
from kd_trainer.screens import is_synthetic

#: Training degradations: whole call chains, call chains plus single-step damage, or the v1 preset mix.
DEGRADATIONS = ("chains", "chains-balanced", "presets")


class DataError(ValueError):
    """A dataset folder is missing, empty, or its files do not match up."""


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(blurred, sharp) pairs of a ``Blur2Sharp`` folder; every name must exist on both sides."""
    root = Path(root)
    blur_dir, sharp_dir = root / "blur_Image", root / "sharp_Image"
    for d in (blur_dir, sharp_dir):
        if not d.is_dir():
            raise DataError(
                f"paired dataset {root} needs sub-folders blur_Image/ and sharp_Image/; missing {d}"
            )
    blur = {p.name: p for p in list_images(blur_dir)}
    sharp = {p.name: p for p in list_images(sharp_dir)}
    only_blur, only_sharp = sorted(set(blur) - set(sharp)), sorted(set(sharp) - set(blur))
    if only_blur or only_sharp:
        raise DataError(
            f"paired dataset {root}: names must match in both folders; "
            f"only in blur_Image: {only_blur[:5]}{'...' if len(only_blur) > 5 else ''}, "
            f"only in sharp_Image: {only_sharp[:5]}{'...' if len(only_sharp) > 5 else ''}"
        )
    if not blur:
        raise DataError(f"paired dataset {root} has no images")
    return [(blur[n], sharp[n]) for n in sorted(blur)]


def find_photos(folder: str | Path) -> list[Path]:
    """Image files of a sharp-photo folder (non-empty)."""
    try:
        photos = list_images(folder)
    except FileNotFoundError:
        raise DataError(
            f"photo folder not found: {folder} (run `kd-data photos` to fetch the offline pool)"
        ) from None
    if not photos:
        raise DataError(f"no images (.png/.jpg/...) in {folder}")
    return photos


def load_pair(blur_path: Path, sharp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    blur, sharp = read_image(blur_path), read_image(sharp_path)
    if blur.shape != sharp.shape:
        raise DataError(
            f"pair size mismatch: {blur_path} is {blur.shape[:2]}, {sharp_path} is {sharp.shape[:2]}"
        )
    return blur, sharp


def _augment(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation for every image."""
    k, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
    out = []
    for img in images:
        img = np.rot90(img, k)
        out.append(np.ascontiguousarray(img[:, ::-1] if flip else img))
    return out


def _random_crop(
    images: list[np.ndarray], size: int, rng: np.random.Generator, name: str
) -> list[np.ndarray]:
    h, w = images[0].shape[:2]
    if h < size or w < size:
        raise DataError(
            f"{name} is {w}x{h}, smaller than the training crop {size}; lower crop= or drop the file"
        )
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [img[y : y + size, x : x + size] for img in images]


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def gate_teacher(teacher: np.ndarray, inp: np.ndarray, gt: np.ndarray, window: int) -> np.ndarray:
    """``teacher`` where it is closer to ``gt`` than ``inp`` is, else ``gt``, decided per ``window`` x ``window``
    neighbourhood (mean absolute error over the window and the channels; uint8 HxWx3 in and out).

    A sample-wide gate keeps a teacher output that is better on average but worse in places: MAXIM sharpens the
    noise of a flat, noisy region and the text on it alike, and a student that copies it there learns to
    amplify noise. With the window gate the KD term pulls towards the ground truth wherever the teacher would
    pull away from it.
    """
    truth = gt.astype(np.float32)

    def local_error(image: np.ndarray) -> np.ndarray:
        error = np.abs(image.astype(np.float32) - truth).mean(axis=2)
        return cv2.blur(error, (window, window), borderType=cv2.BORDER_REFLECT_101)

    better = local_error(teacher) < local_error(inp)
    return np.where(better[..., None], teacher, gt)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0,1]."""
    arr = np.ascontiguousarray(img)
    if not arr.flags.writeable:  # e.g. a decoded video frame: torch warns on read-only buffers
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """3xHxW float in [0,1] -> HxWx3 uint8 (rounded)."""
    return t.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


@dataclass
class Sample:
    inp: np.ndarray
    gt: np.ndarray
    preset: str
    noisy: bool = False  # its degradation added sensor noise (training chains only)


MEMO_LIMIT_BYTES = 2 << 30


class TrainBank(Dataset):
    """``size`` deterministic training samples from photos and/or pairs; see the module docstring.

    Without ``fresh`` the bank is the same every epoch, so samples are kept in memory (up to 2 GiB), and
    each epoch adds its own random flip/rotation of (input, ground truth, teacher) on top. With ``fresh``
    every epoch draws new crops and degradations, except the ``teacher_count`` samples (when given): they carry
    cached teacher outputs, so they stay the same (and turn each epoch) while the rest of the bank keeps
    changing. Only the count matters, not the teacher, so a beta=0 twin keeps the same samples fixed.
    """

    def __init__(
        self,
        photos: list[Path],
        pairs: list[tuple[Path, Path]],
        crop: int,
        size: int,
        seed: int = 0,
        fresh: bool = False,
        teacher=None,
        teacher_count: int = 0,
        teacher_gate: bool = False,
        degradations: str = "chains",
        vivid: float = 0.0,
        gate_window: int = 0,
        single_step_share: float = SINGLE_STEP_SHARE,
        skip_noisy: bool = False,
        synthetic_share: float = -1.0,
        soft_truth: float = 0.0,
        blur_only_share: float = 0.0,
        scalers: str = "opencv",
        contrast: float = 0.0,
        oversharpen_share: float = 0.0,
    ) -> None:
        if not photos and not pairs:
            raise DataError("no training data: give train_dir (sharp photos) and/or paired_dir (Blur2Sharp)")
        self.photos, self.pairs = photos, pairs
        # < 0: every photo equally likely; else this share of photo crops comes from the rendered screens and
        # scanned pages (kd_trainer.screens), the rest from the other photos
        self.synthetic_share = synthetic_share
        self._synthetic = [p for p in photos if is_synthetic(p)]
        self._natural = [p for p in photos if not is_synthetic(p)]
        if synthetic_share >= 0 and photos:
            if synthetic_share > 1:
                raise DataError(f"synthetic_share must be -1 (off) or in 0..1, got {synthetic_share}")
            for share, group, what in (
                (synthetic_share, self._synthetic, "rendered screens or scanned pages"),
                (1 - synthetic_share, self._natural, "photos other than rendered screens and scans"),
            ):
                if share > 0 and not group:
                    raise DataError(f"synthetic_share={synthetic_share} needs {what}, and the pool has none")
        self.crop, self.size, self.seed, self.fresh = crop, size, seed, fresh
        self.teacher = teacher  # a TeacherCache or None
        # samples [0, teacher_count) carry a teacher output; 0 means all of them
        self.teacher_count = min(teacher_count, size) if teacher_count > 0 else size
        # samples [0, fixed) never change: all of a fixed bank; in a fresh one, only the given teacher samples
        self.fixed = (self.teacher_count if teacher_count > 0 else 0) if fresh else size
        # gate: use a teacher output only where it is closer to the ground truth than the input is
        self.teacher_gate = teacher_gate
        # > 0: gate N x N windows instead of whole samples (gate_teacher)
        self.gate_window = gate_window
        if degradations not in DEGRADATIONS:
            raise DataError(f"degradations must be one of {', '.join(DEGRADATIONS)}, got {degradations!r}")
        self.degradations = degradations
        shares = {
            "vivid": vivid,
            "soft_truth": soft_truth,
            "contrast": contrast,
            "blur_only_share": blur_only_share,
            "oversharpen_share": oversharpen_share,
        }
        for key, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise DataError(f"{key} must be a share in 0..1, got {share}")
        self.vivid = vivid
        self.soft_truth = soft_truth  # share of crops whose ground truth is softened first (soften)
        self.contrast = contrast  # share of crops whose contrast is stretched first (stretch_contrast)
        self.single_step_share = single_step_share  # with chains-balanced: share of one-step damage
        self.blur_only_share = blur_only_share  # share of noise-free damaged chains made camera blur alone
        self.oversharpen_share = oversharpen_share  # share of damaged chains from an over-sharpening camera
        try:  # the down- and up-scalers training chains draw from (kd_trainer.chain.SCALER_SETS)
            check_scalers(scalers)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        self.scalers = scalers
        self.skip_noisy = skip_noisy  # no teacher output on samples whose chain added sensor noise
        self._teacher_indices: list[int] | None = (
            None  # teacher_indices(), found once (those samples are fixed)
        )
        self.epoch = 0
        self._images: dict[Path, np.ndarray] = {}
        self._memo: dict[int, Sample] | None = (
            None if self.fixed == 0 or self.fixed * crop * crop * 6 > MEMO_LIMIT_BYTES else {}
        )

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def is_fresh(self, index: int) -> bool:
        """Whether sample ``index`` is drawn anew each epoch (else it is the same every epoch)."""
        return index >= self.fixed

    def distinct_samples(self, epochs: int) -> int:
        """How many different samples ``epochs`` epochs of this bank draw."""
        return self.fixed + (self.size - self.fixed) * epochs

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._images:
            try:
                self._images[path] = read_image(path)
            except ImageReadError as exc:
                raise DataError(str(exc)) from None
        return self._images[path]

    def sample(self, index: int) -> Sample:
        """The degraded crop and its ground truth for sample ``index`` (deterministic)."""
        if self.is_fresh(index):
            return self._make_sample(index, self.epoch)
        if self._memo is not None and index in self._memo:
            return self._memo[index]
        sample = self._make_sample(index, 0)
        if self._memo is not None:
            self._memo[index] = sample
        return sample

    def _make_sample(self, index: int, epoch: int) -> Sample:
        rng = np.random.default_rng([self.seed, index, epoch])
        use_pair = bool(self.pairs) and (not self.photos or rng.random() < 0.5)
        if use_pair:
            blur_path, sharp_path = self.pairs[int(rng.integers(len(self.pairs)))]
            blur, sharp = self._image(blur_path), self._image(sharp_path)
            if blur.shape != sharp.shape:
                raise DataError(
                    f"pair size mismatch: {blur_path} {blur.shape[:2]} vs {sharp_path} {sharp.shape[:2]}"
                )
            inp, gt = _augment(_random_crop([blur, sharp], self.crop, rng, str(sharp_path)), rng)
            return Sample(inp, gt, "paired")
        path = self.pick_photo(rng)
        if self.degradations == "presets":
            (gt,) = _augment(_random_crop([self._image(path)], self.crop, rng, str(path)), rng)
            gt = _vary_crop(gt, rng, self.vivid, self.soft_truth, self.contrast)
            preset = sample_train_preset(rng)
            return Sample(degrade(gt, preset, seed=int(rng.integers(2**31))), gt, preset)
        mix = "balanced" if self.degradations == "chains-balanced" else "call"
        return chain_sample(
            self._image(path),
            self.crop,
            rng,
            str(path),
            mix,
            self.vivid,
            self.single_step_share,
            self.soft_truth,
            self.blur_only_share,
            self.scalers,
            self.contrast,
            self.oversharpen_share,
        )

    def pick_photo(self, rng: np.random.Generator) -> Path:
        """The photo a sample is cut from: uniform over all photos, or by ``synthetic_share`` first."""
        if self.synthetic_share < 0:
            return self.photos[int(rng.integers(len(self.photos)))]
        group = self._synthetic if rng.random() < self.synthetic_share else self._natural
        return group[int(rng.integers(len(group)))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.sample(index)
        has_teacher = self.teacher is not None and index < self.teacher_count
        if self.skip_noisy and s.noisy:
            has_teacher = False
        images = [s.inp, s.gt] + ([self.teacher(s.inp)] if has_teacher else [])
        if has_teacher and self.teacher_gate:
            if self.gate_window:  # per window: the ground truth where the teacher is worse
                images[2] = gate_teacher(images[2], s.inp, s.gt, self.gate_window)
            else:  # the whole sample
                has_teacher = _l1(images[2], s.gt) < _l1(s.inp, s.gt)
        if not self.is_fresh(index):  # a new orientation each epoch; the teacher output turns with its input
            images = _augment(images, np.random.default_rng([self.seed, index, self.epoch, 1]))
        item = {"inp": to_tensor(images[0]), "gt": to_tensor(images[1])}
        if self.teacher is not None:  # samples without a teacher output are masked out of the KD term
            item["teacher"] = to_tensor(images[2]) if has_teacher else item["gt"]
            item["has_teacher"] = torch.tensor(float(has_teacher))
        return item

    def teacher_indices(self) -> list[int]:
        """The samples that get a teacher output: the first ``teacher_count``, less the noisy ones with
        ``skip_noisy`` (their KD target is the ground truth, so the teacher never needs to see them)."""
        if self._teacher_indices is None:
            self._teacher_indices = [
                i for i in range(self.teacher_count) if not (self.skip_noisy and self.sample(i).noisy)
            ]
        return list(self._teacher_indices)

    def teacher_inputs(self) -> Iterator[np.ndarray]:
        """Every input the teacher must see (for computing the cache up front)."""
        for i in self.teacher_indices():
            yield self.sample(i).inp


#: Extra pixels around a training crop that go through the degradation chain and are then cut away, so
#: the crop never sees the chain's own borders (codec padding, reflected pans, scaler edges).
CHAIN_MARGIN = 16


#: Luma weights (BT.601) of RGB, for :func:`vivid_colours`.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def vivid_colours(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 RGB) with its chroma scaled by 1.3-2.5 around each pixel's luma, clipped, and its
    channels permuted: saturated colours and nearly empty channels (a green leaf with no blue, a red shirt,
    a blue screen) that the training photos rarely show. Grey pixels stay grey."""
    gain = float(rng.uniform(1.3, 2.5))
    order = rng.permutation(3)
    rgb = image.astype(np.float32)
    luma = rgb @ _LUMA
    vivid = luma[..., None] + gain * (rgb - luma[..., None])
    out = np.clip(np.rint(vivid), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out[..., order])


#: Contrast gains :func:`stretch_contrast` draws from.
CONTRAST_GAIN = (1.5, 3.0)


def stretch_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 RGB) with its contrast stretched by a gain drawn from :data:`CONTRAST_GAIN` around its
    median luma, clipped; half of the draws turn it grey first. Full-range photographic edges, thin dark gaps
    and clipped blacks and whites with the photo's own (often soft) edges: a black-and-white facade photo
    (`plasma-Grey` on val) has them, the training photos hardly do, and only text and screens teach the
    student what a full-contrast edge is."""
    gain = float(rng.uniform(*CONTRAST_GAIN))
    grey = bool(rng.random() < 0.5)
    rgb = image.astype(np.float32)
    luma = rgb @ _LUMA
    if grey:
        rgb = np.repeat(luma[..., None], 3, axis=2)
    pivot = float(np.median(luma))
    out = np.clip(np.rint(pivot + gain * (rgb - pivot)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


#: Gaussian sigmas (pixels) :func:`soften` draws from: soft like a small webcam portrait or out-of-focus shading.
#: The training chain's own camera softness (sigma up to 1.5) may then blur the input further.
SOFT_TRUTH_SIGMA = (0.4, 1.2)


def soften(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` made soft by nature: a Gaussian blur with sigma drawn from :data:`SOFT_TRUTH_SIGMA`."""
    sigma = float(rng.uniform(*SOFT_TRUTH_SIGMA))
    return cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _vary_crop(
    image: np.ndarray, rng: np.random.Generator, vivid: float, soft_truth: float, contrast: float = 0.0
) -> np.ndarray:
    """A ground-truth crop made vivid (:func:`vivid_colours`) for a ``vivid`` share of the calls, stretched
    (:func:`stretch_contrast`) for a ``contrast`` share, then soft by nature (:func:`soften`) for a ``soft_truth``
    share; a share of 0 draws nothing from ``rng``."""
    for share, transform in ((vivid, vivid_colours), (contrast, stretch_contrast), (soft_truth, soften)):
        if share > 0 and rng.random() < share:
            image = transform(image, rng)
    return image


def chain_sample(
    image: np.ndarray,
    crop: int,
    rng: np.random.Generator,
    name: str,
    mix: str = "call",
    vivid: float = 0.0,
    single_step_share: float = SINGLE_STEP_SHARE,
    soft_truth: float = 0.0,
    blur_only_share: float = 0.0,
    scalers: str = "opencv",
    contrast: float = 0.0,
    oversharpen_share: float = 0.0,
) -> Sample:
    """A crop of ``image`` degraded by a freshly drawn training chain (see :mod:`kd_trainer.chain`), made
    vivid first for a ``vivid`` share of the calls and softened (:func:`soften`, before the chain, so the ground
    truth is soft too) for a ``soft_truth`` share; ``single_step_share`` as in
    :func:`kd_trainer.chain.sample_train_chain`; ``blur_only_share`` of the damaged chains without sensor noise
    replaced by camera blur alone (:func:`kd_trainer.chain.with_blur_only`: the other samples are unchanged);
    ``scalers`` the set of down- and up-scalers the chain draws from (:data:`kd_trainer.chain.SCALER_SETS`);
    ``contrast`` the share of crops stretched first (:func:`stretch_contrast`); ``oversharpen_share`` of the
    damaged chains (after ``blur_only_share``) given a camera that over-sharpens
    (:func:`kd_trainer.chain.with_oversharpened`: the other samples are unchanged)."""
    h, w = image.shape[:2]
    margin = max(0, min(CHAIN_MARGIN, (min(h, w) - crop) // 2))
    (region,) = _augment(_random_crop([image], crop + 2 * margin, rng, name), rng)
    region = _vary_crop(region, rng, vivid, soft_truth, contrast)
    chain = with_blur_only(
        sample_train_chain(rng, mix=mix, single_step_share=single_step_share, scalers=scalers),
        rng,
        blur_only_share,
    )
    chain = with_oversharpened(chain, rng, oversharpen_share)
    degraded = apply_chain(region, chain, seed=int(rng.integers(2**31)))
    cut = (slice(margin, margin + crop), slice(margin, margin + crop))
    return Sample(
        np.ascontiguousarray(degraded[cut]),
        np.ascontiguousarray(region[cut]),
        "clean" if chain.clean else "chain",
        noisy=chain.noise != "none",
    )


@dataclass
class ValFrame:
    name: str
    preset: str
    inp: np.ndarray
    gt: np.ndarray


def spread(items: list, count: int) -> list:
    """``count`` items (all when there are fewer) at evenly spaced positions, first and order kept."""
    if count >= len(items):
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def validation_frames(
    folder: str | Path, presets: list[str], max_frames: int, crop: int = 0
) -> list[ValFrame]:
    """Full-size (or centre-cropped) validation frames, each degraded by every preset (seeded by index).

    A preset is a v1 preset (:data:`kd_trainer.degrade.PRESETS`), ``chain`` (a training chain) or
    ``family:NAME``, a test family (:func:`kd_trainer.chain.degrade_family`, seeded by the frame index).

    With more photos than ``max_frames``, the chosen ones are spread evenly over the sorted names, so they
    come from every source rather than the first package alone.
    """
    frames = []
    for idx, path in enumerate(spread(find_photos(folder), max_frames)):
        try:
            gt = read_image(path)
        except ImageReadError as exc:
            raise DataError(str(exc)) from None
        if crop:
            h, w = gt.shape[:2]
            c = min(crop, h, w)
            gt = np.ascontiguousarray(gt[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c])
        for preset in presets:
            if preset == "chain":  # training-distribution chains (seeded per frame): for checkpoint selection
                rng = np.random.default_rng([1000, idx])
                deg = apply_chain(gt, sample_train_chain(rng), seed=1000 + idx)
            elif preset.startswith(FAMILY_PRESET):
                deg, _chain = degrade_family(gt, preset.removeprefix(FAMILY_PRESET), idx)
            else:
                deg = degrade(gt, preset, seed=1000 + idx)
            frames.append(ValFrame(path.name, preset, deg, gt))
    return frames
