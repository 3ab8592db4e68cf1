"""Fitting the crop reader (`reportgen.model.crop_reader`) on lesion crops and their truth.

Crops come from lesion views (`reportgen.synth.views`: thousands of lesions without
synthesising whole studies). Each lesion is measured as acquired and once more with one
sequence family hidden (DCE, diffusion or T2W, drawn per lesion): a study without
contrast or DWI is read from what was learned without it, and a field the kept series
cannot show (`requires`), or a value only a hidden family shows (a non-mass
enhancement's type without DCE), is never asked of that row. One boosted-tree
classifier per field is fit on the rows whose truth states it, answers weighted by
inverse frequency (rare descriptors such as spiculation count as much as the common).
Weighting by inverse frequency makes the trees' probabilities say little about how
often they are right, so each field's read probability is then mapped onto the share
right on lesions of a third seed (isotonic, `fit_reader_calibration`), and the reader
states that as its confidence.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reportgen.io.sequences import PROTOCOL, sequence_family
from reportgen.measure.crop_measures import MEASURES, crop_measures
from reportgen.model.calibration_fit import fit_calibration
from reportgen.model.crop_reader import CropReader, CropReaderConfig
from reportgen.model.field_training import criterion_classifier
from reportgen.model.train_args import CropReaderTrainArgs
from reportgen.model.tree_heads import constant_ensemble, ensemble_from_sklearn
from reportgen.parallel import parallel_map
from reportgen.preprocessing import LESION_CROP, lesion_crop
from reportgen.report import load_template
from reportgen.report.calibration import POOLED, Calibration
from reportgen.report.metrics import calibration_error
from reportgen.report.template import FieldSpec
from reportgen.synth import SynthOptions
from reportgen.synth.views import lesion_views

FAMILIES = ("dce", "diffusion", "t2")
NME = frozenset({"non_mass_enhancement"})
ALL = frozenset(FAMILIES)


def field_targets(truth: list[dict], cfg: CropReaderConfig) -> torch.Tensor:
    """(lesions, fields) value indices in `cfg.fields` order; -1 where the truth is silent."""
    out = torch.full((len(truth), len(cfg.fields)), -1, dtype=torch.long)
    for row, values in enumerate(truth):
        for k, (name, options) in enumerate(cfg.fields.items()):
            if values.get(name) in options:
                out[row, k] = options.index(values[name])
    return out


def unasked(
    targets: torch.Tensor, specs: Sequence[FieldSpec], acquired: Sequence[frozenset[str]]
) -> torch.Tensor:
    """`targets` with -1 wherever a row's acquired families cannot show the field, or
    the value is one only a missing family shows."""
    targets = targets.clone()
    for i, families in enumerate(acquired):
        for k, spec in enumerate(specs):
            value = int(targets[i, k])
            if value >= 0 and (
                set(spec.requires) - families or spec.values[value] in spec.values_unseen(families)
            ):
                targets[i, k] = -1
    return targets


def hide(crop: np.ndarray, present: np.ndarray, family: str) -> tuple[np.ndarray, np.ndarray]:
    """The crop as a study without `family`'s series: their channels zeroed, marked absent."""
    crop, present = crop.copy(), present.copy()
    for k, name in enumerate(PROTOCOL):
        if sequence_family(name) == family:
            crop[k] = 0.0
            present[k] = False
    return crop, present


def acquired_families(present: np.ndarray) -> frozenset[str]:
    return frozenset(sequence_family(n) for n, p in zip(PROTOCOL, present, strict=True) if p)


ViewJob = tuple[SynthOptions, int, bool, float, frozenset[str] | None]


