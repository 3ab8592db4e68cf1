"""One study, drafted the one way every command drafts it (`generate`, batch `generate`,
`pacs watch`): its anatomy picks the model (unless one is named), the fitness check
refuses a study the model cannot read (unless forced), and whatever was forced or is
unusual is written into the report itself, so no output format loses it."""

from __future__ import annotations

from dataclasses import dataclass

from reportgen.io import Study
from reportgen.model.fitness import add_fitness_warnings, check_fitness, study_anatomy
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
    unfit = check_fitness(study, anatomy, generator.template, force)
    draft = generator.draft(study, options or GenerateOptions())
    return CheckedDraft(draft, generator, add_fitness_warnings(draft.report, unfit, anatomy))
