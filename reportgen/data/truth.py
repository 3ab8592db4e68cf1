"""A phantom's truth mask read lesion by lesion, whatever labels its parts carry.

A sidecar lesion names its own mask label and, under "parts", the labels of its parts
that carry their own (an adnexal lesion's solid tissue), so a reader can learn to outline
the part while the lesion stays one region: its extent, size and centre are the union.
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