def _view_measures(job: ViewJob) -> list[tuple[np.ndarray, frozenset, dict]]:
    """Rows of one case's lesion views: (measures, acquired families, truth); with
    `hiding`, each lesion again with one family hidden (a worker's unit). Each row's crop
    is cut `jitter_mm` (standard deviation per axis) from the lesion's centroid; with
    `types`, only lesions of those types are drawn."""
    options, index, hiding, jitter_mm, types = job
    if multiprocessing.parent_process() is not None:  # one thread per worker process; the
        torch.set_num_threads(1)  # caller's own threads are left alone when run in-process
    draw = np.random.default_rng([options.seed, index, 7])
    offsets = np.random.default_rng([options.seed, index, 13])  # apart: hiding stays as drawn
    spacing = LESION_CROP.spacing[0]
    rows = []

    def cut(study, centre):
        return lesion_crop(study, centre + jitter_mm * offsets.standard_normal(3))

    for view in lesion_views(options, index, types=types):
        truth = {**view.fields, "pathology": view.pathology}
        study, centre = view.study(), view.centroid_mm()
        crop, present = cut(study, centre)
        rows.append((crop_measures(crop, present, spacing), acquired_families(present), truth))
        if hiding:
            family = FAMILIES[int(draw.integers(len(FAMILIES)))]
            if family in acquired_families(present) and len(acquired_families(present)) > 1:
                crop, present = hide(*cut(study, centre), family)
                measures = crop_measures(crop, present, spacing)
                rows.append((measures, acquired_families(present), truth))
    return rows


def view_measures(
    options: SynthOptions,
    cases: int,
    hiding: bool,
    workers: int | None = None,
    progress=None,
    jitter_mm: float = 0.0,
    first: int = 0,
    types: frozenset[str] | None = None,
) -> tuple[np.ndarray, list[frozenset[str]], list[dict]]:
    """(measures, acquired families, truth) of every lesion (of `types`, if given) of the
    lesion views (`reportgen.synth.views`) of cases `first` to `first + cases`, drawn and
    measured in parallel, each crop cut `jitter_mm` (per axis) from its lesion's centroid."""
    measures, acquired, truth = [], [], []
    jobs = [(options, i, hiding, jitter_mm, types) for i in range(first, first + cases)]
    for found in parallel_map(_view_measures, jobs, workers):
        for row, families, fields in found:
            measures.append(row)
            acquired.append(families)
            truth.append(fields)
        if progress:
            progress(1)
    if not measures:
        if types is not None:  # a rare type may be absent from a few cases
            return np.empty((0, len(MEASURES))), [], []
        raise ValueError("the views drew no lesion")
    return np.stack(measures), acquired, truth


def fit_crop_reader(
    measures: np.ndarray,
    acquired: Sequence[frozenset[str]],
    truth: list[dict],
    cfg: CropReaderConfig,
    seed: int = 0,
    iterations: int = 200,
) -> CropReader:
    """One boosted-tree classifier per field of `cfg` on the rows that may be asked it."""
    template = load_template(cfg.template)
    specs = [template.field(k) for k in cfg.fields]
    targets = unasked(field_targets(truth, cfg), specs, acquired)
    x = np.asarray(measures, np.float64)
    heads = []
    for k, values in enumerate(cfg.fields.values()):
        asked = (targets[:, k] >= 0).numpy()
        y = targets[asked, k].numpy()
        if len(np.unique(y)) < 2:  # a tiny set may state one answer only (or none)
            heads.append(constant_ensemble(int(y[0]) if len(y) else 0, len(values)))
            continue
        fitted = criterion_classifier(seed, iterations, balanced=True).fit(x[asked], y)
        heads.append(ensemble_from_sklearn(fitted, None, len(values)))
    cfg.tree_shapes = {k: head.shape for k, head in zip(cfg.fields, heads, strict=True)}
    size = fit_size(x, truth, seed, iterations)
    cfg.size_shape = size.shape if size is not None else []
    malignancy = fit_malignancy(x, truth, seed, iterations)
    cfg.malignancy_shape = malignancy.shape if malignancy is not None else []
    model = CropReader(cfg)
    for mine, fitted in zip(model.heads, heads, strict=True):
        mine.load_state_dict(fitted.state_dict())
    if size is not None:
        model.size.load_state_dict(size.state_dict())
    if malignancy is not None:
        model.malignancy.load_state_dict(malignancy.state_dict())
    return model.eval()


def _pathology_rows(truth: list[dict]) -> tuple[list[int], np.ndarray]:
    """Rows whose truth states a pathology, and whether each is malignant."""
    rows = [i for i, t in enumerate(truth) if t.get("pathology") in ("benign", "malignant")]
    return rows, np.array([truth[i]["pathology"] == "malignant" for i in rows], dtype=int)


