"""Which model drafts a study: a named folder, or the bundled model for a template.

Two kinds of model folder exist: the report model (encoder + template-constrained
decoder, `ReportGenerator`) and the staging reader (`FieldReaderGenerator`); both draft
with `draft(study, options)`, and their config.json says which one a folder holds.
"""

from __future__ import annotations

from pathlib import Path

from reportgen.errors import ConfigError, InputError
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_reader import is_field_reader
from reportgen.model.generate import BUNDLED_MODEL, BUNDLED_MODELS, ReportGenerator

Generator = ReportGenerator | FieldReaderGenerator


def bundled_templates() -> list[str]:
    """Templates with a bundled model, by folder name."""
    return sorted(p.name for p in BUNDLED_MODELS.iterdir() if (p / "config.json").is_file())


def bundled_model(template: str) -> Path:
    folder = BUNDLED_MODELS / template
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"no bundled model for template {template!r}; bundled: {', '.join(bundled_templates())}"
        )
    return folder


def open_generator(model_dir: Path | None = None, template: str | None = None) -> Generator:
    """The model at `model_dir`, else the bundled one for `template`, else the breast model;
    a model and a template that disagree is an error, not a silent choice."""
    folder = (
        Path(model_dir) if model_dir else bundled_model(template) if template else BUNDLED_MODEL
    )
    if not folder.is_dir():
        raise InputError(folder, "is not a model folder")
    generator = FieldReaderGenerator(folder) if is_field_reader(folder) else ReportGenerator(folder)
    if template and generator.template.id != template:
        raise ConfigError(
            f"the model in {folder} drafts {generator.template.id}, not {template}; "
            "drop --template or choose another --model"
        )
    return generator
