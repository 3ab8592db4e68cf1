"""Which body region a template covers, and which one a free-text report talks about.

One map from a template's procedure to its region serves the image check (the
body-region reader, `reportgen.model.fitness`) and the text check: a prostate report
parsed with the BI-RADS template comes back with a warning, not as a quiet BI-RADS 1.
"""

from __future__ import annotations

import re
from collections import Counter

from reportgen.report.schema import Problem
from reportgen.report.template import Template

PROCEDURE_REGION = {
    "mri_breast": "breast",
    "mri_pelvis": "pelvis",
    "ct_abdomen_pancreas": "abdomen",
}
# regions another region's report speaks of as its own (a pancreas CT reports the liver)
REGION_INCLUDES = {"abdomen": frozenset({"liver"})}

# words that name a region's organs or its reporting system (English and Chinese)
REGION_WORDS: dict[str, tuple[str, ...]] = {
    "breast": (
        r"\bbreasts?\b",
        r"\baxilla",
        r"\bnipples?\b",
        r"\bbi-?rads\b",
        "乳腺",
        "乳房",
        "腋窝",
    ),
    "pelvis": (
        r"\bcervi(?:x|cal)\b",
        r"\buter(?:us|ine)\b",
        r"\bendometri",
        r"\bmyometri",
        r"\bparametri",
        r"\bovar(?:y|ies|ian)\b",
        r"\badnex",
        r"\bfigo\b",
        r"\bo-?rads\b",
        "宫颈",
        "子宫",
        "卵巢",
        "附件",
    ),
    "prostate": (r"\bprostat", r"\bseminal vesicles?\b", r"\bpi-?rads\b", "前列腺", "精囊"),
    "brain": (r"\bbrain\b", r"\bcerebr", r"\bventricles?\b", "颅脑", "脑实质", "脑肿瘤", "脑出血"),
    "liver": (r"\bliver\b", r"\bhepat", r"\bli-?rads\b", "肝脏"),
    "abdomen": (
        r"\bpancrea",
        r"\bmesenteric\b",
        r"\bportal vein\b",
        r"\bceliac\b",
        r"\bcoeliac\b",
        r"\bresectab",
        "胰",
        "门静脉",
        "肠系膜",
    ),
}
_PATTERNS = {
    region: [re.compile(w, re.IGNORECASE) for w in words] for region, words in REGION_WORDS.items()
}


def mentioned_regions(text: str) -> Counter:
    """How often each region's words occur in `text`."""
    return Counter(
        {
            region: sum(len(p.findall(text)) for p in patterns)
            for region, patterns in _PATTERNS.items()
        }
    )


def foreign_regions(text: str, template: Template) -> set[str]:
    """Regions a text (a question) names that the template's does not cover."""
    own = PROCEDURE_REGION.get(template.procedure)
    allowed = {own, *REGION_INCLUDES.get(own or "", ())}
    return {region for region, n in mentioned_regions(text).items() if n and region not in allowed}


def other_anatomy_problem(text: str, template: Template) -> Problem | None:
    """A warning when the report talks mostly of another region than the template covers."""
    own = PROCEDURE_REGION.get(template.procedure)
    if own is None:
        return None
    counts = mentioned_regions(text)
    region, most = max(counts.items(), key=lambda kv: (kv[1], kv[0] == own))
    if region == own or most < 2 or counts[own] * 3 > most:
        return None
    return Problem(
        severity="warning",
        where="report",
        rule="other_anatomy",
        message=f"the text describes the {region} ({most} mentions) rather than the {own} "
        f"({counts[own]}) that {template.id} reports on: check the template fits this report",
    )