def fit_malignancy(measures: np.ndarray, truth: list[dict], seed: int = 0, iterations: int = 200):
    """The malignancy head: boosted trees from the measures to benign / malignant, on the
    rows that state a pathology (every lesion view; rows with a family hidden too, so a
    study without contrast is scored from what it shows). Unweighted: the probability is
    the one the draft states. None if too few rows, or one class only."""
    rows, y = _pathology_rows(truth)
    if len(rows) < 40 or len(np.unique(y)) < 2:
        return None
    fitted = criterion_classifier(seed, iterations, balanced=False).fit(
        np.asarray(measures, np.float64)[rows], y
    )
    return ensemble_from_sklearn(fitted, None, 2)


def fit_size(measures: np.ndarray, truth: list[dict], seed: int = 0, iterations: int = 200):
    """The size head: boosted regression trees from the measures to the log of the
    lesion's longest diameter (the truth's size), on the rows that state one; None if
    too few do."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rows = [i for i, t in enumerate(truth) if t.get("size_mm")]
    if len(rows) < 40:
        return None
    target = np.log([float(truth[i]["size_mm"]) for i in rows])
    fitted = HistGradientBoostingRegressor(
        max_iter=iterations, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
        random_state=seed,
    ).fit(np.asarray(measures, np.float64)[rows], target)  # fmt: skip
    return ensemble_from_sklearn(fitted, None, 2)


def balanced_accuracy(truth: np.ndarray, guess: np.ndarray) -> float:
    """Mean recall over the classes the truth holds (chance: 1 / classes)."""
    return float(np.mean([(guess[truth == c] == c).mean() for c in np.unique(truth)]))


def _asked_reads(
    model: CropReader, measures: np.ndarray, acquired: Sequence[frozenset[str]], truth: list[dict]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per field, over the rows asked it: (true index, read index, raw probability read)."""
    template = load_template(model.cfg.template)
    specs = [template.field(k) for k in model.cfg.fields]
    targets = unasked(field_targets(truth, model.cfg), specs, acquired)
    read = model.read_measures(torch.from_numpy(np.asarray(measures, np.float32)))
    out = {}
    for k, name in enumerate(model.cfg.fields):
        rows = np.flatnonzero((targets[:, k] >= 0).numpy())
        if len(rows):
            probs = torch.stack([read[i][name] for i in rows]).numpy()
            out[name] = (targets[rows, k].numpy(), probs.argmax(1), probs.max(1))
    return out


def fit_reader_calibration(
    model: CropReader, measures: np.ndarray, acquired: Sequence[frozenset[str]], truth: list[dict]
) -> Calibration:
    """Isotonic maps from each field's raw read probability to the share right, on
    lesions the trees were not fit on (`reportgen.model.calibration_fit`)."""
    records = [
        (name, float(p), bool(g == t))
        for name, (truth_idx, guess, prob) in _asked_reads(model, measures, acquired, truth).items()
        for t, g, p in zip(truth_idx, guess, prob, strict=True)
    ]
    return fit_calibration(records)


def score_reader(
    model: CropReader, measures: np.ndarray, acquired: Sequence[frozenset[str]], truth: list[dict]
) -> dict:
    """Per field: lesions asked, accuracy, balanced accuracy and, with the reader's
    calibration applied, the expected calibration error, on held-out measures."""
    out = {}
    for name, (t, g, p) in _asked_reads(model, measures, acquired, truth).items():
        confidence = [model.confidence(name, float(v)) for v in p]
        ece = calibration_error(list(zip(confidence, (g == t).tolist(), strict=True)))
        out[name] = {
            "lesions": len(t),
            "accuracy": round(float((g == t).mean()), 4),
            "balanced_accuracy": round(balanced_accuracy(t, g), 4),
            "ece": round(ece["ece"], 4) if ece else None,
        }
    return out


