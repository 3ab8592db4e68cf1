"""Why the model wrote each finding: a saliency heat map, a box, sequence contributions.

The heat map is gradient x input of the finding's token log-probability with respect to
the images (smoothed, summed over sequences), on the model's grid with its world affine,
so it overlays the study in any viewer. The box is the detected lesion candidate the
map peaks in (for a model without a detector, the connected region around the peak).
A sequence's contribution is how much the finding's probability drops when that
sequence is left out (re-encoded without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from reportgen.report.schema import Box, Evidence, Report


def _finding_positions(state, index: int) -> list[int]:
    prefix = f"findings[{index}]."
    return [pos for key, pos in state.value_positions.items() if key.startswith(prefix)]


def _score(generator, image, present, ids, positions_per_finding) -> torch.Tensor:
    """Sum of log-probs of each finding's value tokens, per batch row: (B, F)."""
    model, vocab = generator.model, generator.vocab
    memory = model.encode(image, present)
    seq = torch.tensor([[vocab.bos_id, *ids]] * image.shape[0], device=image.device)
    logp = model.token_logprobs(memory, seq, torch.ones_like(seq))  # position t -> ids[t]
    return torch.stack([logp[:, pos].sum(1) for pos in positions_per_finding], 1)


def box_from_heatmap(heat: np.ndarray, affine: np.ndarray, level: float = 0.5) -> Box | None:
    """World-coordinate box of the region above `level` x peak that contains the peak."""
    if not np.isfinite(heat).all() or heat.max() <= 0:
        return None
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    labels, _ = ndimage.label(heat >= level * heat.max())
    low, high = region_box_mm(labels == labels[peak], affine)
    return Box(min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist()))


def box_from_candidates(
    heat: np.ndarray, candidates: list, pool_factor: int, affine: np.ndarray
) -> Box | None:
    """The box of the detected lesion the finding's saliency peaks in (None: no candidates).
    Candidates live on the encoder grid; the heat map on the (finer) input grid."""
    if not candidates or not np.isfinite(heat).all() or heat.max() <= 0:
        return None
    best, best_peak = None, -1.0
    for cand in candidates:
        lo = cand.low * pool_factor
        hi = (cand.high + 1) * pool_factor
        peak = float(heat[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].max())
        if peak > best_peak:
            best, best_peak = (lo, hi), peak
    region = np.zeros(heat.shape, dtype=bool)
    (lo, hi) = best
    region[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    low, high = region_box_mm(region, affine)
    return Box(min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist()))


def region_box_mm(region: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-coordinate (mm) bounds of a boolean voxel region, to the voxels' outer edges."""
    voxels = np.argwhere(region)
    lo, hi = voxels.min(0) - 0.5, voxels.max(0) + 0.5
    corners = np.array(
        [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    world = (affine @ corners.T).T[:, :3]
    return world.min(0), world.max(0)


def explain_findings(
    generator, report: Report, state, drafted, image, present, affine, out_dir: Path | None
) -> None:
    positions = [_finding_positions(state, i) for i in range(len(report.findings))]
    ids = drafted.ids
    # Saliency: one backward pass per finding.
    heats = []
    with torch.enable_grad():
        for f in range(len(positions)):
            x = image.detach().clone().requires_grad_(True)
            score = _score(generator, x, present, ids, [positions[f]])[0, 0]
            (grad,) = torch.autograd.grad(score, x)
            heat = (grad * x).abs()[0].sum(0).detach().numpy()
            heats.append(ndimage.gaussian_filter(heat, sigma=1.0))
    # Sequence contributions: every present sequence left out once, in one batch.
    names = generator.sequences
    present_idx = [s for s in range(len(names)) if bool(present[0, s])]
    contributions: list[dict[str, float]] = [{} for _ in positions]
    if len(present_idx) > 1:
        variants = present.repeat(len(present_idx) + 1, 1)
        for row, s in enumerate(present_idx, start=1):
            variants[row, s] = False
        with torch.no_grad():
            scores = _score(
                generator, image.expand(len(variants), *image.shape[1:]), variants, ids, positions
            )
        probs = scores.exp()
        for f in range(len(positions)):
            for row, s in enumerate(present_idx, start=1):
                contributions[f][names[s]] = round(float(probs[0, f] - probs[row, f]), 4)
    regions = None
    if generator.model.cfg.roi is not None:
        with torch.no_grad():
            regions = generator.model.encode_with_regions(image, present)[1]
    candidates = regions.candidates[0] if regions is not None else []
    for f, finding in enumerate(report.findings):
        evidence = finding.evidence or Evidence()
        evidence.box = (
            evidence.box  # the outlined candidate's box, when the model outlines
            or box_from_candidates(heats[f], candidates, generator.model.cfg.pool_factor, affine)
            or box_from_heatmap(heats[f], affine)
        )
        evidence.sequence_contributions = contributions[f]
        if out_dir is not None:
            evidence.heatmap, evidence.key_slice_png = _save(
                heats[f],
                affine,
                image[0],
                present[0],
                names,
                out_dir,
                f"{report.study.study_id}_{finding.id}",
            )
        finding.evidence = evidence


def _save(heat, affine, image, present, names, out_dir: Path, stem: str) -> tuple[str, str]:
    """The heat map as NIfTI, and the axial slice where it peaks as PNG, over the first
    acquired sequence: radiological convention, R and L marked, as every image we write."""
    from PIL import Image, ImageDraw

    from reportgen.io.write import nifti_image, save_nifti
    from reportgen.render.key_images import (
        canonical,
        enlarged,
        mark_sides,
        radiological,
        window,
        with_heat,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    scaled = (heat / heat.max()).astype(np.float32) if heat.max() > 0 else heat.astype(np.float32)
    nii = out_dir / f"{stem}_heatmap.nii.gz"
    save_nifti(nifti_image(scaled, affine), nii)
    background = next((i for i, p in enumerate(present.tolist()) if p), 0)
    shown_heat, _ = canonical(scaled, affine)
    base, _ = canonical(image[background].numpy(), affine)
    z = int(np.unravel_index(int(np.argmax(shown_heat)), shown_heat.shape)[2])
    rgb = with_heat(radiological(window(base[:, :, z])), radiological(shown_heat[:, :, z]))
    picture, _ = enlarged(Image.fromarray((rgb * 255).astype(np.uint8)))
    mark_sides(picture)
    ImageDraw.Draw(picture).text(
        (4, picture.height - 14), f"{names[background]}, axial {z}", fill=(255, 255, 255)
    )
    png = out_dir / f"{stem}_key_slice.png"
    picture.save(png)
    # Relative to the folder that holds the evidence folder, where the report is written.
    return f"{out_dir.name}/{nii.name}", f"{out_dir.name}/{png.name}"
