"""Lesion candidates: where the report model looks closely.

The lesion detector (`reportgen.model.detector`) marks likely lesions on the coarse
(encoder) grid; each connected region above threshold becomes a candidate with a
centre, an extent and a score. With measured evidence, a segmenter then outlines each
one at input resolution (`outline`), which is what gets measured. The report model
reads a fine-resolution crop around each candidate (its own ViT tokens) next to the
whole-study tokens, so sizes, margins and kinetics are judged at the acquisition's
resolution rather than from 64 mm patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from reportgen.model.evidence import CandidateReading

GEOMETRY_FEATURES = 8


@dataclass
class Candidate:
    """One suspected lesion on the coarse grid (voxel coordinates)."""

    centre: np.ndarray  # (3,) probability-weighted centre
    low: np.ndarray  # (3,) first voxel of its bounding box
    high: np.ndarray  # (3,) last voxel
    volume_mm3: float
    peak: float
    component: int  # label in the component map it came from
    fine_centre: np.ndarray | None = None  # (3,) on the input grid, once outlined
    reading: CandidateReading | None = None  # its measurements, once outlined
    outline: np.ndarray | None = None  # (N, 3) input-grid voxels of its outline


def find_candidates(
    prob: np.ndarray, spacing_mm: tuple[float, ...], threshold: float, max_candidates: int
) -> tuple[list[Candidate], np.ndarray]:
    """Connected regions of `prob` above `threshold`, strongest (summed probability) first."""
    components, n = ndimage.label(prob >= threshold)
    if n == 0:
        return [], components
    ids = np.arange(1, n + 1)
    mass = ndimage.sum_labels(prob, components, ids)
    voxel_mm3 = float(np.prod(spacing_mm))
    found = []
    for k in np.argsort(-mass)[:max_candidates]:
        region = components == ids[k]
        where = np.argwhere(region)
        weights = prob[region]
        found.append(
            Candidate(
                centre=(where * weights[:, None]).sum(0) / weights.sum(),
                low=where.min(0),
                high=where.max(0),
                volume_mm3=float(region.sum() * voxel_mm3),
                peak=float(weights.max()),
                component=int(ids[k]),
            )
        )
    return found, components


def geometry_features(
    cand: Candidate, grid_shape: tuple[int, ...], spacing_mm: tuple[float, ...]
) -> np.ndarray:
    """What the decoder knows of a candidate besides its pixels: where it is (relative to
    the grid centre, which sits on the body) and how big the detector found it."""
    shape = np.asarray(grid_shape, dtype=np.float64)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    centre = (cand.centre - (shape - 1) / 2) / (shape / 2)
    extent = (cand.high - cand.low + 1) * spacing / 50.0
    return np.array(
        [*centre, *extent, np.log1p(cand.volume_mm3) / 10.0, cand.peak], dtype=np.float32
    )


def crop_start(centre: np.ndarray, shape: tuple[int, ...]) -> list[int]:
    """First voxel (may be outside the volume) of a `shape` window centred on `centre`."""
    return [round(c - s / 2) for c, s in zip(np.asarray(centre).tolist(), shape, strict=True)]


def crop_around(image: torch.Tensor, centre: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A (S, *shape) window of `image` (S, X, Y, Z) centred on `centre` (voxels of `image`),
    zero outside the volume. Slicing keeps it differentiable for saliency maps."""
    start = crop_start(centre, shape)
    lo = [max(0, a) for a in start]
    hi = [min(n, a + s) for a, s, n in zip(start, shape, image.shape[1:], strict=True)]
    window = image[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    pad = []
    for a, s, low, high in reversed(list(zip(start, shape, lo, hi, strict=True))):
        before = low - a
        pad += [before, s - before - (high - low)]
    return F.pad(window, pad)


def match_to_labels(
    candidates: list[Candidate], components: np.ndarray, mask: np.ndarray
) -> list[int]:
    """For training: the lesion label (finding number) each candidate overlaps most, 0 if none."""
    matched = []
    for cand in candidates:
        labels = mask[components == cand.component]
        labels = labels[labels > 0]
        matched.append(int(np.bincount(labels).argmax()) if labels.size else 0)
    return matched


def outline(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, float] | None:
    """The lesion a segmenter outlines in a window centred on a candidate: the component
    above `threshold` that holds the centre, else the one nearest it. Returns its voxels
    (N, 3, window coordinates) and mean probability, or None if nothing is outlined."""
    components, n = ndimage.label(prob >= threshold)
    if n == 0:
        return None
    centre = tuple(s // 2 for s in prob.shape)
    label = int(components[centre])
    if label == 0:
        ids = np.arange(1, n + 1)
        centroids = np.array(ndimage.center_of_mass(prob, components, ids))
        label = int(ids[np.argmin(np.linalg.norm(centroids - np.array(centre), axis=1))])
    voxels = np.argwhere(components == label)
    return voxels, float(prob[components == label].mean())
