"""Narrative text laid out by the template's sections, in preferred terms only.

Every value is written with the ontology's preferred term (never a synonym), with the
template's own phrases. A finding's phrases without sentence punctuation ("in the left
breast", "at 2 o'clock") join into its opening sentence; the others follow as sentences.
Contradictions found by validation are printed, never hidden, and the report's notice
(e.g. "trained on synthetic phantoms; not for clinical use") is always shown.
"""

from __future__ import annotations

from ontology.concepts import ConceptTable, default_concepts
from reportgen.render.notes import check_note, notice_text, problem_text, signed_problems
from reportgen.report.assessable import acquired_families, not_assessable
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Finding, Report, SeriesTechnique, Value
from reportgen.report.technique import field_strength
from reportgen.report.template import FieldSpec, Template, load_template
from reportgen.report.values import plain

LABELS = {
    "en": {
        "study": "Study",
        "sequences": "Sequences",
        "missing": "missing",
        "note": "Note",
        "comment": "Comment",
        "none": "none",
        "not_assessable": "Not assessable without {families} images: {fields}.",
        "technique": "Technique",
        "mri": "{tesla} T MRI",
        "series": "{name}, {a:.1f} x {b:.1f} mm in-plane, {c:.1f} mm slices",
        "b_value": "b = {b:g} s/mm²",
        "phases": "pre-contrast and {n} post-contrast phases",
        "contrast": "contrast",
        "timed": "at {times} s after the {since}",
        "since": {"injection": "injection", "first phase": "first phase"},
        "comparison": "Comparison: none available.",
        "indication": "Indication: {text}",
        "study_date": "Study date: {date}",
        "not_provided": "not provided",
        "signed": "Signed by {who} on {when} UTC.",
        "dimensions": "Dimensions {a} x {b} x {c} mm (transverse x anteroposterior x craniocaudal)",
        "from_nipple": "{d} mm from the nipple",
        "measured": "{label} (measured): {values}.",
        "side_mm": "{side} {mm:.1f} mm",
        "sides": {"right": "right", "left": "left"},
    },
    "zh": {
        "study": "检查",
        "sequences": "序列",
        "missing": "缺失",
        "note": "注意",
        "comment": "备注",
        "none": "无",
        "not_assessable": "缺少{families}序列，无法评估：{fields}。",
        "technique": "检查技术",
        "mri": "{tesla} T MRI",
        "series": "{name}，层内 {a:.1f} × {b:.1f} mm，层厚 {c:.1f} mm",
        "b_value": "b = {b:g} s/mm²",
        "phases": "平扫及增强后{n}期",
        "contrast": "对比剂",
        "timed": "于{since}后{times} s",
        "since": {"injection": "注射对比剂", "first phase": "首期"},
        "comparison": "对比：无既往检查可供对比。",
        "indication": "检查指征：{text}",
        "study_date": "检查日期：{date}",
        "not_provided": "未提供",
        "signed": "签署：{who}，{when} UTC。",
        "dimensions": "三径 {a} × {b} × {c} mm（横径 × 前后径 × 上下径）",
        "from_nipple": "距乳头 {d} mm",
        "measured": "{label}（测量）：{values}。",
        "side_mm": "{side} {mm:.1f} mm",
        "sides": {"right": "右侧", "left": "左侧"},
    },
}


