"""Free text in preferred terms: non-preferred synonyms are replaced, and the swaps listed.

Used by the review page so a clinician's comment says "irregular" where they typed a
synonym; the list of swaps is shown, so nothing changes without the clinician seeing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ontology.concepts import ConceptTable, default_concepts


@dataclass(frozen=True)
class Replacement:
    found: str
    preferred: str
    concept: str


@lru_cache(maxsize=16)
def _synonym_pattern(concept_ids: tuple[str, ...], lang: str) -> tuple[re.Pattern | None, dict]:
    concepts = default_concepts()
    lookup: dict[str, tuple[str, str]] = {}
    for cid in concept_ids:
        concept = concepts[cid]
        preferred = concept.pref(lang)
        for term in concept.terms(lang)[1:]:
            key = term.casefold()
            if key != preferred.casefold() and key not in lookup:
                lookup[key] = (preferred, cid)
    if not lookup:
        return None, lookup
    words = sorted(
        lookup, key=len, reverse=True
    )  # longest first: "spiculated margin" before "margin"
    body = "|".join(re.escape(w) for w in words)
    # word boundaries for alphabetic languages; Chinese has no spaces, match as is
    pattern = rf"(?<!\w)(?:{body})(?!\w)" if lang == "en" else f"(?:{body})"
    return re.compile(pattern, re.IGNORECASE), lookup


def normalise_text(
    text: str, concept_ids: list[str], lang: str = "en", concepts: ConceptTable | None = None
) -> tuple[str, list[Replacement]]:
    """`text` with each synonym of the given concepts replaced by its preferred term."""
    del concepts  # the cached pattern is built from the default table
    pattern, lookup = _synonym_pattern(tuple(sorted(set(concept_ids))), lang)
    if pattern is None or not text:
        return text, []
    swaps: list[Replacement] = []

    def swap(match: re.Match) -> str:
        preferred, cid = lookup[match.group(0).casefold()]
        swaps.append(Replacement(match.group(0), preferred, cid))
        return preferred

    return pattern.sub(swap, text), swaps
