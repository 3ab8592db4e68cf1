"""From a Study to the model's input: one RAS grid, per-sequence intensity scaling.

Built from TorchIO transforms (TorchIO imports in about 2.5 s here against about 8 s for
MONAI, which loads every submodule eagerly; this module sits on `reportgen generate`'s
cold-start path). Every sequence, and the lesion mask, is resampled once, straight
from its own affine into a RAS-aligned target grid of fixed physical spacing centred on
the body. That single interpolation reorients (LPS, permuted axes, oblique) and
regrids (different shapes and fields of view); downsampling is anti-aliased. Fixed
spacing keeps millimetres meaningful to the model; nothing is cropped blindly, since
the grid is placed on the foreground of the reference sequence.

Intensity scaling respects what each sequence means:
- T2W, DWI: divided by their own 99th percentile of foreground;
- ADC: a fixed physical range (0..3000 x 1e-6 mm^2/s -> 0..1), so restricted diffusion
  stays comparable between studies;
- DCE: every phase divided by the *pre-contrast* phase's percentile, so the kinetic
  curve (wash-in, plateau, washout) survives normalisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio

from reportgen.io.sequences import PROTOCOL
from reportgen.io.study import Study

MASK_KEY = "lesion_mask"
DCE_KEYS = tuple(name for name in PROTOCOL if name.startswith("DCE_"))


@dataclass(frozen=True)
class GridSpec:
    """The model's input grid: voxels per axis and millimetres per voxel (RAS)."""

    shape: tuple[int, int, int] = (64, 64, 32)
    spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)

    @property
    def field_of_view_mm(self) -> tuple[float, ...]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing, strict=True))


@dataclass
class PreparedStudy:
    """Model-ready arrays: a channel per protocol sequence (zeros where missing)."""

    study_id: str
    image: np.ndarray  # (len(PROTOCOL), X, Y, Z) float32
    present: np.ndarray  # (len(PROTOCOL),) bool
    mask: np.ndarray | None  # (X, Y, Z) int16 lesion labels, if the study had a mask
    affine: np.ndarray  # grid voxel -> world (RAS, mm)
    grid: GridSpec

    @property
    def sequences(self) -> list[str]:
        return [name for name, ok in zip(PROTOCOL, self.present, strict=True) if ok]

    @property
    def missing(self) -> list[str]:
        return [name for name, ok in zip(PROTOCOL, self.present, strict=True) if not ok]