def _technique(technique: list[SeriesTechnique], lang: str) -> str:
    """ "Technique: 1.5 T MRI. T2W, 0.7 x 0.7 mm in-plane, 3 mm slices; DWI, b = 800 ..." """
    words = LABELS[lang]
    parts = []
    for t in technique:
        part = words["series"].format(
            name=t.sequence, a=t.in_plane_mm[0], b=t.in_plane_mm[1], c=t.slice_mm
        )
        extra = [words["b_value"].format(b=t.b_value)] if t.b_value is not None else []
        extra += [words["phases"].format(n=t.phases - 1)] if t.phases and t.phases > 1 else []
        if t.contrast_agent or t.contrast_volume_ml:
            agent = t.contrast_agent or words["contrast"]
            volume = f" {t.contrast_volume_ml:g} ml" if t.contrast_volume_ml else ""
            extra.append(f"{agent}{volume}")
        if t.phase_times_s and t.timed_from in words["since"]:
            times = "/".join(f"{s:.0f}" for s in t.phase_times_s[1:])
            extra.append(words["timed"].format(times=times, since=words["since"][t.timed_from]))
        parts.append(", ".join([part, *extra]) if lang == "en" else "，".join([part, *extra]))
    tesla = field_strength(technique)
    lead = (
        words["mri"].format(tesla=f"{tesla:g}") + (". " if lang == "en" else "。") if tesla else ""
    )
    if lang == "en":
        return f"{words['technique']}: {lead}{'; '.join(parts)}."
    return f"{words['technique']}：{lead}{'；'.join(parts)}。"


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


FAMILY_NAMES = {
    "en": {
        "dce": "DCE",
        "diffusion": "diffusion-weighted",
        "t2": "T2-weighted",
        "ct": "CT",
        "ct_contrast": "contrast-enhanced CT (pancreatic or portal venous phase)",
    },
    "zh": {
        "dce": "动态增强",
        "diffusion": "弥散加权",
        "t2": "T2加权",
        "ct": "CT",
        "ct_contrast": "增强CT（胰腺期或门静脉期）",
    },
}


def _not_assessable(
    specs: list[FieldSpec],
    hidden: frozenset[str],
    values: dict,
    parent: dict | None,
    concepts: ConceptTable,
    lang: str,
) -> str | None:
    """One sentence naming the required fields the study's sequences cannot support."""
    scope = Scope(values, parent=Scope(parent) if parent is not None else None)
    missing = [
        s
        for s in specs
        if s.id in hidden
        and s.required
        and (s.applicable_if is None or evaluate(s.applicable_if, scope))
    ]
    if not missing:
        return None
    families = sorted({f for s in missing for f in s.requires})
    joiner = ", " if lang == "en" else "、"
    return LABELS[lang]["not_assessable"].format(
        families=(" / " if lang == "en" else "、").join(FAMILY_NAMES[lang][f] for f in families),
        fields=joiner.join(concepts[s.concept].pref(lang) for s in missing),
    )


def _marked(text: str | None, note: str | None, lang: str) -> str | None:
    """A phrase with its check mark, inside its sentence's full stop."""
    if not text or not note:
        return text
    mark = f" ({note})" if lang == "en" else f"（{note}）"
    stripped = text.rstrip()
    if stripped.endswith((".", "。")):
        return stripped[:-1] + mark + stripped[-1]
    return stripped + mark


def _sentence_end(text: str) -> bool:
    return text.rstrip().endswith(
        (".", "。", "!", "?", "）", ")")
    ) and not text.rstrip().startswith(("(", "（"))


def _no_findings(template: Template, report: Report) -> dict[str, str] | None:
    """The template's "no findings" sentence, or its weaker form when the study lacks the
    sequences the sentence speaks for ("no suspicious enhancement" needs contrast)."""
    used = report.study.sequences_used
    if used and not set(template.finding_none_requires) <= acquired_families(used):
        return template.finding_none_otherwise
    return template.finding_none


def measured_text(finding: Finding, lang: str) -> str | None:
    """What was measured on the images beyond the template's fields: the outline's three
    orthogonal dimensions and, in the breast, the distance from the nipple (whole mm)."""
    evidence = finding.evidence
    if evidence is None:
        return None
    words, parts = LABELS[lang], []
    if evidence.box is not None:
        a, b, c = (int(v + 0.5) for v in evidence.box.dimensions_mm())  # half up, v >= 0
        parts.append(words["dimensions"].format(a=a, b=b, c=c))
    if evidence.nipple_distance_mm is not None:
        distance = int(evidence.nipple_distance_mm + 0.5)
        parts.append(words["from_nipple"].format(d=distance))
    if not parts:
        return None
    return "; ".join(parts) + "." if lang == "en" else "；".join(parts) + "。"


