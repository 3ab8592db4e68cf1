"""Lesions found at the acquisition's own resolution: proposals, crops, the reader's gate.

The report model's detector works on a 4 mm grid and its segmenter on 2 mm; at clinical
resolution that missed every focus and a fifth of the larger lesions of the dev phantoms
(seed 2323). Here the study is searched as acquired (`reportgen.measure.proposals`:
blobs of enhancement and of fluid inside the breast), each proposal is cut as a lesion
crop and measured (`reportgen.measure.crop_measures`), and the crop reader's gate, a
boosted-tree classifier on those measures fit on proposals of whole phantom studies,
says how likely a lesion is there. Accepted proposals are re-centred on their own
outline once (a proposal may sit on a lesion's edge) and merged where two describe one
lesion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from reportgen.io.study import Study
from reportgen.measure.axilla import in_axilla
from reportgen.measure.crop_measures import outline_crop
from reportgen.measure.geometry import lesion_body
from reportgen.measure.proposals import Inside, Proposal, inside_mask, propose
from reportgen.preprocessing import GridSpec, lesion_crop, target_affine

PROPOSAL_LIMITS = {"enhancement": 16, "fluid": 8}
RECENTRE_MM = 1.5  # an accepted proposal further than this from its outline's centre moves
SAME_LESION_MM = 8.0  # accepted centres closer than this (or inside each other's outline)


@dataclass
class NativeCandidate:
    """An accepted proposal: where (world mm), its crop and measures, the gate's
    probability and its outline's voxels (world mm)."""

    centre_mm: np.ndarray
    probability: float
    crop: np.ndarray
    present: np.ndarray
    measures: np.ndarray
    outline_mm: np.ndarray  # (N, 3)
    contrast: str


def breast_inside(reading, affine: np.ndarray) -> Inside | None:
    """Where the breast is, from a prepared study's tissue measures (`StudyReading`):
    its confident fat and fibroglandular tissue, grown a little, less the axillae
    (`reportgen.measure.axilla.in_axilla`: the tissue measures' breast reaches into the
    lateral torso's fat, where clinical phantoms' normal axillary nodes were accepted as
    masses); None without T2W."""
    tissue = reading.tissue if reading is not None else None
    if tissue is None or tissue.fgt_mask is None:
        return None
    breast = tissue.fgt_mask | tissue.fat_mask
    if not breast.any():
        return None
    grown = inside_mask(breast, affine)
    marks = reading.marks
    if marks is None:
        return grown
    # the reading's landmarks are in its own grid's millimetres (`StudyReading.affine`)
    to_marks = np.asarray(reading.affine, np.float64) @ np.linalg.inv(
        np.asarray(affine, np.float64)
    )

    def inside(points: np.ndarray) -> np.ndarray:
        local = np.asarray(points, np.float64) @ to_marks[:3, :3].T + to_marks[:3, 3]
        return grown(points) & ~in_axilla(local, marks)

    return inside


BREAST_GRID = GridSpec((128, 128, 64), (2.0, 2.0, 2.0))  # the bundled model's input grid


def propose_for(study: Study, limits: dict[str, int] = PROPOSAL_LIMITS) -> list[Proposal]:
    """Proposals of a study on its own: the breast found on BREAST_GRID (what drafting
    reads from the report model's prepared study)."""
    from reportgen.io.sequences import PROTOCOL
    from reportgen.model.evidence import read_study
    from reportgen.preprocessing import prepare_study

    ready = prepare_study(study, BREAST_GRID, PROTOCOL, with_mask=False)
    reading = read_study(ready.image, ready.present, tuple(PROTOCOL), BREAST_GRID.spacing)
    inside = breast_inside(reading, ready.affine)
    return propose(study, inside, limits) if inside is not None else []


def crop_outline_mm(
    crop: np.ndarray, present: np.ndarray, centre_mm, grid: GridSpec, body: bool = False
) -> np.ndarray:
    """The crop's own outline of the lesion at its centre, as world points (mm); with
    `body`, without its thin rays (`lesion_body`: what its dimensions are measured on)."""
    outline, _ = outline_crop(crop, present)
    mask = outline.mask(grid.shape)
    voxels = np.argwhere(lesion_body(mask) if body else mask)
    affine = target_affine(grid, np.asarray(centre_mm, float))
    return voxels @ affine[:3, :3].T + affine[:3, 3]


