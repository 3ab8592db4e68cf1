"""A report as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report), built with highdicom.

What a PACS viewer (OHIF, Weasis, a vendor's) shows of a draft: one measurement group per
finding, tracked by the finding's id, with its size (and a breast finding's distance
from the nipple, RadElement RDE1561) as numeric measurements in UCUM units, its enumerated and yes/no fields as coded qualitative evaluations (the template's
concepts with their SNOMED CT / RadLex codes), where it is as an ellipsoid in the study's
frame of reference (SCOORD3D, patient LPS mm), and its per-finding result (BI-RADS
category, ...). Report-level fields and the assessment or stage are one group without a
region. The model is the observer device, and the not-for-clinical-use notice and every
validation problem are text items, so nothing the JSON says is lost on the way.

The SR sits in the source study: it copies the patient and study modules of the images
it describes and references them as evidence. A study read from NIfTI has none, so it
has no SR (`reportgen.io.dicom.source_headers` refuses it).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceSeriesForSegmentation,
    TextContentItem,
    TrackingIdentifier,
    VolumeSurface,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ontology.concepts import ConceptTable, default_concepts
from reportgen import __version__
from reportgen.errors import ConfigError
from reportgen.render.dicom_codes import (
    NOT_FOR_CLINICAL_USE_LABEL,
    coding_code,
    concept_code,
    declare_private_schemes,
    with_type2,
)
from reportgen.render.notes import report_notes
from reportgen.report.calibration import needs_check
from reportgen.report.schema import Box, Finding, Report, Value
from reportgen.report.template import Template, load_template

SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = f"reportgen draft - {NOT_FOR_CLINICAL_USE_LABEL}"
YES, NO = codes.SCT.Yes, codes.SCT.No
COMMENT = codes.DCM.Comment
# A value below the model's calibrated confidence threshold carries this qualifier:
# Certainty of Feature (DCM 111011) = Known possible (SNOMED CT 410590009).
CERTAINTY = codes.DCM.CertaintyOfFeature
UNCERTAIN = CodedConcept("410590009", "SCT", "Known possible")


def ucum(unit: str) -> CodedConcept:
    return CodedConcept(unit, "UCUM", unit)


def _ellipsoid(box: Box) -> np.ndarray:
    """The ellipsoid inscribed in a world box (RAS mm) as DICOM's six axis end points in LPS
    mm, longest axis first (PS3.3 C.18.9.1.2)."""
    lo, hi = np.asarray(box.min_mm, float), np.asarray(box.max_mm, float)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    points = []
    for axis in np.argsort(-half, kind="stable"):
        step = np.zeros(3)
        step[axis] = max(half[axis], 0.5)
        points += [centre - step, centre + step]
    lps = np.asarray(points) * np.array([-1.0, -1.0, 1.0])
    return lps.astype(np.float32)


class _Items:
    """Measurements and qualitative evaluations of one group, from a report's values."""

    def __init__(
        self, template: Template, concepts: ConceptTable, algorithm, check_below: float | None
    ):
        self.template, self.concepts, self.algorithm = template, concepts, algorithm
        self.check_below = check_below
        self.measurements: list[Measurement] = []
        self.evaluations: list[QualitativeEvaluation] = []
        self.texts: list[tuple[CodedConcept, str]] = []

    def code(self, concept_id: str) -> CodedConcept:
        return concept_code(self.concepts[concept_id])

    def field(self, field_id: str, value: Value) -> None:
        spec = self.template.field(field_id)
        name = self.code(spec.concept)
        if spec.type == "number":
            self.measurements.append(
                Measurement(
                    name=name,
                    value=float(value.value),
                    unit=ucum(spec.unit or "1"),
                    algorithm_id=self.algorithm,
                )
            )
        elif spec.type == "bool":  # the report's own present/absent code, else yes/no
            answer = coding_code(value.concept) if value.concept else None
            self._evaluation(name, answer or (YES if value.value else NO), value)
        elif spec.type == "enum":
            self._evaluation(name, self.code(str(value.value)), value)
        else:
            self.texts.append((name, str(value.value)))

    def _evaluation(self, name: CodedConcept, answer: CodedConcept, value: Value) -> None:
        evaluation = QualitativeEvaluation(name, answer)
        if needs_check(value, self.check_below):  # the reader is told to check it
            evaluation[0].ContentSequence = [
                CodeContentItem(
                    name=CERTAINTY,
                    value=UNCERTAIN,
                    relationship_type=RelationshipTypeValues.HAS_PROPERTIES,
                )
            ]
        self.evaluations.append(evaluation)

    def derived(self, derived_id: str, value: Value) -> None:
        spec = self.template.derived(derived_id)
        self.evaluations.append(
            QualitativeEvaluation(self.code(spec.concept), self.code(str(value.value)))
        )


