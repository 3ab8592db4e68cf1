"""One study, drafted the one way every command drafts it (`generate`, batch `generate`,
`pacs watch`): its anatomy picks the model (unless one is named), the fitness check
refuses a study the model cannot read (unless forced), and whatever was forced or is
unusual is written into the report itself, so no output format loses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from reportgen.io import Study, load_study
from reportgen.io.sequences import is_image_file
from reportgen.model.fitness import (
    Anatomy,
    add_fitness_warnings,
    check_fitness,
    check_modality,
    study_anatomy,
)
from reportgen.model.generate import Draft, GenerateOptions
from reportgen.model.generators import Generator, GeneratorChoice


@dataclass
class CheckedDraft:
    draft: Draft
    generator: Generator
    warnings: list[str]  # fitness warnings added to the report, for the command line
    study: Study | None = None  # the study as loaded (`draft_study`)
    source: list | None = None  # its DICOM headers, where a DICOM output references them


def draft_checked(
    study: Study,
    choose: GeneratorChoice,
    options: GenerateOptions | None = None,
    force: bool = False,
) -> CheckedDraft:
    """Anatomy -> model -> fitness -> draft -> the fitness warnings in the report."""
    anatomy = study_anatomy(study)
    generator = choose(anatomy.tag, anatomy.region, force, anatomy.modality)
    unfit = check_fitness(study.study_id, anatomy, generator.template, force)
    draft = generator.draft(study, options or GenerateOptions())
    if draft.report is not None and study.metadata.get("study_date"):
        draft.report.study.study_date = study.metadata["study_date"]
    return CheckedDraft(draft, generator, add_fitness_warnings(draft.report, unfit, anatomy))


def draft_study(
    path: Path,
    choose: GeneratorChoice,
    options: GenerateOptions,
    force: bool = False,
    *,
    sequence: str | None = None,
    with_headers: bool = False,
    admit: Callable[[Study], None] | None = None,
    evidence_dir: Callable[[Study], Path | None] | None = None,
) -> CheckedDraft:
    """A study on disk, drafted the one way `generate`, batch `generate` and `pacs watch`
    draft it: refused from its DICOM headers first where the tag decides; loaded (a DICOM
    folder scanned once and only the series a draft reads converted); its source headers
    read when a DICOM output will reference them (a study without them is refused before
    drafting); `admit` may refuse the loaded study (batch: an id already drafted); then
    `draft_checked`, with the evidence written to `evidence_dir(study)` if given."""
    refuse_from_headers(path, choose, force)
    study = load_study(path, sequence=sequence)
    if admit is not None:
        admit(study)
    source = None
    if with_headers:
        from reportgen.io.dicom import source_headers  # pydicom: only for DICOM outputs

        source = source_headers(study)
    if evidence_dir is not None:
        options = replace(options, explain_dir=evidence_dir(study))
    checked = draft_checked(study, choose, options, force)
    return replace(checked, study=study, source=source)


def refuse_from_headers(path: Path, choose: GeneratorChoice, force: bool = False) -> None:
    """Refuse a DICOM study whose BodyPartExamined the model does not cover (unless
    `force`), or whose modality it does not read (whatever `force` says), from its
    headers alone, before any series is converted (a 90-series study: seconds, not
    minutes). The full check still runs on the loaded study (`draft_checked`)."""
    if not path.is_dir() or any(is_image_file(p) for p in path.iterdir()):
        return
    from reportgen.io.dicom import header_anatomy  # imported lazily: pydicom + dicom2nifti

    found = header_anatomy(path)
    if found is None:
        return
    study_id, tag, modality = found
    anatomy = Anatomy(tag, None, modality)
    if anatomy.specific_tag is None:  # the image decides the region, once it is loaded
        if modality != "MR":  # but a modality no model reads is refused now
            check_modality(study_id, modality, choose(None, None, force, modality).template)
        return
    generator = choose(anatomy.tag, anatomy.region, force, modality)
    check_fitness(study_id, anatomy, generator.template, force)
