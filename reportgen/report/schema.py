"""The structured report contract, `reportgen.report/1`.

One JSON document that every part speaks: synth writes it as ground truth, the parser
produces it from text, the model from images, validate checks it, renderers turn it
into text/FHIR, the review app edits it, and the reward log stores draft and corrected
versions of it. Field values are template value ids (which are ontology concept ids)
and carry their code (system, code, display) so a report is self-describing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID = "reportgen.report/1"

Scalar = str | int | float | bool


class Coding(BaseModel):
    """A concept code; `local` marks codes in the project's own namespace."""

    model_config = ConfigDict(extra="forbid")
    system: str
    code: str
    display: str
    local: bool = False


class Value(BaseModel):
    """One field's value: an enum concept id, a number, a boolean or free text."""

    model_config = ConfigDict(extra="forbid")
    value: Scalar
    concept: Coding | None = None
    unit: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class Box(BaseModel):
    """An axis-aligned box in world coordinates (RAS, mm): where a finding is."""

    model_config = ConfigDict(extra="forbid")
    min_mm: tuple[float, float, float]
    max_mm: tuple[float, float, float]

    def dimensions_mm(self) -> tuple[float, float, float]:
        """The three orthogonal dimensions a report states: transverse (R-L),
        anteroposterior and craniocaudal extent of the finding's outline (mm)."""
        low, high = self.min_mm, self.max_mm
        return (high[0] - low[0], high[1] - low[1], high[2] - low[2])


class Evidence(BaseModel):
    """Why the model believes a finding: where it looked and which sequences mattered."""

    model_config = ConfigDict(extra="forbid")
    box: Box | None = None
    heatmap: str | None = None  # path of a NIfTI overlay, relative to the report
    key_slice_png: str | None = None
    sequence_contributions: dict[str, float] = Field(default_factory=dict)
    malignancy_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    # breast: the distance from the nipple of that side to the finding's centre (mm), as
    # measured on the images (`measure.breast.breast_position`); None: not measured
    nipple_distance_mm: float | None = Field(default=None, ge=0.0)


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    fields: dict[str, Value]
    derived: dict[str, Value] = Field(default_factory=dict)
    evidence: Evidence | None = None


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    version: str


class SeriesTechnique(BaseModel):
    """How one sequence was acquired: its voxels, and what its headers or sidecar say of
    field strength and b-value (technical values only, nothing that identifies)."""

    model_config = ConfigDict(extra="forbid")
    sequence: str  # a protocol name; the DCE phases are one entry, "DCE", with `phases`
    in_plane_mm: tuple[float, float]
    slice_mm: float
    field_strength_t: float | None = None
    b_value: float | None = None  # s/mm2, diffusion
    phases: int | None = None  # DCE: the pre-contrast phase and the post-contrast ones
    # DCE: each phase's seconds after `timed_from` ("injection" where the headers give
    # the bolus start, else "first phase"), when the headers give acquisition times
    phase_times_s: list[float] | None = None
    timed_from: str | None = None
    # DCE: the gadolinium agent (generic name) and the volume injected (mL), where the
    # headers name them (`io.dicom_headers.contrast_agent`)
    contrast_agent: str | None = None
    contrast_volume_ml: float | None = Field(default=None, gt=0.0)


INDICATION_CHARS = 500


STUDY_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def clean_study_date(text: str) -> str:
    """A study date as a report states it (YYYY-MM-DD); ValueError if it is not a real
    calendar day."""
    try:
        return date.fromisoformat(str(text).strip()).isoformat()
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def clean_indication(text: str) -> str:
    """An indication as a report states it: one line, whitespace collapsed; ValueError if
    it is empty, too long or holds control characters."""
    line = " ".join(str(text).split())
    if not line:
        raise ValueError("the indication is empty")
    if len(line) > INDICATION_CHARS:
        raise ValueError(f"the indication is longer than {INDICATION_CHARS} characters")
    if any(not ch.isprintable() for ch in line):
        raise ValueError("the indication holds control characters")
    return line


class StudyRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study_id: str
    sequences_used: list[str] = Field(default_factory=list)
    sequences_missing: list[str] = Field(default_factory=list)
    # how the study was acquired, as the drafting model read it (a draft's technique
    # section); empty for a report that was not drafted from images
    technique: list[SeriesTechnique] = Field(default_factory=list)
    # why the study was done, as the requesting clinician gave it (`--indication`): never
    # read from DICOM free text, which de-identification blanks
    indication: str | None = Field(default=None, min_length=1, max_length=INDICATION_CHARS)
    # the day the study was done (ISO 8601), as the PACS dates it (DICOM StudyDate) or the
    # requesting side gives it (`--study-date`): what a reading room sorts and compares by
    study_date: str | None = Field(default=None, pattern=STUDY_DATE_PATTERN)
    # report-level values measured in the images (name -> mm, e.g. "skin_thickness_left_mm"),
    # behind the fields the draft states from them
    measurements: dict[str, float] | None = None


class Provenance(BaseModel):
    """Who or what wrote this version of the report."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    source: Literal["model", "human", "synthetic", "parser"]
    model_name: str | None = None
    model_version: str | None = None
    checkpoint_sha256: str | None = None
    clinician_id: str | None = None
    # values whose calibrated confidence is below this are marked for the reader to check
    # (`reportgen.report.calibration`); None: the model was never calibrated
    check_below: float | None = Field(default=None, ge=0.0, le=1.0)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # set by the review store when a clinician signs (never by an edit): who and when,
    # as the signed report states it
    signed_by: str | None = None
    signed_at: str | None = None


# a Problem's `where` for a note on the study itself (drafted with --force, unlike the
# training studies), which only drafting can judge: checking the report again keeps it
STUDY_NOTE = "study"


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Literal["error", "warning"]
    where: str  # e.g. "fields.fgt_amount", "findings[1].margin", "derived.assessment", STUDY_NOTE
    message: str
    rule: str | None = None


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    valid: bool
    problems: list[Problem] = Field(default_factory=list)


class Report(BaseModel):
    """A structured radiology report (schema `reportgen.report/1`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_id: Literal["reportgen.report/1"] = Field(default=SCHEMA_ID, alias="schema")
    template: TemplateRef
    study: StudyRef
    fields: dict[str, Value] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    derived: dict[str, Value] = Field(default_factory=dict)
    comment: str = ""
    provenance: Provenance
    validation: Validation | None = None
    notice: str | None = None  # e.g. "trained on synthetic phantoms; not for clinical use"

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.model_validate_json(text)


def report_json_schema() -> dict:
    """The JSON Schema of the contract, for consumers outside Python."""
    return Report.model_json_schema(by_alias=True)
