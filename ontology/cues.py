"""Negation and uncertainty cues for the report parser (NegEx-style termsets).

English negation extends negspacy's clinical termset with radiology phrasing ("is not
seen", "no evidence of"); Chinese uses its own cue list (未见, 无, 未发现 ...), with the
comma and 伴/可见 ending a negation's scope, since each clause of a Chinese report
carries its own polarity. Uncertainty reuses the same machinery with hedge cues.
"""

from __future__ import annotations

from negspacy.termsets import termset

_EN = termset("en_clinical").get_patterns()

NEGATION = {
    "en": {
        "pseudo_negations": _EN["pseudo_negations"]
        + ["no change", "not only", "no interval change"],
        "preceding_negations": _EN["preceding_negations"]
        + [
            # "physiological free fluid" is the normal amount: it states no ascites
            "physiological",
            "physiologic",
            "no evidence of",
            "negative for",
            "without evidence of",
            "free of",
            "absence of",
            "none",
        ],
        "following_negations": _EN["following_negations"]
        + [
            "is not seen",
            "are not seen",
            "not seen",
            "is not identified",
            "are not identified",
            "not identified",
            "is absent",
            "are absent",
            "absent",
            "is not present",
            "not present",
            "is excluded",
            "was excluded",
            "not enlarged",
            "are not enlarged",
            "is not enlarged",
            "normal in size",
            ": no",
            ": none",
            ": absent",
            ": negative",
        ],
        "termination": _EN["termination"] + ["while", "whereas", "with"],
    },
    "zh": {
        "pseudo_negations": ["无明显变化", "无变化", "未见变化"],
        "preceding_negations": [
            "未见",
            "未见明显",
            "未见明确",
            "无",
            "无明显",
            "未发现",
            "没有",
            "不伴",
            "不伴有",
            "不含",
            "排除",
            "未显示",
            "未累及",
        ],
        "following_negations": [
            "：无",
            ":无",
            "：未见",
            "：阴性",
            "阴性",
            "（-）",
            "(-)",
            "未见",
            "消失",
            "不明显",
        ],
        "termination": ["，", ",", "；", ";", "但", "伴", "可见", "另见"],
    },
}

UNCERTAINTY = {
    "en": {
        "pseudo_negations": ["not likely"],
        "preceding_negations": [
            "possible",
            "possibly",
            "probable",
            "probably",
            "likely",
            "suspicious for",
            "suggestive of",
            "may represent",
            "questionable",
            "equivocal",
            "indeterminate",
            "cannot exclude",
            "could represent",
            "consider",
            "concerning for",
        ],
        "following_negations": [
            "cannot be excluded",
            "not excluded",
            "is suspected",
            "suspected",
            "is questioned",
            "?",
        ],
        "termination": ["but", "however", "with", "while"],
    },
    "zh": {
        "pseudo_negations": [],
        "preceding_negations": ["可能", "考虑", "疑似", "疑", "倾向", "不除外", "可疑", "拟诊"],
        "following_negations": ["可能", "不除外", "待排", "可能性大", "？", "?"],
        "termination": ["，", ",", "；", ";", "但"],
    },
}
