"""Fit the per-lesion heads on the training studies' own outlines, matched to their truth.

Each outlined component of a training study is matched to the truth lesion it overlaps
most (at least a fifth of the component); matched components learn that lesion's lexicon
values and `is_lesion`, unmatched ones learn `is_lesion = false`. Every study is read
also without its DCE phases, so the heads know a lesion seen without contrast. Features come from the
frozen segmenter's outlines, as at drafting, so the heads learn the outlines they will
be given. The epoch is chosen on the held-back studies' lesions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from reportgen.data.truth import fold_parts
from reportgen.model.augment import varied_copy
from reportgen.model.field_reader import outlined_size_mm, predict_outline
from reportgen.model.field_training import answer_index, fit_classifiers
from reportgen.model.lesion_reader import lesion_measures, outlined_lesions
from reportgen.report import load_template
from reportgen.report.assessable import not_assessable


def _matched(
    pred: np.ndarray, mask: np.ndarray, truth_labels: list[int], solid_tissue: bool = False
) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
    """(component, its solid tissue, index of the truth lesion or -1) for each outlined
    component; `mask` has its part labels folded into their lesions' (`fold_parts`)."""
    out = []
    for region, solid in outlined_lesions(pred, solid_tissue):
        overlaps = [int((region & (mask == label)).sum()) for label in truth_labels]
        best = int(np.argmax(overlaps)) if overlaps else -1
        hit = best >= 0 and overlaps[best] >= 0.2 * region.sum()
        out.append((region, solid, best if hit else -1))
    return out


@torch.no_grad()
def lesion_rows(model, images, present, masks, affines, examples, idx, varied=None):
    """Measures, targets (fields + is_lesion) and log-diameter pairs for studies `idx`,
    each study read twice: as acquired, and without its DCE phases (as a study without
    contrast is read at drafting; the fields that need DCE get no target there). With a
    generator `varied`, a third time: an acquisition-varied copy (`varied_copy`) outlined
    and measured afresh, so the heads see how another scanner moves each measure."""
    fields = model.cfg.lesion_fields
    template = load_template(model.cfg.template)
    sequences = list(model.cfg.sequences)
    dce = torch.tensor([name.startswith("DCE_") for name in sequences])
    without_dce = not_assessable(template, [n for n in sequences if not n.startswith("DCE_")])
    feats, targets, size_x, size_y = [], [], [], []
    for i in idx:
        truth = (examples.truth[i] or {}).get("lesions", [])
        report = examples.reports[i]
        labels = [int(les["label"]) for les in truth]
        mask = fold_parts(masks[i], truth)
        acquired = images[i][None].float()
        variants = [(acquired, present[i], frozenset())]
        if bool((present[i] & dce).any()):
            variants.append((acquired, present[i] & ~dce, without_dce))
        if varied is not None:
            variants.append((varied_copy(acquired, varied), present[i], frozenset()))
        for x, seen, hidden in variants:
            image = x[0].numpy()
            _, pred = predict_outline(model, x, seen[None])
            matched = _matched(pred[0].numpy(), mask, labels, model.cfg.solid_tissue)
            for region, solid, j in matched:
                feats.append(lesion_measures(image, seen.numpy(), region, affines[i], solid))
                if j < 0 or j >= len(report.findings):
                    targets.append([-1] * len(fields) + [0])
                    continue
                stated = {k: v.value for k, v in report.findings[j].fields.items()}
                targets.append(
                    [
                        answer_index(vals, stated[k]) if k in stated and k not in hidden else -1
                        for k, vals in fields.items()
                    ]
                    + [1]
                )
                if "size_mm" in stated and not hidden:
                    size_x.append(math.log(outlined_size_mm(region.astype(np.int64), affines[i])))
                    size_y.append(math.log(float(stated["size_mm"])))
    if not feats:
        return torch.zeros(0, 1), torch.zeros(0, len(fields) + 1, dtype=torch.long), [], []
    return torch.from_numpy(np.stack(feats)), torch.tensor(targets), size_x, size_y


def fit_lesion_heads(
    model,
    images,
    present,
    masks,
    affines,
    examples,
    train,
    val,
    generator,
    log,
    epochs=300,
    augmented: bool = False,
) -> tuple[list[float], list[float]]:
    """Train `model.lesion`; returns the training lesions' (log outlined, log true) sizes.
    With `augmented`, the training studies are also read as acquisition-varied copies."""
    heads = model.lesion
    x, y, size_x, size_y = lesion_rows(
        model, images, present, masks, affines, examples, train, generator if augmented else None
    )
    vx, vy, _, _ = lesion_rows(model, images, present, masks, affines, examples, val)
    log(f"reading lesions: {len(x)} outlined components in training, {len(vx)} held back")
    heads.mean.copy_(x.mean(0))
    heads.std.copy_(x.std(0).clamp_min(1e-3))
    names = [*model.cfg.lesion_fields, "is_lesion"]
    fit_classifiers(
        heads, heads, heads.parameters(), x, y, names, (vx, vy),
        epochs=epochs, batch=128, lr=3e-3, weight_decay=0.01, generator=generator, log=log,
        label="lesion",
    )  # fmt: skip
    return size_x, size_y
