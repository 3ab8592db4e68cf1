"""A clinician's correction of a draft: the one typed record between review and learning.

The review app's store writes these, `reportgen corrections export` writes them as JSON
lines, and the rewards, the reward model and `reportgen refine` read them. It must never
carry anything the store does not hold (no patient identifiers: the study id is the
pseudonymous one the draft was made for).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from reportgen.report.schema import Report


class FieldChangeRecord(BaseModel):
    """One field the clinician changed ("where" as in `reportgen.report.compare.Slot`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: str
    field: str
    before: str | float | int | bool | None
    after: str | float | int | bool | None


class CorrectionDiff(BaseModel):
    """What a correction changed: fields, and findings added or removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    changes: list[FieldChangeRecord] = Field(default_factory=list)
    added_findings: list[str] = Field(default_factory=list)
    removed_findings: list[str] = Field(default_factory=list)
    comment_changed: bool = False


class CorrectionRecord(BaseModel):
    """A signed report beside the draft it corrected, with who, when and how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correction_id: int
    draft_id: int
    study_id: str
    template_id: str
    clinician: str
    time_spent_s: float
    signed_at: str  # ISO 8601, UTC
    diff: CorrectionDiff
    draft: Report
    corrected: Report
    study_path: str | None = None  # relative to the studies folder the review app served
    model_version: str | None = None
    checkpoint_sha256: str | None = None
    # False: signed through the API without the signer opening the review page, so
    # time_spent_s means nothing; the reward step drops or down-weights such records
    opened_by_signer: bool | None = None

    def to_json_line(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    @classmethod
    def from_json_line(cls, line: str) -> CorrectionRecord:
        return cls.model_validate_json(line)
