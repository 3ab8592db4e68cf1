"""Report templates: loading, checking, and the typed view the rest of the code uses.

A template file is validated twice: against `templates/template.schema.json` (its
shape), then semantically (every concept exists in the ontology, every value a rule
names is allowed, every field a condition names exists, sections exist).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import yaml

from ontology.concepts import ConceptTable, default_concepts
from reportgen.errors import ConfigError
from reportgen.report.rules import check_condition_shape, referenced_fields
from templates import TEMPLATE_DIR

if TYPE_CHECKING:
    from reportgen.report.schema import Value

Text = dict[str, str]


@dataclass(frozen=True)
class FieldSpec:
    id: str
    concept: str
    type: str  # enum | number | bool | text
    level: str  # "report" | "finding"
    required: bool = False
    values: tuple[str, ...] = ()
    negated: str | None = None  # enum value a negated mention of the field means
    unit: str | None = None
    range: tuple[float, float] | None = None
    decimals: int = 0
    applicable_if: dict | None = None
    requires: tuple[str, ...] = ()  # sequence families it is read from (not assessable without)
    # enum values only a sequence family shows ("non_mass_enhancement" needs "dce"):
    # (value, families) pairs
    value_requires: tuple[tuple[str, tuple[str, ...]], ...] = ()
    section: str | None = None
    phrase: Text | None = None
    phrase_true: Text | None = None
    phrase_false: Text | None = None
    # what the images measure behind a report-level field (`study.measurements` holds
    # NAME_right_mm / NAME_left_mm) and how the text names it
    measurement: str | None = None
    measurement_label: Text | None = None
    # False: only a reader states it (the review form); no report model drafts it, so it
    # is no token of a model's vocabulary (`reportgen.model.vocab`) and a model fit
    # before the field was added still reads
    drafted: bool = True

    def values_unseen(self, acquired: set[str] | frozenset[str]) -> frozenset[str]:
        """The values of this field a study with only the `acquired` families cannot show."""
        return frozenset(v for v, need in self.value_requires if not set(need) <= acquired)


@dataclass(frozen=True)
class DerivedSpec:
    id: str
    concept: str
    level: str
    values: tuple[str, ...]
    rules: tuple[tuple[dict, str], ...]
    default: str | None
    section: str | None = None
    phrase: Text | None = None
    suspicious: frozenset[str] = frozenset()  # values meaning "suspicious for malignancy"
    # headline values a worklist lists first (suspicious, advanced stage)
    triage: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ConsistencyRule:
    id: str
    severity: str
    when: dict
    message: Text


@dataclass
class Template:
    id: str
    version: str
    title: Text
    domain: str
    procedure: str
    headline: str  # the report-level derived result the template is scored on
    sections: list[tuple[str, Text]]
    fields: list[FieldSpec]
    finding_fields: list[FieldSpec]
    finding_min: int
    finding_max: int
    finding_section: str
    finding_concept: str
    finding_type_field: str | None  # the field naming each finding's own type, if any
    finding_title: Text
    finding_none: Text | None  # what the text says when there are no findings
    # ... which states what these sequence families show; without them, `_otherwise` is said
    finding_none_requires: tuple[str, ...]
    finding_none_otherwise: Text | None
    finding_opened_by: list[str]
    # (condition, field, value): a finding that states the condition has that value, as
    # the lexicon defines (a cyst with solid tissue is cystic-solid); the parser applies it
    finding_implies: list[tuple[dict, str, object]]
    derived_finding: list[DerivedSpec]
    derived_report: list[DerivedSpec]
    consistency: list[ConsistencyRule]
    # `finding_none_otherwise` is a limitation that holds whatever was found ("a
    # non-contrast CT cannot show or exclude a mass"): said with findings too
    finding_none_otherwise_with_findings: bool = False
    notes: str = ""
    path: str = ""
    _by_id: dict[str, FieldSpec] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {f.id: f for f in [*self.fields, *self.finding_fields]}

    def field(self, field_id: str) -> FieldSpec:
        return self._by_id[field_id]

    @property
    def modality(self) -> str:
        """ "CT" or "MR", as the procedure names it (ct_pancreas, mri_breast): a model reads
        studies of its template's modality only."""
        return "CT" if self.procedure.startswith("ct_") else "MR"

    def finding_type(self, fields: Mapping[str, Value]) -> str:
        """A finding's own type concept (its `type_field`'s value: a non-mass enhancement
        is coded as one, never as a mass), else the template's finding concept."""
        stated = fields.get(self.finding_type_field) if self.finding_type_field else None
        return str(stated.value) if stated is not None else self.finding_concept

    def has_field(self, field_id: str) -> bool:
        return field_id in self._by_id

    @property
    def derived_ids(self) -> list[str]:
        return [d.id for d in [*self.derived_finding, *self.derived_report]]

    def derived(self, derived_id: str) -> DerivedSpec:
        return next(d for d in [*self.derived_finding, *self.derived_report] if d.id == derived_id)

    @property
    def suspicious_finding_result(self) -> DerivedSpec | None:
        """The per-finding derived result whose values say "suspicious" (BI-RADS category),
        if the template has one: a finding's malignancy probability is read from it."""
        return next((d for d in self.derived_finding if d.suspicious), None)


