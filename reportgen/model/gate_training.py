"""Fitting the crop reader's gate: is a lesion at a proposal's centre?

Proposals come from whole clinical phantom studies (the gate must learn what the breast
looks like where there is no lesion: background parenchymal enhancement, fibroglandular
islands, the chest wall), each study drawn into a private temporary folder, searched
(`reportgen.measure.proposals`), cut, measured and deleted, so a few hundred studies
never hold more than one study per worker on disk. A proposal is a lesion when its
centre falls on the lesion's label (within one voxel); one that falls near a lesion but
off it is left out (neither answer is right for a crop centred on a lesion's edge),
and every lesion's own centroid is one more positive row, so a lesion the proposals
missed still teaches the gate. A quarter of the studies are searched as if acquired
without contrast (fluid proposals only), as some studies arrive.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from reportgen.io.readers import read_study_folder
from reportgen.io.sequences import sequence_family
from reportgen.measure.crop_measures import crop_measures
from reportgen.model.field_training import criterion_classifier
from reportgen.model.native_candidates import propose_for
from reportgen.model.tree_heads import ensemble_from_sklearn
from reportgen.parallel import parallel_map
from reportgen.preprocessing import LESION_CROP, lesion_crop
from reportgen.synth import SynthOptions
from reportgen.synth.generate import synth_one

NEAR_MM = 10.0  # off a lesion's label but this close to it: left out
WITHOUT_CONTRAST = 0.25


def _rows(job: tuple[SynthOptions, int]) -> list[tuple[np.ndarray, int, str, str]]:
    """(measures, label: 1 lesion / 0 none, lesion type or "", proposal kind) of one
    study's proposals and lesion centroids."""
    options, index = job
    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="gate-"))
    try:
        row = synth_one(options, index, folder)
        study = read_study_folder(folder / row["dir"])
        labels_img = nib.load(folder / row["mask"])
        labels = np.asarray(labels_img.dataobj).astype(np.int16)
        types = {
            int(k + 1): f["fields"]["type"]["value"]
            for k, f in enumerate(row["report"]["findings"])
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    draw = np.random.default_rng([options.seed, index, 11])
    if draw.random() < WITHOUT_CONTRAST:
        study = replace(
            study,
            sequences={n: v for n, v in study.sequences.items() if sequence_family(n) != "dce"},
        )
    proposals = propose_for(study)
    inverse = np.linalg.inv(labels_img.affine)
    grown = ndimage.grey_dilation(labels, size=(3, 3, 3))
    spacing = LESION_CROP.spacing[0]
    out = []
    centres = []
    for p in proposals:
        voxel = np.rint(inverse[:3, :3] @ np.asarray(p.centre_mm) + inverse[:3, 3]).astype(int)
        inside = bool(((voxel >= 0) & (voxel < labels.shape)).all())
        label = int(grown[tuple(voxel)]) if inside else 0
        centres.append((np.asarray(p.centre_mm), label, p.contrast))
    lesions = {}
    for label in np.unique(labels[labels > 0]):
        where = np.argwhere(labels == label)
        lesions[int(label)] = labels_img.affine[:3, :3] @ where.mean(0) + labels_img.affine[:3, 3]
    for centre, label, kind in centres:
        if label == 0 and any(np.linalg.norm(centre - c) < NEAR_MM for c in lesions.values()):
            continue
        crop, present = lesion_crop(study, centre)
        out.append(
            (crop_measures(crop, present, spacing), int(label > 0), types.get(label, ""), kind)
        )
    for label, centre in lesions.items():
        crop, present = lesion_crop(study, centre)
        out.append((crop_measures(crop, present, spacing), 1, types.get(label, ""), "centroid"))
    return out


def gate_rows(
    options: SynthOptions, studies: int, workers: int | None = None, progress=None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(measures, labels, lesion types, proposal kinds) over `studies` whole studies."""
    measures, labels, types, kinds = [], [], [], []
    for rows in parallel_map(_rows, [(options, i) for i in range(studies)], workers):
        for m, y, t, k in rows:
            measures.append(m)
            labels.append(y)
            types.append(t)
            kinds.append(k)
        if progress:
            progress(1)
    return np.stack(measures), np.asarray(labels), types, kinds


def fit_gate(measures: np.ndarray, labels: np.ndarray, seed: int = 0, iterations: int = 200):
    """The gate's trees (a `TreeEnsemble` of two values: no lesion, lesion)."""
    fitted = criterion_classifier(seed, iterations, balanced=True).fit(
        np.asarray(measures, np.float64), labels
    )
    return ensemble_from_sklearn(fitted, None, 2)


def train_gate(args, log=print) -> Path:
    """`reportgen train-gate`: proposals of `args.studies` whole studies measured, the
    gate fit on them and written into the crop reader at `args.reader` (its summary
    keeps how)."""
    import time

    from tqdm.auto import tqdm

    from reportgen.checkpoint import read_summary
    from reportgen.model.crop_reader import load_crop_reader, save_crop_reader

    reader = load_crop_reader(args.reader)
    start = time.time()
    options = SynthOptions(domain="breast", seed=args.seed, protocol="clinical")
    with tqdm(total=args.studies, desc="gate studies", unit="study") as bar:
        measures, labels, _, _ = gate_rows(options, args.studies, args.workers, bar.update)
    log(f"{len(labels)} proposals ({int(labels.sum())} on lesions) in {time.time() - start:.0f} s")
    gated = with_gate(
        reader, fit_gate(measures, labels, args.seed, args.iterations), args.threshold
    )
    summary = read_summary(args.reader)
    summary["gate"] = {
        "args": args.to_dict(),
        "rows": len(labels),
        "lesion_rows": int(labels.sum()),
        "seconds": round(time.time() - start),
    }
    save_crop_reader(gated, args.reader, summary)
    log(f"gate written into {args.reader}")
    return Path(args.reader)


def with_gate(reader, gate, threshold: float):
    """`reader` with `gate` (a two-value `TreeEnsemble`) deciding from `threshold`."""
    from reportgen.model.crop_reader import CropReader

    reader.cfg.gate_shape = gate.shape
    reader.cfg.gate_threshold = float(threshold)
    gated = CropReader(reader.cfg)
    state = {k: v for k, v in reader.state_dict().items() if not k.startswith("gate.")}
    gated.load_state_dict({**state, **{f"gate.{k}": v for k, v in gate.state_dict().items()}})
    gated.calibration = reader.calibration
    return gated.eval()
