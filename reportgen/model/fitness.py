"""Is this study one the model may draft? Anatomy first, before any drafting.

A confident BI-RADS report of a prostate is worse than no report. The body region comes
from the study's own DICOM tags (BodyPartExamined) where present; a study of another
region than the template's procedure covers is refused with one line, or, with
`--force`, drafted with a warning carried in the report's validation (and so in every
output format).
"""

from __future__ import annotations

from reportgen.errors import ReportgenError
from reportgen.io import Study
from reportgen.report import Report, Template
from reportgen.report.schema import Problem

# BodyPartExamined values (DICOM PS3.16 CID 4031, upper case) each procedure covers
BODY_PARTS = {
    "mri_breast": {"BREAST"},
    "mri_pelvis": {"PELVIS", "UTERUS", "CERVIX", "OVARY", "ADNEXA", "ABDOMENPELVIS"},
}


class StudyMismatch(ReportgenError):
    """The study shows another body region than the model reports on."""


def fitness_problems(study: Study, template: Template) -> list[str]:
    """Why the study does not fit the template's anatomy (empty: no sign it doesn't)."""
    part = study.metadata.get("body_part")
    covered = BODY_PARTS.get(template.procedure)
    if not part or covered is None or part in covered:
        return []
    return [
        f"the study's BodyPartExamined is {part}, but this model drafts "
        f"{template.title['en']} reports ({', '.join(sorted(covered))})"
    ]


def check_fitness(study: Study, template: Template, force: bool) -> list[str]:
    """The problems, raised as one line unless `force` (then returned, to be reported)."""
    problems = fitness_problems(study, template)
    if problems and not force:
        raise StudyMismatch(f"{study.study_id}: {problems[0]}; --force drafts it anyway")
    return problems


def add_fitness_warnings(report: Report, problems: list[str]) -> None:
    """Carry the problems in the report itself, so no output loses them."""
    for message in problems:
        report.validation.problems.insert(
            0,
            Problem(
                severity="warning",
                where="study",
                rule="fitness",
                message=f"drafted with --force: {message}; this report is not meaningful",
            ),
        )
