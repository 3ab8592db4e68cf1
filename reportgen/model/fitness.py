"""Is this study one the model may draft? Anatomy first, before any drafting.

A confident BI-RADS report of a prostate is worse than no report. The body region comes
from the study's own DICOM tags (BodyPartExamined) where present, else from its T2W
image (`body_region`: breast or pelvis, trusted only on a study that resembles the
training studies). A study of another region than the template's procedure covers, or
an untagged one whose region cannot be read, is refused with one line, or, with
`--force`, drafted with a warning carried in the report's validation (and so in every
output format). A study whose image is unlike every training study always carries a
warning saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from reportgen.errors import ReportgenError
from reportgen.io import Study
from reportgen.model.body_region import (
    REGION_FOLDER,
    BodyRegionNet,
    RegionReading,
    load_region_model,
    read_region,
)
from reportgen.model.generate import BUNDLED_MODELS
from reportgen.report import Report, Template
from reportgen.report.anatomy import PROCEDURE_REGION
from reportgen.report.schema import STUDY_NOTE, Problem

BUNDLED_REGION_MODEL = BUNDLED_MODELS / REGION_FOLDER
# BodyPartExamined values (DICOM PS3.16 CID 4031, upper case) each procedure covers
BODY_PARTS = {
    "mri_breast": {"BREAST"},
    "mri_pelvis": {"PELVIS", "UTERUS", "CERVIX", "OVARY", "ADNEXA", "ABDOMENPELVIS"},
    "ct_abdomen_pancreas": {
        "ABDOMEN",
        "PANCREAS",
        "ABDOMENPELVIS",
        "CHESTABDOMEN",
        "CHESTABDOMENPELVIS",
    },
}
# the modality each procedure is read in (a tag covers a procedure of the study's own)
PROCEDURE_MODALITY = {"mri_breast": "MR", "mri_pelvis": "MR", "ct_abdomen_pancreas": "CT"}
# tags that name no region (a PET/CT export writes PARTIALBODY): the image decides
GENERIC_BODY_PARTS = frozenset({"PARTIALBODY", "WHOLEBODY", "BODY"})


class StudyMismatch(ReportgenError):
    """The study shows another body region than the model reports on. `reason` says why;
    the message adds what the command line can do about it (`--force`)."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}; --force drafts it anyway")
        self.reason = reason


class ModalityMismatch(ReportgenError):
    """A study of another modality than the model reads (a CT given to an MRI reader):
    never drafted, `--force` or not, because no value such a draft states means anything."""


@dataclass(frozen=True)
class Anatomy:
    """What a study shows: its BodyPartExamined tag, what its T2W image looks like, and
    its modality."""

    tag: str | None
    reading: RegionReading | None
    modality: str = "MR"

    @property
    def specific_tag(self) -> str | None:
        """The BodyPartExamined tag where it names a region (not PARTIALBODY)."""
        return self.tag if self.tag and self.tag not in GENERIC_BODY_PARTS else None

    @property
    def region(self) -> str | None:
        """breast, pelvis, abdomen, another region's tag (lower case), or None when nothing
        says. The image speaks only when it resembles the training studies: on an unusual
        one (every real MRI measured so far) its breast-or-pelvis answer means nothing."""
        if self.specific_tag:
            covering = [
                PROCEDURE_REGION[p]
                for p, tags in BODY_PARTS.items()
                if self.tag in tags and PROCEDURE_MODALITY[p] == self.modality
            ]
            return covering[0] if covering else self.tag.lower()
        if self.reading is None or self.reading.unusual:
            return None
        return self.reading.region


@lru_cache(maxsize=1)
def bundled_region_model() -> BodyRegionNet | None:
    """The bundled body-region reader (None if this install has none)."""
    if not (BUNDLED_REGION_MODEL / "config.json").is_file():
        return None
    return load_region_model(BUNDLED_REGION_MODEL)


@lru_cache(maxsize=1)
def bundled_ct_reader():
    """The bundled pancreas CT reader, whose coarse outline reads a CT's region (None if
    this install has none)."""
    from reportgen.model.pancreas_reader import load_pancreas_reader

    folder = BUNDLED_MODELS / "pancreas_ct"
    return load_pancreas_reader(folder) if (folder / "config.json").is_file() else None


