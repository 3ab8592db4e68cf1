"""Benchmark: does MAE pretraining (and lesion-aware masking) help when labels are few?

Protocol (all synthetic breast studies, base config):
1. an unlabelled pool (seed 101) whose lesion masks are withheld from pretraining, and a
   held-out set from another seed (202) never seen by any step;
2. 10% of the pool is "labelled": its masks train the lesion detector (the lesion prior
   for masking) and its reports train the probes;
3. encoders: scratch (random init), MAE with random masking, MAE with lesion-aware
   masking (prior from that detector), same steps and seed;
4. a logistic-regression probe on frozen, pooled encoder features predicts malignancy;
   held-out AUROC and accuracy are reported.

python bench/mae_probe.py [--pool 300] [--heldout 150] [--steps 400] [--out bench/results/mae_probe.json]
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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pretrain_mae.checkpoint import load_pretrained
from pretrain_mae.config import preset
from pretrain_mae.data import collate
from pretrain_mae.masking import MaskingOptions
from pretrain_mae.model import MaskedAutoencoder3D
from pretrain_mae.trainer import TrainArgs, train
from reportgen.data import CachedStudies, build_cache, discover_studies, read_manifest
from reportgen.model.pretraining import detector_prior, study_dataset, train_standalone_detector
from reportgen.synth import SynthOptions, synth_dataset


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


@torch.no_grad()
def _features(model: MaskedAutoencoder3D, dataset: CachedStudies) -> np.ndarray:
    model.eval()
    rows = []
    for start in range(0, len(dataset), 16):
        batch = collate([dataset[i] for i in range(start, min(start + 16, len(dataset)))])
        enc = model.forward_features(batch["image"], batch["present"])
        valid = enc.valid[..., None].float()
        mean = (enc.features * valid).sum(1) / valid.sum(1)
        peak = enc.features.masked_fill(~enc.valid[..., None], -1e4).amax(1)
        rows.append(torch.cat([mean, peak], 1).numpy())
    return np.concatenate(rows)


def _probe(train_x, train_y, test_x, test_y) -> dict:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(train_x, train_y)
    prob = clf.predict_proba(test_x)[:, 1]
    return {
        "auroc": round(float(roc_auc_score(test_y, prob)), 3),
        "accuracy": round(float(accuracy_score(test_y, prob > 0.5)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=150)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--detector-steps", type=int, default=150)
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "mae_probe.json"
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="reportgen-probe-"))
    started = time.perf_counter()
    cfg = preset("base")
    try:
        synth_dataset(work / "pool", args.pool, SynthOptions(domain="breast", seed=101))
        synth_dataset(work / "heldout", args.heldout, SynthOptions(domain="breast", seed=202))
        _without_masks(work / "pool", work / "unlabelled")
        pool_rows = read_manifest(work / "pool" / "manifest.jsonl")
        held_rows = read_manifest(work / "heldout" / "manifest.jsonl")
        n_lab = max(4, int(args.label_fraction * args.pool))
        labelled_ids = {r["id"] for r in pool_rows[:n_lab]}

        pool_sources = [s for s in discover_studies(work / "pool") if s.study_id in labelled_ids]
        labelled = CachedStudies(build_cache(pool_sources, cfg, work / "cache-labelled"))
        heldout = CachedStudies(
            build_cache(discover_studies(work / "heldout"), cfg, work / "cache-heldout")
        )
        by_id = {r["id"]: r for r in [*pool_rows, *held_rows]}
        train_y = np.array([_malignant(by_id[s.study_id]) for s in pool_sources])
        test_y = np.array(
            [_malignant(by_id[s.study_id]) for s in discover_studies(work / "heldout")]
        )

        det_stats = train_standalone_detector(
            labelled, work / "detector", steps=args.detector_steps, seed=0
        )
        encoders: dict[str, MaskedAutoencoder3D] = {}
        torch.manual_seed(0)
        encoders["scratch"] = MaskedAutoencoder3D(cfg)
        timings = {}
        for strategy in ("random", "lesion"):
            t0 = time.perf_counter()
            out = train(
                TrainArgs(
                    out=work / f"mae-{strategy}",
                    source=str(work / "unlabelled"),
                    config="base",
                    steps=args.steps,
                    batch_size=8,
                    checkpoint_every=args.steps,
                    masking=MaskingOptions(strategy=strategy),
                    progress=False,
                ),
                study_dataset(work / "unlabelled", work / "cache-unlabelled"),
                detector_prior(work / "detector", cfg) if strategy == "lesion" else None,
                log=lambda *_: None,
            )
            timings[strategy] = round(time.perf_counter() - t0, 1)
            encoders[strategy] = load_pretrained(out)
        results = {}
        for name, model in encoders.items():
            results[name] = _probe(
                _features(model, labelled), train_y, _features(model, heldout), test_y
            )
            print(name, results[name])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "mae_probe",
        "pool": args.pool,
        "labelled": int(n_lab),
        "heldout": args.heldout,
        "heldout_malignant_fraction": round(float(test_y.mean()), 3),
        "pretrain_steps": args.steps,
        "pretrain_seconds": timings,
        "detector": {k: v for k, v in det_stats.items() if k != "losses"},
        "probe": "logistic regression on mean+max pooled frozen encoder features",
        "target": "malignancy (any malignant lesion)",
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))


if __name__ == "__main__":
    main()
