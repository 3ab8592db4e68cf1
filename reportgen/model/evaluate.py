"""`reportgen evaluate`: how good the drafts are on held-out studies, beside two baselines.

Metrics: per-field accuracy and macro-F1 (findings aligned by the Hungarian method),
headline derived result accuracy (BI-RADS assessment / FIGO stage) with a confusion
matrix, lesion size MAE and relative error, malignancy AUROC (when the data carry
pathology truth), detection IoU (evidence boxes vs lesion-mask boxes) and outline Dice
(each truth lesion's label against the drafted outline that overlaps it most, on the
study's grid), BLEU-4 and
ROUGE-L of the rendered English text (sacrebleu, rouge-score), template compliance and
terminology consistency; per missing-sequence subset. Lesion level
(`reportgen.report.metrics.LesionScores`): recall by type and size, precision, and on
found lesions size error, field accuracy, side and clock face; study-level tissue fields
(FGT amount, BPE). Headline numbers carry 95% bootstrap intervals (studies resampled).
Baselines: nearest-neighbour report retrieval by the contrastive image embedding, and
the same decoder unconstrained (for a staging reader: the headline read directly from
its measured outline, without the template's rules: `direct_baseline`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reportgen.data.truth import lesion_mask
from reportgen.io import load_study
from reportgen.model.data import load_examples
from reportgen.model.direct_baseline import DirectHeadline, library_features
from reportgen.model.explain import region_box_mm
from reportgen.model.generate import GenerateOptions, ReportGenerator
from reportgen.model.generators import open_generator
from reportgen.render.text import render_text
from reportgen.report import validate_report
from reportgen.report.assessable import restrict_to_study
from reportgen.report.metrics import (
    LesionScores,
    ReportScores,
    TruthLesion,
    auroc,
    bootstrap_interval,
    calibration_error,
    suspicious_report,
)
from reportgen.report.schema import Report
from reportgen.report.template import Template

SUBSETS: dict[str, tuple[str, ...]] = {  # sequences hidden from the model
    "all": (),
    "no_dce": ("DCE_0", "DCE_1", "DCE_2", "DCE_3"),
    "no_diffusion": ("DWI", "ADC"),
    "t2_only": ("DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"),
}


def box_iou(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Intersection over union of two world boxes (low corner, high corner)."""
    lo, hi = np.maximum(a[0], b[0]), np.minimum(a[1], b[1])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inter)
    return inter / union if union > 0 else 0.0


