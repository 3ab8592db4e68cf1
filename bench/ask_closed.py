"""Closed-ended questions about phantom studies, answered from each bundled model's draft.

Questions are generated from each study's ground truth: for a field and (for yes/no) a
value, a frame ("Is there {x}?", "有{x}吗？") is filled with the concept's preferred term
or one of its synonyms, in English or Chinese, and the answer key is computed from the
truth report directly (never through the question reader). Frames are split: the even
ones were looked at while building `reportgen ask`, the odd ones never were and are the
held-out set. Reported per template, with 95% bootstrap intervals over studies:
- accuracy on held-out questions, answered from the model's draft (end to end);
- accuracy of the same questions answered from the truth report (the reader of
  questions alone: 1.0 means every question went to the right field and value);
- the model's own field accuracy on those studies (`ReportScores`), which bounds what
  any answer from its reading can reach;
- refusals of 50 out-of-scope questions.
A template without a bundled model (pancreas_ct, until issue 40's reader) is measured on
the question reader alone.

    python bench/ask_closed.py [--templates T,...] [--studies 100] [--per-study 6]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, write_result

from ontology.concepts import default_concepts
from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import bundled_templates, open_generator
from reportgen.report import load_template
from reportgen.report.ask import Asker
from reportgen.report.io import read_report
from reportgen.report.metrics import ReportScores
from reportgen.report.schema import Report
from reportgen.synth import SynthOptions, synth_dataset
from reportgen.synth.generate import DOMAINS
from reportgen.synth.text import VERBS

SEED = 40301  # never used for anything else
TEMPLATE_DOMAIN = {t: d for d, t in DOMAINS.items()}
FRAMES: dict[str, dict[str, list[str]]] = {
    "bool": {
        "en": ["Is there {x}?", "Does the study show {x}?", "Any {x}?", "Is {x} present?",
               "Can you see {x}?", "Is there evidence of {x}?", "Do you see {x}?", "Is {x} seen?"],
        "zh": ["有{x}吗？", "是否有{x}？", "可见{x}吗？", "是否存在{x}？", "有没有{x}？", "能看到{x}吗？"],
    },
    "bool_negated": {
        "en": ["Is there no {x}?", "Is there an absence of {x}?", "Is it free of {x}?",
               "Is there no evidence of {x}?"],
        "zh": ["没有{x}吗？", "是否未见{x}？", "无{x}吗？", "未见{x}吗？"],
    },
    "value": {
        "en": ["What is the {f}?", "Which {f} is it?", "What {f} is reported?", "What is the {f} here?"],
        "zh": ["{f}是什么？", "{f}是哪一种？", "是什么{f}？", "{f}属于哪种？"],
    },
    "value_of": {  # a value several fields share, named by what it belongs to
        "en": ["What is the {f} of the {a}?", "Which {f} is the {a}?", "What {f} is the {a} on?",
               "What is the {f} of the {a} here?"],
        "zh": ["{a}的{f}是什么？", "{a}是哪种{f}？", "{a}的{f}是哪一种？", "{a}属于什么{f}？"],
    },
    "finding_value": {
        "en": ["Is there a {n} with {v}?", "Does any {n} show {v}?", "Is a {n} with {v} seen?",
               "Does the {n} have {v}?"],
        "zh": ["有{v}的{n}吗？", "{n}是否有{v}？", "是否见{v}的{n}？", "{n}有{v}吗？"],
    },
    "headline": {
        "en": ["Is this {v}?", "Is it {v}?", "Would you call it {v}?", "Is the result {v}?"],
        "zh": ["是否为{v}？", "是{v}吗？", "结果是{v}吗？", "属于{v}吗？"],
    },
    "count": {
        "en": ["How many {ns} are there?", "What is the number of {ns}?", "How many {ns} are seen?",
               "How many {ns} does the study show?"],
        "zh": ["有几个{n}？", "{n}有几个？", "{n}的数目是多少？", "共有几处{n}？"],
    },
    "size": {
        "en": ["How large is the {n}?", "What is the size of the {n}?", "How big is the {n}?",
               "What size is the {n}?"],
        "zh": ["{n}多大？", "{n}的大小是多少？", "{n}尺寸多少？", "{n}有多大？"],
    },
    "side": {
        "en": ["Which side is the {n} on?", "On which side is the {n}?", "What side is the {n} on?",
               "Which side has the {n}?"],
        "zh": ["{n}位于哪一侧？", "{n}在哪侧？", "哪一侧有{n}？", "{n}是哪侧的？"],
    },
    "site": {  # anatomy a field is about: "Is the SMA involved?"
        "en": ["Is the {x} involved?", "Is there involvement of the {x}?", "Does the tumour involve the {x}?",
               "Is the {x} affected?"],
        "zh": ["{x}是否受累？", "{x}受侵吗？", "肿瘤是否累及{x}？", "{x}有无受累？"],
    },
}  # fmt: skip
OUT_OF_SCOPE = [
    "What is the weather today?", "Who referred the patient?", "What is the patient's name?",
    "How old is the patient?", "Is the prostate enlarged?", "Is there a brain tumour?",
    "Should the patient stop smoking?", "What time is the appointment?", "Is the liver cirrhotic?",
    "Does the patient have diabetes?", "Is there a fracture of the femur?", "What is the heart rate?",
    "Is the thyroid normal?", "Are the lungs clear?", "Is there pneumonia?", "What medication should she take?",
    "When was the previous scan?", "Who read this study?", "Is the knee meniscus torn?",
    "Is there a kidney stone?", "What is the blood pressure?", "Is the appendix inflamed?",
    "Is the spleen enlarged?", "Does the patient have COVID?", "What is the PSA level?",
    "Is there a herniated disc?", "How much does the MRI cost?", "Is the gallbladder inflamed?",
    "What is the cholesterol level?", "Is the aorta aneurysmal?", "Can the patient drive home?",
    "Is there a pulmonary embolism?", "Is the carotid stenosed?", "What is the eGFR?",
    "Is there a brain haemorrhage?", "Is the hip dislocated?", "What is the diagnosis of the skin rash?",
    "今天天气怎么样？", "患者叫什么名字？", "患者多大年纪？", "前列腺增大吗？", "有脑肿瘤吗？",
    "检查费用是多少？", "肺部清楚吗？", "有肾结石吗？", "甲状腺正常吗？", "血压是多少？",
    "有骨折吗？", "患者需要吃什么药？", "下次复查什么时候？",
]  # fmt: skip


def _frame(form: str, lang: str, held_out: bool, rng: random.Random) -> str:
    frames = FRAMES[form][lang]
    return rng.choice(frames[1::2] if held_out else frames[0::2])


class Writer:
    """Terms for concepts: the preferred one or a synonym (as a clinician might say it)."""

    def __init__(self, rng: random.Random):
        self.rng, self.concepts = rng, default_concepts()
        meanings: dict[str, set[str]] = {}
        for cid in self.concepts:
            c = self.concepts[cid]
            for term in (c.en, c.zh, *c.syn_en, *c.syn_zh):
                meanings.setdefault(term.lower(), set()).add(cid)
        # a term several concepts share makes an ambiguous question: never written
        self.ambiguous = {t for t, ids in meanings.items() if len(ids) > 1}

    def term(self, cid: str, lang: str) -> str:
        concept = self.concepts[cid]
        options = [concept.pref(lang), *(concept.syn_zh if lang == "zh" else concept.syn_en)]
        options = [
            o for o in options if o.split()[0] not in VERBS and o.lower() not in self.ambiguous
        ] or [concept.pref(lang)]  # noun phrases that mean one concept
        return self.rng.choice(options)


def parse_anchors(template) -> dict[str, set[str]]:
    from reportgen.report.parse import TemplateLexicon

    return TemplateLexicon.of(template).anchors


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "sh", "ch")) else "s")


def _any(findings, field_id, test) -> bool:
    return any(field_id in f.fields and test(f.fields[field_id].value) for f in findings)


def questions_for(truth: Report, rng: random.Random, per_study: int, held_out: bool) -> list[dict]:
    """Questions about one study with their answer keys, from its truth report."""
    template = load_template(truth.template.id)
    words = Writer(rng)
    concepts = words.concepts
    findings = truth.findings
    options: list[dict] = []
    finding_name = template.finding_concept
    for spec in template.fields:
        if spec.id not in truth.fields:
            continue
        value = truth.fields[spec.id].value
        if spec.type == "bool":
            options.append({"form": "bool", "x": spec.concept, "answer": bool(value)})
            options.append({"form": "bool_negated", "x": spec.concept, "answer": not bool(value)})
            site = concepts[spec.concept].relations.get("finding_site")
            if site in concepts:
                options.append({"form": "site", "x": site, "answer": bool(value)})
        elif spec.type == "enum":
            shared = sum(f.concept == spec.concept for f in template.fields) > 1
            anchor = next(iter(sorted(parse_anchors(template).get(spec.id, ()))), None)
            if not shared:
                options.append({"form": "value", "f": spec.concept, "answer": value})
            elif anchor is not None:
                options.append(
                    {"form": "value_of", "f": spec.concept, "a": anchor, "answer": value}
                )
    for spec in template.derived_report:
        if spec.id in truth.derived:
            value = truth.derived[spec.id].value
            options.append({"form": "value", "f": spec.concept, "answer": value})
            if spec.id == template.headline:
                other = rng.choice(spec.values)
                options.append({"form": "headline", "v": other, "answer": other == value})
    for spec in template.finding_fields:
        if spec.type == "enum" and spec.id != template.finding_type_field:
            value = rng.choice(spec.values)
            if spec.negated and value == spec.negated:
                continue
            answer = _any(findings, spec.id, lambda v, value=value: v == value)
            options.append(
                {"form": "finding_value", "v": value, "n": finding_name, "answer": answer}
            )
            site = concepts[spec.concept].relations.get("finding_site")
            if spec.negated and site in concepts:
                positive = _any(findings, spec.id, lambda v, neg=spec.negated: v != neg)
                options.append({"form": "site", "x": site, "answer": positive})
        elif spec.type == "bool":
            answer = _any(findings, spec.id, bool)
            options.append({"form": "bool", "x": spec.concept, "answer": answer})
    if template.finding_max > 1:
        options.append({"form": "count", "n": finding_name, "answer": len(findings)})
        if any(f.id == "laterality" for f in template.finding_fields) and findings:
            sides = sorted({str(f.fields["laterality"].value) for f in findings})
            options.append({"form": "side", "n": finding_name, "answer": sides})
    if findings:
        largest = max(float(f.fields["size_mm"].value) for f in findings if "size_mm" in f.fields)
        options.append({"form": "size", "n": finding_name, "answer": largest})
    rng.shuffle(options)
    out = []
    for option in options[:per_study]:
        lang = rng.choice(["en", "zh"])
        frame = _frame(option["form"], lang, held_out, rng)
        filled = {
            k: words.term(str(option[k]), lang) for k in ("x", "f", "v", "n", "a") if k in option
        }
        if "n" in option:
            filled["ns"] = _plural(filled["n"])
        out.append({**option, "lang": lang, "question": frame.format(**filled)})
    return out


def correct(item: dict, answer) -> bool:
    """Whether an `Answer` matches the key: sizes within 3 mm, sides as sets."""
    if answer.status != "answered" or answer.answer is None:
        return item["answer"] is None or (item["form"] == "count" and item["answer"] == 0)
    if item["form"] == "size":
        return abs(float(answer.answer) - float(item["answer"])) <= 3.0
    if item["form"] == "side":
        got = answer.answer if isinstance(answer.answer, list) else [answer.answer]
        return sorted(map(str, got)) == item["answer"]
    return answer.answer == item["answer"]


HANDWRITTEN = Path(__file__).parent / "data" / "ask_handwritten.yaml"


def _stated(truth: Report, field_id: str) -> list:
    """A field's values in the truth: the report's (or derived) value, else each finding's."""
    for source in (truth.fields, truth.derived):
        if field_id in source:
            return [source[field_id].value]
    return [f.fields[field_id].value for f in truth.findings if field_id in f.fields]


