"""The batch format of pretraining: what a study item holds and how items are stacked.

An item is a dict with `image` (S, X, Y, Z) float32 in the config's sequence order,
`present` (S,) bool, `lesion` (X, Y, Z) float32 (zeros without a mask), `has_mask` bool
and `index` int. Where the items come from (files, a cache, a hospital's archive) is
the caller's business; `reportgen.data.CachedStudies` is one such source.
"""

from __future__ import annotations

import torch


def collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([i["image"] for i in items]),
        "present": torch.stack([i["present"] for i in items]),
        "lesion": torch.stack([i["lesion"] for i in items]),
        "has_mask": torch.tensor([i["has_mask"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }
