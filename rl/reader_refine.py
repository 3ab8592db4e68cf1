"""`reportgen refine` for the readers: staging and O-RADS readers learn from signed reports.

A reader has no token policy: its study-level criteria are boosted trees on what its
outline measures, and each O-RADS lesion is read by small heads on that lesion's
measures. Both give a distribution over each field's values, which is the policy here:
what a clinician signed for a field is the feedback on the reader's own features of that
study (the same features it drafted from, recomputed from the study).

Each method is one loss on a field's logits, with the parent's logits beside them
(`field_loss`):

- `supervised`: cross-entropy to the signed value (the refit corrections give directly);
- `dpo`: where the clinician changed a value, the signed value preferred over the
  drafted one relative to the parent (DPO's loss); a confirmed value adds nothing;
- `grpo`: a group of values sampled from the reader's distribution, each rewarded 1 when
  it is the signed value, the advantage relative to the group's mean, a KL penalty to
  the parent (GRPO's objective on a one-step policy).

The trees take each method's gradient by boosting on: per round, one regression tree
per raw score fit to the negative gradient on the measured columns, its leaves a
regularised Newton step, appended to the parent's ensemble (the parent's trees never
change). The lesion heads take it by backpropagation, held near the parent's weights.
The refined reader is then compared with its parent on held-out studies by the same
guard as PPO (`rl.refine.guard`).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reportgen.checkpoint import read_summary
from reportgen.errors import ConfigError, InputError
from reportgen.io import load_study
from reportgen.model.engine import Optimiser, adamw
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_model import save_reader
from reportgen.model.field_reader import FieldReader, outlined_size_mm, predict_outline
from reportgen.model.field_training import answer_index, report_targets
from reportgen.model.tree_heads import TreeEnsemble
from reportgen.report import Report
from reportgen.report.compare import align_findings
from reportgen.report.correction import CorrectionRecord

METHODS = ("supervised", "dpo", "grpo")
NEWTON_L2 = 1.0  # as the trees were fit (`criterion_classifier`'s l2_regularization)
IS_LESION = "is_lesion"


@dataclass
class ReaderRefineConfig:
    """How far a reader moves towards its clinicians: few, shallow, shrunk trees and a
    short, anchored fine-tune, since 100 corrections must not undo 1,000 phantoms."""

    method: str = "supervised"
    rounds: int = 20  # boosting rounds appended to each tree-read field
    tree_depth: int = 3
    min_leaf: int = 5  # studies per leaf of an appended tree
    step: float = 0.3  # shrinkage of each appended tree
    epochs: int = 100  # full-batch steps of the lesion heads
    lr: float = 1e-3
    anchor: float = 1e-2  # L2 pull of the lesion heads' weights towards the parent's
    beta: float = 0.5  # DPO's temperature; GRPO's KL coefficient
    group: int = 8  # GRPO's samples per field and study
    size_prior: float = 10.0  # the parent's size bias counts as this many corrections (< 0: kept)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.rounds < 0 or self.epochs < 0 or self.tree_depth < 1 or self.min_leaf < 1:
            raise ConfigError("rounds and epochs must be >= 0, tree depth and leaf size >= 1")


@dataclass
class Rows:
    """One field's feedback: inputs, signed and drafted answer indices, record weights."""

    x: list[torch.Tensor] = field(default_factory=list)
    signed: list[int] = field(default_factory=list)
    drafted: list[int] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)

    def add(self, x: torch.Tensor, signed: int, drafted: int, weight: float) -> None:
        if signed < 0 or weight <= 0:  # the signed report does not state it
            return
        self.x.append(x.reshape(-1).float())
        self.signed.append(signed)
        self.drafted.append(drafted)
        self.weight.append(weight)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.stack(self.x),
            torch.tensor(self.signed),
            torch.tensor(self.drafted),
            torch.tensor(self.weight, dtype=torch.float32),
        )


@dataclass
class Feedback:
    """What the corrected studies teach: per tree-read field and per lesion field its rows,
    each drafted lesion's outlined diameter with the size signed for it, and how many
    records were read."""

    trees: dict[str, Rows]
    lesions: dict[str, Rows]
    sizes: list[tuple[float, float, float]] = field(default_factory=list)  # outlined, signed, w
    used: int = 0


def record_weight(record: CorrectionRecord) -> float:
    """A signature the signer made without opening the draft (through the API) is no
    reading of it: dropped. Every other record counts once."""
    return 0.0 if record.opened_by_signer is False else 1.0


