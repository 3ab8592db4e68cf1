"""Per-lesion reading for templates with several findings (O-RADS MRI): outline, measure, read.

The staging reader's segmenter outlines lesions; each outlined component is one candidate
finding. Its measures are what a radiologist looks at: signal on every sequence inside
the lesion (low, middle and high percentiles, so fluid and solid parts both show), the
enhancement at each DCE phase inside it and in its rim (the wall), the curve of its
most-enhancing part, how uneven it is on T2W (septa, solid parts), its volume and
diameter, and which families were acquired. A reader that outlines solid tissue (O-RADS:
outline class `SOLID` inside a lesion) also measures the solid tissue on its own: its
share of the lesion, its curve and its T2W and diffusion signal (the lexicon's time-
intensity curve is the solid tissue's, not the wall's). A small classifier per lexicon field reads
the measures (fit on the training studies' own outlines matched to their truth), plus
one that says whether a component is a lesion at all. Nothing here is a hand threshold.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from reportgen.io.sequences import PROTOCOL
from reportgen.measure import measure_lesion, relative_curve

MIN_VOXELS = 4  # smaller components are noise on the reader's grid (4 mm: 0.26 ml)
DCE = [PROTOCOL.index(f"DCE_{k}") for k in range(4)]
T2W, DWI, ADC = PROTOCOL.index("T2W"), PROTOCOL.index("DWI"), PROTOCOL.index("ADC")
N_CURVE = 5  # relative enhancement at each post-contrast phase, and the curve's shape
N_MEASURES = 3 * len(PROTOCOL) + 6 + 3 + 2 + N_CURVE + 2 + 2 + 2
LESION, SOLID = 1, 2  # outline classes: a lesion; its solid tissue (readers that outline it)
N_SOLID = 3 + N_CURVE + 3  # `solid_measures`


def n_measures(solid_tissue: bool) -> int:
    """How many measures a lesion gets from a reader (with or without solid tissue)."""
    return N_MEASURES + (N_SOLID if solid_tissue else 0)


def components(labels: np.ndarray, solid_tissue: bool = False) -> list[np.ndarray]:
    """Connected outlined lesions, largest first (boolean masks); with `solid_tissue` a
    lesion is its outlined solid tissue and the rest of it together."""
    parts, n = ndimage.label(np.isin(labels, (LESION, SOLID) if solid_tissue else (LESION,)))
    if not n:
        return []
    sizes = ndimage.sum(np.ones_like(parts), parts, range(1, n + 1))
    order = np.argsort(-sizes)
    return [parts == (k + 1) for k in order if sizes[k] >= MIN_VOXELS]


def outlined_lesions(
    labels: np.ndarray, solid_tissue: bool = False
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Each outlined lesion with its outlined solid tissue (None: the reader has none)."""
    return [
        (region, region & (labels == SOLID) if solid_tissue else None)
        for region in components(labels, solid_tissue)
    ]


def lesion_measures(
    image: np.ndarray,
    present: np.ndarray,
    region: np.ndarray,
    affine: np.ndarray,
    solid: np.ndarray | None = None,
) -> np.ndarray:
    """The measures of one outlined lesion (`n_measures`,), on the prepared grid; with
    `solid` (its outlined solid tissue) the solid tissue's own measures follow."""
    core = ndimage.binary_erosion(region) if region.sum() > 8 else region
    core = core if core.any() else region
    rim = ndimage.binary_dilation(region) & ~core
    out: list[float] = []
    for s in range(len(PROTOCOL)):
        values = image[s][region] if present[s] else np.zeros(1)
        out.extend(np.percentile(values, [10, 50, 90]).tolist())
    has_dce = bool(present[DCE].all())
    if has_dce:
        rise = [image[k] - image[DCE[0]] for k in DCE[1:]]
        out.extend(v for r in rise for v in np.percentile(r[region], [50, 90]).tolist())
        out.extend(float(r[rim].mean()) for r in rise)
        late = rise[-1][region]
        top = late >= np.percentile(late, 80)
        out.extend([float(rise[0][region][top].mean()), float(late[top].mean())])
        out.extend(relative_curve(image, region))
    else:
        out.extend([0.0] * (6 + 3 + 2 + N_CURVE))
    t2 = image[T2W][core] if present[T2W] else np.zeros(1)
    pre = image[DCE[0]][core] if present[DCE[0]] else np.zeros(1)
    out.extend([float(t2.std()), float(pre.std())])
    geometry = measure_lesion(region, affine)
    out.extend(
        [float(np.log1p(geometry.volume_ml)), float(np.log(geometry.centre_diameter_mm + 1))]
    )
    out.extend([float(has_dce), float(bool(present[ADC] and present[DWI]))])
    if solid is not None:
        out.extend(solid_measures(image, present, region, solid))
    return np.asarray(out, np.float32)


def solid_measures(
    image: np.ndarray, present: np.ndarray, region: np.ndarray, solid: np.ndarray
) -> list[float]:
    """The outlined solid tissue of a lesion (N_SOLID,): whether there is any, its share of
    the lesion and its volume in voxels (log), its curve (`relative_curve`, on its
    most-enhancing half: the wall and noise are outside it now) and its median T2W, DWI
    and ADC. Zeros where there is none or the sequence is missing."""
    voxels = int(solid.sum())
    found = voxels >= MIN_VOXELS // 2
    out = [float(found), voxels / max(int(region.sum()), 1), float(np.log1p(voxels))]
    if found and present[DCE].all():
        out.extend(relative_curve(image, solid, top=0.5))
    else:
        out.extend([0.0] * N_CURVE)
    out.extend(
        float(np.median(image[s][solid])) if found and present[s] else 0.0 for s in (T2W, DWI, ADC)
    )
    return out


class LesionHeads(nn.Module):
    """Standardised measures -> per field logits, and `is_lesion` (a real finding or not)."""

    def __init__(self, fields: dict[str, list[str]], hidden: int = 48, measures: int = N_MEASURES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(measures))
        self.register_buffer("std", torch.ones(measures))
        answers = {**fields, "is_lesion": ["false", "true"]}
        self.heads = nn.ModuleDict(
            {
                k: nn.Sequential(
                    nn.Linear(measures, hidden),
                    nn.GELU(),
                    nn.Dropout(0.1),
                    nn.Linear(hidden, len(v)),
                )
                for k, v in answers.items()
            }
        )

    def forward(self, measures: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (measures - self.mean) / self.std
        return {k: head(x) for k, head in self.heads.items()}
