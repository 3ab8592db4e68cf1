"""What every output format must carry beside the report's values: its notice (the
bundled models are trained on synthetic phantoms, not for clinical use) and each
validation problem (a forced draft of another body region, an unusual study, a
contradiction), in one wording, so no format drops one; a model's disagreement with the
template's rules is the reviewer's, not the signed report's (`REVIEW_ONLY`). Each format puts them in its own
standard place (see docs/output_notices.md). A report read in Chinese gets them in Chinese:
the notice translated, each problem's kind said in Chinese with the measured detail kept
as written (a clinician must not need English to see that a draft is not meaningful)."""

from __future__ import annotations

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.report.calibration import needs_check
from reportgen.report.schema import Problem, Report, Value
from reportgen.report.template import Template

NOT_FOR_CLINICAL_USE_ZH = "科研软件：内置模型仅以合成体模训练，不可用于临床。"

# The notices the product writes, in Chinese.
NOTICES_ZH = {
    NOT_FOR_CLINICAL_USE: NOT_FOR_CLINICAL_USE_ZH,
    "Synthetic phantom with known ground truth. " + NOT_FOR_CLINICAL_USE: (
        "合成体模，真值已知。" + NOT_FOR_CLINICAL_USE_ZH
    ),
}

SEVERITY_ZH = {"error": "错误", "warning": "警告", "info": "提示"}

# What each kind of problem (its `rule`) means, in Chinese; the message's own detail
# (a tag's value, a measured size) follows in parentheses.
PROBLEM_KINDS_ZH = {
    "fitness": "使用 --force 强制生成：检查部位或序列与模板不符，本报告无意义",
    "unusual_study": "图像与模型训练所用体模差异很大，请逐项对照图像核对",
    "not_outlined": "病灶未能可靠勾画，未给出大小",
    "other_anatomy": "报告文字描述的部位与模板不符，请核对模板",
    "derivation": "所填值与模板规则推导的结果不一致",
    "prediction": "模型预测值与模板规则推导的结果不一致",
    "dce_phases": "仅读取了动态增强序列的部分时相",
    "schema": "报告不符合报告结构规范",
}


# Where a model's own prediction of a derived result differed from what the template's
# rules give (the rules' value is the one stated): a note for whoever reviews the model,
# kept in the JSON and shown on the review page, never in a narrative a clinician signs
# ("predicted 'quadrant_upper_inner' but the template's rules give ..." once was).
REVIEW_ONLY = frozenset({"prediction"})


def signed_problems(report: Report) -> list[Problem]:
    """The validation problems every output a clinician signs carries: all but the
    review-only ones."""
    problems = report.validation.problems if report.validation else []
    return [p for p in problems if p.rule not in REVIEW_ONLY]


def notice_text(report: Report, lang: str = "en") -> str:
    """The report's notice in `lang` (an unknown notice in Chinese keeps its own words
    after the standard one)."""
    notice = report.notice or NOT_FOR_CLINICAL_USE
    if lang != "zh":
        return notice
    return NOTICES_ZH.get(notice) or f"{NOT_FOR_CLINICAL_USE_ZH}（{notice}）"


def problem_text(problem: Problem, lang: str = "en", template: Template | None = None) -> str:
    """One validation problem as "severity: where: message", in `lang`."""
    if lang != "zh":
        return f"{problem.severity}: {problem.where}: {problem.message}"
    kind = PROBLEM_KINDS_ZH.get(problem.rule)
    if kind is None and template is not None:  # a template's own consistency rule
        own = next((r for r in template.consistency if r.id == problem.rule), None)
        kind = own.message.get("zh") if own is not None else None
    severity = SEVERITY_ZH.get(problem.severity, problem.severity)
    said = f"{kind}（{problem.message}）" if kind else problem.message
    return f"{severity}：{problem.where}：{said}"


def report_notes(report: Report, lang: str = "en", template: Template | None = None) -> list[str]:
    """The notice first, then every signed validation problem, in `lang`."""
    problems = signed_problems(report)
    return [notice_text(report, lang), *(problem_text(p, lang, template) for p in problems)]


# A value whose calibrated confidence is below the model's threshold, as every format
# marks it (`reportgen.report.calibration`): the reader sees what to check before signing.
CHECK_NOTE = {"en": "uncertain, {percent}%: please verify", "zh": "不确定，{percent}%，请核实"}


def check_note(value: Value, report: Report, lang: str = "en") -> str | None:
    """The mark for `value` in `report`, or None when it needs no check."""
    if not needs_check(value, report.provenance.check_below):
        return None
    return CHECK_NOTE[lang].format(percent=round(100 * float(value.confidence or 0.0)))
