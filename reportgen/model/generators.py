"""Which model drafts a study: a named folder, or the bundled model for a template.

Three kinds of model folder exist: the report model (encoder + template-constrained
decoder, `ReportGenerator`), the staging reader (`FieldReaderGenerator`) and the
pancreas CT reader (`PancreasReaderGenerator`); each drafts with `draft(study,
options)`, and their config.json says which one a folder holds.
"""

from __future__ import annotations

from pathlib import Path

from reportgen.errors import ConfigError, InputError
from reportgen.model.body_region import REGION_FOLDER
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_reader import is_field_reader
from reportgen.model.generate import BUNDLED_MODEL, BUNDLED_MODELS, ReportGenerator
from reportgen.model.generator import Generator
from reportgen.model.pancreas_generate import PancreasReaderGenerator
from reportgen.model.pancreas_reader import is_pancreas_reader

DEFAULT_TEMPLATE = "birads_mri"
# BodyPartExamined values that name the question, not only the region
TAG_TEMPLATE = {
    "BREAST": "birads_mri",
    "CERVIX": "figo_cervix_2018",
    "UTERUS": "figo_endometrium_2023",
    "ENDOMETRIUM": "figo_endometrium_2023",
    "OVARY": "orads_mri",
    "ADNEXA": "orads_mri",
    "PANCREAS": "pancreas_ct",
}
REGION_TEMPLATES = {
    "breast": ("birads_mri",),
    "pelvis": ("figo_cervix_2018", "figo_endometrium_2023", "orads_mri"),
    "abdomen": ("pancreas_ct",),
}


def bundled_templates() -> list[str]:
    """Templates with a bundled model, by folder name."""
    return sorted(
        p.name
        for p in BUNDLED_MODELS.iterdir()
        if (p / "config.json").is_file() and p.name != REGION_FOLDER
    )


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
    generator: Generator
    if is_pancreas_reader(folder):
        generator = PancreasReaderGenerator(folder)
    elif is_field_reader(folder):
        generator = FieldReaderGenerator(folder)
    else:
        generator = ReportGenerator(folder)
    if template and generator.template.id != template:
        raise ConfigError(
            f"the model in {folder} drafts {generator.template.id}, not {template}; "
            "drop --template or choose another --model"
        )
    return generator


def template_for(
    tag: str | None, region: str | None, force: bool = False, modality: str = "MR"
) -> str:
    """The bundled template a study's anatomy calls for (no --model, no --template). A
    pelvis fits three templates and the clinical question, not the image, chooses, so it
    must be named; a region no bundled model reads is refused (`--force`: the default
    model, whose report then carries the mismatch); a modality none reads is refused
    whatever `force` says; a modality one model reads (CT) goes to that model, and the
    fitness check refuses it there if the study does not show its anatomy."""
    from reportgen.model.fitness import ModalityMismatch, StudyMismatch
    from reportgen.report.template import load_template

    bundled = [t for t in bundled_templates() if load_template(t).modality == modality]
    if not bundled:
        raise ModalityMismatch(
            f"a {modality} study ({tag or 'no BodyPartExamined'}), and no bundled model reads "
            f"{modality} (bundled: {', '.join(bundled_templates())}); no option drafts it"
        )
    if tag in TAG_TEMPLATE and TAG_TEMPLATE[tag] in bundled:
        return TAG_TEMPLATE[tag]
    if modality != "MR" and len(bundled) == 1:
        return bundled[0]  # the one model of this modality; the fitness check says if it fits
    if region is None:
        return DEFAULT_TEMPLATE  # nothing says otherwise
    choices = [t for t in REGION_TEMPLATES.get(region, ()) if t in bundled]
    if len(choices) == 1:
        return choices[0]
    if choices:
        raise ConfigError(
            f"this is a {region} study, which {', '.join(choices)} all report on: "
            "the clinical question decides, so name one with --template"
        )
    if force:
        return DEFAULT_TEMPLATE
    said = f"the study's BodyPartExamined is {tag}" if tag else f"the study looks like {region}"
    raise StudyMismatch(
        f"{said}, and no bundled model reads {region} studies (bundled: {', '.join(bundled)})"
    )


class GeneratorChoice:
    """The generator for each study of a batch: the named model or template, else the one
    its anatomy calls for; each model is opened once."""

    def __init__(self, model_dir: Path | None = None, template: str | None = None):
        self.model_dir, self.template = model_dir, template
        self._open: dict[str, Generator] = {}

    def __call__(
        self, tag: str | None, region: str | None, force: bool = False, modality: str = "MR"
    ) -> Generator:
        named = self.model_dir is not None or self.template is not None
        template = self.template if named else template_for(tag, region, force, modality)
        key = template or ""
        if key not in self._open:
            self._open[key] = open_generator(self.model_dir, template)
        return self._open[key]
