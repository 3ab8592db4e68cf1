"""A finding's time-intensity curve, drawn as the printable page shows it.

Kinetics are read from the curve (BI-RADS initial and delayed phase; O-RADS MRI's
low-, intermediate- and high-risk curves), so the page shows the curve the words stand
for: the relative enhancement, (S(t) - S0) / S0, of the box's most-enhancing half at each
DCE phase (the half that enhances most early: a box also holds the tissue around the
lesion, and a radiologist places the region of interest on the most-enhancing part), at
each phase's seconds after the injection where the headers gave them.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from reportgen.io.study import Study
from reportgen.render.key_images import box_corner_voxels
from reportgen.report.schema import Box, SeriesTechnique

PHASES = ("DCE_0", "DCE_1", "DCE_2", "DCE_3")


def box_voxels(shape: tuple[int, ...], affine: np.ndarray, box: Box) -> tuple[slice, ...] | None:
    """The voxel block of a grid that a world box covers (None if it covers none)."""
    voxels = box_corner_voxels(box, affine)
    low = np.clip(np.floor(voxels.min(0) + 0.5).astype(int), 0, np.asarray(shape[:3]))
    high = np.clip(np.floor(voxels.max(0) + 0.5).astype(int) + 1, 0, np.asarray(shape[:3]))
    if (high <= low).any():
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def relative_enhancement(study: Study, box: Box) -> np.ndarray | None:
    """Relative enhancement (%) of the box's most-enhancing half at each DCE phase, the
    pre-contrast phase first (0); None without the four phases on one grid."""
    if not all(p in study.sequences for p in PHASES):
        return None
    volumes = [study.sequences[p] for p in PHASES]
    if any(v.data.shape != volumes[0].data.shape for v in volumes):
        return None
    block = box_voxels(volumes[0].data.shape, volumes[0].affine, box)
    if block is None:
        return None
    phases = [np.asarray(v.data[block], np.float64).reshape(-1) for v in volumes]
    before = np.maximum(phases[0], 1e-6 * max(float(phases[0].max()), 1e-6))
    early = phases[1] / before - 1.0
    hot = early >= np.median(early)
    return np.array([100.0 * float(np.median(p[hot] / before[hot] - 1.0)) for p in phases])


def phase_seconds(technique: list[SeriesTechnique]) -> tuple[list[float] | None, str | None]:
    """Each DCE phase's seconds and what they count from, where the technique states them."""
    for series in technique:
        if series.sequence == "DCE" and series.phase_times_s and len(series.phase_times_s) == 4:
            return list(series.phase_times_s), series.timed_from
    return None, None


# Font files that draw Chinese, in the order a plot prefers them (Debian: fonts-noto-cjk,
# fonts-wqy-zenhei, fonts-droid-fallback); none installed, a Chinese page's plot keeps
# English labels rather than boxes where the characters should be.
CJK_FONT_FILES = ("NotoSansCJK", "NotoSansSC", "SourceHanSans", "wqy-zenhei", "DroidSansFallback")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of the first installed CJK_FONT_FILES font (registered with
    matplotlib, whose own font list may predate it), else None."""
    from matplotlib import font_manager

    found = font_manager.findSystemFonts()
    for stem in CJK_FONT_FILES:
        path = next((f for f in sorted(found) if Path(f).name.startswith(stem)), None)
        if path is not None:
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


def curve_png(
    values: np.ndarray,
    seconds: list[float] | None,
    since: str | None,
    labels: dict[str, str],
    font: str | None = None,
) -> bytes:
    """The curve as a small PNG: relative enhancement (%) against the phase's seconds
    (else its number); `font`: the family its labels need (a CJK font for Chinese)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = seconds if seconds is not None else list(range(len(values)))
    family = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    with matplotlib.rc_context({"font.family": family}):
        return _plot(plt, x, values, seconds, since, labels)


def _plot(plt, x, values, seconds, since, labels) -> bytes:
    figure, axes = plt.subplots(figsize=(3.2, 2.4), dpi=100)
    axes.plot(x, values, marker="o", color="#b35900")
    axes.axhline(0.0, color="#888", linewidth=0.8)
    axes.set_xlabel(labels["seconds"].format(since=since) if seconds else labels["phase"])
    axes.set_ylabel(labels["enhancement"])
    axes.grid(alpha=0.3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    plt.close(figure)
    return out.getvalue()