def _with_texts(group, texts: list[tuple[CodedConcept, str]]):
    """Free-text fields as TEXT items of the group (highdicom's evaluations are codes only)."""
    for name, text in texts:
        group[0].ContentSequence.append(
            TextContentItem(name=name, value=text[:1024], relationship_type="HAS PROPERTIES")
        )
    return group


def _finding_group(
    finding: Finding,
    items: _Items,
    frame_of_reference_uid: str | None,
    source_series_uid: str,
    template: Template,
):
    for key, value in finding.fields.items():
        items.field(key, value)
    for key, value in finding.derived.items():
        items.derived(key, value)
    distance = finding.evidence.nipple_distance_mm if finding.evidence else None
    if distance is not None:  # breast: measured on the images, not a template field
        items.measurements.append(
            Measurement(
                name=items.code("nipple_distance"),
                value=round(float(distance), 1),
                unit=ucum("mm"),
                algorithm_id=items.algorithm,
            )
        )
    common = dict(
        tracking_identifier=TrackingIdentifier(
            uid=generate_uid(), identifier=f"finding {finding.id}"
        ),
        finding_type=items.code(template.finding_type(finding.fields)),
        algorithm_id=items.algorithm,
        measurements=items.measurements or None,
        qualitative_evaluations=items.evaluations or None,
    )
    box = finding.evidence.box if finding.evidence else None
    if box is not None and frame_of_reference_uid:
        group = VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_volume_surface=VolumeSurface(
                graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSOID,
                graphic_data=_ellipsoid(box),
                frame_of_reference_uid=frame_of_reference_uid,
                source_series=SourceSeriesForSegmentation(source_series_uid),
            ),
            **common,
        )
    else:  # no location the model gave, or no frame of reference to give it in
        group = MeasurementsAndQualitativeEvaluations(**common)
    return _with_texts(group, items.texts)


def _reference_series(source: list[Dataset]) -> Dataset:
    """The image the locations are given against: the first series with a frame of
    reference (they share one when the scanner did not move the table between them)."""
    with_frame = [ds for ds in source if ds.get("FrameOfReferenceUID")]
    return (with_frame or source)[0]


def build_sr(
    report: Report,
    source: list[Dataset],
    template: Template | None = None,
    concepts: ConceptTable | None = None,
) -> Comprehensive3DSR:
    """The report as a Comprehensive 3D SR in the study of `source` (the headers of the
    images it was drafted from)."""
    if not source:
        raise ConfigError("a DICOM SR needs the DICOM images the report was drafted from")
    if len({str(ds.StudyInstanceUID) for ds in source}) != 1:
        raise ConfigError("the source images belong to more than one study")
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    model = report.provenance.model_name or "reportgen"
    version = report.provenance.model_version or __version__
    algorithm = AlgorithmIdentification(name=model[:64], version=str(version)[:64])
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[model, str(version)]),
            name="reportgen",
            manufacturer_name="reportgen",
            model_name=f"{model} {version}"[:64],
        ),
    )
    reference = _reference_series(source)
    frame = str(reference.get("FrameOfReferenceUID", "") or "") or None
    groups = []
    study_items = _Items(template, concepts, algorithm, report.provenance.check_below)
    for key, value in report.fields.items():
        study_items.field(key, value)
    for key, value in report.derived.items():
        study_items.derived(key, value)
    groups.append(
        _with_texts(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier="study"),
                algorithm_id=algorithm,
                measurements=study_items.measurements or None,
                qualitative_evaluations=study_items.evaluations or None,
            ),
            study_items.texts,
        )
    )
    for finding in report.findings:
        groups.append(
            _finding_group(
                finding,
                _Items(template, concepts, algorithm, report.provenance.check_below),
                frame,
                str(reference.SeriesInstanceUID),
                template,
            )
        )
    content = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=concept_code(concepts[template.procedure]),
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    for text in report_notes(report):
        content[0].ContentSequence.append(
            TextContentItem(name=COMMENT, value=text[:1024], relationship_type="CONTAINS")
        )
    now = datetime.now(UTC)
    with warnings.catch_warnings():  # its person-name advice quotes the patient's name
        warnings.simplefilter("ignore", UserWarning)
        sr = _document(content, source, now)
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    sr.SoftwareVersions = str(__version__)
    declare_private_schemes(sr)
    return sr


def _document(content, source: list[Dataset], now: datetime) -> Comprehensive3DSR:
    return Comprehensive3DSR(
        evidence=[with_type2(source[0]), *source[1:]],
        content=content[0],
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="reportgen",
        is_complete=False,  # a draft: a clinician completes and verifies it
        is_final=False,
        is_verified=False,
        content_date=now.date(),
        content_time=now.time().replace(microsecond=0),
    )
