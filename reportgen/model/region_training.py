"""`reportgen train-region`: fit the body-region reader on studies of every domain.

Each folder's studies take the region of their reports' template (BI-RADS: breast; FIGO,
O-RADS: pelvis). Training sees each T2W under the acquisition changes a hospital brings
(contrast curve, gain, noise, position in the field of view, left-right mirror), so the
region is read from the body's shape, not from the phantoms' exact intensities. The
distance threshold is the 99th percentile over `calibration` studies the network never
trained on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import ConfigError
from reportgen.model.augment import body_region_look
from reportgen.model.body_region import (
    BodyRegionNet,
    RegionConfig,
    save_region_model,
)
from reportgen.model.data import load_examples
from reportgen.model.engine import Optimiser, adamw
from reportgen.model.train_args import RegionTrainArgs
from reportgen.report import load_template
from reportgen.report.anatomy import PROCEDURE_REGION

UNUSUAL_PERCENTILE = 99.0


def labelled_images(
    folders: list[Path], cfg: RegionConfig, cache_dir: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """T2W on the reader's grid (N, 1, X, Y, Z) and each study's region index."""
    images, labels = [], []
    for folder in folders:
        examples = load_examples(Path(folder), cfg, cache_dir)
        procedure = load_template(examples.reports[0].template.id).procedure
        if procedure not in PROCEDURE_REGION:
            raise ConfigError(f"{folder}: no body region is known for procedure {procedure!r}")
        region = cfg.regions.index(PROCEDURE_REGION[procedure])
        for i in range(len(examples.images)):
            images.append(torch.from_numpy(examples.images.arrays(i)["image"]))
            labels.append(region)
    return torch.stack(images).float(), torch.tensor(labels)


@torch.no_grad()
def embeddings(model: BodyRegionNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, embeddings) of `images`, in batches."""
    model.eval()
    outs = [model(images[i : i + 64]) for i in range(0, len(images), 64)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def fit_distances(model: BodyRegionNet, train_images, train_labels, calibration) -> dict:
    """Region centres and a shared, shrunk covariance from the training embeddings; the
    threshold from the calibration studies' distances."""
    from sklearn.covariance import LedoitWolf

    _, emb = embeddings(model, train_images)
    centres = torch.stack([emb[train_labels == r].mean(0) for r in range(len(model.cfg.regions))])
    centred = (emb - centres[train_labels]).numpy()
    model.centres.copy_(centres)
    model.precision.copy_(torch.from_numpy(LedoitWolf().fit(centred).precision_).float())
    if calibration is None:
        return {}
    images, labels = calibration
    logits, emb = embeddings(model, images)
    chosen = logits.argmax(1)
    distance = model.distance(emb, chosen)
    model.threshold.fill_(float(np.percentile(distance.numpy(), UNUSUAL_PERCENTILE)))
    return {
        "calibration_studies": len(labels),
        "calibration_accuracy": round(float((chosen == labels).float().mean()), 4),
        "threshold": round(float(model.threshold), 3),
    }


def train_region_model(args: RegionTrainArgs, log=print) -> dict:
    """Train, fit the distances, save to `args.out`; returns the training summary."""
    if not args.data:
        raise ConfigError("train-region needs at least one --data folder")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    cfg = RegionConfig()
    cache_dir = args.cache_dir or args.out / "cache"
    images, labels = labelled_images(args.data, cfg, cache_dir)
    if len(set(labels.tolist())) < len(cfg.regions):
        raise ConfigError(f"train-region needs studies of every region: {', '.join(cfg.regions)}")
    calibration = labelled_images(args.calibration, cfg, cache_dir) if args.calibration else None
    model = BodyRegionNet(cfg)
    opt = Optimiser(adamw(model.parameters(), args.lr, weight_decay=1e-4))
    counts = torch.bincount(labels, minlength=len(cfg.regions)).float()
    weight = counts.sum() / (len(cfg.regions) * counts)  # regions count equally
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(images), generator=generator)
        total = 0.0
        for b in range(0, len(perm), args.batch_size):
            idx = perm[b : b + args.batch_size]
            logits, _ = model(body_region_look(images[idx], generator))
            loss = F.cross_entropy(logits, labels[idx], weight=weight)
            opt.step(loss)
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % max(1, args.epochs // 5) == 0:
            log(f"region epoch {epoch + 1}/{args.epochs}: loss {total / len(images):.4f}")
    calibrated = fit_distances(model, images, labels, calibration)
    summary = {
        "notice": NOT_FOR_CLINICAL_USE,
        "studies": len(labels),
        "per_region": {r: int(c) for r, c in zip(cfg.regions, counts.tolist(), strict=True)},
        **calibrated,
        "args": args.to_dict(),
        "seconds": round(time.time() - start, 1),
    }
    save_region_model(model, args.out, summary)
    return summary
