"""A phantom's truth mask read lesion by lesion, whatever labels its parts carry.

A sidecar lesion names its own mask label and, under "parts", the labels of its parts
that carry their own (an adnexal lesion's solid tissue), so a reader can learn to outline
the part while the lesion stays one region: its extent, size and centre are the union.
The sidecar's "anatomy_labels" name labels that are anatomy, not tumour (a dilated
ureter): a reader may outline them, but they are no finding's extent.
"""

from __future__ import annotations

import numpy as np


def lesion_labels(lesion: dict) -> list[int]:
    """Every mask label of one sidecar lesion: its own, then its parts'."""
    return [int(lesion["label"]), *(int(p) for p in lesion.get("parts", []))]


def fold_parts(mask: np.ndarray, lesions: list[dict]) -> np.ndarray:
    """The mask with each lesion's part labels replaced by the lesion's own label."""
    if not any(les.get("parts") for les in lesions):
        return mask
    folded = mask.copy()
    for lesion in lesions:
        for part in lesion.get("parts", []):
            folded[mask == int(part)] = int(lesion["label"])
    return folded


def part_offsets(truths: list[dict | None]) -> set[int]:
    """How far part labels sit above their lesion's label in these sidecars (a study's
    second lesion may have solid tissue where no training study's did: the offset says
    which label it would carry)."""
    return {
        int(p) - int(les["label"])
        for t in truths
        for les in (t or {}).get("lesions", [])
        for p in les.get("parts", [])
    }


def anatomy_labels(truths: list[dict | None]) -> dict[str, int]:
    """Anatomy name -> mask label, over these sidecars."""
    return {k: int(v) for t in truths for k, v in (t or {}).get("anatomy_labels", {}).items()}


def lesion_mask(mask: np.ndarray, truth: dict) -> np.ndarray:
    """The mask as findings' extents: parts folded into their lesions, anatomy cleared."""
    folded = fold_parts(mask, truth.get("lesions") or [])
    anatomy = [int(v) for v in truth.get("anatomy_labels", {}).values()]
    if not anatomy:
        return folded
    cleared = folded.copy() if folded is mask else folded
    cleared[np.isin(mask, anatomy)] = 0
    return cleared


def named_outlines(mask: np.ndarray, truth: dict, kinds: dict[str, str]) -> dict[str, np.ndarray]:
    """Name -> boolean outline from a truth mask: every anatomy label by its name, and
    each lesion under the outline its subtype belongs to (`kinds`: subtype -> outline
    name, e.g. a ductal adenocarcinoma's "tumour"), so a study's outlines read the same
    whether a phantom painted them or a reader drew them."""
    out = {name: mask == int(label) for name, label in truth.get("anatomy_labels", {}).items()}
    for lesion in truth.get("lesions", []):
        kind = kinds[lesion["subtype"]]
        inside = np.isin(mask, lesion_labels(lesion))
        out[kind] = out[kind] | inside if kind in out else inside
    return out
