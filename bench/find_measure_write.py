"""Where a lesion is lost between finding, measuring and writing.

For each truth lesion of held-out (validation) phantoms: does the 4 mm detector's peak
probability inside it reach the proposal threshold, is it proposed, is it outlined by
the segmenter; and for each outlined lesion: is the measured (pointer) clock face and
size right, and does the draft write what was measured.

    python bench/find_measure_write.py --data VAL [--model DIR] [--n 60]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from bench_io import scratch_dir, write_result

from reportgen.model.candidates import find_candidates
from reportgen.model.data import load_examples
from reportgen.model.generate import GenerateOptions, ReportGenerator


def _label_of(voxels: np.ndarray, labels: np.ndarray) -> int:
    hit = labels[tuple(voxels.T)]
    hit = hit[hit > 0]
    return int(np.bincount(hit).argmax()) if hit.size else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("bench/results/find_measure_write.json"))
    args = parser.parse_args()
    generator = ReportGenerator(args.model)
    model, roi, f = generator.model, generator.model.cfg.roi, generator.model.cfg.pool_factor
    cache = scratch_dir("reportgen-fmw-")
    examples = load_examples(args.data, model.input_cfg, cache, generator.template.id)
    found = defaultdict(
        lambda: {"lesions": 0, "peak_over_threshold": 0, "proposed": 0, "outlined": 0}
    )
    written = []
    for i in range(min(args.n, len(examples.reports))):
        item = examples.images[i]
        labels = np.load(examples.images.files[i])["mask"]
        image, present = item["image"][None], item["present"][None]
        with torch.no_grad():
            prob = model.detect(model.pooled(image), present)[0].numpy()
        proposals, components = find_candidates(
            prob, model.encoder_cfg.grid_spacing, roi["threshold"], roi["max_proposals"]
        )
        outlined, _ = model.outline_candidates(item["image"], item["present"], proposals)
        coarse = labels.reshape(
            labels.shape[0] // f, f, labels.shape[1] // f, f, labels.shape[2] // f, f
        ).max(axis=(1, 3, 5))
        sidecar = (examples.truth[i] or {}).get("lesions") or []
        numbers = [les["label"] for les in sidecar]
        for k, finding in enumerate(examples.reports[i].findings):
            label = numbers[k] if k < len(numbers) else k + 1
            if not (labels == label).any():
                continue
            size = float(finding.fields["size_mm"].value)
            key = f"{finding.fields['type'].value} {'<10' if size < 10 else '>=10'} mm"
            row = found[key]
            row["lesions"] += 1
            row["peak_over_threshold"] += bool(prob[coarse == label].max() >= roi["threshold"])
            row["proposed"] += any(
                (coarse[components == c.component] == label).any() for c in proposals
            )
            row["outlined"] += any(_label_of(c.outline, labels) == label for c in outlined)
        draft = generator.draft_tensors(
            examples.study_ids[i], image, present, None, GenerateOptions(explain=False)
        )
        for j, cand in enumerate(outlined):
            label = _label_of(cand.outline, labels)
            if not label or j >= len(draft.report.findings):
                continue
            k = numbers.index(label) if label in numbers else label - 1
            truth = examples.reports[i].findings[k].fields
            wrote = draft.report.findings[j].fields
            written.append(
                {
                    "clock": truth["clock"].value,
                    "measured_clock": cand.reading.pointers.get("clock"),
                    "written_clock": wrote["clock"].value if "clock" in wrote else None,
                    "size": float(truth["size_mm"].value),
                    "measured_size": float(cand.reading.pointers.get("size_mm", "nan")),
                    "written_size": float(wrote["size_mm"].value) if "size_mm" in wrote else None,
                }
            )
    n = max(1, len(written))
    sizes = [w for w in written if w["written_size"] is not None]
    write_result(
        args.out,
        {
            "benchmark": "find_measure_write",
            "command": f"python bench/find_measure_write.py --data {args.data} --n {args.n}",
            "detection": dict(found),
            "outlined_lesions": len(written),
            "measured_clock_correct": round(
                sum(w["clock"] == w["measured_clock"] for w in written) / n, 4
            ),
            "written_clock_correct": round(
                sum(w["clock"] == w["written_clock"] for w in written) / n, 4
            ),
            "measured_size_mae_mm": round(
                float(np.mean([abs(w["size"] - w["measured_size"]) for w in written])), 3
            )
            if written
            else None,
            "written_size_mae_mm": round(
                float(np.mean([abs(w["size"] - w["written_size"]) for w in sizes])), 3
            )
            if sizes
            else None,
        },
    )


if __name__ == "__main__":
    main()