class Scorer:
    """One system's drafts against the truth: the shared report metrics
    (`reportgen.report.metrics`) plus what only evaluation measures (boxes, text, terms)."""

    def __init__(self, template: Template):
        self.template = template
        self.scores = ReportScores(template)
        self.ious: list[float] = []
        self.study_ious: list[list[float]] = []  # per study, each truth lesion's box IoU
        self.dices: list[float] = []  # each truth lesion's best overlapping drafted outline
        self.hyp: list[str] = []
        self.ref: list[str] = []
        self.valid = 0
        self.rule_consistent = 0  # the stated results are the ones the template's rules give
        self.terms_ok = 0
        self.terms = 0
        self.lesions = LesionScores()
        self.study_rows: list[dict] = []  # per study, for bootstrap intervals
        # (field, confidence, right?) of each study-level value the draft states
        self.confidences: list[tuple[str, float, bool]] = []

    def add(
        self,
        predicted: Report | None,
        truth: Report,
        malignant: int | None,
        prob: float | None,
        boxes=None,
        lesions: list[TruthLesion] | None = None,
        study_id: str | None = None,
    ) -> None:
        template = self.template
        self.scores.add(predicted, truth, malignant, prob)
        if lesions is not None:
            self.lesions.add(predicted, lesions)
        head = template.headline
        t_head = truth.derived.get(head)
        p_head = predicted.derived.get(head) if predicted is not None else None
        self.study_rows.append(
            {
                "study": study_id,
                "headline": None
                if t_head is None
                else (p_head is not None and p_head.value == t_head.value),
                "malignancy": (malignant, prob)
                if malignant is not None and prob is not None
                else None,
                "fields": {
                    key: predicted is not None
                    and key in predicted.fields
                    and predicted.fields[key].value == value.value
                    for key, value in truth.fields.items()
                },
            }
        )
        if predicted is not None:
            for key, value in predicted.fields.items():
                if value.confidence is not None and key in truth.fields:
                    right = truth.fields[key].value == value.value
                    self.confidences.append((key, float(value.confidence), right))
        if boxes is not None:
            truth_boxes, predicted_boxes = boxes
            ious = [
                max((box_iou(tb, pb) for pb in predicted_boxes), default=0.0) for tb in truth_boxes
            ]
            self.ious += ious
            self.study_ious.append(ious)
        self.ref.append(render_text(truth, "en", template))
        if predicted is not None:
            self.hyp.append(render_text(predicted, "en", template))
            check = validate_report(predicted, template)
            self.valid += int(check.valid)
            self.rule_consistent += int(
                not any(
                    p.rule == "derivation" and p.where == f"derived.{template.headline}"
                    for p in check.problems
                )
            )
            for _key, value, spec in _coded_values(predicted, template):
                self.terms += 1
                self.terms_ok += int(
                    value.concept is not None and spec is not None and value.value in spec
                )
        else:
            self.hyp.append("")

    def result(self) -> dict:
        import sacrebleu
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        rouge = [
            scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(self.ref, self.hyp, strict=True)
        ]
        n = self.scores.studies
        lesion = self.lesions.summary() if self.lesions.studies else None
        confusion: dict[str, dict[str, int]] = {}
        for t, p in self.scores.headline_pairs:
            confusion.setdefault(t, {}).setdefault(p, 0)
            confusion[t][p] += 1
        return {
            **self.scores.summary(),
            "confusion": {t: dict(sorted(row.items())) for t, row in sorted(confusion.items())},
            # over the studies whose truth states the field (parsed reports differ in what
            # they state)
            "study_fields": {
                key: round(
                    float(
                        np.mean([r["fields"][key] for r in self.study_rows if key in r["fields"]])
                    ),
                    4,
                )
                for key in sorted({k for r in self.study_rows for k in r["fields"]})
            },
            "lesion": lesion,
            "intervals_95": self.intervals(),
            "detection_iou": round(float(np.mean(self.ious)), 4) if self.ious else None,
            "outline_dice": round(float(np.mean(self.dices)), 4) if self.dices else None,
            "bleu4": round(sacrebleu.corpus_bleu(self.hyp, [self.ref]).score / 100, 4),
            "rougeL": round(float(np.mean(rouge)), 4),
            "template_compliance": round(self.valid / max(1, n), 4),
            "rule_consistency": round(self.rule_consistent / max(1, n), 4),
            "terminology_consistency": round(self.terms_ok / max(1, self.terms), 4),
            # per study, so two systems can be compared on the same studies (paired)
            "headline_by_study": {
                r["study"]: r["headline"] for r in self.study_rows if r["study"] is not None
            },
        }

    def intervals(self) -> dict:
        """95% bootstrap intervals of the headline numbers (whole studies resampled)."""
        rows, head = self.study_rows, self.template.headline
        out = {
            f"{head}_accuracy": bootstrap_interval(rows, _headline_accuracy),
            "malignancy_auroc": bootstrap_interval(rows, _auroc),
        }
        for key in ("fgt_amount", "bpe_level"):
            if rows and key in rows[0]["fields"]:
                out[key] = bootstrap_interval(rows, _study_field(key))
        studies = self.lesions.studies
        if studies:
            for key in (
                "lesion_recall_reportable",
                "lesion_precision",
                "size_mae_found_mm",
                "field_accuracy_found",
                "laterality_found",
                "clock_found",
            ):
                out[key] = bootstrap_interval(
                    studies, lambda sample, key=key: self.lesions.summary(sample)[key]
                )
            out["calibration_ece"] = bootstrap_interval(
                studies,
                lambda sample: (
                    calibration_error([(c, r) for s in sample for _, c, r in s.confidences]) or {}
                ).get("ece"),
            )
        return out


def _coded_values(report: Report, template):
    for key, value in report.fields.items():
        spec = template.field(key) if template.has_field(key) else None
        if spec is not None and spec.type == "enum":
            yield key, value, spec.values
    for finding in report.findings:
        for key, value in finding.fields.items():
            spec = template.field(key) if template.has_field(key) else None
            if spec is not None and spec.type == "enum":
                yield key, value, spec.values


