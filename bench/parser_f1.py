"""Benchmark: field-level F1 of `reportgen parse` per template and language.

Two sets, reported separately:
- synthetic free text from held-out seeds (the parser was developed on seed 100 only);
- hand-written reports in phrasing the generator never produces (bench/data/), a small
  check of how far the parser carries beyond the bench's own vocabulary.

    python bench/parser_f1.py [--n 200] [--seed 9001]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from reportgen.data import read_manifest
from reportgen.report import Report, build_report, load_template
from reportgen.report.compare import slots
from reportgen.report.metrics import FieldScores
from reportgen.report.parse import parse_report
from reportgen.report.schema import Provenance, StudyRef
from reportgen.synth import DOMAINS, SynthOptions, synth_dataset

HERE = Path(__file__).parent


def synthetic(n: int, seed: int) -> dict:
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="reportgen-f1-"))
    try:
        for domain, template_id in DOMAINS.items():
            rows = read_manifest(
                synth_dataset(
                    tmp / domain,
                    n,
                    SynthOptions(protocol="low_resolution", domain=domain, seed=seed),
                )
            )
            for lang in ("en", "zh"):
                scores = FieldScores()
                for row in rows:
                    truth = Report.model_validate(row["report"])
                    scores.add(slots(parse_report(row["text"][lang], template_id, lang), truth))
                out[f"{template_id}/{lang}"] = {
                    "reports": len(rows),
                    "macro_f1": round(scores.macro_f1(), 4),
                    "micro_f1": round(scores.micro_f1(), 4),
                    "lowest_fields": dict(
                        sorted(
                            ((k, round(v, 3)) for k, v in scores.f1().items()), key=lambda kv: kv[1]
                        )[:3]
                    ),
                }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def handwritten(name: str) -> dict:
    cases = json.loads((HERE / "data" / name).read_text(encoding="utf-8"))
    out: dict = {}
    total = FieldScores()
    for i, case in enumerate(cases):
        template = load_template(case["template"])
        truth = build_report(
            template,
            case["fields"],
            case["findings"],
            study=StudyRef(study_id="h"),
            provenance=Provenance(source="human"),
            stated=case["stated"],
            trust_stated=True,
        )
        items = slots(parse_report(case["text"], case["template"], case["lang"]), truth)
        scores = FieldScores()
        scores.add(items)
        total.add(items)
        key = f"{case['template']}/{case['lang']}"
        out[f"{i}: {case['name']} ({key})" if "name" in case else key] = {
            "micro_f1": round(scores.micro_f1(), 4),
            "errors": [
                f"{s.where}: expected {s.truth!r}, parsed {s.predicted!r}"
                for s in items
                if s.truth != s.predicted
            ],
        }
    out["all"] = {"micro_f1": round(total.micro_f1(), 4), "macro_f1": round(total.macro_f1(), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "parser_f1.json")
    args = parser.parse_args()
    syn = synthetic(args.n, args.seed)
    result = {
        "benchmark": "parser_f1",
        "command": f"python bench/parser_f1.py --n {args.n} --seed {args.seed}",
        "target_macro_f1": 0.97,
        "synthetic_held_out": syn,
        "synthetic_min_macro_f1": min(v["macro_f1"] for v in syn.values()),
        # Development set: hand-written reports the parser was improved against.
        "handwritten_development": handwritten("handwritten_reports.json"),
        # Held out: written after those improvements and measured without further tuning.
        "handwritten_held_out": handwritten("handwritten_heldout.json"),
        # In the style of real reports (headers, history, comparison, sizes in cm on three
        # axes, impressions that restate findings, recommendations). The first set was
        # held out once, then its misses were fixed: it is development now.
        "handwritten_real_style_development": handwritten("handwritten_realstyle.json"),
        # The second was written before those fixes and measured once after them (micro
        # F1 0.913, macro 0.874: README); its misses were then fixed too, so it is
        # development now as well.
        "handwritten_real_style_2_development": handwritten("handwritten_realstyle_2.json"),
        # Pelvic only (cervix, endometrium, O-RADS MRI). The third was written before the
        # parser changes of issue 35 and measured once after them: 59/65 fields, micro F1
        # 0.901. Its misses were fixed after the fourth was written; the fourth, measured
        # once then: 62/65 fields (0.954, Wilson 95% 0.873-0.984), micro F1 0.961. Both are
        # development now: a new held-out figure needs a fifth, unseen set.
        "held_out_once": {
            "handwritten_realstyle_3.json": {"fields_right": 59, "fields": 65, "micro_f1": 0.9008},
            "handwritten_realstyle_4.json": {"fields_right": 62, "fields": 65, "micro_f1": 0.9612},
        },
        "handwritten_real_style_3_development": handwritten("handwritten_realstyle_3.json"),
        "handwritten_real_style_4_development": handwritten("handwritten_realstyle_4.json"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