def collect_feedback(
    generator: FieldReaderGenerator, records: list[CorrectionRecord], studies: Path
) -> Feedback:
    """The reader's features of each corrected study with the signed and drafted answers.

    The draft is made again by the parent (the log's draft may come from another model);
    its lesions are aligned to the signed report's as the correction's diff aligns them
    (`align_findings`), and a drafted lesion the clinician removed teaches `is_lesion`
    false."""
    model: FieldReader = generator.model
    cfg = model.cfg
    names = [*cfg.study_fields, *cfg.finding_fields]
    out = Feedback({k: Rows() for k in names}, {k: Rows() for k in [*cfg.lesion_fields, IS_LESION]})
    root = studies.resolve()
    for record in tqdm(records, desc="reading corrected studies", leave=False):
        weight = record_weight(record)
        path = (root / record.study_path).resolve() if record.study_path else None
        if not weight or path is None or root not in path.parents:
            continue
        image, present, affine = generator.tensors(load_study(path))
        with torch.no_grad():
            summary = model.summary(image, present)[0]
            drafted = generator.draft_tensors(record.study_id, image, present, affine)
        draft, signed = drafted.report, record.corrected
        out.used += 1
        signed_answers, _ = report_targets(cfg, signed)
        drafted_answers, _ = report_targets(cfg, draft)
        for j, name in enumerate(names):
            out.trees[name].add(summary, signed_answers[j], drafted_answers[j], weight)
        pairs = dict(align_findings(draft.findings, signed.findings))
        for i, outline in enumerate(drafted.outlines or []):
            size = signed.findings[pairs[i]].fields.get("size_mm") if i in pairs else None
            if outline is not None and size is not None and float(size.value) > 0:
                outlined = outlined_size_mm(outline.astype(np.int64), affine)
                if outlined > 0:
                    out.sizes.append((outlined, float(size.value), weight))
        if model.lesion is not None:
            _lesion_feedback(
                generator, (image, present, affine), drafted, signed, pairs, out, weight
            )
    return out


def _lesion_feedback(
    generator, inputs, drafted, signed: Report, pairs, out: Feedback, weight
) -> None:
    """Each drafted lesion's measures with the signed lesion's values (and is_lesion)."""
    image, present, affine = inputs
    with torch.no_grad():
        _, labels = predict_outline(generator.model, image, present)
    candidates = list(generator.lesion_candidates(image, present, labels[0].numpy(), affine))
    rows = out.lesions
    for i, finding in enumerate(drafted.report.findings):
        outline = drafted.outlines[i] if i < len(drafted.outlines) else None
        measures = next(
            (
                m
                for r, m in candidates
                if outline is not None and np.array_equal(r.astype(bool), outline)
            ),
            None,
        )
        if measures is None:
            continue
        kept = i in pairs
        rows[IS_LESION].add(measures, int(kept), 1, weight)
        if not kept:
            continue
        truth = {k: v.value for k, v in signed.findings[pairs[i]].fields.items()}
        values_drafted = {k: v.value for k, v in finding.fields.items()}
        for name, values in generator.model.cfg.lesion_fields.items():
            if name in truth:
                rows[name].add(
                    measures,
                    answer_index(values, truth[name]),
                    answer_index(values, values_drafted.get(name)),
                    weight,
                )


