"""Benchmark: a study without contrast gets no enhancement statement, in every template.

For each bundled template, N phantoms of its domain are drafted by its bundled model with
every DCE phase removed (as a study acquired without contrast arrives). Counted per
template over the drafts: structured values the template says only contrast shows (a
field that requires DCE, a value only DCE shows: a non-mass enhancement), and narrative
sentences (English text) that speak of enhancement, kinetics or a curve, present or
absent, other than the template's own "not assessable" and "cannot be assessed" lines.
The target (issues 37 and 38) is 0 of both in every template; an ovarian draft once said
"Enhancing solid tissue is present." without DCE.

python bench/no_contrast_statements.py [--n 50] [--seed 4141] [--templates birads_mri,...]
    [--breast-protocol low_resolution|clinical] [--out bench/results/no_contrast_statements.json]

At `--breast-protocol clinical` the breast drafts go through the crop reader and its gate
(lesions read at the acquisition's own resolution).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from bench_io import scratch_dir, write_result
from tqdm import tqdm

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.io.sequences import sequence_family
from reportgen.io.study import Study
from reportgen.model.generator import GenerateOptions
from reportgen.model.generators import bundled_templates, open_generator
from reportgen.render import render_text
from reportgen.report.assessable import not_assessable, unseen_values
from reportgen.synth import SynthOptions, synth_dataset

DOMAIN = {
    "birads_mri": "breast",
    "figo_cervix_2018": "cervix",
    "figo_endometrium_2023": "endometrium",
    "orads_mri": "ovary",
}
ENHANCEMENT = re.compile(r"enhanc|kinetic|washout|wash-out|plateau|curve", re.IGNORECASE)
SAYS_UNSEEN = re.compile(r"not assessable|cannot be assessed", re.IGNORECASE)


def without_contrast(study: Study) -> Study:
    kept = {n: v for n, v in study.sequences.items() if sequence_family(n) != "dce"}
    return Study(study.study_id, kept, study.source, study.form)


def enhancement_sentences(text: str) -> list[str]:
    sentences = [s.strip() for line in text.splitlines() for s in re.split(r"(?<=\.)\s", line)]
    return [s for s in sentences if ENHANCEMENT.search(s) and not SAYS_UNSEEN.search(s)]


def stated_unseen(report, template, sequences: list[str]) -> list[str]:
    """`field=value` for each value a study with only `sequences` cannot show."""
    hidden, unseen = not_assessable(template, sequences), unseen_values(template, sequences)
    out = []
    for fields in [report.fields, *(f.fields for f in report.findings)]:
        for key, value in fields.items():
            if key in hidden or str(value.value) in unseen.get(key, ()):
                out.append(f"{key}={value.value}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50, help="Phantoms per template.")
    parser.add_argument("--seed", type=int, default=4141)
    parser.add_argument("--templates", default="", help="Comma-separated (default: all bundled).")
    parser.add_argument(
        "--breast-protocol", default="low_resolution", help="Breast phantoms' protocol."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "no_contrast_statements.json",
    )
    args = parser.parse_args()
    work = scratch_dir("reportgen-no-contrast-")
    result = {
        "benchmark": "no_contrast_statements",
        "n": args.n,
        "seed": args.seed,
        "breast_protocol": args.breast_protocol,
    }
    templates = {}
    chosen = [t for t in args.templates.split(",") if t] or bundled_templates()
    for template_id in chosen:
        start = time.perf_counter()
        folder = work / template_id
        domain = DOMAIN[template_id]
        protocol = args.breast_protocol if domain == "breast" else "low_resolution"
        synth_dataset(
            folder, args.n, SynthOptions(domain=domain, seed=args.seed, protocol=protocol), 0
        )
        generator = open_generator(template=template_id)
        values, sentences, examples = 0, 0, []
        for row in tqdm(read_manifest(folder / "manifest.jsonl"), desc=template_id):
            study = without_contrast(load_study(folder / row["dir"]))
            report = generator.draft(study, GenerateOptions(explain=False)).report
            stated = stated_unseen(report, generator.template, list(study.sequences))
            said = enhancement_sentences(render_text(report, "en"))
            values += len(stated)
            sentences += len(said)
            examples += [*stated, *said][: max(0, 5 - len(examples))]
        templates[template_id] = {
            "drafts": args.n,
            "values_only_contrast_shows": values,
            "enhancement_sentences": sentences,
            "examples": examples,
            "seconds": round(time.perf_counter() - start, 1),
        }
    result["templates"] = templates
    write_result(args.out, result)


if __name__ == "__main__":
    main()