def _positive(template, field_id: str, value) -> bool:
    spec = template.field(field_id) if template.has_field(field_id) else None
    negative = spec.negated if spec is not None and spec.type == "enum" else False
    return value not in (negative, False, None)


def _matches(finding, wanted: dict) -> bool:
    return all(f in finding.fields and finding.fields[f].value == v for f, v in wanted.items())


def handwritten_key(truth: Report, key: dict):
    """The expected answer of a hand-written question, from the truth report."""
    template = load_template(truth.template.id)
    suspicious = template.suspicious_finding_result

    def holds(rule: dict) -> bool:
        if "finding" in rule or "finding_positive" in rule:
            found = [f for f in truth.findings if _matches(f, rule.get("finding", {}))]
            if "finding_positive" in rule:
                name = rule["finding_positive"]
                found = [
                    f
                    for f in found
                    if name in f.fields and _positive(template, name, f.fields[name].value)
                ]
            if rule.get("suspicious") and suspicious is not None:
                found = [
                    f for f in found if str(f.derived[suspicious.id].value) in suspicious.suspicious
                ]
            return bool(found)
        values = _stated(truth, rule["field"])
        if "is" in rule:
            return rule["is"] in values
        if "in" in rule:
            return any(v in rule["in"] for v in values)
        return any(_positive(template, rule["field"], v) for v in values)

    if "true_if" in key:
        return holds(key["true_if"])
    if "false_if" in key:
        return not holds(key["false_if"])
    if "value" in key:
        values = _stated(truth, key["value"])
        return values[0] if values else None
    if "values" in key:
        return sorted({str(v) for v in _stated(truth, key["values"])})
    if "count" in key:
        return sum(_matches(f, key["count"]) for f in truth.findings)
    sizes = [
        float(f.fields["size_mm"].value)
        for f in truth.findings
        if "size_mm" in f.fields and _matches(f, key.get("size", {}))
    ]
    if "size" in key:
        return max(sizes) if sizes else None
    if "size_gt" in key:
        return bool(sizes) and max(sizes) > key["size_gt"]
    if "size_lt" in key:
        return bool(sizes) and max(sizes) < key["size_lt"]
    if "vessels" in key:
        from reportgen.synth.pancreas import CONTACT_VESSELS

        return sorted(
            fid
            for fid in CONTACT_VESSELS
            if any(
                fid in f.fields and _positive(template, fid, f.fields[fid].value)
                for f in truth.findings
            )
        )
    raise ValueError(f"unknown answer key {key}")


