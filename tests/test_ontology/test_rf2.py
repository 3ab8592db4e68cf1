"""Bring your own SNOMED CT: a tiny RF2 snapshot written here loads into the graph."""

from __future__ import annotations

import json

from conftest import assert_refused

from ontology.graph import build_graph

HEAD = {
    "Concept": "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId",
    "Description": "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId",
    "Relationship": "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId",
}


def _write_rf2(folder):
    folder.mkdir()
    concepts = ["404684003", "399294002", "900000000001", "900000000002", "900000000003"]
    rows = [f"{c}\t20250101\t1\t1\t1" for c in concepts] + ["900000000009\t20250101\t0\t1\t1"]
    (folder / "sct2_Concept_Snapshot_INT.txt").write_text(
        "\n".join([HEAD["Concept"], *rows]) + "\n"
    )
    desc = [
        ("1", "399294002", "900000000000003001", "Cyst of breast (disorder)"),
        ("2", "399294002", "900000000000013009", "Mammary cyst"),
        ("3", "900000000001", "900000000000013009", "Galactocele"),
        ("4", "900000000002", "900000000000013009", "Oil cyst of breast"),
        ("5", "900000000003", "900000000000013009", "Unrelated finding"),
    ]
    (folder / "sct2_Description_Snapshot-en_INT.txt").write_text(
        "\n".join(
            [
                HEAD["Description"],
                *[f"{i}\t20250101\t1\t1\t{c}\ten\t{t}\t{term}\t1" for i, c, t, term in desc],
            ]
        )
        + "\n"
    )
    rels = [
        ("11", "399294002", "404684003"),
        ("12", "900000000001", "399294002"),
        ("13", "900000000002", "399294002"),
        ("14", "900000000003", "404684003"),
    ]
    (folder / "sct2_Relationship_Snapshot_INT.txt").write_text(
        "\n".join(
            [
                HEAD["Relationship"],
                *[f"{i}\t20250101\t1\t1\t{s}\t{d}\t0\t116680003\t1\t1" for i, s, d in rels],
            ]
        )
        + "\n"
    )


def test_rf2_subtree_merges_into_the_graph(tmp_path, cli, monkeypatch):
    rf2 = tmp_path / "Snapshot"
    _write_rf2(rf2)
    out = tmp_path / "ext.json"
    result = cli("ontology", "import-rf2", rf2, "--root", "399294002", "--out", out)
    assert result.code == 0, result.err
    assert "3 concepts (1 merged" in result.out
    ext = json.loads(out.read_text())
    ids = {n["id"] for n in ext["nodes"]}
    assert ids == {
        "breast_cyst",
        "snomed:900000000001",
        "snomed:900000000002",
    }  # "Unrelated finding" is outside the subtree
    monkeypatch.setenv("REPORTGEN_GRAPH_EXTENSIONS", str(out))
    kg = build_graph()
    # a release's wording, merged onto the shipped concept
    assert kg.normalise("mammary cyst") == "breast_cyst"
    assert kg.normalise("galactocele") == "snomed:900000000001"
    assert kg.is_a("snomed:900000000001", "breast_cyst")
    assert "breast_finding_type" in kg.ancestors("snomed:900000000002")


def test_rf2_refusals(tmp_path, cli):
    assert_refused(
        cli(
            "ontology", "import-rf2", tmp_path / "none", "--root", "1", "--out", tmp_path / "x.json"
        ),
        "not a folder",
    )
    rf2 = tmp_path / "Snapshot"
    _write_rf2(rf2)
    assert_refused(
        cli("ontology", "import-rf2", rf2, "--root", "900000000009", "--out", tmp_path / "x.json"),
        "not active",
    )
