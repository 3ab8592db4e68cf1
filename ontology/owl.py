"""The OWL ontology: built from the concept table with owlready2, read back the same way.

Each concept is an OWL class under its is-a parent, labelled in English and Chinese
(rdfs:label + skos-style prefLabel/altLabel annotations with language tags), with its
codes as annotations (`snomedCode`, `radlexCode`, `radlexCdeCode`, `localCode`) and the
source of each public code (`codeSource`). Relations (finding site, staging criterion)
are existential restrictions, so a reasoner can use them. The shipped file is
`ontology/reportgen.owl`; `python -m ontology.owl` rebuilds it.
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import owlready2 as owl

from ontology.concepts import ConceptTable, default_concepts

IRI = "http://reportgen.local/ontology/reportgen.owl"
OWL_FILE = Path(__file__).parent / "reportgen.owl"
CODE_ANNOTATIONS = {
    "snomed": "snomedCode",
    "radlex": "radlexCode",
    "radlex_cde": "radlexCdeCode",
    "local": "localCode",
}
RELATIONS = ("finding_site", "staging_criterion_of")


def build_ontology(
    concepts: ConceptTable | None = None, world: owl.World | None = None
) -> owl.Ontology:
    """An owlready2 ontology holding every concept (in its own World, so builds don't mix)."""
    concepts = concepts or default_concepts()
    world = world or owl.World()
    onto = world.get_ontology(f"{IRI}#")
    with onto:
        annotation_names = [
            "prefLabel",
            "altLabel",
            "codeSource",
            "conceptId",
            *CODE_ANNOTATIONS.values(),
        ]
        annotations = {
            name: types.new_class(name, (owl.AnnotationProperty,)) for name in annotation_names
        }
        relations = {name: types.new_class(name, (owl.ObjectProperty,)) for name in RELATIONS}
        classes: dict[str, type] = {}

        def make(cid: str) -> type:
            if cid in classes:
                return classes[cid]
            concept = concepts[cid]
            parent = make(concept.parent) if concept.parent else owl.Thing
            cls = types.new_class(cid, (parent,))
            cls.label = [owl.locstr(concept.en, lang="en"), owl.locstr(concept.zh, lang="zh")]
            annotations["conceptId"][cls] = [cid]
            annotations["prefLabel"][cls] = [
                owl.locstr(concept.en, lang="en"),
                owl.locstr(concept.zh, lang="zh"),
            ]
            annotations["altLabel"][cls] = [owl.locstr(s, lang="en") for s in concept.syn_en] + [
                owl.locstr(s, lang="zh") for s in concept.syn_zh
            ]
            for code in concept.codes:
                annotations[CODE_ANNOTATIONS[code.system_key]][cls].append(code.code)
                if not code.local:
                    annotations["codeSource"][cls].append(
                        f"{code.system_key}:{code.code} <- {code.source}"
                    )
            if not any(c.system_key != "local" for c in concept.codes):
                annotations["localCode"][cls] = [cid]
            classes[cid] = cls
            return cls

        for cid in concepts:
            make(cid)
        for cid, concept in concepts.items():
            for rel, target in concept.relations.items():
                if rel in relations:
                    classes[cid].is_a.append(relations[rel].some(classes[target]))
    return onto


def write_owl(path: Path = OWL_FILE, concepts: ConceptTable | None = None) -> Path:
    onto = build_ontology(concepts)
    onto.save(file=str(path), format="rdfxml")
    return path


def load_owl(path: Path = OWL_FILE) -> owl.Ontology:
    """Read the OWL file into a fresh owlready2 World."""
    world = owl.World()
    return world.get_ontology(path.resolve().as_uri()).load()


def check_consistency(path: Path = OWL_FILE) -> bool:
    """Run the HermiT reasoner (needs Java) over the ontology; True if it is consistent."""
    onto = load_owl(path)
    with tempfile.TemporaryDirectory():
        try:
            owl.sync_reasoner_hermit(onto.world, infer_property_values=False, debug=0)
        except owl.OwlReadyInconsistentOntologyError:
            return False
    return True


if __name__ == "__main__":
    print(f"wrote {write_owl()}")
