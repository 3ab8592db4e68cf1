"""The knowledge graph with the templates' fields in it (which concept fills which field).

`ontology` builds the graph and knows nothing of templates; this module hands it every
available template's fields, so `reportgen ontology` queries and the review app see one
graph.
"""

from __future__ import annotations

from functools import lru_cache

from ontology.graph import KnowledgeGraph, TemplateField, build_graph
from reportgen.report.template import Template, available_templates, load_template


def template_fields(template: Template) -> list[TemplateField]:
    return [
        TemplateField(template.id, spec.id, spec.concept, spec.type, tuple(spec.values))
        for spec in [*template.fields, *template.finding_fields]
    ]


@lru_cache(maxsize=1)
def knowledge_graph() -> KnowledgeGraph:
    """Ontology + every available template + RF2 extensions (cached: build once per process)."""
    fields = [f for t in available_templates() for f in template_fields(load_template(t))]
    return build_graph(fields)
