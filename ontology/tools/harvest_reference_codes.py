"""Harvest public concept codes from the reference terminology into ontology/data.

Run once (or when the sources change) against a copy of the public material:

    python ontology/tools/harvest_reference_codes.py ../shared/reference/terminology

It writes `ontology/data/reference_codes.json`: for every (system, code) the display
text and the source file it came from. Concept files cite codes by `system:code`, and
the ontology build refuses a code that is not in this index, so every public code the
project uses has a recorded source. Licences of the sources are listed in
`ontology/data/SOURCES.md`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SYSTEMS = {
    "SNOMED": "snomed",
    "http://snomed.info/sct": "snomed",
    "RADLEX": "radlex",
    "http://radlex.org": "radlex",
    "http://hl7.org/fhir/us/breast-radiology/CodeSystem/RadLexCDE": "radlex_cde",
}


def _walk(node, source: str, out: dict) -> None:
    if isinstance(node, dict):
        system = SYSTEMS.get(str(node.get("system", "")))
        if system and "code" in node:
            out.setdefault(
                f"{system}:{node['code']}", {"display": node.get("display", ""), "source": source}
            )
        for key, value in node.items():
            if key == "compose" and isinstance(value, dict):
                for include in value.get("include", []):
                    inc_system = SYSTEMS.get(include.get("system", ""))
                    for concept in include.get("concept", []):
                        if inc_system:
                            out.setdefault(
                                f"{inc_system}:{concept['code']}",
                                {"display": concept.get("display", ""), "source": source},
                            )
            _walk(value, source, out)
    elif isinstance(node, list):
        for item in node:
            _walk(item, source, out)


def _code_system_concepts(node: dict, system: str, source: str, out: dict) -> None:
    for concept in node.get("concept", []):
        out.setdefault(
            f"{system}:{concept['code']}", {"display": concept.get("display", ""), "source": source}
        )
        _code_system_concepts(concept, system, source, out)


def harvest(root: Path) -> dict:
    out: dict = {}
    for path in sorted((root / "openimagingdata_findingmodels_subset" / "defs").glob("*.json")):
        _walk(json.loads(path.read_text()), f"openimagingdata/findingmodels defs/{path.name}", out)
    for path in sorted((root / "hl7_fhir_breast_radiology_ig").glob("*.json")):
        resource = json.loads(path.read_text())
        source = f"HL7/fhir-breast-radiology-ig {path.name}"
        if resource.get("resourceType") == "CodeSystem" and resource.get("url") in SYSTEMS:
            _code_system_concepts(resource, SYSTEMS[resource["url"]], source, out)
        _walk(resource, source, out)
    cache = json.loads((root / "radlex-cache.json").read_text())
    for rid, term in cache["terms"].items():
        if (
            term.get("notFound")
            or term.get("error")
            or not (term.get("englishLabel") or term.get("synonyms"))
        ):
            continue
        display = term.get("englishLabel") or next(
            (s for s in term.get("synonyms", []) if s.isascii()), ""
        )
        out.setdefault(
            f"radlex:{rid}",
            {
                "display": display,
                "source": "radreport-templates shared/codesystems/radlex-cache.json",
            },
        )
    return dict(sorted(out.items()))


if __name__ == "__main__":
    root = Path(sys.argv[1])
    codes = harvest(root)
    target = Path(__file__).resolve().parents[1] / "data" / "reference_codes.json"
    target.write_text(json.dumps(codes, indent=1, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for key in codes:
        counts[key.split(":")[0]] = counts.get(key.split(":")[0], 0) + 1
    print(f"wrote {len(codes)} codes to {target}: {counts}")
