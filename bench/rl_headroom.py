"""How much field accuracy can refining the decoder alone win, at most?

PPO changes the decoder's token policy; it cannot make the detector propose a lesion it
missed. On held-out phantoms this splits the truth's fields into study-level, derived,
fields of lesions the greedy draft describes, and fields of lesions it never mentions,
(and fields of lesions it invents), and measures the best of N sampled drafts per study (picked with the truth: an oracle,
a ceiling for re-weighting the policy's own samples, not a result). Also: how the
detector's operating point alone moves the same held-out metrics (a diagnostic sweep on
held-out data, so not a way to choose the threshold).

    python bench/rl_headroom.py [--heldout 100] [--samples 8] [--thresholds 0.5,0.25,0.15]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import torch
from bench_io import scratch_dir, write_result
from rl_refine import HELDOUT
from tqdm import tqdm

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.decoding import draft_tokens
from reportgen.model.generate import GenerateOptions, ReportGenerator
from reportgen.report import Report
from reportgen.report.compare import align_findings
from reportgen.report.io import read_report
from reportgen.report.metrics import field_accuracy, scored_slots
from reportgen.synth import synth_dataset
from rl.refine import heldout_metrics
from rl.rewards import correction_reward


def slot_kind(where: str, truth: Report, described: set[int]) -> str:
    if where.startswith("findings[+"):
        return "invented lesion"
    if where.startswith("derived."):
        return "derived"
    if where.startswith("fields."):
        return "study"
    finding_id = where.split("[", 1)[1].split("]", 1)[0]
    index = [f.id for f in truth.findings].index(finding_id)
    return "described lesion" if index in described else "lesion never described"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", default="0.5,0.35,0.25,0.15,0.08")
    parser.add_argument("--out", type=Path, default=Path("bench/results/rl_headroom.json"))
    args = parser.parse_args()
    t0 = time.time()
    folder = scratch_dir("reportgen-headroom-") / "heldout"
    # the refinement bench's held-out studies, so the numbers read against its table
    synth_dataset(folder, args.heldout, HELDOUT, workers=1)
    generator = ReportGenerator()
    torch.manual_seed(args.seed)
    correct, total = Counter(), Counter()
    lesions = described_lesions = 0
    for row in tqdm(read_manifest(folder / "manifest.jsonl"), desc="held-out studies"):
        study = load_study(folder / row["dir"])
        truth = read_report(folder / row["dir"] / "report.json")
        greedy = generator.draft(study, GenerateOptions(explain=False)).report
        described = {i for i, _ in align_findings(truth.findings, greedy.findings)}
        lesions += len(truth.findings)
        described_lesions += len(described)
        for s in scored_slots(greedy, truth):
            kind = slot_kind(s.where, truth, described)
            total[kind] += 1
            correct[kind] += int(s.truth == s.predicted)
        image, present, _ = generator.tensors(study)
        memory = generator.model.encode(image, present)
        sampled = draft_tokens(
            generator.model,
            generator.vocab,
            generator.grammar,
            memory.select(torch.zeros(args.samples, dtype=torch.long)),
            do_sample=True,
        )
        reports = [r for r in (generator.report_of(row["dir"], d) for d in sampled) if r]
        best = max(reports, key=lambda r: correction_reward(r, truth).reward)
        for name, reps in (("greedy", [greedy]), ("sampled", reports), ("best sampled", [best])):
            for r in reps:
                c, t = field_accuracy(r, truth)
                correct[name] += c
                total[name] += t
    thresholds = {}
    bundled_threshold = generator.model.cfg.roi["threshold"]
    for threshold in (float(t) for t in args.thresholds.split(",") if t):
        generator.model.cfg.roi["threshold"] = threshold
        thresholds[str(threshold)] = heldout_metrics(generator, folder)
    generator.model.cfg.roi["threshold"] = bundled_threshold
    result = {
        "heldout_studies": args.heldout,
        "samples_per_study": args.samples,
        "lesions": lesions,
        "lesions_described_by_greedy_draft": described_lesions,
        "field_accuracy": {
            "greedy draft": correct["greedy"] / total["greedy"],
            "mean sampled draft": correct["sampled"] / total["sampled"],
            f"best of {args.samples} sampled drafts (oracle)": correct["best sampled"]
            / total["best sampled"],
        },
        "greedy_field_accuracy_by_kind": {
            kind: {"correct": correct[kind], "fields": total[kind]}
            for kind in (
                "study",
                "derived",
                "described lesion",
                "lesion never described",
                "invented lesion",
            )
        },
        "bundled_detector_threshold": bundled_threshold,
        "greedy_metrics_by_detector_threshold": thresholds,
        "seconds": round(time.time() - t0, 1),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