def handwritten_correct(expected, answer) -> bool:
    if answer.status != "answered":
        return False
    got = answer.answer
    if isinstance(expected, list):
        got = got if isinstance(got, list) else ([] if got is None else [got])
        return sorted(map(str, got)) == expected
    if isinstance(expected, float) and got is not None and not isinstance(got, bool):
        return abs(float(got) - expected) <= 3.0
    return got == expected


def _interval(per_study: list[list[bool]], rng: np.random.Generator) -> list[float]:
    """Accuracy and its 95% bootstrap interval, resampling studies."""
    flat = [x for xs in per_study for x in xs]
    if not flat:
        return [float("nan")] * 3
    means = []
    for _ in range(1000):
        pick = rng.integers(len(per_study), size=len(per_study))
        sample = [x for i in pick for x in per_study[i]]
        means.append(np.mean(sample) if sample else np.nan)
    return [
        round(float(np.mean(flat)), 4),
        *(round(float(v), 4) for v in np.nanpercentile(means, [2.5, 97.5])),
    ]


def run_template(template_id: str, args, work: Path) -> dict:
    domain = TEMPLATE_DOMAIN[template_id]
    folder = work / domain
    synth_dataset(folder, args.studies, SynthOptions(domain=domain, seed=SEED), workers=2)
    rows = read_manifest(folder / "manifest.jsonl")
    generator = open_generator(template=template_id) if template_id in bundled_templates() else None
    scores = ReportScores(load_template(template_id)) if generator else None
    rng = random.Random(SEED)
    import yaml

    written = yaml.safe_load(HANDWRITTEN.read_text(encoding="utf-8")).get(template_id, [])
    handwritten, handwritten_reader = [], []
    held, tuned, mapped = [], [], []
    by_form: dict[str, list[bool]] = {}
    refusals = []
    t0 = time.time()
    for k, row in enumerate(rows):
        truth = read_report(folder / row["dir"] / "report.json")
        draft = None
        if generator is not None:
            draft = generator.draft(
                load_study(folder / row["dir"]), GenerateOptions(explain=False)
            ).report
            scores.add(draft, truth)
        study_held, study_tuned, study_mapped = [], [], []
        for held_out in (True, False):
            for item in questions_for(truth, rng, args.per_study, held_out):
                from_truth = correct(item, Asker(truth).answer(item["question"], item["lang"]))
                if held_out:
                    study_mapped.append(from_truth)
                if draft is not None:
                    ok = correct(item, Asker(draft).answer(item["question"], item["lang"]))
                    (study_held if held_out else study_tuned).append(ok)
                    if held_out:
                        by_form.setdefault(item["form"], []).append(ok)
        if written:  # every study: a tenth of the hand-written questions, in turn
            picked = written[k % 10 :: 10]
            hw, hw_reader = [], []
            for question, lang, key in picked:
                expected = handwritten_key(truth, key)
                hw_reader.append(handwritten_correct(expected, Asker(truth).answer(question, lang)))
                if draft is not None:
                    hw.append(handwritten_correct(expected, Asker(draft).answer(question, lang)))
            handwritten.append(hw)
            handwritten_reader.append(hw_reader)
        held.append(study_held)
        tuned.append(study_tuned)
        mapped.append(study_mapped)
        if k == 0:
            asker = Asker(truth)
            refusals = [
                asker.answer(q, "zh" if any("\u4e00" <= c <= "\u9fff" for c in q) else "en").status
                == "refused"
                for q in OUT_OF_SCOPE
            ]
    boot = np.random.default_rng(SEED)
    result = {
        "studies": len(rows),
        "questions_held_out": sum(map(len, mapped)),
        "question_reader_accuracy_held_out": _interval(mapped, boot),
        "out_of_scope_refused": f"{sum(refusals)}/{len(refusals)}",
        "handwritten_questions": len(written),
        "handwritten_reader_accuracy": _interval(handwritten_reader, boot),
        "seconds": round(time.time() - t0, 1),
    }
    if generator is not None:
        summary = scores.summary()
        result |= {
            "answer_accuracy_held_out": _interval(held, boot),
            "answer_accuracy_tuning_frames": _interval(tuned, boot),
            "handwritten_answer_accuracy": _interval(handwritten, boot),
            "answer_accuracy_by_form": {
                f: round(float(np.mean(v)), 4) for f, v in sorted(by_form.items())
            },
            "model_field_accuracy": summary.get("field_accuracy"),
        }
    else:
        result["note"] = "no bundled model for this template: only the question reader is measured"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--templates",
        default="figo_cervix_2018,figo_endometrium_2023,orads_mri,birads_mri,pancreas_ct",
    )
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--per-study", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ask_closed.json"))
    args = parser.parse_args()
    work = scratch_dir("reportgen-ask-")
    results = {}
    for template_id in args.templates.split(","):
        results[template_id] = run_template(template_id, args, work)
        print(template_id, results[template_id], flush=True)
    # a run over some templates keeps the others' last results (each names its command)
    kept = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    for template_id, result in results.items():
        result["command"] = f"python bench/ask_closed.py --templates {template_id}"
    write_result(
        args.out,
        {"command": "python bench/ask_closed.py", "seed": SEED, "results": kept | results},
    )


if __name__ == "__main__":
    main()