def _schema() -> dict:
    return json.loads((TEMPLATE_DIR / "template.schema.json").read_text())


def _text_only(spec: dict | None) -> Text | None:
    """The language entries of a text that may carry options beside them."""
    return {k: v for k, v in spec.items() if k in ("en", "zh")} if spec else None


def _field(spec: dict, level: str) -> FieldSpec:
    return FieldSpec(
        id=spec["id"],
        concept=spec["concept"],
        type=spec["type"],
        level=level,
        required=bool(spec["required"]),
        values=tuple(spec.get("values", ())),
        negated=spec.get("negated"),
        unit=spec.get("unit"),
        range=tuple(spec["range"]) if "range" in spec else None,  # type: ignore[arg-type]
        decimals=int(spec.get("decimals", 0)),
        applicable_if=spec.get("applicable_if"),
        requires=tuple(spec.get("requires", ())),
        value_requires=tuple(
            (value, tuple(need)) for value, need in (spec.get("value_requires") or {}).items()
        ),
        section=spec.get("section"),
        phrase=spec.get("phrase"),
        phrase_true=spec.get("phrase_true"),
        phrase_false=spec.get("phrase_false"),
        measurement=(spec.get("measurement") or {}).get("name"),
        measurement_label=(spec.get("measurement") or {}).get("label"),
        drafted=bool(spec.get("drafted", True)),
    )


def _derived(spec: dict, level: str) -> DerivedSpec:
    return DerivedSpec(
        id=spec["id"],
        concept=spec["concept"],
        level=level,
        values=tuple(spec["values"]),
        rules=tuple((rule["when"], rule["value"]) for rule in spec["rules"]),
        default=spec.get("default"),
        section=spec.get("section"),
        phrase=spec.get("phrase"),
        suspicious=frozenset(spec.get("suspicious", ())),
        triage=frozenset(spec.get("triage", ())),
    )


