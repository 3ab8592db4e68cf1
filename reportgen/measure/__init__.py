"""Measurements in world millimetres: what a lesion's mask says, before any words.

Find and measure, then write (DESIGN.md): where a report value is geometry (size, where
it lies), it is computed here from a segmentation and the image's affine, never guessed
by the decoder. Nothing here knows a template or a model.
"""

from reportgen.measure.geometry import (
    LesionGeometry,
    largest_component,
    lateral_side,
    measure_lesion,
    midline_x_mm,
    node_parts,
    side_of,
    sides_of,
)
from reportgen.measure.signal import relative_curve

__all__ = [
    "LesionGeometry",
    "largest_component",
    "lateral_side",
    "measure_lesion",
    "midline_x_mm",
    "node_parts",
    "relative_curve",
    "side_of",
    "sides_of",
]