def field_loss(
    method: str,
    logits: torch.Tensor,
    parent: torch.Tensor,
    signed: torch.Tensor,
    drafted: torch.Tensor,
    weight: torch.Tensor,
    cfg: ReaderRefineConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """One method's loss (summed over rows, weighted) on a field's logits (n, values)."""
    if method == "supervised":
        per_row = F.cross_entropy(logits, signed, reduction="none")
    elif method == "dpo":

        def margin(z: torch.Tensor) -> torch.Tensor:
            return (
                z.gather(1, signed[:, None])[:, 0]
                - z.gather(1, drafted.clamp(min=0)[:, None])[:, 0]
            )

        preferred = (signed != drafted) & (drafted >= 0)
        per_row = -F.logsigmoid(cfg.beta * (margin(logits) - margin(parent))) * preferred
    else:  # grpo
        log_p = logits.log_softmax(1)
        draws = torch.multinomial(
            log_p.exp().detach(), cfg.group, replacement=True, generator=generator
        )
        reward = (draws == signed[:, None]).float()
        advantage = (reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-4)
        policy = -(advantage * log_p.gather(1, draws)).mean(1)
        kl = (log_p.exp() * (log_p - parent.log_softmax(1))).sum(1)
        per_row = policy + cfg.beta * kl
    return (per_row * weight).sum()


def _logit_gradient(ensemble, x, rows_y, rows_d, w, parent, cfg, method, generator):
    """d loss / d logits of the ensemble's current reading of `x` (n, values)."""
    logits = ensemble(x).detach().requires_grad_(True)
    loss = field_loss(method, logits, parent, rows_y, rows_d, w, cfg, generator)
    (grad,) = torch.autograd.grad(loss, logits)
    return grad, logits.detach().softmax(1)


def _regression_tree(x: np.ndarray, target: np.ndarray, weight: np.ndarray, cfg, seed: int):
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(
        max_depth=cfg.tree_depth, min_samples_leaf=cfg.min_leaf, random_state=seed
    ).fit(x, target, sample_weight=weight)


def grown(
    ensemble: TreeEnsemble, new: list[tuple[int, object, np.ndarray, np.ndarray]]
) -> TreeEnsemble:
    """`ensemble` with trees appended: (raw score, fitted sklearn tree, its leaf values by
    node, the feature columns it was fit on). The parent's trees and baseline are kept."""
    trees, nodes, classes, depth, values = ensemble.shape
    new_nodes = max([nodes, *(t.tree_.node_count for _, t, _, _ in new)])
    new_depth = max([depth, *(t.tree_.max_depth + 1 for _, t, _, _ in new)])
    out = TreeEnsemble(trees + len(new), new_nodes, classes, new_depth, values)
    for name in ("feature", "threshold", "left", "right", "leaf", "value"):
        getattr(out, name)[:trees, :nodes] = getattr(ensemble, name)
    out.score_of_tree[:trees] = ensemble.score_of_tree
    out.baseline.copy_(ensemble.baseline)
    out.answers.copy_(ensemble.answers)
    for t, (score, tree, leaf_values, columns) in enumerate(new, start=trees):
        record = tree.tree_
        n = record.node_count
        leaf = record.children_left < 0
        out.feature[t, :n] = torch.from_numpy(
            np.where(leaf, 0, columns[np.maximum(record.feature, 0)]).astype(np.int32)
        )
        out.threshold[t, :n] = torch.from_numpy(np.where(leaf, 0.0, record.threshold))
        out.left[t, :n] = torch.from_numpy(np.where(leaf, 0, record.children_left).astype(np.int32))
        out.right[t, :n] = torch.from_numpy(
            np.where(leaf, 0, record.children_right).astype(np.int32)
        )
        out.leaf[t, :n] = torch.from_numpy(leaf)
        out.value[t, :n] = torch.from_numpy(leaf_values.astype(np.float32))
        out.score_of_tree[t] = score
    return out


def boost_on(
    ensemble: TreeEnsemble,
    rows: Rows,
    columns: np.ndarray,
    cfg: ReaderRefineConfig,
    generator: torch.Generator,
) -> TreeEnsemble:
    """The ensemble with `cfg.rounds` rounds appended, each a functional-gradient step of
    the method's loss: one tree per raw score on the negative gradient, Newton leaves."""
    if ensemble.classes < 2 or not rows.x:
        return ensemble  # a constant answer, or nothing signed: nothing to move
    x, signed, drafted, weight = rows.tensors()
    answers = ensemble.answers.tolist()
    known = torch.tensor([int(s) in answers for s in signed])
    x, signed, drafted, weight = x[known], signed[known], drafted[known], weight[known]
    if len(x) < 2 * cfg.min_leaf:
        return ensemble
    parent = ensemble(x).detach()
    features = x.numpy().astype(np.float64)[:, columns]
    scores = 1 if ensemble.classes == 2 else ensemble.classes
    current = ensemble
    for round_ in range(cfg.rounds):
        grad, probs = _logit_gradient(
            current, x, signed, drafted, weight, parent, cfg, cfg.method, generator
        )
        new = []
        for k in range(scores):
            column = answers[1] if scores == 1 else answers[k]
            g = grad[:, column].numpy().astype(np.float64)
            h = (probs[:, column] * (1 - probs[:, column])).numpy().astype(np.float64)
            if not np.any(g):
                continue
            tree = _regression_tree(features, -g, weight.numpy(), cfg, cfg.seed + round_)
            leaf_of = tree.apply(features)
            leaf_values = np.zeros(tree.tree_.node_count)
            for leaf in np.unique(leaf_of):
                inside = leaf_of == leaf
                w = weight.numpy()[inside]
                leaf_values[leaf] = (
                    cfg.step
                    * float(-(g[inside] * w).sum())
                    / float((h[inside] * w).sum() + NEWTON_L2)
                )
            new.append((k, tree, leaf_values, columns))
        if not new:
            break
        current = grown(current, new)
    return current


def tune_lesion_heads(
    model: FieldReader, rows: dict[str, Rows], cfg: ReaderRefineConfig, generator
) -> int:
    """The lesion heads fine-tuned on the signed lesions (full batch, AdamW), their weights
    pulled towards the parent's; returns how many lesion rows there were."""
    heads = model.lesion
    usable = {k: r for k, r in rows.items() if r.x}
    if heads is None or not usable or cfg.epochs == 0:
        return 0
    parent_heads = copy.deepcopy(heads).eval()
    start = [p.detach().clone() for p in heads.parameters()]
    data = {k: r.tensors() for k, r in usable.items()}
    with torch.no_grad():
        parents = {k: parent_heads(d[0])[k] for k, d in data.items()}
    optimiser = Optimiser(adamw(list(heads.parameters()), cfg.lr, 0.0))
    heads.eval()  # no dropout: a few hundred rows, full batch
    for _ in range(cfg.epochs):
        loss = torch.zeros(())
        for name, (x, signed, drafted, weight) in data.items():
            logits = heads(x)[name]
            loss = loss + field_loss(
                cfg.method, logits, parents[name], signed, drafted, weight, cfg, generator
            ) / max(1.0, float(weight.sum()))
        loss = loss + cfg.anchor * sum(
            ((p - s) ** 2).sum() for p, s in zip(heads.parameters(), start, strict=True)
        )
        optimiser.step(loss)
    heads.eval()
    return sum(len(r.x) for r in usable.values())


def shifted_size_intercept(
    coef: torch.Tensor, sizes: list[tuple[float, float, float]], prior: float
) -> torch.Tensor:
    """The size correction's intercept moved by the signed sizes' mean log residual,
    shrunk towards the parent as if it had `prior` agreeing corrections: a site's outline
    that reads lesions larger or smaller than its clinicians measure them. The slope is
    kept (a hundred corrections fix a bias, not a curve)."""
    if not sizes:
        return coef
    a, b = (float(v) for v in coef)
    residual = [
        w * (math.log(signed) - (a + b * math.log(outlined))) for outlined, signed, w in sizes
    ]
    weight = sum(w for _, _, w in sizes)
    return torch.tensor([a + sum(residual) / (weight + prior), b], dtype=coef.dtype)


def refit(
    parent: FieldReader, feedback: Feedback, cfg: ReaderRefineConfig
) -> tuple[FieldReader, int]:
    """A copy of `parent` moved towards the feedback by `cfg.method`: trees boosted on,
    lesion heads fine-tuned, the size correction's bias moved; and how many lesion rows
    it learned from."""
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    model = copy.deepcopy(parent)
    columns = model.measured_columns()
    if model.trees is not None:
        for name in tqdm(list(model.trees.fields), desc=f"boosting ({cfg.method})", leave=False):
            model.trees.fields[name] = boost_on(
                model.trees.fields[name], feedback.trees[name], columns, cfg, rng
            )
        model.cfg.tree_shapes = model.trees.shapes
    if cfg.size_prior >= 0:
        model.size_coef.copy_(
            shifted_size_intercept(model.size_coef, feedback.sizes, cfg.size_prior)
        )
    return model, tune_lesion_heads(model, feedback.lesions, cfg, rng)


def refine_reader(
    model_dir: Path,
    records: list[CorrectionRecord],
    studies: Path,
    out: Path,
    cfg: ReaderRefineConfig,
    lineage: dict,
    heldout: Path | None = None,
    heldout_limit: int | None = None,
    log=print,
) -> dict:
    """The refined reader in `out/model` with its lineage and the guard's comparison."""
    from rl.refine import MIN_CORRECTIONS, check_template, guard

    generator = FieldReaderGenerator(model_dir)
    check_template(records, generator.template.id)
    if out.exists() and any(out.iterdir()):
        raise InputError(out, "exists and is not empty")
    feedback = collect_feedback(generator, records, studies)
    used = feedback.used
    if used < MIN_CORRECTIONS:
        raise InputError(
            studies,
            f"only {used} corrected studies could be read here (opened by their signer, under "
            f"this folder); refine needs at least {MIN_CORRECTIONS}",
        )
    model, lesion_rows = refit(generator.model, feedback, cfg)
    model.cfg.version = f"{model.cfg.version}+{cfg.method}{used}"
    summary = {
        "refined": {
            "method": cfg.method,
            "parent": str(model_dir),
            "parent_sha256": generator.checkpoint,
            **lineage,
            "corrections_used": used,
            "lesion_rows": lesion_rows,
            "settings": asdict(cfg),
        }
    }
    parent_summary = read_summary(Path(model_dir))
    save_reader(model, out / "model", {**parent_summary, **summary})
    summary["refined"]["guard"] = guard(model_dir, out / "model", heldout, heldout_limit, log)
    save_reader(model, out / "model", {**parent_summary, **summary})  # the card says the verdict
    (out / "refine_summary.json").write_text(json.dumps(summary["refined"], indent=2) + "\n")
    log(
        f"refined reader: {used} corrections, {sum(len(r.x) for r in feedback.trees.values())} criterion rows, {lesion_rows} lesion rows"
    )
    return summary["refined"]
