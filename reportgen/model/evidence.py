"""Measured evidence for the decoder: what `reportgen.measure` finds, as model inputs.

Find and measure, then write: each segmented lesion candidate is measured in world
millimetres (size, side, clock face, depth, T2/ADC ratios, time-intensity curve) and the
whole study gets its tissue measures (FGT amount, BPE per breast). The decoder reads
them as memory tokens next to the learned crop features:

- a feature vector per candidate and one for the study, each value flagged by whether
  the sequence it comes from was acquired (a missing sequence is a zero with its flag
  down, never a guess);
- pointer tokens: the measured side, clock face and size, embedded with the decoder's
  own (tied) token embeddings, so writing "right, 7 o'clock, 26 mm" is copying a value
  it can see rather than guessing it (and, with a readout, the categories read from the
  features: `reportgen.model.readout`).

Candidate features include the lesion's form and enhancement pattern
(`reportgen.measure.morphology`): shape, margin and internal enhancement are read from
them, where the signal ratios and the curve alone could not tell them apart.

The measurements run on the prepared study (RAS-aligned, isotropic input grid); they
are all relative to landmarks found in the same image, so the grid's origin never
matters and a canonical affine (spacing on the diagonal) is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reportgen.measure import measure_lesion
from reportgen.measure.breast import (
    BreastLandmarks,
    body_mask,
    breast_position,
    depth_third,
    find_landmarks,
)
from reportgen.measure.morphology import lesion_form, lesion_pattern
from reportgen.measure.signal import LesionSignal, lesion_signal
from reportgen.measure.tissue import BreastTissue, breast_tissue

EVIDENCE_KINDS = ("breast",)
DCE = ("DCE_0", "DCE_1", "DCE_2", "DCE_3")
# Candidate features: (name, sequences it needs: all must be present, else 0 and flag 0).
CANDIDATE_LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("diameter_cm", ()),
    ("axial_diameter_cm", ()),
    ("log_volume", ()),
    ("right_side", ()),
    ("clock_sin", ()),
    ("clock_cos", ()),
    ("nipple_distance_dm", ()),
    ("depth_fraction", ()),
    ("segmentation_score", ()),
    ("has_t2", ("T2W",)),
    ("t2_over_fgt", ("T2W",)),
    ("t2_over_fat", ("T2W",)),
    ("has_adc", ("ADC",)),
    ("adc_over_fgt", ("ADC",)),
    ("has_dwi", ("DWI",)),
    ("dwi_over_fgt", ("DWI",)),
    ("has_dce", DCE),
    ("enhancement_1", DCE),
    ("enhancement_2", DCE),
    ("enhancement_3", DCE),
    ("hot_spot_1", DCE),
    ("hot_spot_2", DCE),
    ("hot_spot_3", DCE),
    ("delayed_change", DCE),
    ("elongation", ()),
    ("flatness", ()),
    ("solidity", ()),
    ("sphericity", ()),
    ("peri_enhancing", DCE),
    ("enhancement_cv", DCE),
    ("rim_over_core", DCE),
    ("weak_fraction", DCE),
)
TISSUE_LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("has_t2", ("T2W",)),
    ("fgt_fraction_right", ("T2W",)),
    ("fgt_fraction_left", ("T2W",)),
    ("has_dce", ("T2W", *DCE)),
    ("bpe_early_right", ("T2W", *DCE)),
    ("bpe_early_left", ("T2W", *DCE)),
    ("bpe_late_right", ("T2W", *DCE)),
    ("bpe_late_left", ("T2W", *DCE)),
    ("bpe_late_asymmetry", ("T2W", *DCE)),
)
CANDIDATE_FEATURES = len(CANDIDATE_LAYOUT)
TISSUE_FEATURES = len(TISSUE_LAYOUT)
POINTER_FIELDS = ("laterality", "clock", "size_mm")
# Where the breast's landmarks are looked for: the first acquired of these (fat bright).
ANCHORS = ("T2W", "DCE_0")


@dataclass
class StudyReading:
    """One study's landmarks and tissue measures on its prepared grid."""

    images: dict[str, np.ndarray]  # acquired sequences by name
    affine: np.ndarray
    marks: BreastLandmarks | None
    tissue: BreastTissue | None
    features: np.ndarray = field(default_factory=lambda: np.zeros(TISSUE_FEATURES, np.float32))


