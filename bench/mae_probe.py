"""Benchmark: does MAE pretraining (and lesion-aware masking) help when labels are few?

A measurement that can fail at each step, and says where:

1. Data: an unlabelled pool (seed 101; masks and reports withheld from pretraining) and
   held-out studies (seed 202) that no step sees. A fraction of the pool is "labelled":
   its masks train the lesion detector (the masking prior), its reports the probes.
2. The prior: the detector's voxel Dice and lesion hit rate on the held-out studies.
3. The prior reaches the masks: on held-out studies, the fraction of lesion-core,
   lesion-border and other tokens that each masking strategy hides (lesion-aware
   masking must hide cores more and borders less; random masking hides all alike).
4. Encoders per seed: scratch (random init), MAE with random masking, MAE with
   lesion-aware masking, same steps, data and seed.
5. A probe that cannot be degenerate: class-balanced logistic regression, its strength
   chosen by cross-validation on the labelled studies only, on frozen mean+max pooled
   features; held-out AUROC with a 95% bootstrap interval and balanced accuracy (a
   constant probe scores 0.5 on both). Arms are compared per seed, paired on the same
   held-out studies (bootstrap interval of the AUROC difference).

python bench/mae_probe.py [--pool 300] [--heldout 200] [--steps 1500] [--seeds 0,1,2]
    [--detector-steps 600] [--out bench/results/mae_probe.json]

On this 2-core machine the defaults take hours (9 pretraining runs); `--device cuda`
runs them on a GPU. Small settings (`--steps 200 --seeds 0`) check the plumbing only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pretrain_mae.config import MAEConfig, preset
from pretrain_mae.data import collate
from pretrain_mae.masking import MaskingOptions, draw_mask, lesion_weights
from pretrain_mae.model import MaskedAutoencoder3D
from reportgen.data import CachedStudies, build_cache, discover_studies, read_manifest
from reportgen.model.detector import lesion_probability, load_detector
from reportgen.model.mae_training import TrainArgs, load_pretrained, train
from reportgen.model.pretraining import detector_prior, study_dataset, train_standalone_detector
from reportgen.report.metrics import bootstrap_interval
from reportgen.synth import SynthOptions, synth_dataset

ARMS = ("scratch", "random", "lesion")


def _malignant(row: dict) -> int:
    return int(any(les["pathology"] == "malignant" for les in row["truth"]["lesions"]))


def _without_masks(src: Path, dst: Path) -> None:
    """The pool as unlabelled studies: sequence files only (symlinks), no mask, no report."""
    for study in sorted(p for p in src.iterdir() if p.is_dir()):
        target = dst / study.name
        target.mkdir(parents=True)
        for nii in study.glob("*.nii.gz"):
            if nii.name != "lesion_mask.nii.gz":
                (target / nii.name).symlink_to(nii.resolve())


def _stack(dataset: CachedStudies) -> dict[str, torch.Tensor]:
    return collate([dataset[i] for i in range(len(dataset))])


@torch.no_grad()
def detector_quality(folder: Path, held: dict[str, torch.Tensor]) -> dict:
    """Voxel Dice at 0.5 and the fraction of held-out lesions whose peak reaches 0.5."""
    detector, _ = load_detector(folder)
    prob = torch.cat(
        [
            lesion_probability(detector, held["image"][i : i + 8], held["present"][i : i + 8])
            for i in range(0, len(held["image"]), 8)
        ]
    ).numpy()
    truth = held["lesion"].numpy() > 0.5
    found = prob >= 0.5
    dice = 2 * (found & truth).sum() / max(1, found.sum() + truth.sum())
    hits = lesions = 0
    for p, t in zip(prob, truth, strict=True):
        labels, n = ndimage.label(t)
        for k in range(1, n + 1):
            lesions += 1
            hits += bool(p[labels == k].max() >= 0.5)
    return {
        "voxel_dice": round(float(dice), 3),
        "lesions": lesions,
        "lesion_hit_rate": round(hits / max(1, lesions), 3),
    }


@torch.no_grad()
def masked_fractions(
    cfg: MAEConfig, held: dict[str, torch.Tensor], prior_folder: Path, draws: int = 5
) -> dict:
    """Per strategy: how often lesion cores, lesion borders and other tokens are hidden.
    The true masks say which patch is which (core: over half lesion; border: next to
    lesion); the lesion strategy itself sees only the detector's prior. Lesion-aware
    masking is meant to hide cores more and borders less than random masking does."""
    prior = detector_prior(prior_folder, cfg)
    present, images = held["present"], held["image"]
    opts = MaskingOptions(strategy="lesion")
    kind = lesion_weights(held["lesion"], cfg, opts)  # (B, N): which patch is which
    regions = {
        "core": kind == opts.keep_core,
        "border": kind == opts.keep_border,
        "elsewhere": kind == opts.keep_background,
    }
    out = {}
    for strategy in ("random", "lesion"):
        hidden_in = dict.fromkeys(regions, 0.0)
        total_in = dict.fromkeys(regions, 0.0)
        for draw in range(draws):
            g = torch.Generator().manual_seed(draw)
            for i in range(0, len(images), 8):
                p, x = present[i : i + 8], images[i : i + 8]
                mask = draw_mask(
                    cfg,
                    p,
                    MaskingOptions(strategy=strategy),
                    g,
                    lesion=prior(x, p) if strategy == "lesion" else None,
                )
                hidden = mask.target.reshape(len(p), len(cfg.sequences), -1)
                avail = mask.available.reshape(hidden.shape)
                for name, where in regions.items():
                    where = where[i : i + 8, None, :].expand_as(hidden)
                    hidden_in[name] += float((hidden & where).sum())
                    total_in[name] += float((avail & where).sum())
        out[strategy] = {
            f"masked_{name}": round(hidden_in[name] / max(1.0, total_in[name]), 3)
            for name in regions
        }
    return out


@torch.no_grad()
def _features(model: MaskedAutoencoder3D, data: dict[str, torch.Tensor]) -> np.ndarray:
    model.eval()
    rows = []
    for i in range(0, len(data["image"]), 16):
        enc = model.forward_features(data["image"][i : i + 16], data["present"][i : i + 16])
        valid = enc.valid[..., None].float()
        mean = (enc.features * valid).sum(1) / valid.sum(1)
        peak = enc.features.masked_fill(~enc.valid[..., None], -1e4).amax(1)
        rows.append(torch.cat([mean, peak], 1).numpy())
    return np.concatenate(rows)


def probe(train_x, train_y, test_x, test_y) -> tuple[dict, np.ndarray]:
    """Class-balanced logistic regression, strength by 5-fold CV on the training rows."""
    folds = int(min(5, np.bincount(train_y).min()))
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=8, cv=max(2, folds), scoring="roc_auc", class_weight="balanced", max_iter=5000
        ),
    )
    clf.fit(train_x, train_y)
    prob = clf.predict_proba(test_x)[:, 1]
    records = list(zip(test_y.tolist(), prob.tolist(), strict=True))
    return {
        "auroc": round(float(roc_auc_score(test_y, prob)), 3),
        "auroc_95": bootstrap_interval(records, _auroc),
        "balanced_accuracy": round(float(balanced_accuracy_score(test_y, prob > 0.5)), 3),
        "predicted_positive_fraction": round(float((prob > 0.5).mean()), 3),
    }, prob


def _auroc(records: list) -> float | None:
    y = np.array([r[0] for r in records])
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, [r[1] for r in records]))


def _difference(test_y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """AUROC(a) - AUROC(b) on the same studies, with a paired bootstrap interval."""
    records = list(zip(test_y.tolist(), a.tolist(), b.tolist(), strict=True))

    def diff(rows):
        first, second = _auroc([(r[0], r[1]) for r in rows]), _auroc([(r[0], r[2]) for r in rows])
        return None if first is None or second is None else first - second

    return {"difference": round(float(diff(records)), 3), "95": bootstrap_interval(records, diff)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--detector-steps", type=int, default=600)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "mae_probe.json"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="reportgen-probe-"))
    started = time.perf_counter()
    cfg = preset("base")
    try:
        synth_dataset(
            work / "pool",
            args.pool,
            SynthOptions(protocol="low_resolution", domain="breast", seed=101),
        )
        synth_dataset(
            work / "heldout",
            args.heldout,
            SynthOptions(protocol="low_resolution", domain="breast", seed=202),
        )
        _without_masks(work / "pool", work / "unlabelled")
        pool_rows = read_manifest(work / "pool" / "manifest.jsonl")
        held_rows = read_manifest(work / "heldout" / "manifest.jsonl")
        n_lab = max(10, int(args.label_fraction * args.pool))
        labelled_ids = {r["id"] for r in pool_rows[:n_lab]}
        pool_sources = [s for s in discover_studies(work / "pool") if s.study_id in labelled_ids]
        held_sources = discover_studies(work / "heldout")
        labelled_set = CachedStudies(build_cache(pool_sources, cfg, work / "cache-labelled"))
        labelled = _stack(labelled_set)
        held = _stack(CachedStudies(build_cache(held_sources, cfg, work / "cache-heldout")))
        by_id = {r["id"]: r for r in [*pool_rows, *held_rows]}
        train_y = np.array([_malignant(by_id[s.study_id]) for s in pool_sources])
        test_y = np.array([_malignant(by_id[s.study_id]) for s in held_sources])

        detector = train_standalone_detector(
            labelled_set, work / "detector", steps=args.detector_steps, seed=0
        )
        prior = {
            "trained_on": detector["trained_on"],
            "steps": detector["steps"],
            "final_loss": round(detector["final_loss"], 3),
            **detector_quality(work / "detector", held),
        }
        masking = masked_fractions(cfg, held, work / "detector")
        print("prior", prior, "\nmasking", masking)

        per_seed: dict[int, dict] = {}
        for seed in seeds:
            probs, results = {}, {}
            for arm in ARMS:
                if arm == "scratch":
                    torch.manual_seed(seed)
                    encoder = MaskedAutoencoder3D(cfg)
                else:
                    out = train(
                        TrainArgs(
                            out=work / f"mae-{arm}-{seed}",
                            source=str(work / "unlabelled"),
                            config="base",
                            steps=args.steps,
                            batch_size=8,
                            seed=seed,
                            checkpoint_every=args.steps,
                            masking=MaskingOptions(strategy=arm),
                            device=args.device,
                            progress=False,
                        ),
                        study_dataset(work / "unlabelled", work / "cache-unlabelled"),
                        detector_prior(work / "detector", cfg) if arm == "lesion" else None,
                        log=lambda *_: None,
                    )
                    encoder = load_pretrained(out).cpu()
                results[arm], probs[arm] = probe(
                    _features(encoder, labelled), train_y, _features(encoder, held), test_y
                )
                print(seed, arm, results[arm])
            results["lesion_minus_random"] = _difference(test_y, probs["lesion"], probs["random"])
            results["random_minus_scratch"] = _difference(test_y, probs["random"], probs["scratch"])
            per_seed[seed] = results
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        arm: {
            "auroc_mean": round(float(np.mean([per_seed[s][arm]["auroc"] for s in seeds])), 3),
            "auroc_sd": round(float(np.std([per_seed[s][arm]["auroc"] for s in seeds])), 3),
        }
        for arm in ARMS
    }
    report = {
        "benchmark": "mae_probe",
        "pool": args.pool,
        "labelled": int(n_lab),
        "heldout": args.heldout,
        "heldout_malignant_fraction": round(float(test_y.mean()), 3),
        "pretrain_steps": args.steps,
        "seeds": seeds,
        "prior": prior,
        "masking": masking,
        "probe": "class-balanced logistic regression (C by 5-fold CV on the labelled studies) "
        "on mean+max pooled frozen encoder features; target: any malignant lesion",
        "summary": summary,
        "per_seed": per_seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"summary": summary, "masking": masking, "prior": prior}, indent=2))


if __name__ == "__main__":
    main()