def find_native(
    reader, study: Study, inside: Inside, limits: dict[str, int] = PROPOSAL_LIMITS
) -> list[NativeCandidate]:
    """Proposals the reader's gate accepts, re-centred and one per lesion, most probable
    first."""
    grid = GridSpec(reader.cfg.crop_shape, reader.cfg.crop_spacing)
    proposals: list[Proposal] = propose(study, inside, limits)
    if not proposals:
        return []
    cut = [lesion_crop(study, np.asarray(p.centre_mm), grid) for p in proposals]
    crops = np.stack([c for c, _ in cut])
    present = np.stack([p for _, p in cut])
    measures = reader.measure(crops, present).numpy()
    probability = reader.gate_probability(measures)
    accepted: list[NativeCandidate] = []
    for k in np.argsort(-probability, kind="stable"):
        if probability[k] < reader.cfg.gate_threshold:
            break
        centre = np.asarray(proposals[k].centre_mm, float)
        crop, seen, row, p = crops[k], present[k], measures[k], float(probability[k])
        outline = crop_outline_mm(crop, seen, centre, grid)
        if len(outline) and np.linalg.norm(outline.mean(0) - centre) > RECENTRE_MM:
            centre = outline.mean(0)
            crop, seen = lesion_crop(study, centre, grid)
            row = reader.measure(crop[None], seen[None]).numpy()[0]
            p = max(p, float(reader.gate_probability(row[None])[0]))
            outline = crop_outline_mm(crop, seen, centre, grid)
        if any(_same_lesion(centre, outline, other) for other in accepted):
            continue
        accepted.append(NativeCandidate(centre, p, crop, seen, row, outline, proposals[k].contrast))
    return accepted


def _same_lesion(centre: np.ndarray, outline: np.ndarray, other: NativeCandidate) -> bool:
    if np.linalg.norm(centre - other.centre_mm) < SAME_LESION_MM:
        return True
    return _within(centre, other.outline_mm) or _within(other.centre_mm, outline)


def _within(point: np.ndarray, outline: np.ndarray, reach_mm: float = 1.0) -> bool:
    return bool(len(outline)) and float(np.min(np.linalg.norm(outline - point, axis=1))) < reach_mm


def lesion_chooser(model, reader, study: Study, affine: np.ndarray):
    """A `Chooser` for the report model (`ReportModel.outline_candidates`): the lesions are
    the proposals the gate accepts, each described by the model's own outline where one
    holds it (what the decoder was trained on), else by the crop's outline on the model's
    grid; a model outline no accepted proposal falls in stays if the gate accepts its own
    crop. Most probable first."""
    grid = GridSpec(reader.cfg.crop_shape, reader.cfg.crop_spacing)
    inverse = np.linalg.inv(np.asarray(affine, np.float64))

    def world(voxel: np.ndarray) -> np.ndarray:
        return affine[:3, :3] @ voxel + affine[:3, 3]

    def choose(outlined: list, reading) -> list:
        inside = breast_inside(reading, affine)
        natives = find_native(reader, study, inside) if inside is not None else []
        chosen: list[tuple[float, object, bool]] = []  # (probability, candidate, model's?)
        claimed: set[int] = set()
        for native in natives:
            voxel = np.rint(inverse[:3, :3] @ native.centre_mm + inverse[:3, 3]).astype(int)
            holder = next(
                (
                    k
                    for k, c in enumerate(outlined)
                    if k not in claimed
                    and (
                        (c.outline == voxel).all(1).any()
                        or np.linalg.norm(world(c.reading.centre_voxel) - native.centre_mm)
                        < SAME_LESION_MM
                    )
                ),
                None,
            )
            if holder is not None:
                claimed.add(holder)
                outlined[holder].reading.found_at_mm = native.centre_mm
                chosen.append((native.probability, outlined[holder], True))
                continue
            voxels = np.unique(
                np.rint(native.outline_mm @ inverse[:3, :3].T + inverse[:3, 3]).astype(int), axis=0
            )
            shape = np.asarray(next(iter(reading.images.values())).shape)
            voxels = voxels[((voxels >= 0) & (voxels < shape)).all(1)]
            if len(voxels):
                candidate = model.measured_candidate(None, voxels, native.probability, reading)
                candidate.reading.found_at_mm = native.centre_mm
                chosen.append((native.probability, candidate, False))
        rest = [
            c
            for k, c in enumerate(outlined)
            if k not in claimed
            and inside is not None
            and inside(world(c.reading.centre_voxel)[None])[0]
        ]  # the gate never saw a crop outside the breast (the heart read as a cyst)
        if rest:
            cut = [lesion_crop(study, world(c.reading.centre_voxel), grid) for c in rest]
            measures = reader.measure(np.stack([c for c, _ in cut]), np.stack([p for _, p in cut]))
            for c, p in zip(rest, reader.gate_probability(measures.numpy()), strict=True):
                if p >= reader.cfg.gate_threshold:
                    chosen.append((float(p), c, True))
        chosen.sort(key=lambda pc: -pc[0])
        return one_per_lesion(
            [(c, by_model) for _, c, by_model in chosen],
            affine,
            lambda c, voxels: model.measured_candidate(c, voxels, c.peak, reading),
        )

    return choose