class ScaleByPercentile(tio.IntensityTransform):
    """Divide images by a percentile of a reference image's non-zero voxels.

    With `reference=None` each image is its own reference; with `reference="DCE_0"`
    all included images share the pre-contrast scale, preserving enhancement.
    """

    def __init__(self, percentile: float = 99.0, reference: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.percentile = percentile
        self.reference = reference
        self.args_names = ["percentile", "reference"]

    def _scale(self, tensor: torch.Tensor) -> float:
        values = tensor[tensor > 0]
        if values.numel() == 0:
            return 1.0
        if values.numel() > 200_000:  # a strided sample is plenty for a percentile
            values = values[:: values.numel() // 200_000 + 1]
        scale = float(torch.quantile(values.float(), self.percentile / 100.0))
        return scale if scale > 0 else 1.0

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shared = None
        if self.reference is not None and self.reference in subject:
            shared = self._scale(subject[self.reference].data)
        for image in self.get_images(subject):
            image.set_data(
                image.data.float() / (shared if shared is not None else self._scale(image.data))
            )
        return subject


def _foreground_centre(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates of the centre of the bounding box of non-background voxels."""
    positive = image[image > 0]
    threshold = 0.1 * np.percentile(positive, 99) if positive.size else 0.0
    idx = np.argwhere(image > threshold)
    centre_vox = (
        (np.asarray(image.shape) - 1) / 2.0
        if idx.size == 0
        else (idx.min(axis=0) + idx.max(axis=0)) / 2.0
    )
    return (affine @ np.append(centre_vox, 1.0))[:3]


def target_affine(grid: GridSpec, centre_world: np.ndarray) -> np.ndarray:
    """A RAS-aligned grid of `grid.spacing` whose centre is at `centre_world`."""
    spacing = np.asarray(grid.spacing, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = centre_world - spacing * (np.asarray(grid.shape) - 1) / 2.0
    return affine


def preprocessing_transform(grid: GridSpec, affine: np.ndarray) -> tio.Compose:
    """The whole chain, in TorchIO's composable form."""
    return tio.Compose(
        [
            tio.Resample(
                target=(grid.shape, affine),
                image_interpolation="linear",
                label_interpolation="nearest",
                antialias=True,
            ),
            ScaleByPercentile(include=["T2W"]),
            ScaleByPercentile(include=["DWI"]),
            tio.Clamp(out_min=0.0, out_max=3000.0, include=["ADC"]),
            tio.RescaleIntensity(out_min_max=(0.0, 1.0), in_min_max=(0.0, 3000.0), include=["ADC"]),
            ScaleByPercentile(reference="DCE_0", include=list(DCE_KEYS)),
        ]
    )


def _subject(study: Study, names: list[str], with_mask: bool) -> tio.Subject:
    """The named series (and the lesion mask) as TorchIO images on their own affines."""
    images: dict[str, tio.Image] = {
        name: tio.ScalarImage(
            tensor=torch.from_numpy(study.sequences[name].data)[None],
            affine=study.sequences[name].affine,
        )
        for name in names
    }
    if with_mask and study.lesion_mask is not None:
        images[MASK_KEY] = tio.LabelMap(
            tensor=torch.from_numpy(study.lesion_mask.data)[None], affine=study.lesion_mask.affine
        )
    return tio.Subject(images)


def _channels(
    subject: tio.Subject, names: list[str], count: int, channel_of, grid: GridSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The prepared series as model channels (zeros where absent), which are present, and
    the lesion mask's labels (None without one)."""
    image = np.zeros((count, *grid.shape), dtype=np.float32)
    present = np.zeros(count, dtype=bool)
    for name in names:
        channel = channel_of(name)
        image[channel] = torch.nan_to_num(subject[name].data[0].float()).numpy()
        present[channel] = True
    mask = None
    if MASK_KEY in subject:
        mask = np.rint(subject[MASK_KEY].data[0].numpy()).astype(np.int16)
    return image, present, mask


def prepare_study(
    study: Study,
    grid: GridSpec | None = None,
    sequences: Iterable[str] | None = None,
    with_mask: bool = True,
) -> PreparedStudy:
    """Resample the sequences (and the mask) onto one grid and scale intensities.

    `sequences` limits the work to what a model reads (the pre-contrast phase comes along
    with any DCE phase: it sets their scale); the others stay absent. Each sequence is
    prepared on its own, so a channel is the same whichever others are prepared with it.
    The body-region reader reads T2W only: 1 series resampled instead of 7. `with_mask=False`
    skips the lesion mask, which drafting never reads."""
    grid = grid or GridSpec()
    names = [n for n in study.sequences if n in PROTOCOL]
    reference = study.sequences["T2W"] if "T2W" in study.sequences else study.sequences[names[0]]
    if sequences is not None:
        wanted = set(sequences)
        if wanted & set(DCE_KEYS):
            wanted.add(DCE_KEYS[0])
        names = [n for n in names if n in wanted]
    affine = target_affine(grid, _foreground_centre(reference.data, reference.affine))
    subject = preprocessing_transform(grid, affine)(_subject(study, names, with_mask))
    image, present, mask = _channels(subject, names, len(PROTOCOL), PROTOCOL.index, grid)
    return PreparedStudy(study.study_id, image, present, mask, affine, grid)


# A lesion read at the acquisition's own resolution: a 43 mm cube of the clinical breast
# DCE's in-plane voxel size (0.9 mm), never through the 2 mm model grid. Isotropic, so
# an outline's radii and form are the same in every direction (the 2 mm slices are
# interpolated, not invented: what is between them stays as smooth as acquired).
LESION_CROP = GridSpec((48, 48, 48), (0.9, 0.9, 0.9))


FOOTPRINT_MARGIN_MM = 8.0  # past the crop: interpolation and anti-aliasing reach
MIN_VOXELS = 4


def footprint(
    data: np.ndarray, affine: np.ndarray, grid: GridSpec, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a series (`data` on `affine`) a crop of `grid` at `target` is
    resampled from, with FOOTPRINT_MARGIN_MM to spare, and its affine. Resampling a 43 mm
    crop from the whole series smoothed the whole series first (0.8 s a crop); from its
    footprint the same voxels come out (the margin is many times the smoothing's reach)."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in grid.shape], indexing="ij"))
    corners = corners.reshape(3, -1).T @ target[:3, :3].T + target[:3, 3]
    inverse = np.linalg.inv(np.asarray(affine, np.float64))
    voxels = corners @ inverse[:3, :3].T + inverse[:3, 3]
    spacing = np.sqrt((np.asarray(affine, np.float64)[:3, :3] ** 2).sum(0))
    margin = np.ceil(FOOTPRINT_MARGIN_MM / spacing)
    shape = np.asarray(data.shape[:3])
    low = np.clip(np.floor(voxels.min(0) - margin), 0, shape).astype(int)
    high = np.clip(np.ceil(voxels.max(0) + margin) + 1, 0, shape).astype(int)
    # ITK's smoothing needs 4 voxels a dimension (a crop past the series' edge gets zeros)
    short = high - low < MIN_VOXELS
    low[short] = np.clip(np.minimum(low, shape - MIN_VOXELS), 0, None)[short]
    high[short] = np.minimum(low + MIN_VOXELS, shape)[short]
    cut = np.array(affine, np.float64, copy=True)
    cut[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
    return data[low[0] : high[0], low[1] : high[1], low[2] : high[2]], cut


def lesion_crop(
    study: Study, centre_world: np.ndarray, grid: GridSpec = LESION_CROP
) -> tuple[np.ndarray, np.ndarray]:
    """(image (len(PROTOCOL), *grid.shape), present (len(PROTOCOL),)) around
    `centre_world` (RAS mm): each series resampled once, straight from its own grid, onto
    a RAS grid of `grid.spacing`, and scaled as `prepare_study` scales a study, within
    the crop (so a crop reads the same whatever field of view it was cut from)."""
    affine = target_affine(grid, np.asarray(centre_world, float))
    names = [n for n in study.sequences if n in PROTOCOL]
    subject = tio.Subject(
        {
            n: tio.ScalarImage(
                tensor=torch.from_numpy(np.ascontiguousarray(data))[None], affine=cut_affine
            )
            for n in names
            for data, cut_affine in [
                footprint(study.sequences[n].data, study.sequences[n].affine, grid, affine)
            ]
        }
    )
    ready = preprocessing_transform(grid, affine)(subject)
    image = np.zeros((len(PROTOCOL), *grid.shape), np.float32)
    present = np.zeros(len(PROTOCOL), bool)
    for n in names:
        image[PROTOCOL.index(n)] = torch.nan_to_num(ready[n].data[0].float()).numpy()
        present[PROTOCOL.index(n)] = True
    return image, present


# --- CT -------------------------------------------------------------------------------
# Channels of a CT reader: a CT of unknown phase ("CT") is read in the non-contrast
# channel, as what it must be taken for. Every channel is scaled by one abdominal window
# (level 60 HU, width 500): Hounsfield units are physical, so no per-study scaling.
CT_CHANNELS = ("CT_NC", "CT_PANC", "CT_PV")
CT_WINDOW_HU = (-190.0, 310.0)
CT_GRID = GridSpec((160, 128, 80), (2.0, 2.0, 2.0))  # 320 x 256 x 160 mm of abdomen


@dataclass
class PreparedCT:
    """A CT study on a reader's grid: a channel per `CT_CHANNELS` phase (zeros where the
    study lacks it), scaled to [0, 1] by `CT_WINDOW_HU`."""

    study_id: str
    image: np.ndarray  # (len(CT_CHANNELS), X, Y, Z) float32
    present: np.ndarray  # (len(CT_CHANNELS),) bool
    mask: np.ndarray | None
    affine: np.ndarray
    grid: GridSpec


def ct_channel(name: str) -> int:
    """The channel a CT phase is read in."""
    return CT_CHANNELS.index("CT_NC" if name == "CT" else name)


def prepare_ct(
    study: Study,
    grid: GridSpec = CT_GRID,
    with_mask: bool = True,
    centre_mm: np.ndarray | None = None,
) -> PreparedCT:
    """Window each phase, then resample it once onto a RAS grid centred on `centre_mm`
    (world RAS), else on the body (air is below -500 HU); the mask with nearest-neighbour
    labels. Windowing first makes what lies beyond the series' field of view read as the
    window's floor, as air does: the resampler fills it with 0, which in HU is water, and
    a partial-coverage CT looked like soft tissue past its edges."""
    names = [n for n in study.sequences if n in (*CT_CHANNELS, "CT")]
    if not names:
        raise ValueError(f"{study.study_id}: no CT phase to prepare")
    if centre_mm is None:
        reference = study.sequences[names[0]]
        body = np.where(reference.data > -500.0, 1.0, 0.0)
        centre_mm = _foreground_centre(body, reference.affine)
    affine = target_affine(grid, np.asarray(centre_mm, dtype=np.float64))
    transform = tio.Compose(
        [
            tio.Clamp(out_min=CT_WINDOW_HU[0], out_max=CT_WINDOW_HU[1], exclude=[MASK_KEY]),
            tio.RescaleIntensity(
                out_min_max=(0.0, 1.0), in_min_max=CT_WINDOW_HU, exclude=[MASK_KEY]
            ),
            tio.Resample(
                target=(grid.shape, affine),
                image_interpolation="linear",
                label_interpolation="nearest",
                antialias=True,
            ),
        ]
    )
    subject = transform(_subject(study, names, with_mask))
    image, present, mask = _channels(subject, names, len(CT_CHANNELS), ct_channel, grid)
    return PreparedCT(study.study_id, image, present, mask, affine, grid)
