"""Terminology for reportgen: concepts, an OWL ontology, a knowledge graph, a parser.

- `concepts`: the concept table from `data/concepts/*.yaml` (codes checked against the
  harvested public sources in `data/reference_codes.json`);
- `owl`: builds and reads the OWL ontology with owlready2;
- `graph`: a networkx knowledge graph built from the OWL file, for fast queries;
- `rf2`: loads a licensed SNOMED CT RF2 snapshot into the same graph;
- `parser`: spaCy pipeline that turns free-text reports into structured reports.
"""

from ontology.concepts import Concept, ConceptTable, load_concepts

__all__ = ["Concept", "ConceptTable", "load_concepts"]