def score_size(model: CropReader, measures: np.ndarray, truth: list[dict]) -> dict | None:
    """The size head's mean absolute error (mm) and its 95% bootstrap interval on
    held-out lesions that state a size and fit in the crop (how many did not: their
    size is left to the report model)."""
    from reportgen.report.metrics import bootstrap_interval

    rows = [i for i, t in enumerate(truth) if t.get("size_mm")]
    read = model.size_mm(np.asarray(measures)[rows]) if rows else None
    if read is None:
        return None
    errors = np.abs(read - np.array([float(truth[i]["size_mm"]) for i in rows]))
    errors = errors[np.isfinite(errors)]
    if not len(errors):
        return None
    return {
        "lesions": len(errors),
        "larger_than_the_crop": len(rows) - len(errors),
        "mae_mm": round(float(errors.mean()), 3),
        "mae_mm_95": bootstrap_interval(errors.tolist(), lambda e: float(np.mean(e))),
    }


def score_malignancy(model: CropReader, measures: np.ndarray, truth: list[dict]) -> dict:
    """The malignancy head's AUROC and its 95% bootstrap interval on held-out lesions."""
    from reportgen.report.metrics import auroc, bootstrap_interval

    rows, y = _pathology_rows(truth)
    p = model.malignancy_probability(np.asarray(measures)[rows]) if rows else None
    if p is None or len(np.unique(y)) < 2:
        return {}
    pairs = list(zip(y.tolist(), p.tolist(), strict=True))
    return {
        "malignancy_auroc": round(auroc(y.tolist(), p.tolist()), 4),
        "malignancy_auroc_95": bootstrap_interval(
            pairs, lambda s: auroc([a for a, _ in s], [b for _, b in s])
        ),
    }


def train_crop_reader_from_views(args: CropReaderTrainArgs, log=print) -> Path:
    """`reportgen train-crop-reader`: lesion views of `args.cases` cases measured, the
    reader fit on them, scored on views of another seed (as acquired), saved to `args.out`."""
    from tqdm.auto import tqdm

    from reportgen.model.crop_reader import save_crop_reader

    template = load_template("birads_mri")
    cfg = CropReaderConfig.for_template(template)
    start = time.time()
    options = SynthOptions(domain="breast", seed=args.seed, protocol=args.protocol)
    with tqdm(total=args.cases, desc="lesion views", unit="case") as bar:
        measures, acquired, truth = view_measures(
            options, args.cases, True, args.workers, bar.update, args.centre_jitter_mm
        )
    log(f"{len(measures)} rows from {args.cases} cases in {time.time() - start:.0f} s")
    if args.nme_cases:
        with tqdm(total=args.nme_cases, desc="non-mass enhancement views", unit="case") as bar:
            extra = view_measures(
                options, args.nme_cases, True, args.workers, bar.update,
                args.centre_jitter_mm, first=args.cases, types=NME,
            )  # fmt: skip
        log(f"{len(extra[0])} non-mass enhancement rows from {args.nme_cases} more cases")
        measures = np.concatenate([measures, extra[0]])
        acquired, truth = acquired + extra[1], truth + extra[2]
    model = fit_crop_reader(measures, acquired, truth, cfg, args.seed, args.iterations)
    if args.calibration_cases:
        calibrating = SynthOptions(
            domain="breast", seed=args.calibration_seed, protocol=args.protocol
        )
        rows = view_measures(
            calibrating, args.calibration_cases, True, args.workers, None, args.centre_jitter_mm
        )
        model.calibration = fit_reader_calibration(model, *rows)
        log(f"calibrated on {len(rows[0])} rows of seed {args.calibration_seed}")
    summary: dict = {
        "args": args.to_dict(),
        "train_rows": len(measures),
        "seconds": round(time.time() - start),
    }
    if model.calibration is not None:
        summary["calibration"] = {
            "seed": args.calibration_seed,
            "values": model.calibration.examples.get(POOLED, 0),
        }
    if args.heldout_cases:
        held = SynthOptions(domain="breast", seed=args.heldout_seed, protocol=args.protocol)
        h = view_measures(
            held, args.heldout_cases, False, args.workers, None, args.centre_jitter_mm
        )
        summary["heldout"] = {
            "seed": args.heldout_seed,
            "lesions": len(h[0]),
            "fields": score_reader(model, *h),
            "size": score_size(model, h[0], h[2]),
            **score_malignancy(model, h[0], h[2]),
        }
    save_crop_reader(model, args.out, summary)
    log(f"crop reader written to {args.out}")
    return args.out
