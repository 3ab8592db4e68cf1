"""The study adapter: a loaded study on a model's grid, as arrays in the model's order.

Training, caching and inference all go through `study_arrays`, so the model sees at
`reportgen generate` exactly what it saw in training.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from reportgen.io.sequences import PROTOCOL
from reportgen.io.study import Study
from reportgen.preprocessing import GridSpec, prepare_study


class GridConfig(Protocol):
    """What the adapter needs of a model's input config (`pretrain_mae.MAEConfig` has it)."""

    grid_shape: tuple[int, int, int]
    grid_spacing: tuple[float, float, float]
    sequences: tuple[str, ...]


def study_arrays(study: Study, cfg: GridConfig, with_mask: bool = True) -> dict[str, np.ndarray]:
    """Image (S, X, Y, Z) in `cfg.sequences` order, which sequences are present, the lesion
    mask (zeros if none, or if not `with_mask`: drafting never reads it) and the grid's
    affine. Only `cfg.sequences` are prepared."""
    grid = GridSpec(tuple(cfg.grid_shape), tuple(cfg.grid_spacing))
    ready = prepare_study(study, grid, cfg.sequences, with_mask)
    present = np.array([name in ready.sequences for name in cfg.sequences])
    image = np.stack(
        [
            ready.image[PROTOCOL.index(n)]
            if n in PROTOCOL
            else np.zeros(cfg.grid_shape, np.float32)
            for n in cfg.sequences
        ]
    )
    mask = ready.mask if ready.mask is not None else np.zeros(cfg.grid_shape, np.int16)
    return {
        "image": image.astype(np.float32),
        "present": present,
        "mask": mask,
        "has_mask": np.array(ready.mask is not None),
        "affine": np.asarray(ready.affine),
    }
