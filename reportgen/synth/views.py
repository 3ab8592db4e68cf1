"""Lesion views: the breast scene acquired in a small field of view around each lesion.

What needs many lesions rather than whole studies (how readable each descriptor is from
the pixels; the per-lesion readers' crops) would otherwise synthesise a 250 x 250 x 120
mm study at clinical resolution, 4.4 million voxels, for one or two lesions. A view
draws a case and its acquisition as `reportgen synth` does, places the lesions first,
then renders the same scene (anatomy, composition, enhancement, every lesion within
reach) only inside a cube around one lesion, on the acquisition's own voxels, and
images it with the same protocol, noise and bias-field scale (`Acquisition.around`).
Two differences from a whole study, both local: the fibroglandular texture is drawn to
the case's volume fraction within the view rather than over the breast, and each view
redraws its lesions' outlines (a view is one draw of the lesion's process, not a crop of
a particular study). Views have their own random stream, apart from the studies'.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from reportgen.io.study import Study, Volume
from reportgen.synth import breast
from reportgen.synth.acquisition import sample_acquisition
from reportgen.synth.generate import SynthOptions
from reportgen.synth.mri import acquire_series, synthesise_sequences
from reportgen.synth.scene import Grid

VIEW_EXTENT_MM = 64.0  # cube side: a 43 x 43 x 48 mm reading crop with room to spare


@dataclass
class LesionView:
    """One lesion's view: each series on its own grid, the lesion labels on the painted
    (DCE) grid, and the lesion's truth (its template fields, with size in mm)."""

    series: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (image, affine)
    labels: np.ndarray  # on `grid`; the lesion is `label`
    grid: Grid
    label: int
    fields: dict
    pathology: str
    subtype: str

    def study(self) -> Study:
        """The view as a study: its series, each on its own grid."""
        return Study(
            study_id=f"view-{self.label}",
            sequences={n: Volume(image, affine) for n, (image, affine) in self.series.items()},
            source="lesion view",
            form="folder",
        )

    def centroid_mm(self) -> np.ndarray:
        """World centre (mm) of the lesion's labelled voxels."""
        voxels = np.argwhere(self.labels == self.label)
        return self.grid.affine[:3, :3] @ voxels.mean(0) + self.grid.affine[:3, 3]


def view_rng(options: SynthOptions, index: int) -> np.random.Generator:
    return np.random.default_rng([options.seed, zlib.crc32(b"breast/lesion-views"), index])


def lesion_views(
    options: SynthOptions,
    index: int,
    extent_mm: float = VIEW_EXTENT_MM,
    types: frozenset[str] | None = None,
) -> list[LesionView]:
    """The views of case `index` of `options` (breast), one per lesion that fits; with
    `types`, only of lesions of those types (the others are not rendered: a rare type's
    views from many cases at a fraction of their cost)."""
    if options.domain != "breast":
        raise ValueError("lesion views are drawn for the breast domain")
    rng = view_rng(options, index)
    case = breast.sample_case(rng, options.malignant_fraction)
    acq = sample_acquisition(rng, "breast", options.shift, False, options.protocol)
    case.lesions = breast.place_lesions(case, rng, acq.protocol)
    views = []
    for lesion in case.lesions:
        if types is not None and lesion.fields.get("type") not in types:
            continue
        view = acq.around(lesion.centre, extent_mm)
        canvas = breast.render(case, view, rng)
        if not np.any(canvas.labels == lesion.label):
            continue
        series = acquire_series(synthesise_sequences(canvas, view, rng), canvas.grid, view)
        views.append(
            LesionView(
                series=series,
                labels=canvas.labels,
                grid=canvas.grid,
                label=lesion.label,
                fields={**lesion.fields, "size_mm": round(lesion.size_mm)},
                pathology=lesion.pathology,
                subtype=lesion.subtype,
            )
        )
    return views
