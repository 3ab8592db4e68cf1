"""The lesion-centred stages of `reportgen train`: fit the detector (and, with measured
evidence, the segmenter), then read and measure the candidates of every study once.

Order matters for what the decoder learns: a report's findings are re-listed in the
order of the candidates they were found in (strongest first, as at inference), so the
n-th finding the decoder writes is the n-th zoomed region it was shown; findings the
detector missed follow, to be written from the whole-study tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reportgen.errors import InputError
from reportgen.model.candidates import crop_around, find_candidates, match_to_labels
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
    measured: torch.Tensor | None = None  # (N, K, CANDIDATE_FEATURES), with evidence
    pointers: torch.Tensor | None = None  # (N, K, P) token ids
    tissue: torch.Tensor | None = None  # (N, TISSUE_FEATURES)


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


def _labels(images, i: int) -> np.ndarray:
    with np.load(images.files[i]) as data:
        return data["mask"]


def _proposals(model: ReportModel, coarse: torch.Tensor, present: torch.Tensor, i: int):
    roi, enc = model.cfg.roi, model.encoder_cfg
    prob = model.detect(coarse[i : i + 1].float(), present[i : i + 1])[0].numpy()
    limit = roi["max_proposals"] if model.has_evidence else roi["max_candidates"]
    return find_candidates(prob, enc.grid_spacing, roi["threshold"], limit)


@torch.no_grad()
def segmenter_windows(
    model: ReportModel, images, coarse: torch.Tensor, present: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training windows for the segmenter: one around each detector proposal (what it
    sees at inference, lesion or not) and one around each lesion, shifted at random (so
    lesions the detector misses still teach it). Returns windows (float16), their
    sequence flags and lesion masks."""
    roi, f = model.cfg.roi, model.cfg.pool_factor
    shape = tuple(roi["roi_shape"])
    rng = np.random.default_rng(seed)
    windows, flags, targets = [], [], []
    for i in range(len(images)):
        item = images[i]
        labels = _labels(images, i)
        centres = [c.centre * f + (f - 1) / 2 for c in _proposals(model, coarse, present, i)[0]]
        for label in np.unique(labels[labels > 0]):
            centre = np.argwhere(labels == label).mean(0)
            centres.append(centre + rng.uniform(-0.15, 0.15, 3) * np.array(shape))
        lesion = torch.from_numpy((labels > 0).astype(np.float16))[None]
        for centre in centres:
            windows.append(crop_around(item["image"], centre, shape).half())
            targets.append(crop_around(lesion, centre, shape)[0])
            flags.append(item["present"])
    return torch.stack(windows), torch.stack(flags), torch.stack(targets)