@dataclass
class CandidateReading:
    """A segmented candidate's measurements: features and the values it points to."""

    features: np.ndarray  # (CANDIDATE_FEATURES,)
    pointers: dict[str, str]  # template field -> measured value (text), may be empty
    centre_voxel: np.ndarray  # (3,) centroid on the input grid
    # The diagonal of the outline's box (mm): no lesion inside the box is longer, so no
    # size read from the outline may be either.
    longest_possible_mm: float = float("inf")
    # field -> probability of the value a crop reader read (`generate.read_candidates`)
    read: dict[str, float] = field(default_factory=dict)
    # where the lesion was found at the acquisition's own resolution (world mm; the centre
    # of its crop's outline, `native_candidates`): the crop reader reads it there, and at
    # this outline's centre on the model grid where that is another place
    # (`generate._read_places`)
    found_at_mm: np.ndarray | None = None
    # probability that the lesion is malignant, read at the acquisition's own resolution
    # (the crop reader's malignancy head; None: not read there)
    malignancy: float | None = None
    # the distance from the nipple of its side (mm), where the nipple was found
    nipple_distance_mm: float | None = None
    # the box (world mm: low corner, high corner) of the lesion's outline at the
    # acquisition's own resolution (the crop reader's), where it was read there whole
    native_box_mm: tuple[np.ndarray, np.ndarray] | None = None
    # sequence family -> how much the crop reader's read values rest on it: the mean drop
    # in their probability when the family is hidden from the reader (`read_candidates`)
    contributions: dict[str, float] = field(default_factory=dict)


