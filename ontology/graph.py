"""A networkx knowledge graph built from the OWL ontology, for fast queries.

Nodes are concept ids (attributes: preferred terms, synonyms, codes). Edges: `is_a`
(child -> parent), the ontology's relations (`finding_site`, `staging_criterion_of`),
and `fills` (value concept -> "template_id.field_id") from the report templates, so
one graph answers "what does this term mean", "what is this a kind of" and "which
template fields can this concept fill".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import networkx as nx
import owlready2 as owl

from ontology.owl import CODE_ANNOTATIONS, OWL_FILE, RELATIONS, load_owl


def normal_form(term: str) -> str:
    """Case, width, hyphen and space folding for term lookup (not stemming)."""
    text = unicodedata.normalize("NFKC", term).lower()
    text = re.sub(r"[\-‐–—_/]", " ", text)
    text = re.sub(r"[^\w\s%≥<>.']", "", text)
    return re.sub(r"\s+", " ", text).strip()


class KnowledgeGraph:
    def __init__(self, graph: nx.MultiDiGraph):
        self.g = graph
        self._index: dict[str, set[str]] = {}
        for node, data in graph.nodes(data=True):
            if data.get("kind") != "concept":
                continue
            for term in [*data["en"], *data["zh"], *data["syn_en"], *data["syn_zh"]]:
                self._index.setdefault(normal_form(term), set()).add(node)

    # -- terms ----------------------------------------------------------------------
    def candidates(self, term: str) -> set[str]:
        return set(self._index.get(normal_form(term), set()))

    def normalise(self, term: str, within: str | None = None) -> str | None:
        """The concept a term names (optionally restricted to descendants of `within`).

        An ambiguous term (several concepts) resolves only if `within` narrows it to one.
        """
        found = self.candidates(term)
        if within is not None:
            found = {c for c in found if self.is_a(c, within)}
        return next(iter(found)) if len(found) == 1 else None

    def preferred(self, concept_id: str, lang: str = "en") -> str:
        return self.g.nodes[concept_id][lang][0]

    # -- hierarchy --------------------------------------------------------------------
    def parents(self, concept_id: str) -> list[str]:
        return [t for _, t, k in self.g.out_edges(concept_id, keys=True) if k == "is_a"]

    def ancestors(self, concept_id: str) -> set[str]:
        out: set[str] = set()
        stack = self.parents(concept_id)
        while stack:
            node = stack.pop()
            if node not in out:
                out.add(node)
                stack.extend(self.parents(node))
        return out

    def descendants(self, concept_id: str) -> set[str]:
        out: set[str] = set()
        stack = [s for s, _, k in self.g.in_edges(concept_id, keys=True) if k == "is_a"]
        while stack:
            node = stack.pop()
            if node not in out:
                out.add(node)
                stack.extend(s for s, _, k in self.g.in_edges(node, keys=True) if k == "is_a")
        return out

    def is_a(self, concept_id: str, ancestor: str) -> bool:
        return concept_id == ancestor or ancestor in self.ancestors(concept_id)

    # -- relations and templates ----------------------------------------------------------
    def related(self, concept_id: str, relation: str) -> list[str]:
        return [t for _, t, k in self.g.out_edges(concept_id, keys=True) if k == relation]

    def criteria_for(self, stage_id: str) -> list[str]:
        """Concepts recorded as a staging criterion of a stage."""
        return sorted(
            s for s, _, k in self.g.in_edges(stage_id, keys=True) if k == "staging_criterion_of"
        )

    def fields_for(self, concept_id: str) -> list[str]:
        """Template fields ("template.field") this concept can fill as a value."""
        return sorted(t for _, t, k in self.g.out_edges(concept_id, keys=True) if k == "fills")

    def code(self, concept_id: str, system_key: str) -> str | None:
        codes = self.g.nodes[concept_id]["codes"].get(system_key, [])
        return codes[0] if codes else None


def _strings(values, lang: str | None = None) -> list[str]:
    out = []
    for value in values:
        if lang is None or getattr(value, "lang", None) == lang:
            out.append(str(value))
    return out


def graph_from_owl(path: Path = OWL_FILE) -> nx.MultiDiGraph:
    onto = load_owl(path)
    g = nx.MultiDiGraph()
    ids: dict[object, str] = {}
    for cls in onto.classes():
        cid = str(cls.conceptId[0]) if cls.conceptId else cls.name
        ids[cls] = cid
        pref = list(cls.prefLabel)
        alt = list(cls.altLabel)
        g.add_node(
            cid,
            kind="concept",
            en=_strings(pref, "en"),
            zh=_strings(pref, "zh"),
            syn_en=_strings(alt, "en"),
            syn_zh=_strings(alt, "zh"),
            codes={
                key: [str(c) for c in getattr(cls, prop)]
                for key, prop in CODE_ANNOTATIONS.items()
                if getattr(cls, prop)
            },
        )
    for cls, cid in ids.items():
        for parent in cls.is_a:
            if isinstance(parent, owl.ThingClass) and parent in ids:
                g.add_edge(cid, ids[parent], key="is_a")
            elif (
                isinstance(parent, owl.Restriction)
                and parent.property.name in RELATIONS
                and parent.value in ids
            ):
                g.add_edge(cid, ids[parent.value], key=parent.property.name)
    return g


class TemplateField(NamedTuple):
    """A report template's field as the graph needs it (templates are read by reportgen)."""

    template: str
    field: str
    concept: str
    type: str
    values: tuple[str, ...]


def add_templates(g: nx.MultiDiGraph, fields: Iterable[TemplateField]) -> None:
    """Field nodes: which concepts fill which template field."""
    for spec in fields:
        node = f"{spec.template}.{spec.field}"
        g.add_node(
            node, kind="field", template=spec.template, field=spec.field, concept=spec.concept
        )
        g.add_edge(node, spec.concept, key="about")
        for value in spec.values:
            g.add_edge(value, node, key="fills")
        if spec.type == "bool":
            g.add_edge(spec.concept, node, key="fills")


def merge_extension(g: nx.MultiDiGraph, extension: nx.MultiDiGraph) -> None:
    """Add an RF2 extension: new nodes, and extra synonyms on concepts that already exist."""
    for node, data in extension.nodes(data=True):
        if node in g:
            known = set(g.nodes[node]["en"]) | set(g.nodes[node]["syn_en"])
            g.nodes[node]["syn_en"] = g.nodes[node]["syn_en"] + [
                t for t in [*data["en"], *data["syn_en"]] if t not in known
            ]
        else:
            g.add_node(node, **data)
    for u, v, key in extension.edges(keys=True):
        if not g.has_edge(u, v, key):
            g.add_edge(u, v, key=key)


def build_graph(fields: Iterable[TemplateField] = ()) -> KnowledgeGraph:
    """The shipped ontology, the given template fields, and any RF2 extensions named in
    REPORTGEN_GRAPH_EXTENSIONS."""
    import os

    from ontology.rf2 import read_extension

    g = graph_from_owl()
    add_templates(g, fields)
    for path in filter(None, os.environ.get("REPORTGEN_GRAPH_EXTENSIONS", "").split(os.pathsep)):
        merge_extension(g, read_extension(Path(path)))
    return KnowledgeGraph(g)