def study_measured_text(spec: FieldSpec, report: Report, lang: str) -> str | None:
    """The measurement behind a report-level field, per side ("Skin thickness (measured):
    right 2.2 mm, left 2.3 mm."), where the draft measured it."""
    measured = report.study.measurements or {}
    if spec.measurement is None or spec.measurement_label is None:
        return None
    words = LABELS[lang]
    values = [
        words["side_mm"].format(side=words["sides"][side], mm=measured[key])
        for side in ("right", "left")
        if (key := f"{spec.measurement}_{side}_mm") in measured
    ]
    if not values:
        return None
    joined = ", ".join(values) if lang == "en" else "，".join(values)
    return words["measured"].format(label=spec.measurement_label[lang], values=joined)


def render_text(
    report: Report,
    lang: str = "en",
    template: Template | None = None,
    concepts: ConceptTable | None = None,
    heading: bool = True,
) -> str:
    """The report as narrative text; `heading=False` leaves out the title and the notice
    for a page that shows them itself (the printable page's title and banner)."""
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    words = LABELS[lang]
    sep = " " if lang == "en" else ""
    out = [template.title[lang], f"[{notice_text(report, lang)}]"] if heading else []
    missing = ", ".join(report.study.sequences_missing) or words["none"]
    used = ", ".join(report.study.sequences_used)
    out.append(
        f"{words['study']}: {report.study.study_id}"
        + (f"; {words['sequences']}: {used}; {words['missing']}: {missing}" if used else "")
    )
    if report.study.study_date:
        out.append(words["study_date"].format(date=report.study.study_date))
    if report.study.technique:  # a draft from images: how they were acquired, no priors
        out += [_technique(report.study.technique, lang), words["comparison"]]
    if report.study.technique or report.study.indication:
        indication = report.study.indication or words["not_provided"]
        out.append(words["indication"].format(text=indication))
    hidden = not_assessable(template, report.study.sequences_used)
    report_values = plain(report.fields)
    for section_id, title in template.sections:
        lines: list[str] = []
        for spec in template.fields:
            if spec.section == section_id and spec.id in report.fields:
                value = report.fields[spec.id]
                text = _marked(
                    _phrase(spec, value, concepts, lang), check_note(value, report, lang), lang
                )
                if text:
                    lines.append(text)
                if measured := study_measured_text(spec, report, lang):
                    lines.append(measured)
        section_specs = [s for s in template.fields if s.section == section_id]
        if hidden and (
            text := _not_assessable(section_specs, hidden, report_values, None, concepts, lang)
        ):
            lines.append(text)
        if section_id == template.finding_section:
            if not report.findings and (none := _no_findings(template, report)):
                lines.append(none[lang])
            elif report.findings and template.finding_none_otherwise_with_findings:
                limited = _no_findings(template, report)  # the limitation, where it applies
                if limited is not None and limited is template.finding_none_otherwise:
                    lines.append(limited[lang])
            for n, finding in enumerate(report.findings, start=1):
                head, rest = [], []
                for spec in template.finding_fields:
                    if spec.id in finding.fields:
                        value = finding.fields[spec.id]
                        text = _marked(
                            _phrase(spec, value, concepts, lang),
                            check_note(value, report, lang),
                            lang,
                        )
                        if text:
                            (rest if _sentence_end(text) else head).append(text)
                if hidden and (
                    text := _not_assessable(
                        template.finding_fields,
                        hidden,
                        plain(finding.fields),
                        report_values,
                        concepts,
                        lang,
                    )
                ):
                    rest.append(text)
                if text := measured_text(finding, lang):
                    rest.append(text)
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
    signed = report.provenance
    if signed.signed_by and signed.signed_at:  # a signed report says who and when
        when = signed.signed_at.replace("T", " ")[:16]
        out += ["", words["signed"].format(who=signed.signed_by, when=when)]
    problems = signed_problems(report)
    if problems:
        out.append("")
        for p in problems:
            if lang == "en":
                out.append(f"{words['note']} ({p.severity}, {p.where}): {p.message}")
            else:
                out.append(f"{words['note']}：{problem_text(p, lang, template)}")
    return "\n".join(out) + "\n"