def canonical_affine(spacing: tuple[float, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    return affine


def read_study(
    image: np.ndarray, present: np.ndarray, sequences: tuple[str, ...], spacing: tuple[float, ...]
) -> StudyReading:
    """Landmarks and tissue measures of a prepared study (S, X, Y, Z)."""
    images = {name: image[i] for i, name in enumerate(sequences) if bool(present[i])}
    affine = canonical_affine(spacing)
    anchor = next((images[a] for a in ANCHORS if a in images), None)
    marks = tissue = None
    values = np.zeros(TISSUE_FEATURES, np.float32)
    if anchor is None:
        return StudyReading(images, affine, None, None, values)
    try:
        body = body_mask(anchor)  # found once: landmarks and tissue share it
        marks = find_landmarks(anchor, affine, body)
    except ValueError:  # no body in the image: nothing to measure against
        return StudyReading(images, affine, None, None, values)
    if "T2W" in images:
        dce = [images[k] for k in DCE] if all(k in images for k in DCE) else None
        try:
            t2_body = body if anchor is images["T2W"] else None
            tissue = breast_tissue(images["T2W"], affine, marks, dce, t2_body)
        except ValueError:
            tissue = None
    if tissue is not None:
        fraction = tissue.fgt_fraction
        values[0] = 1.0
        values[1] = fraction.get("right", 0.0)
        values[2] = fraction.get("left", 0.0)
        early, late = tissue.bpe_early, tissue.bpe_late
        if all(late.get(s) is not None for s in ("right", "left")):
            values[3] = 1.0
            values[4], values[5] = early["right"], early["left"]
            values[6], values[7] = late["right"], late["left"]
            values[8] = np.log(max(late["right"], 1e-3) / max(late["left"], 1e-3))
    return StudyReading(images, affine, marks, tissue, values)


def read_candidate(
    mask: np.ndarray, score: float, study: StudyReading, size_grid: list[str] | None = None
) -> CandidateReading:
    """Measure one candidate's mask (input grid) against its study's reading; the size
    it points to is the nearest value of `size_grid` (the template's number grid)."""
    geometry = measure_lesion(mask, study.affine)
    values = np.zeros(CANDIDATE_FEATURES, np.float32)
    values[0] = geometry.centre_diameter_mm / 10.0
    values[1] = geometry.axial_longest_diameter_mm / 10.0
    values[2] = np.log1p(geometry.volume_ml * 1000.0) / 10.0
    values[8] = score
    pointers: dict[str, str] = {}
    position = None
    if size_grid:
        diameter = geometry.centre_diameter_mm
        pointers["size_mm"] = min(size_grid, key=lambda v: abs(float(v) - diameter))
    if study.marks is not None:
        try:
            position = breast_position(geometry.centre_mm, study.marks)
        except ValueError:  # no nipple on that side was found
            position = None
        if position is not None:
            angle = np.deg2rad(position.clock_hour * 30.0)
            values[3] = 1.0 if position.laterality == "right" else -1.0
            values[4], values[5] = np.sin(angle), np.cos(angle)
            values[6] = position.nipple_distance_mm / 100.0
            values[7] = position.depth_fraction
            pointers["laterality"] = position.laterality
            pointers["clock"] = f"clock_{position.clock_hour}"
            pointers["depth"] = depth_third(position.depth_fraction)
    tissue = study.tissue
    signal = lesion_signal(
        mask,
        study.images,
        tissue.fgt_mask if tissue is not None else None,
        tissue.fat_mask if tissue is not None else None,
    )
    _put_signal(values, signal, study.images)
    _put_form(values, mask, study.images)
    centre = np.argwhere(mask).mean(0)
    diagonal = float(np.linalg.norm(geometry.extent_mm))
    reading = CandidateReading(values, pointers, centre, diagonal)
    if position is not None:
        reading.nipple_distance_mm = float(position.nipple_distance_mm)
    return reading


def _put_signal(values: np.ndarray, signal: LesionSignal, images: dict) -> None:
    if signal.t2_over_fgt is not None and signal.t2_over_fat is not None:
        values[9:12] = (1.0, signal.t2_over_fgt, signal.t2_over_fat)
    if signal.adc_over_fgt is not None:
        values[12:14] = (1.0, signal.adc_over_fgt)
    if signal.dwi_over_fgt is not None:
        values[14:16] = (1.0, signal.dwi_over_fgt)
    if all(k in images for k in DCE) and signal.enhancement is not None:
        values[16] = 1.0
        values[17:20] = signal.enhancement
        values[20:23] = signal.hot_spot_enhancement
        values[23] = signal.delayed_change if signal.delayed_change is not None else 0.0


def _put_form(values: np.ndarray, mask: np.ndarray, images: dict) -> None:
    """Form and enhancement pattern (reportgen.measure.morphology), read in a box around
    the lesion (the shell reaches a few voxels outside it)."""
    where = np.argwhere(mask)
    low = np.maximum(where.min(0) - 4, 0)
    high = where.max(0) + 5
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    form = lesion_form(mask[box])
    values[24:28] = (form.elongation, form.flatness, form.solidity, form.sphericity)
    if all(k in images for k in DCE):
        pattern = lesion_pattern(mask[box], [images[k][box] for k in DCE])
        if pattern is not None:
            values[28:32] = (
                pattern.peri_enhancing,
                pattern.enhancement_cv,
                np.log(max(pattern.rim_over_core, 1e-3)),
                pattern.weak_fraction,
            )


def needs_matrix(
    layout: tuple[tuple[str, tuple[str, ...]], ...], sequences: tuple[str, ...]
) -> np.ndarray:
    """(features, sequences) bool: which sequences each feature is measured from."""
    needs = np.zeros((len(layout), len(sequences)), dtype=bool)
    for i, (_, names) in enumerate(layout):
        for name in names:
            if name in sequences:
                needs[i, sequences.index(name)] = True
    return needs


def visible(needs: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """(B, features) bool: the features whose sequences are all among `kept` (B, S)."""
    return ~(needs[None] & ~kept[:, None, :]).any(-1)