def parse_template(
    raw: dict, path: str = "<memory>", concepts: ConceptTable | None = None
) -> Template:
    """Validate a template's shape and meaning; a ConfigError names the first problem."""
    try:
        jsonschema.validate(raw, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ConfigError(
            f"{path}: template does not match the template schema at {where}: {exc.message}"
        ) from exc
    concepts = concepts or default_concepts()
    fnd = raw["findings"]
    template = Template(
        id=raw["id"],
        version=raw["version"],
        title=raw["title"],
        domain=raw["domain"],
        procedure=raw["procedure"],
        headline=raw["headline"],
        sections=[(s["id"], s["title"]) for s in raw["sections"]],
        fields=[_field(f, "report") for f in raw["fields"]],
        finding_fields=[_field(f, "finding") for f in fnd["fields"]],
        finding_min=fnd["min"],
        finding_max=fnd["max"],
        finding_section=fnd["section"],
        finding_concept=fnd["concept"],
        finding_type_field=fnd.get("type_field"),
        finding_title=fnd["title"],
        finding_none=_text_only(fnd.get("none")),
        finding_none_requires=tuple((fnd.get("none") or {}).get("requires", ())),
        finding_none_otherwise=(fnd.get("none") or {}).get("otherwise"),
        finding_none_otherwise_with_findings=bool(
            (fnd.get("none") or {}).get("otherwise_with_findings", False)
        ),
        finding_opened_by=list(fnd.get("opened_by", [])),
        finding_implies=[
            (i["when"], i["set"]["field"], i["set"]["value"]) for i in fnd.get("implies", [])
        ],
        derived_finding=[_derived(d, "finding") for d in raw["derived"].get("finding", [])],
        derived_report=[_derived(d, "report") for d in raw["derived"].get("report", [])],
        consistency=[
            ConsistencyRule(c["id"], c["severity"], c["when"], c["message"])
            for c in raw.get("consistency", [])
        ],
        notes=raw.get("notes", ""),
        path=path,
    )
    _check_meaning(template, concepts, path)
    return template


def _check_meaning(t: Template, concepts: ConceptTable, path: str) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(f"{path}: {msg}")

    sections = {sid for sid, _ in t.sections}
    ids = [f.id for f in [*t.fields, *t.finding_fields]] + t.derived_ids
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        fail(f"ids used twice (report and finding level share one namespace): {sorted(duplicates)}")
    if t.finding_min > t.finding_max:
        fail("findings.min is greater than findings.max")
    for concept in [t.procedure, t.finding_concept, *t.finding_opened_by]:
        if concept not in concepts:
            fail(f"unknown concept {concept!r}")
    if t.finding_section not in sections:
        fail(f"findings.section {t.finding_section!r} is not a section")
    finding_level = {f.id for f in t.finding_fields} | {d.id for d in t.derived_finding}
    report_level = {f.id for f in t.fields} | {d.id for d in t.derived_report}

    def check_cond(cond: dict, where: str, in_finding: bool) -> None:
        problem = check_condition_shape(cond)
        if problem:
            fail(f"{where}: {problem}")
        for name, quantified in referenced_fields(cond):
            visible = report_level | (finding_level if (in_finding or quantified) else set())
            if name not in visible:
                fail(f"{where}: condition names unknown field {name!r}")

    reader_only = {f.id for f in [*t.fields, *t.finding_fields] if not f.drafted}
    for spec in [*t.fields, *t.finding_fields]:
        where = f"field {spec.id}"
        if spec.concept not in concepts:
            fail(f"{where}: unknown concept {spec.concept!r}")
        for value in spec.values:
            if value not in concepts:
                fail(f"{where}: value {value!r} is not an ontology concept")
            if not concepts.is_a(value, spec.concept):
                fail(f"{where}: value {value!r} is not a kind of {spec.concept!r} in the ontology")
        if spec.negated and spec.negated not in spec.values:
            fail(f"{where}: negated value {spec.negated!r} is not one of its values")
        if spec.section and spec.section not in sections:
            fail(f"{where}: section {spec.section!r} does not exist")
        if spec.range and spec.range[0] >= spec.range[1]:
            fail(f"{where}: range must be [min, max] with min < max")
        if spec.applicable_if:
            check_cond(spec.applicable_if, where, spec.level == "finding")
        if not spec.drafted and spec.required:
            fail(f"{where}: a field only a reader states (drafted: false) cannot be required")
        if spec.drafted and any(
            n in reader_only for n, _ in referenced_fields(spec.applicable_if or {})
        ):
            fail(
                f"{where}: its condition names a field no model drafts, so no draft could state it"
            )
    for d in [*t.derived_finding, *t.derived_report]:
        where = f"derived {d.id}"
        if d.concept not in concepts:
            fail(f"{where}: unknown concept {d.concept!r}")
        for value in d.values:
            if value not in concepts:
                fail(f"{where}: value {value!r} is not an ontology concept")
            if not concepts.is_a(value, d.concept):
                fail(f"{where}: value {value!r} is not a kind of {d.concept!r} in the ontology")
        for cond, value in d.rules:
            if value not in d.values:
                fail(f"{where}: rule gives {value!r}, which is not one of its values")
            check_cond(cond, where, d.level == "finding")
        if d.default is not None and d.default not in d.values:
            fail(f"{where}: default {d.default!r} is not one of its values")
        for key, chosen in (("suspicious", d.suspicious), ("triage", d.triage)):
            if not chosen <= set(d.values):
                fail(f"{where}: {key} values {sorted(chosen - set(d.values))} are not its values")
    if t.headline not in {d.id for d in t.derived_report}:
        fail(f"headline {t.headline!r} is not a report-level derived result")
    for rule in t.consistency:
        check_cond(rule.when, f"consistency {rule.id}", False)
    finding_ids = {f.id: f for f in t.finding_fields}
    for cond, field_id, value in t.finding_implies:
        check_cond(cond, f"implies {field_id}", True)
        spec = finding_ids.get(field_id)
        if spec is None:
            fail(f"implies sets {field_id!r}, which is not a finding field")
        elif spec.type == "enum" and value not in spec.values:
            fail(f"implies sets {field_id} to {value!r}, which is not one of its values")
        elif spec.type == "bool" and not isinstance(value, bool):
            fail(f"implies sets the yes/no field {field_id} to {value!r}")


def template_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("REPORTGEN_TEMPLATES", "").split(os.pathsep) if p]
    return [TEMPLATE_DIR, *extra]


def available_templates() -> dict[str, Path]:
    """Template id -> file, over the shipped folder and REPORTGEN_TEMPLATES."""
    found: dict[str, Path] = {}
    for folder in template_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


# libyaml's parser with PyYAML's safe constructor: the same objects, a tenth of the time
# (the four templates a breast draft reads took 0.37 s with the pure-Python parser).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=32)
def _load_path(path: str) -> Template:
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a template is a YAML mapping")
    template = parse_template(raw, path)
    if template.id != Path(path).stem:
        raise ConfigError(f"{path}: template id {template.id!r} must match its file name")
    return template


def load_template(template_id: str) -> Template:
    """A template by id (or a path to a template file)."""
    if template_id.endswith((".yaml", ".yml")) and Path(template_id).exists():
        return _load_path(str(Path(template_id).resolve()))
    templates = available_templates()
    if template_id not in templates:
        raise ConfigError(
            f"unknown template {template_id!r}; available: {', '.join(sorted(templates))}"
        )
    return _load_path(str(templates[template_id]))