def study_anatomy(study: Study, model: BodyRegionNet | None = None) -> Anatomy:
    """The study's tag and its image's region (an MRI's read from T2W whenever it has
    one, so an unusual study is flagged even when its tag is right; a CT's by the CT
    reader's coarse outline where the tag names no region)."""
    tag = study.metadata.get("body_part")
    if study.modality == "CT":
        from reportgen.model.pancreas_reader import read_ct_region

        anatomy = Anatomy(tag, None, "CT")
        reader = bundled_ct_reader() if anatomy.specific_tag is None else None
        return Anatomy(tag, read_ct_region(reader, study), "CT") if reader else anatomy
    model = model or bundled_region_model()
    reading = read_region(model, study) if model is not None and "T2W" in study.sequences else None
    return Anatomy(tag, reading, study.modality)


def fitness_problems(anatomy: Anatomy, template: Template) -> list[str]:
    """Why the study does not fit the template's anatomy (empty: no sign it doesn't)."""
    covered = BODY_PARTS.get(template.procedure)
    if covered is None:
        return []
    if anatomy.specific_tag:
        if anatomy.tag in covered:
            return []
        return [
            f"the study's BodyPartExamined is {anatomy.tag}, but this model drafts "
            f"{template.title['en']} reports ({', '.join(sorted(covered))})"
        ]
    untagged = (
        f"its BodyPartExamined is {anatomy.tag}, which names no region"
        if anatomy.tag
        else "it has no BodyPartExamined tag"
    )
    ct = anatomy.modality == "CT"
    image = "CT" if ct else "T2W image"
    reading = anatomy.reading
    if reading is None:  # no tag, and no image a region reader reads: nothing can place it
        reader = "no CT region reader is installed" if ct else "it has no T2W series"
        return [f"{untagged} and {reader}, so the study's body region cannot be checked"]
    if reading.unusual:
        return [
            f"{untagged} and its {image} is unlike every study the models were trained on "
            f"(distance {reading.distance:.1f}, above {reading.threshold:.1f}), so its body "
            "region cannot be checked"
        ]
    if reading.region == PROCEDURE_REGION.get(template.procedure):
        return []
    shows = (
        "shows too little liver and pancreas to be an abdominal CT"
        if ct
        else f"looks like a {reading.region} study (probability {reading.probability:.2f})"
    )
    return [f"the study's {image} {shows} ({untagged}), but this model drafts "
            f"{template.title['en']} reports"]  # fmt: skip


def unusual_problem(anatomy: Anatomy) -> Problem | None:
    """A warning when the image is far from every study the models were trained on."""
    reading = anatomy.reading
    if reading is None or not reading.unusual:
        return None
    return Problem(
        severity="warning",
        where=STUDY_NOTE,
        rule="unusual_study",
        message=f"the study's images are unlike the phantoms the model was trained on "
        f"(distance {reading.distance:.1f}, above {reading.threshold:.1f} for 99% of "
        "held-out phantoms): check every value against the images",
    )


def check_modality(study_id: str, modality: str, template: Template) -> None:
    """Refuse a study of another modality than the template's, whatever `--force` says."""
    if modality != template.modality:
        raise ModalityMismatch(
            f"{study_id}: a {modality} study, but this model reads {template.modality} "
            f"({template.title['en']}); no option drafts it"
        )


def check_fitness(study_id: str, anatomy: Anatomy, template: Template, force: bool) -> list[str]:
    """The problems, raised as one line unless `force` (then returned, to be reported); a
    study of another modality is refused even with `force`."""
    check_modality(study_id, anatomy.modality, template)
    problems = fitness_problems(anatomy, template)
    if problems and not force:
        raise StudyMismatch(f"{study_id}: {problems[0]}")
    return problems


def add_fitness_warnings(report: Report, problems: list[str], anatomy: Anatomy) -> list[str]:
    """Carry the problems in the report itself, so no output loses them; returns every
    warning added, for the command line."""
    added = []
    unusual = unusual_problem(anatomy)
    said = bool(problems) and not anatomy.tag  # the untagged refusal already says "unlike"
    if unusual is not None and not said:  # one warning per fact, never two wordings
        report.validation.problems.insert(0, unusual)
        added.append(unusual.message)
    for message in problems:
        report.validation.problems.insert(
            0,
            Problem(
                severity="warning",
                where=STUDY_NOTE,
                rule="fitness",
                message=f"drafted with --force: {message}; this report is not meaningful",
            ),
        )
        added.append(message)
    return added
