"""What a lesion's voxels say on each sequence: against the breast's own reference
tissue (`lesion_signal`, the breast model), and as a curve relative to its own
pre-contrast signal (`relative_curve`, the staging readers' lesions).

- T2W: the lesion's mean over fibroglandular tissue's (T2 signal is described against
  it: hyper-, iso-, hypointense) and over fat's;
- ADC: the lesion's mean over fibroglandular tissue's (restricted diffusion is low ADC
  relative to normal parenchyma; the ratio survives any scanner scaling);
- DCE: the time-intensity curve, mean relative enhancement (signal over pre-contrast,
  minus one) per post-contrast phase over the lesion, and over its most-enhancing half
  (the "hot spot" where a radiologist puts the ROI); the delayed change is the last
  phase's enhancement over the first's, minus one (below 0: wash-out).

Each is None when the study lacks the sequence: a measurement never stands in for an
image that was not acquired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reportgen.io.sequences import PROTOCOL

# where each dynamic phase lies in an image stacked in PROTOCOL order
DCE = [PROTOCOL.index(f"DCE_{k}") for k in range(4)]


@dataclass(frozen=True)
class LesionSignal:
    t2_over_fgt: float | None
    t2_over_fat: float | None
    adc_over_fgt: float | None
    dwi_over_fgt: float | None
    enhancement: tuple[float, ...] | None  # per post-contrast phase, whole lesion
    hot_spot_enhancement: tuple[float, ...] | None  # ... most-enhancing half
    delayed_change: float | None  # hot spot: last phase over first, minus one


def _ratio(values: np.ndarray, reference: float | None) -> float | None:
    if reference is None or reference <= 0 or values.size == 0:
        return None
    return round(float(values.mean()) / reference, 4)


def lesion_signal(
    mask: np.ndarray,
    images: dict[str, np.ndarray],
    fgt_mask: np.ndarray | None,
    fat_mask: np.ndarray | None,
) -> LesionSignal:
    """Measure the lesion under `mask` on whichever of T2W, ADC, DWI, DCE_0.. are given."""

    def reference(name: str, region: np.ndarray | None) -> float | None:
        if name not in images or region is None or not region.any():
            return None
        return float(images[name][region].mean())

    t2 = images.get("T2W")
    adc = images.get("ADC")
    dwi = images.get("DWI")
    phases = [images[k] for k in sorted(n for n in images if n.startswith("DCE_"))]
    enhancement = hot = delayed = None
    if len(phases) >= 2:
        before = np.maximum(phases[0][mask], 1e-3)
        curves = np.stack([p[mask] / before - 1.0 for p in phases[1:]])  # (phases, voxels)
        top = curves[0] >= np.median(curves[0])
        enhancement = tuple(round(float(v), 4) for v in curves.mean(1))
        hot = tuple(round(float(v), 4) for v in curves[:, top].mean(1))
        if hot[0] > 0.05:
            delayed = round((1.0 + hot[-1]) / (1.0 + hot[0]) - 1.0, 4)
    return LesionSignal(
        t2_over_fgt=_ratio(t2[mask], reference("T2W", fgt_mask)) if t2 is not None else None,
        t2_over_fat=_ratio(t2[mask], reference("T2W", fat_mask)) if t2 is not None else None,
        adc_over_fgt=_ratio(adc[mask], reference("ADC", fgt_mask)) if adc is not None else None,
        dwi_over_fgt=_ratio(dwi[mask], reference("DWI", fgt_mask)) if dwi is not None else None,
        enhancement=enhancement,
        hot_spot_enhancement=hot,
        delayed_change=delayed,
    )


def relative_curve(image: np.ndarray, region: np.ndarray, top: float = 0.2) -> list[float]:
    """The enhancement curve of the region's most-enhancing share `top` as a fraction of its own
    pre-contrast signal, and the curve's shape (how early it peaks, whether it washes out).

    A receive-coil bias field or another scanner's gain scales every phase alike, so the
    ratio to the same voxels' pre-contrast signal cancels it; the absolute rises above do
    not (under another scanner they drift, and the curve type with them)."""
    phases = np.stack([image[k][region] for k in DCE])  # (4, voxels)
    total = (phases[1:] - phases[0]).sum(axis=0)
    hot = total >= np.percentile(total, 100 * (1 - top))
    level = np.median(phases[:, hot], axis=1)
    relative = level[1:] / max(float(level[0]), 1e-3) - 1.0
    peak = float(relative.max()) + 0.05
    return [
        *np.clip(relative, -1.0, 10.0).tolist(),
        float(relative[0] / peak),  # early share of the peak: rising curves are low here
        float((relative[2] - relative[1]) / peak),  # late change: washout is negative
    ]
