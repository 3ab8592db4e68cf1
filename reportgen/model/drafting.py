"""One study, drafted the one way every command drafts it (`generate`, batch `generate`,
`pacs watch`): its anatomy picks the model (unless one is named), the fitness check
refuses a study the model cannot read (unless forced), and whatever was forced or is
unusual is written into the report itself, so no output format loses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reportgen.io import Study
from reportgen.io.sequences import is_image_file
from reportgen.model.fitness import Anatomy, add_fitness_warnings, check_fitness, study_anatomy
from reportgen.model.generate import Draft, GenerateOptions
from reportgen.model.generators import Generator, GeneratorChoice


@dataclass
class CheckedDraft:
    draft: Draft
    generator: Generator
    warnings: list[str]  # fitness warnings added to the report, for the command line


def draft_checked(
    study: Study,
    choose: GeneratorChoice,
    options: GenerateOptions | None = None,
    force: bool = False,
) -> CheckedDraft:
    """Anatomy -> model -> fitness -> draft -> the fitness warnings in the report."""
    anatomy = study_anatomy(study)
    generator = choose(anatomy.tag, anatomy.region, force)
    unfit = check_fitness(study.study_id, anatomy, generator.template, force)
    draft = generator.draft(study, options or GenerateOptions())
    return CheckedDraft(draft, generator, add_fitness_warnings(draft.report, unfit, anatomy))


def refuse_from_headers(path: Path, choose: GeneratorChoice, force: bool = False) -> None:
    """Refuse a DICOM study whose BodyPartExamined the model does not cover from its headers
    alone, before any series is converted (a 90-series study: seconds, not minutes). The
    full check still runs on the loaded study (`draft_checked`): this only comes first."""
    if force or not path.is_dir() or any(is_image_file(p) for p in path.iterdir()):
        return
    from reportgen.io.dicom import header_anatomy  # imported lazily: pydicom + dicom2nifti

    found = header_anatomy(path)
    if found is None or found[1] is None:
        return
    study_id, tag = found
    anatomy = Anatomy(tag, None)
    generator = choose(anatomy.tag, anatomy.region, force)
    check_fitness(study_id, anatomy, generator.template, force)
