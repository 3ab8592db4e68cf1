"""A draft's lesion outlines as a DICOM Segmentation (SEG), built with highdicom.

One binary segment per outlined finding, labelled with the finding's id (as the SR's
measurement groups are) and typed by the template's finding concept, on the frames of
the source T2W series, so a viewer lays it over the images the radiologist reads. The
model outlines on its own resampled grid; each source pixel takes the value of the grid
voxel its centre falls in (nearest neighbour, in world millimetres).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ontology.concepts import ConceptTable, default_concepts
from reportgen import __version__
from reportgen.errors import ConfigError
from reportgen.render.dicom_codes import (
    NOT_FOR_CLINICAL_USE_LABEL,
    concept_code,
    declare_private_schemes,
    with_type2,
)
from reportgen.report.schema import Report
from reportgen.report.template import Template, load_template

SEG_SERIES_NUMBER = 9902
SEG_SERIES_DESCRIPTION = f"reportgen outlines - {NOT_FOR_CLINICAL_USE_LABEL}"


def reference_slices(source: list[Dataset]) -> list[Dataset]:
    """The first series of `source` (the T2W: `source_headers` puts it first), one image per
    slice, ordered along the slice normal."""
    series = str(source[0].SeriesInstanceUID)
    images = [ds for ds in source if str(ds.SeriesInstanceUID) == series]
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in images):
        raise ConfigError(
            "the reference series is an enhanced multi-frame image; a SEG is written "
            "only over classic single-frame series for now"
        )
    if any(
        "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds for ds in images
    ):
        raise ConfigError("the reference series has no patient geometry to align a SEG to")
    orientation = np.asarray(images[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    images.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))
    positions = [tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3)) for ds in images]
    if len(set(positions)) != len(positions):
        raise ConfigError("the reference series has several images at one position")
    return images


def pixel_centres_ras(images: list[Dataset]) -> np.ndarray:
    """World (RAS mm) centres of every pixel of `images`: (slices, rows, columns, 3)."""
    out = np.empty((len(images), int(images[0].Rows), int(images[0].Columns), 3), np.float64)
    rows = np.arange(int(images[0].Rows), dtype=np.float64)
    cols = np.arange(int(images[0].Columns), dtype=np.float64)
    for k, ds in enumerate(images):
        iop = np.asarray(ds.ImageOrientationPatient, float)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        origin = np.asarray(ds.ImagePositionPatient, float)
        # PS3.3 C.7.6.2.1.1: column index steps along the row direction (first triplet)
        lps = (
            origin
            + cols[None, :, None] * col_spacing * iop[:3]
            + rows[:, None, None] * row_spacing * iop[3:]
        )
        out[k] = lps * np.array([-1.0, -1.0, 1.0])
    return out


def resample_to_images(
    mask: np.ndarray, grid_affine: np.ndarray, centres_ras: np.ndarray
) -> np.ndarray:
    """`mask` (on the grid `grid_affine` maps to world) at the pixel centres given."""
    flat = centres_ras.reshape(-1, 3)
    voxel = (np.linalg.inv(grid_affine) @ np.c_[flat, np.ones(len(flat))].T)[:3].T
    index = np.rint(voxel).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.asarray(mask.shape)), axis=1)
    values = np.zeros(len(flat), dtype=bool)
    values[inside] = mask[tuple(index[inside].T)]
    return values.reshape(centres_ras.shape[:-1])


def build_seg(
    report: Report,
    outlines: list[np.ndarray | None],
    grid_affine: np.ndarray,
    source: list[Dataset],
    template: Template | None = None,
    concepts: ConceptTable | None = None,
) -> hd.seg.Segmentation:
    """One segment per finding the model outlined, on the source T2W series' frames."""
    if not source:
        raise ConfigError("a DICOM SEG needs the DICOM images the report was drafted from")
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    images = reference_slices(source)
    centres = pixel_centres_ras(images)
    model = report.provenance.model_name or "reportgen"
    version = str(report.provenance.model_version or __version__)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model[:64], family=codes.cid7162.ArtificialIntelligence, version=version[:64]
    )
    segments, descriptions = [], []
    for finding, outline in zip(report.findings, outlines, strict=True):
        if outline is None:
            continue
        on_images = resample_to_images(outline, grid_affine, centres)
        if not on_images.any():  # thinner than the source slices' spacing: not drawable
            continue
        segments.append(on_images)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=len(segments),
                segment_label=f"finding {finding.id}",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=concept_code(
                    concepts[template.finding_type(finding.fields)]
                ),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_id=f"finding {finding.id}",
                tracking_uid=generate_uid(),
            )
        )
    if not segments:
        raise ConfigError(
            "the draft has no outlined finding to segment"
            + (" (it reports no finding)" if not report.findings else "")
        )
    with warnings.catch_warnings():  # its person-name advice quotes the patient's name
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=[with_type2(images[0]), *images[1:]],
            pixel_array=np.stack(segments, axis=-1),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="reportgen",
            manufacturer_model_name=f"{model} {version}"[:64],
            software_versions=str(__version__),
            device_serial_number="none",
            content_label="REPORTGEN",
            content_description=f"{model} outlines; {NOT_FOR_CLINICAL_USE_LABEL}"[:64],
            series_description=SEG_SERIES_DESCRIPTION,
        )
    now = datetime.now(UTC)
    seg.ContentDate, seg.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    declare_private_schemes(seg)
    return seg
