"""The lesion-centred stages of `reportgen train`: fit the detector, then read its candidates.

Order matters for what the decoder learns: a report's findings are re-listed in the
order of the candidates they were found in (strongest first, as at inference), so the
n-th finding the decoder writes is the n-th zoomed region it was shown; findings the
detector missed follow, to be written from the whole-study tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reportgen.errors import InputError
from reportgen.model.candidates import find_candidates, match_to_labels
from reportgen.model.modeling import ReportModel
from reportgen.report.schema import Report


@dataclass
class CachedRegions:
    """The zoomed reading of every training study up to the trainable blocks (frozen stem)."""

    stem: list[torch.Tensor]  # per study (k, T, D) float16, k <= max_candidates
    stem_valid: list[torch.Tensor]  # per study (k, T) bool
    geometry: torch.Tensor  # (N, K, G)
    valid: torch.Tensor  # (N, K) bool
    matched: list[list[int]]  # per study: finding number each candidate overlaps (0: none)


def pooled_arrays(model: ReportModel, images) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every study on the encoder grid: images (float16), present flags, lesion masks."""
    coarse, present, lesion = [], [], []
    f = model.cfg.pool_factor
    for i in range(len(images)):
        item = images[i]
        coarse.append(model.pooled(item["image"][None])[0].half())
        present.append(item["present"])
        mask = item["lesion"][None, None]
        lesion.append(torch.nn.functional.max_pool3d(mask, f)[0, 0] if f > 1 else mask[0, 0])
    return torch.stack(coarse), torch.stack(present), torch.stack(lesion)


@torch.no_grad()
def cache_regions(
    model: ReportModel, images, coarse: torch.Tensor, present: torch.Tensor, progress: bool = True
) -> CachedRegions:
    """Detect, crop at input resolution and run the frozen stem, once per study."""
    from tqdm.auto import tqdm

    roi, enc = model.cfg.roi, model.encoder_cfg
    stems, stem_valids, geometry, valid, matched = [], [], [], [], []
    for i in tqdm(range(len(images)), desc="candidates", unit="study", disable=not progress):
        prob = model.detect(coarse[i : i + 1].float(), present[i : i + 1])[0].numpy()
        found, components = find_candidates(
            prob, enc.grid_spacing, roi["threshold"], roi["max_candidates"]
        )
        item = images[i]
        with np.load(images.files[i]) as data:
            labels = data["mask"]
        f = model.cfg.pool_factor
        if f > 1:  # a label anywhere in a coarse voxel's block counts for it
            x, y, z = (n // f for n in labels.shape)
            labels = labels.reshape(x, f, y, f, z, f).max(axis=(1, 3, 5))
        coarse_labels = labels
        matched.append(match_to_labels(found, components, coarse_labels))
        regions = model.regions_at(item["image"][None], [found])
        stem, stem_valid = model.roi_stem(regions.crops, item["present"][None], regions.valid)
        stems.append(stem.half())
        stem_valids.append(stem_valid)
        geometry.append(regions.geometry[0])
        valid.append(regions.valid[0])
    return CachedRegions(stems, stem_valids, torch.stack(geometry), torch.stack(valid), matched)


def findings_in_candidate_order(report: Report, matched: list[int]) -> Report:
    """The report with findings re-listed to follow the candidates (see module docstring)."""
    order: list[int] = []
    for label in matched:
        if 0 < label <= len(report.findings) and label - 1 not in order:
            order.append(label - 1)
    order += [i for i in range(len(report.findings)) if i not in order]
    if order == list(range(len(report.findings))):
        return report
    return report.model_copy(update={"findings": [report.findings[i] for i in order]})


def batch_regions(
    cached: CachedRegions, idx: list[int], max_candidates: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stem features of a batch, flattened over valid candidates as `ReportModel.roi_memory` wants."""
    stems = [cached.stem[i].float() for i in idx if len(cached.stem[i])]
    valids = [cached.stem_valid[i] for i in idx if len(cached.stem_valid[i])]
    geometry, valid = cached.geometry[idx], cached.valid[idx]
    if not stems:
        width = cached.stem[idx[0]].shape[-2:]
        return (
            torch.zeros((0, *width)),
            torch.zeros((0, width[0]), dtype=torch.bool),
            geometry,
            valid,
        )
    return torch.cat(stems), torch.cat(valids), geometry, valid


def detection_summary(regions: CachedRegions, findings_per_study: list[int]) -> str:
    """One line on how well the detector's candidates cover the reports' findings."""
    findings = sum(findings_per_study)
    covered = sum(len({m for m in matched if m > 0}) for matched in regions.matched)
    spurious = sum(sum(1 for m in matched if m == 0) for matched in regions.matched)
    return (
        f"candidates: {covered} of {findings} findings found, {spurious} candidates "
        f"without a finding, in {len(regions.matched)} studies"
    )


def load_detector_from(model: ReportModel, folder: Path) -> None:
    """Copy a trained detector from another report model directory (same input grid)."""
    from safetensors.torch import load_file

    from pretrain_mae.checkpoint import WEIGHTS

    if not (folder / WEIGHTS).is_file():
        raise InputError(folder, f"not a report model directory (no {WEIGHTS})")
    state = load_file(str(folder / WEIGHTS))
    own = {k.removeprefix("detector."): v for k, v in state.items() if k.startswith("detector.")}
    if not own:
        raise InputError(folder, "holds no lesion detector")
    try:
        model.detector.load_state_dict(own)
    except RuntimeError as exc:
        raise InputError(folder, "its detector does not fit this model's config") from exc