@torch.no_grad()
def cache_regions(
    model: ReportModel, images, coarse: torch.Tensor, present: torch.Tensor, progress: bool = True
) -> CachedRegions:
    """Detect, outline and measure (with evidence), crop at input resolution and run the
    frozen stem, once per study: the same path as `ReportModel.propose` at inference."""
    from tqdm.auto import tqdm

    f = model.cfg.pool_factor
    stems, stem_valids, geometry, valid, matched = [], [], [], [], []
    measured, pointers, tissue = [], [], []
    for i in tqdm(range(len(images)), desc="candidates", unit="study", disable=not progress):
        item = images[i]
        labels = _labels(images, i)
        found, components = _proposals(model, coarse, present, i)
        study_tissue = None
        if model.has_evidence:
            found, study = model.outline_candidates(item["image"], item["present"], found)
            study_tissue = torch.from_numpy(study.features)[None]
            matched.append([_majority(labels[tuple(c.outline.T)]) for c in found])
        else:
            if f > 1:  # a label anywhere in a coarse voxel's block counts for it
                x, y, z = (n // f for n in labels.shape)
                labels = labels.reshape(x, f, y, f, z, f).max(axis=(1, 3, 5))
            matched.append(match_to_labels(found, components, labels))
        regions = model.regions_at(item["image"][None], [found], study_tissue)
        stem, stem_valid = model.roi_stem(regions.crops, item["present"][None], regions.valid)
        stems.append(stem.half())
        stem_valids.append(stem_valid)
        geometry.append(regions.geometry[0])
        valid.append(regions.valid[0])
        if model.has_evidence:
            measured.append(regions.measured[0])
            pointers.append(regions.pointers[0])
            tissue.append(regions.tissue[0])
    extra = (
        (torch.stack(measured), torch.stack(pointers), torch.stack(tissue))
        if model.has_evidence
        else (None, None, None)
    )
    return CachedRegions(
        stems, stem_valids, torch.stack(geometry), torch.stack(valid), matched, *extra
    )


def _majority(labels: np.ndarray) -> int:
    labels = labels[labels > 0]
    return int(np.bincount(labels).argmax()) if labels.size else 0


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


def fit_readouts(
    model: ReportModel,
    regions: CachedRegions,
    reports: list[Report],
    seed: int,
    studies: list[int] | None = None,
    readouts: tuple | None = None,
    steps: int = 600,
) -> dict[str, dict[str, float]]:
    """Fit readouts (`reportgen.model.readout`; the model's own unless `readouts` gives a
    (tissue, candidate, size) triple) on the training reports of `studies` (all by
    default): the tissue readout on each study's tissue measures and stated composition,
    the candidate and size readouts on each outlined candidate that overlaps a lesion and
    that lesion's finding. Returns their training accuracies per field (and size MAE)."""
    from reportgen.io.sequences import family_groups
    from reportgen.model.readout_training import (
        fit_readout,
        fit_size_readout,
        keep_patterns,
        readout_targets,
    )

    groups = family_groups(model.encoder_cfg.sequences)
    studies = list(range(len(reports))) if studies is None else studies
    tissue, candidates, size = readouts or (
        model.tissue_readout,
        model.candidate_readout,
        model.size_readout,
    )
    out = {}
    if tissue is not None and regions.tissue is not None:
        keep = keep_patterns(model.tissue_needs.numpy(), groups)
        targets = readout_targets(tissue, [reports[i].fields for i in studies])
        out["tissue"] = fit_readout(
            tissue, regions.tissue[studies], targets, keep, steps=steps, seed=seed
        )
    if candidates is not None and regions.measured is not None:
        rows, stated = [], []
        for i in studies:
            for j, label in enumerate(regions.matched[i]):
                if 0 < label <= len(reports[i].findings) and bool(regions.valid[i, j]):
                    rows.append(regions.measured[i, j])
                    stated.append(reports[i].findings[label - 1].fields)
        if rows:
            keep = keep_patterns(model.candidate_needs.numpy(), groups)
            targets = readout_targets(candidates, stated)
            out["candidate"] = fit_readout(candidates, torch.stack(rows), targets, keep, seed=seed)
            if size is not None:
                sizes = torch.tensor([_stated_size(fields) for fields in stated])
                mae = fit_size_readout(size, torch.stack(rows), sizes, keep, seed=seed)
                out["size"] = {"size_mae_mm": mae}
    return out


def _stated_size(fields: dict) -> float:
    value = fields.get("size_mm")
    try:
        return float(value.value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


class CrossFittedReadouts:
    """Out-of-fold readouts for training the decoder: each training study's categories
    are read by readouts fit without it. A readout fit on every training study reads
    those studies (nearly) perfectly, so a decoder trained on its pointers would learn to
    copy them blindly, and then meet a readout that errs on new studies."""

    def __init__(
        self,
        model: ReportModel,
        regions: CachedRegions,
        reports: list[Report],
        seed: int,
        folds: int = 5,
        steps: int = 600,
    ):
        n = len(reports)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        self.fold = torch.empty(n, dtype=torch.long)
        for position, study in enumerate(order):
            self.fold[study] = position % folds
        self.pairs = []
        for k in range(folds):
            pair = (
                copy.deepcopy(model.tissue_readout),
                copy.deepcopy(model.candidate_readout),
                copy.deepcopy(model.size_readout),
            )
            rest = [i for i in range(n) if int(self.fold[i]) != k]
            fit_readouts(model, regions, reports, seed + k + 1, rest, pair, steps)
            self.pairs.append(pair)

    def read(
        self, idx: list[int], measured: torch.Tensor, tissue: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What a batch reads: candidate value indices (B, K, fields), tissue value indices
        (B, fields), candidate sizes in mm (B, K; None without a size readout)."""
        cands, tissues, sizes = [], [], []
        for row, study in enumerate(idx):
            tissue_readout, candidate_readout, size_readout = self.pairs[int(self.fold[study])]
            cands.append(candidate_readout.predict(measured[row]))
            tissues.append(tissue_readout.predict(tissue[row : row + 1])[0])
            if size_readout is not None:
                sizes.append(size_readout.predict(measured[row]))
        return torch.stack(cands), torch.stack(tissues), torch.stack(sizes) if sizes else None


def batch_regions(cached: CachedRegions, idx: list[int]) -> dict[str, torch.Tensor | None]:
    """A batch's candidate inputs, stems flattened over valid candidates as
    `ReportModel.roi_memory` wants them."""
    stems = [cached.stem[i].float() for i in idx if len(cached.stem[i])]
    valids = [cached.stem_valid[i] for i in idx if len(cached.stem_valid[i])]
    if stems:
        stem, stem_valid = torch.cat(stems), torch.cat(valids)
    else:
        width = cached.stem[idx[0]].shape[-2:]
        stem, stem_valid = torch.zeros((0, *width)), torch.zeros((0, width[0]), dtype=torch.bool)
    pick = lambda t: t[idx] if t is not None else None  # noqa: E731
    return {
        "stem": stem,
        "stem_valid": stem_valid,
        "geometry": cached.geometry[idx],
        "valid": cached.valid[idx],
        "measured": pick(cached.measured),
        "pointers": pick(cached.pointers),
        "tissue": pick(cached.tissue),
    }


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
    """Copy a trained detector (and segmenter, if both have one) from another report model
    directory (same input grid)."""
    from reportgen.checkpoint import read_weights

    try:
        state = read_weights(folder)
    except InputError as exc:
        raise InputError(folder, f"not a report model directory ({exc.problem})") from exc
    own = {k.removeprefix("detector."): v for k, v in state.items() if k.startswith("detector.")}
    if not own:
        raise InputError(folder, "holds no lesion detector")
    try:
        model.detector.load_state_dict(own)
        if model.has_evidence:
            seg = {
                k.removeprefix("segmenter."): v
                for k, v in state.items()
                if k.startswith("segmenter.")
            }
            if not seg:
                raise InputError(folder, "holds no lesion segmenter")
            model.segmenter.load_state_dict(seg)
    except RuntimeError as exc:
        raise InputError(folder, "its detector does not fit this model's config") from exc
