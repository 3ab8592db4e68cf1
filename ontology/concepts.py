"""The concept table: every allowed value, finding and property, with its codes and terms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from ontology.errors import TerminologyError

DATA = Path(__file__).parent / "data"
SYSTEM_URIS = {
    "snomed": "http://snomed.info/sct",
    "radlex": "http://radlex.org",
    "radlex_cde": "http://hl7.org/fhir/us/breast-radiology/CodeSystem/RadLexCDE",
    "local": "http://reportgen.local/fhir/CodeSystem/concept",
}
# Prefer SNOMED CT, then RadLex ids, then the ACR/RSNA CDE codes, then local codes.
SYSTEM_PREFERENCE = ("snomed", "radlex", "radlex_cde", "local")


@dataclass(frozen=True)
class Code:
    system_key: str
    code: str
    display: str
    source: str

    @property
    def system(self) -> str:
        return SYSTEM_URIS[self.system_key]

    @property
    def local(self) -> bool:
        return self.system_key == "local"


@dataclass
class Concept:
    id: str
    en: str
    zh: str
    parent: str | None = None
    syn_en: list[str] = field(default_factory=list)
    syn_zh: list[str] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    relations: dict[str, str] = field(default_factory=dict)
    file: str = ""

    @property
    def primary(self) -> Code:
        """The code a report carries for this concept (a local code if no public one)."""
        for key in SYSTEM_PREFERENCE:
            for code in self.codes:
                if code.system_key == key:
                    return code
        return Code("local", self.id, self.en, "reportgen")

    @property
    def snomed(self) -> Code | None:
        return next((c for c in self.codes if c.system_key == "snomed"), None)

    def pref(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en

    def terms(self, lang: str) -> list[str]:
        """Preferred term first, then synonyms, for one language."""
        return [self.pref(lang), *(self.syn_zh if lang == "zh" else self.syn_en)]


class ConceptTable(dict[str, Concept]):
    """Concepts by id, with the is-a hierarchy checked to be a tree rooted at `root`."""

    def ancestors(self, concept_id: str) -> list[str]:
        chain, node = [], self[concept_id].parent
        while node:
            chain.append(node)
            node = self[node].parent
        return chain

    def is_a(self, concept_id: str, ancestor: str) -> bool:
        return concept_id == ancestor or ancestor in self.ancestors(concept_id)


def _reference_codes() -> dict[str, dict]:
    return json.loads((DATA / "reference_codes.json").read_text(encoding="utf-8"))


def _parse_code(text: str, reference: dict[str, dict], where: str) -> Code:
    key, _, code = text.partition(":")
    if key not in SYSTEM_URIS or not code:
        raise TerminologyError(
            f"{where}: code {text!r} must be system:code with system in {sorted(SYSTEM_URIS)}"
        )
    if key == "local":
        return Code(key, code, code, "reportgen")
    entry = reference.get(text)
    if entry is None:
        raise TerminologyError(
            f"{where}: {text} is not in ontology/data/reference_codes.json (no recorded public source)"
        )
    return Code(key, code, entry["display"], entry["source"])


# libyaml's parser with PyYAML's safe constructor: the same objects, several times faster.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_concepts(folder: Path | None = None) -> ConceptTable:
    """Read every concept file, resolve codes, and check the hierarchy."""
    folder = folder or DATA / "concepts"
    reference = _reference_codes()
    table = ConceptTable()
    for path in sorted(folder.glob("*.yaml")):
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER) or {}
        for cid, spec in (content.get("concepts") or {}).items():
            where = f"{path.name}:{cid}"
            if cid in table:
                raise TerminologyError(
                    f"{where}: concept defined twice (also in {table[cid].file})"
                )
            unknown = set(spec) - {"en", "zh", "parent", "syn_en", "syn_zh", "codes", "relations"}
            if unknown:
                raise TerminologyError(f"{where}: unknown keys {sorted(unknown)}")
            if not spec.get("en") or not spec.get("zh"):
                raise TerminologyError(f"{where}: needs preferred terms 'en' and 'zh'")
            table[cid] = Concept(
                id=cid,
                en=str(spec["en"]),
                zh=str(spec["zh"]),
                parent=spec.get("parent"),
                syn_en=[str(s) for s in spec.get("syn_en", [])],
                syn_zh=[str(s) for s in spec.get("syn_zh", [])],
                codes=[_parse_code(str(c), reference, where) for c in spec.get("codes", [])],
                relations={k: str(v) for k, v in (spec.get("relations") or {}).items()},
                file=path.name,
            )
    for cid, concept in table.items():
        if concept.parent is not None and concept.parent not in table:
            raise TerminologyError(
                f"{concept.file}:{cid}: parent {concept.parent!r} is not a concept"
            )
        for rel, target in concept.relations.items():
            if target not in table:
                raise TerminologyError(
                    f"{concept.file}:{cid}: relation {rel} -> {target!r} is not a concept"
                )
        seen = {cid}
        node = concept.parent
        while node:
            if node in seen:
                raise TerminologyError(f"{concept.file}:{cid}: is-a cycle through {node}")
            seen.add(node)
            node = table[node].parent
    return table


@lru_cache(maxsize=1)
def default_concepts() -> ConceptTable:
    """The shipped concept table (cached: it is read-only)."""
    return load_concepts()
