"""Narrative text laid out by the template's sections, in preferred terms only.

Every value is written with the ontology's preferred term (never a synonym), with the
template's own phrases. A finding's phrases without sentence punctuation ("in the left
breast", "at 2 o'clock") join into its opening sentence; the others follow as sentences.
Contradictions found by validation are printed, never hidden, and the report's notice
(e.g. "trained on synthetic phantoms; not for clinical use") is always shown.
"""

from __future__ import annotations

from ontology.concepts import ConceptTable, default_concepts
from reportgen.report.schema import Report, Value
from reportgen.report.template import FieldSpec, Template, load_template

LABELS = {
    "en": {
        "study": "Study",
        "sequences": "Sequences",
        "missing": "missing",
        "note": "Note",
        "comment": "Comment",
        "none": "none",
    },
    "zh": {
        "study": "检查",
        "sequences": "序列",
        "missing": "缺失",
        "note": "注意",
        "comment": "备注",
        "none": "无",
    },
}


def _value_text(spec_type: str, value: Value, concepts: ConceptTable, lang: str) -> str:
    if spec_type == "enum":
        return concepts[str(value.value)].pref(lang)
    if spec_type == "number":
        return f"{value.value:g}"
    return str(value.value)


def _phrase(spec: FieldSpec, value: Value, concepts: ConceptTable, lang: str) -> str | None:
    if spec.type == "bool":
        chosen = spec.phrase_true if value.value else spec.phrase_false
        return chosen[lang] if chosen else None
    template = (spec.phrase or {}).get(lang) or (
        "{label}: {value}." if lang == "en" else "{label}：{value}。"
    )
    return template.format(
        value=_value_text(spec.type, value, concepts, lang),
        unit=spec.unit or "",
        label=concepts[spec.concept].pref(lang),
    )


def _sentence_end(text: str) -> bool:
    return text.rstrip().endswith(
        (".", "。", "!", "?", "）", ")")
    ) and not text.rstrip().startswith(("(", "（"))


def render_text(
    report: Report,
    lang: str = "en",
    template: Template | None = None,
    concepts: ConceptTable | None = None,
) -> str:
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    words = LABELS[lang]
    sep = " " if lang == "en" else ""
    out = [template.title[lang]]
    if report.notice:
        out.append(f"[{report.notice}]")
    missing = ", ".join(report.study.sequences_missing) or words["none"]
    used = ", ".join(report.study.sequences_used)
    out.append(
        f"{words['study']}: {report.study.study_id}"
        + (f"; {words['sequences']}: {used}; {words['missing']}: {missing}" if used else "")
    )
    for section_id, title in template.sections:
        lines: list[str] = []
        for spec in template.fields:
            if spec.section == section_id and spec.id in report.fields:
                text = _phrase(spec, report.fields[spec.id], concepts, lang)
                if text:
                    lines.append(text)
        if section_id == template.finding_section:
            if not report.findings and template.finding_none:
                lines.append(template.finding_none[lang])
            for n, finding in enumerate(report.findings, start=1):
                head, rest = [], []
                for spec in template.finding_fields:
                    if spec.id in finding.fields:
                        text = _phrase(spec, finding.fields[spec.id], concepts, lang)
                        if text:
                            (rest if _sentence_end(text) else head).append(text)
                for d in template.derived_finding:
                    if d.id in finding.derived and d.phrase:
                        text = d.phrase[lang].format(
                            value=concepts[str(finding.derived[d.id].value)].pref(lang)
                        )
                        (rest if _sentence_end(text) else head).append(text)
                title_text = template.finding_title[lang].format(n=n)
                if (
                    title_text == title[lang]
                ):  # a single-finding template: the section title says it
                    lines.append(sep.join([*(f"{h}" for h in head), *rest]))
                    continue
                opening = (", " if lang == "en" else "，").join(head)
                opening = (
                    f"{title_text}: {opening}." if lang == "en" else f"{title_text}：{opening}。"
                )
                if not head:
                    opening = f"{title_text}:" if lang == "en" else f"{title_text}："
                lines.append(sep.join([opening, *rest]))
        for d in template.derived_report:
            if d.section == section_id and d.id in report.derived and d.phrase:
                lines.append(
                    d.phrase[lang].format(
                        value=concepts[str(report.derived[d.id].value)].pref(lang)
                    )
                )
        if lines:
            out.append("")
            out.append(f"{title[lang]}:" if lang == "en" else f"{title[lang]}：")
            out.extend(lines)
    if report.comment:
        out += ["", f"{words['comment']}: {report.comment}"]
    problems = report.validation.problems if report.validation else []
    if problems:
        out.append("")
        for p in problems:
            out.append(f"{words['note']} ({p.severity}, {p.where}): {p.message}")
    return "\n".join(out) + "\n"