def one_per_lesion(
    candidates: list[tuple[object, bool]],
    affine: np.ndarray,
    remeasure: Callable[[object, np.ndarray], object] | None = None,
) -> list:
    """One outlined candidate per lesion from (candidate, outlined by the model?) pairs,
    most probable first. Two describe one lesion when their outlines touch (within a
    voxel), their centres are closer than SAME_LESION_MM, or one's centre is inside the
    other's outline: two routes to one lesion (a proposal at a large lesion's edge, two
    model outlines of it) left 7 of the 13 false findings on the dev phantoms, and a
    95 mm non-mass enhancement was proposed as three pieces, each drawn 23-38 mm by its
    43 mm crop. Touching outlines become one: their union, measured again by
    `remeasure(candidate, voxels)` (and read at its own centre: no one crop found it).
    Otherwise the lesion keeps the model's outline where
    one of its descriptions has it (what the decoder was trained on). Each lesion keeps
    its most probable place in the order."""
    linear, shift = np.asarray(affine, np.float64)[:3, :3], np.asarray(affine, np.float64)[:3, 3]
    kept: list[dict] = []

    def described(c, model: bool) -> dict:
        voxels = np.asarray(c.outline, int)
        centre = np.asarray(c.reading.centre_voxel, float)
        return {
            "candidate": c,
            "model": model,
            "centre": linear @ centre + shift,
            "inner": tuple(np.rint(centre).astype(int).tolist()),
            "voxels": voxels,
            "set": {tuple(v) for v in voxels.tolist()},
        }

    for c, model in candidates:
        new = described(c, model)
        for other in kept:
            touching = _touching(new["voxels"], other["voxels"])
            if not (
                touching
                or np.linalg.norm(new["centre"] - other["centre"]) < SAME_LESION_MM
                or new["inner"] in other["set"]
                or other["inner"] in new["set"]
            ):
                continue
            if touching and remeasure is not None:
                union = np.unique(np.concatenate([other["voxels"], new["voxels"]]), axis=0)
                if len(union) > len(other["voxels"]):
                    merged = remeasure(other["candidate"], union)
                    other.update(described(merged, other["model"] or model))
            elif model and not other["model"]:
                other.update(new)
            break
        else:
            kept.append(new)
    return [k["candidate"] for k in kept]


def _touching(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two voxel outlines (N, 3) share a voxel or a face, edge or corner."""
    if not len(a) or not len(b):
        return False
    if (a.min(0) > b.max(0) + 1).any() or (b.min(0) > a.max(0) + 1).any():
        return False
    return bool(np.isfinite(cKDTree(b).query(a, distance_upper_bound=1.8)[0]).any())
