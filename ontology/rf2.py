"""Bring your own SNOMED CT: load an RF2 snapshot (chosen subtrees) into the knowledge graph.

Licensed users point this at an RF2 release's Snapshot folder (concept, description,
relationship files, optionally a language reference set). Only descendants of the chosen
root concepts are kept. A SNOMED CT concept whose id one of the project's concepts
already carries is merged into that concept (its descriptions become extra synonyms), so
`normalise()` understands the release's wording; the rest become new `snomed:<id>` nodes
with their is-a and finding-site links. The result is saved as a graph extension (JSON)
that `default_graph()` merges when REPORTGEN_GRAPH_EXTENSIONS names it.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import networkx as nx

from ontology.errors import TerminologyError

IS_A = "116680003"
FINDING_SITE = "363698007"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
PREFERRED = "900000000000548007"


def _rows(folder: Path, pattern: str, required: bool = True) -> list[dict]:
    matches = sorted(folder.rglob(pattern))
    if not matches:
        if required:
            raise TerminologyError(f"no RF2 file matching {pattern}", folder)
        return []
    with matches[0].open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [row for row in reader if row.get("active") == "1"]
    if rows and not {"id", "active"} <= set(rows[0]):
        raise TerminologyError("not an RF2 file (missing id/active columns)", matches[0])
    return rows


def load_rf2(folder: Path, roots: list[str]) -> dict:
    """Read the subtrees under `roots`; returns {concepts, terms, preferred, is_a, finding_site}."""
    if not folder.is_dir():
        raise TerminologyError("not a folder", folder)
    concepts = {row["id"] for row in _rows(folder, "sct2_Concept_*Snapshot*.txt")}
    parents: dict[str, set[str]] = defaultdict(set)
    sites: dict[str, set[str]] = defaultdict(set)
    for row in _rows(folder, "sct2_Relationship_*Snapshot*.txt"):
        if row["typeId"] == IS_A:
            parents[row["sourceId"]].add(row["destinationId"])
        elif row["typeId"] == FINDING_SITE:
            sites[row["sourceId"]].add(row["destinationId"])
    children: dict[str, set[str]] = defaultdict(set)
    for child, ps in parents.items():
        for parent in ps:
            children[parent].add(child)
    missing = [r for r in roots if r not in concepts]
    if missing:
        raise TerminologyError(
            f"root concept(s) not active in this release: {', '.join(missing)}", folder
        )
    keep: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in keep or node not in concepts:
            continue
        keep.add(node)
        stack.extend(children.get(node, ()))
    preferred_ids = {
        row["referencedComponentId"]
        for row in _rows(folder, "der2_cRefset_Language*Snapshot*.txt", required=False)
        if row.get("acceptabilityId") == PREFERRED
    }
    terms: dict[str, list[str]] = defaultdict(list)
    preferred: dict[str, str] = {}
    for row in _rows(folder, "sct2_Description_*Snapshot*.txt"):
        cid = row["conceptId"]
        if cid not in keep:
            continue
        if row["typeId"] == SYNONYM:
            terms[cid].append(row["term"])
            if (
                row["id"] in preferred_ids or cid not in preferred
            ):  # the language refset's choice wins
                preferred[cid] = row["term"]
        elif row["typeId"] == FSN:
            terms[cid].append(row["term"].rsplit(" (", 1)[0])
    return {
        "concepts": sorted(keep),
        "terms": {k: sorted(set(v)) for k, v in terms.items()},
        "preferred": preferred,
        "is_a": {k: sorted(v & keep) for k, v in parents.items() if k in keep and v & keep},
        "finding_site": {k: sorted(v) for k, v in sites.items() if k in keep},
    }


def extension_graph(snapshot: dict, snomed_to_concept: dict[str, str]) -> nx.MultiDiGraph:
    """The RF2 subtrees as graph nodes, merged onto the project's concepts where codes agree."""
    g = nx.MultiDiGraph()

    def node(sctid: str) -> str:
        return snomed_to_concept.get(sctid, f"snomed:{sctid}")

    for sctid in snapshot["concepts"]:
        terms = snapshot["terms"].get(sctid, [])
        pref = snapshot["preferred"].get(sctid) or (terms[0] if terms else sctid)
        g.add_node(
            node(sctid),
            kind="concept",
            en=[pref],
            zh=[],
            syn_en=[t for t in terms if t != pref],
            syn_zh=[],
            codes={"snomed": [sctid]},
            source="rf2",
        )
    for child, ps in snapshot["is_a"].items():
        for parent in ps:
            g.add_edge(node(child), node(parent), key="is_a")
    for child, targets in snapshot["finding_site"].items():
        for target in targets:
            g.add_edge(
                node(child), snomed_to_concept.get(target, f"snomed:{target}"), key="finding_site"
            )
    return g


def save_extension(g: nx.MultiDiGraph, path: Path) -> None:
    path.write_text(json.dumps(nx.node_link_data(g, edges="edges"), ensure_ascii=False, indent=1))


def read_extension(path: Path) -> nx.MultiDiGraph:
    try:
        return nx.node_link_graph(
            json.loads(path.read_text(encoding="utf-8")),
            multigraph=True,
            directed=True,
            edges="edges",
        )
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise TerminologyError(
            f"not a graph extension written by `reportgen ontology import-rf2` ({exc})", path
        ) from exc
