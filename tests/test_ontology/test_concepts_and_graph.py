"""Ontology: sourced codes, OWL file in sync, reasoner consistency, graph queries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ontology.concepts import DATA, default_concepts
from ontology.graph import KnowledgeGraph, add_templates, graph_from_owl
from ontology.owl import OWL_FILE, check_consistency, write_owl
from reportgen.report.knowledge import knowledge_graph, template_fields
from reportgen.report.template import load_template


def test_every_public_code_has_a_recorded_source():
    reference = json.loads((DATA / "reference_codes.json").read_text())
    table = default_concepts()
    public = [(c.id, code) for c in table.values() for code in c.codes if not code.local]
    assert public, "some concepts carry public codes"
    for cid, code in public:
        entry = reference[f"{code.system_key}:{code.code}"]
        assert entry["source"] and code.source == entry["source"], cid


def test_snomed_codes_are_the_ones_the_sources_give():
    table = default_concepts()
    assert table["breast_cyst"].snomed.code == "399294002"
    assert table["present"].snomed.code == "52101004"
    assert table["mri_breast"].snomed.display.startswith("Magnetic resonance imaging of breast")
    # No public code: the concept is coded in the project's own namespace, marked local.
    assert table["figo2018_IIB"].primary.local


def test_shipped_owl_file_matches_the_concept_files(tmp_path):
    rebuilt = graph_from_owl(write_owl(tmp_path / "fresh.owl"))
    shipped = graph_from_owl(OWL_FILE)
    assert set(rebuilt.nodes) == set(shipped.nodes) == set(default_concepts())
    for node in rebuilt.nodes:
        for key in ("en", "zh", "codes"):
            assert rebuilt.nodes[node][key] == shipped.nodes[node][key], (node, key)
        assert sorted(
            map(sorted, (rebuilt.nodes[node]["syn_en"], rebuilt.nodes[node]["syn_zh"]))
        ) == sorted(map(sorted, (shipped.nodes[node]["syn_en"], shipped.nodes[node]["syn_zh"]))), (
            node
        )
    assert sorted(rebuilt.edges(keys=True)) == sorted(shipped.edges(keys=True))


@pytest.mark.skipif(shutil.which("java") is None, reason="HermiT needs a Java runtime")
def test_hermit_finds_the_ontology_consistent():
    assert check_consistency(OWL_FILE)


def test_synonyms_in_both_languages_map_to_one_criterion():
    kg = knowledge_graph()
    for term in [
        "deep myometrial invasion",
        "深肌层侵犯",
        "深肌层浸润",
        "肌层浸润≥50%",
        "invasion of the outer half of the myometrium",
    ]:
        assert kg.normalise(term) == "myometrial_invasion_deep", term
    assert kg.normalise("肌层浸润") == "myometrial_invasion"  # unqualified: the parent, not a depth
    assert kg.is_a("myometrial_invasion_deep", "myometrial_invasion")
    assert kg.normalise("毛刺征") == kg.normalise("Spiculated margins") == "margin_spiculated"


def test_graph_queries():
    kg = knowledge_graph()
    assert "margin" in kg.ancestors("margin_spiculated")
    assert {"margin_irregular", "margin_spiculated"} <= kg.descendants("margin_not_circumscribed")
    assert kg.fields_for("margin_spiculated") == ["birads_mri.margin"]
    assert set(kg.fields_for("pelvic_lymph_node_metastasis")) == {
        "figo_cervix_2018.pelvic_nodes",
        "figo_endometrium_2023.pelvic_nodes",
    }
    assert "myometrial_invasion_deep" in kg.criteria_for("figo2023_IB")
    assert kg.related("axillary_adenopathy", "finding_site") == ["axillary_lymph_node"]
    assert kg.code("breast_cyst", "snomed") == "399294002"
    assert (
        kg.normalise("homogeneous", within="nme_pattern") is None
    )  # ambiguous context is not guessed


def test_graph_is_built_from_the_owl_file_not_the_yaml(tmp_path):
    """Edit the OWL file's label: the graph must show the edit."""
    owl_text = OWL_FILE.read_text()
    edited = tmp_path / "edited.owl"
    edited.write_text(owl_text.replace(">spiculated margin<", ">stellate edge<"))
    g = graph_from_owl(Path(edited))
    add_templates(g, template_fields(load_template("birads_mri")))
    assert KnowledgeGraph(g).normalise("stellate edge") == "margin_spiculated"