def _confusion_png(pairs: list[tuple[str, str]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    matrix = confusion_matrix([t for t, _ in pairs], [p for _, p in pairs], labels=labels)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _headline_accuracy(rows: list[dict]) -> float | None:
    values = [r["headline"] for r in rows if r["headline"] is not None]
    return float(np.mean(values)) if values else None


def _auroc(rows: list[dict]) -> float | None:
    pairs = [r["malignancy"] for r in rows if r["malignancy"] is not None]
    return auroc([m for m, _ in pairs], [p for _, p in pairs])


def _study_field(key: str):
    def statistic(rows: list[dict]) -> float | None:
        values = [r["fields"][key] for r in rows if key in r["fields"]]
        return float(np.mean(values)) if values else None

    return statistic


def _truth_lesions(
    truth: Report, sidecar: dict, mask: np.ndarray, affine
) -> tuple[list[TruthLesion], list[np.ndarray]]:
    """Truth findings with where their lesion is (centroid of its label, world mm), and
    each one's label region on the grid (what a drafted outline is scored against)."""
    labels = [les.get("label", k + 1) for k, les in enumerate(sidecar.get("lesions") or [])]
    out, regions = [], []
    for k, finding in enumerate(truth.findings):
        # a finding keeps its id ("F3") when findings before it are not shown (assessable)
        k = int(finding.id[1:]) - 1 if finding.id[1:].isdigit() else k
        label = labels[k] if k < len(labels) else k + 1
        region = mask == label
        voxels = np.argwhere(region)
        if not len(voxels):
            continue
        centre = affine[:3, :3] @ voxels.mean(0) + affine[:3, 3]
        box = region_box_mm(region, affine)
        out.append(TruthLesion(tuple(float(v) for v in centre), finding, box))
        regions.append(region)
    return out, regions


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two masks on one grid: 2|A and B| / (|A| + |B|)."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 0.0


def _malignant(truth: dict) -> int | None:
    lesions = truth.get("lesions")
    if lesions is None:
        return None
    return int(any(les.get("pathology") == "malignant" for les in lesions))


def evaluate_model(
    data: Path,
    model_dir: Path | None,
    out: Path,
    subsets: list[str],
    baselines: bool = True,
    train_data: Path | None = None,
    limit: int = 0,
    cache_dir: Path | None = None,
    raw_confidence: bool = False,
) -> dict:
    """Score `model_dir` on the studies under `data`. Prepared studies are cached in
    `cache_dir` (kept, e.g. the training run's) or under `out` (removed afterwards).
    `raw_confidence`: draft without the model's calibration and return every stated
    value's (field, confidence, right?) as `confidence_records` (what calibration fits)."""
    from tqdm.auto import tqdm

    generator = open_generator(model_dir)
    if raw_confidence:
        generator.calibration = None
    decoder = isinstance(generator, ReportGenerator)  # a staging reader writes no tokens
    template = generator.template
    enc_cfg = generator.model.input_cfg
    out.mkdir(parents=True, exist_ok=True)
    own_cache = cache_dir is None
    cache_dir = out / "cache" if own_cache else cache_dir
    examples = load_examples(data, enc_cfg, cache_dir, template.id)
    n = len(examples.reports) if not limit else min(limit, len(examples.reports))
    headline = template.headline
    systems: dict[str, Scorer] = {f"model[{s}]": Scorer(template) for s in subsets}
    library = None
    direct = None
    if baselines:
        if decoder:
            systems["baseline:unconstrained"] = Scorer(template)
        if train_data is not None:
            systems["baseline:retrieval"] = Scorer(template)
            lib = load_examples(train_data, enc_cfg, cache_dir, template.id)
            if decoder:
                library = (lib.reports, generator.image_embeddings(lib.images))
            else:  # a reader's unconstrained baseline is fit on the training studies too
                embeddings, measured = library_features(generator.model, lib.images)
                library = (lib.reports, embeddings)
                systems["baseline:unconstrained"] = Scorer(template)
                direct = DirectHeadline(generator.model, template, measured, lib.reports)
    names = list(enc_cfg.sequences)
    for i in tqdm(range(n), desc="evaluate", unit="study"):
        item = examples.images[i]
        truth = examples.reports[i]
        malignant = _malignant(examples.truth[i])
        cached = np.load(examples.images.files[i])
        affine = cached["affine"]
        mask = lesion_mask(cached["mask"], examples.truth[i] or {})
        image = item["image"][None]
        # a crop reader reads candidates from the series on their own grids
        original = (
            load_study(examples.sources[i]) if getattr(generator, "crop_reader", None) else None
        )
        query = None  # the baselines' view of this study: one pass for both
        if library is not None:
            if decoder:
                query = (generator.image_embeddings([item]), None)
            else:
                query = library_features(generator.model, [item])
        for subset in subsets:
            present = item["present"].clone()[None]
            for s in SUBSETS[subset]:
                if s in names:
                    present[0, names.index(s)] = False
            if not present.any():
                continue
            # Scored against what these sequences can show (reportgen.report.assessable).
            seen = restrict_to_study(
                truth, template, [n for n, p in zip(names, present[0].tolist(), strict=True) if p]
            )
            lesions, regions = _truth_lesions(seen, examples.truth[i] or {}, mask, affine)
            explain = subset == "all"
            draft = generator.draft_tensors(
                examples.study_ids[i],
                image,
                present,
                affine,
                GenerateOptions(explain=explain),
                study=original,
            )
            boxes = None
            if explain:
                predicted_boxes = [
                    (np.array(f.evidence.box.min_mm), np.array(f.evidence.box.max_mm))
                    for f in draft.report.findings
                    if f.evidence is not None and f.evidence.box is not None
                ]
                truth_boxes = [les.box_mm for les in lesions if les.box_mm is not None]
                boxes = (truth_boxes, predicted_boxes)
                drafted = [o for o in draft.outlines or [] if o is not None]
                if drafted and drafted[0].shape == mask.shape:  # outlines on the study's grid
                    systems[f"model[{subset}]"].dices += [
                        max((dice(region, o.astype(bool)) for o in drafted), default=0.0)
                        for region in regions
                    ]
            systems[f"model[{subset}]"].add(
                draft.report, seen, malignant, draft.malignancy_probability, boxes, lesions,
                study_id=examples.study_ids[i],
            )  # fmt: skip
            if direct is not None and subset == "all":
                free_report = direct.report(draft.report, query[1][0])
                prob = 1.0 if suspicious_report(free_report, template) else 0.0
                systems["baseline:unconstrained"].add(
                    free_report, seen, malignant, prob, study_id=examples.study_ids[i]
                )
        if baselines and decoder:
            free = generator.draft_tensors(
                examples.study_ids[i],
                image,
                item["present"][None],
                affine,
                GenerateOptions(constrained=False, explain=False),
            )
            systems["baseline:unconstrained"].add(
                free.report, truth, malignant, free.malignancy_probability,
                study_id=examples.study_ids[i],
            )  # fmt: skip
        if baselines and library is not None:
            reports, embeddings = library
            nearest = int((embeddings @ query[0][0]).argmax())
            retrieved = reports[nearest].model_copy(deep=True)
            retrieved.study = truth.study
            prob = 1.0 if suspicious_report(retrieved, template) else 0.0
            systems["baseline:retrieval"].add(
                retrieved, truth, malignant, prob, study_id=examples.study_ids[i]
            )
    results = {name: scorer.result() for name, scorer in systems.items()}
    for name, scorer in systems.items():
        if scorer.scores.headline_pairs:
            safe = name.replace(":", "_").replace("[", "_").replace("]", "")
            _confusion_png(
                scorer.scores.headline_pairs, out / f"confusion_{safe}.png", f"{headline}: {name}"
            )
    summary = {
        "model": str(generator.model_dir),
        "checkpoint_sha256": generator.checkpoint,
        "template": template.id,
        "data": str(data),
        "headline": headline,
        "results": results,
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=2))
    _write_lesions(systems[f"model[{subsets[0]}]"], out / "lesions.jsonl")
    if raw_confidence:
        scorer = systems[f"model[{subsets[0]}]"]
        summary["confidence_records"] = scorer.confidences + [
            r for study in scorer.lesions.studies for r in study.confidences
        ]
    (out / "evaluation.md").write_text(markdown_table(summary))
    import shutil

    if own_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return summary


def _write_lesions(scorer: Scorer, path: Path) -> None:
    """Per study (by its place in the run, never its id), what each truth lesion was
    drafted as (with its box IoU against the best-fitting drafted box) and which findings
    matched no lesion: where the lesion metrics come from."""
    rows = []
    for k, study in enumerate(scorer.lesions.studies):
        ious = scorer.study_ious[k] if len(scorer.study_ious) == len(scorer.lesions.studies) else []
        described = [
            {**row, "box_iou": round(ious[row["lesion"]], 3)}
            if "lesion" in row and row["lesion"] < len(ious)
            else row
            for row in study.described
        ]
        rows.append(json.dumps({"study": k, "described": described}, default=str))
    path.write_text("\n".join(rows) + ("\n" if rows else ""))


def markdown_table(summary: dict) -> str:
    head = summary["headline"]
    cols = [
        ("field acc", "field_accuracy"),
        ("macro-F1", "field_macro_f1"),
        (f"{head} acc", f"{head}_accuracy"),
        ("size MAE mm", "size_mae_mm"),
        ("AUROC", "malignancy_auroc"),
        ("IoU", "detection_iou"),
        ("Dice", "outline_dice"),
        ("BLEU-4", "bleu4"),
        ("ROUGE-L", "rougeL"),
        ("valid", "template_compliance"),
        ("terms", "terminology_consistency"),
    ]
    lines = [
        f"Template `{summary['template']}`, model `{summary['model']}`",
        "",
        "| system | n | " + " | ".join(c for c, _ in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, r in summary["results"].items():
        cells = ["-" if r.get(k) is None else f"{r[k]:.3f}" for _, k in cols]
        lines.append(f"| {name} | {r['studies']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
