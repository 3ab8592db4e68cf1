"""`reportgen train-reader`: fit a staging reader on studies with reports.

Targets come from each study's report.json (the template's fields; the stage is never a
target, the template derives it) and its lesion mask (primary, extension, nodes). A
tenth of the studies is held back to choose the epoch; the size correction is then fit
on the training studies' own outlines, so it learns the reader's partial-volume bias
and nothing of the held-back tenth.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.checkpoint import read_weights
from reportgen.data.truth import anatomy_labels, part_offsets
from reportgen.errors import ConfigError, InputError
from reportgen.io.sequences import PROTOCOL, family_groups
from reportgen.model.augment import augment, flip_and_gain, varied_copy
from reportgen.model.data import load_examples
from reportgen.model.engine import Optimiser, adamw, one_cycle
from reportgen.model.field_model import save_reader
from reportgen.model.field_reader import (
    DILATED_URETER,
    READER_PRESETS,
    SEGMENT_CLASSES,
    FieldReader,
    FieldReaderConfig,
    legacy_outline_names,
    outlined_size_mm,
    predict_outline,
)
from reportgen.model.losses import OUTLINE_WEIGHTING, part_size_weights, segmentation_loss
from reportgen.model.train_args import READINGS, TREE_ITERATIONS, FieldTrainArgs
from reportgen.report import Report, load_template
from reportgen.report.template import Template


def _answer_values(spec) -> list[str]:
    return ["false", "true"] if spec.type == "bool" else list(spec.values)


def reader_config(
    template: Template,
    reports: list[Report],
    preset: str = "base",
    parts: set[int] = frozenset(),
    anatomy: dict[str, int] | None = None,
    solid_tissue: bool = True,
) -> FieldReaderConfig:
    """Heads for every categorical field the training reports state. With several
    findings, the mask labels that sit `parts` above a finding's label (lesions' solid
    tissue, `reportgen.data.truth`) are outlined as class 2 and read with their lesion
    (as the lesion itself, class 1, without `solid_tissue`).
    A staging reader outlines a dilated ureter as its own class where the phantoms'
    `anatomy` labels one (hydronephrosis is anatomy the tumour changes, not tumour)."""
    stated = {k for r in reports for k in r.fields}
    stated_finding = {k for r in reports for f in r.findings for k in f.fields}
    study = {s.id: _answer_values(s) for s in template.fields if s.type in ("bool", "enum")}
    finding = {
        s.id: _answer_values(s) for s in template.finding_fields if s.type in ("bool", "enum")
    }
    if preset not in READER_PRESETS:
        raise ConfigError(f"unknown config {preset!r}; choose one of {sorted(READER_PRESETS)}")
    finding = {k: v for k, v in finding.items() if k in stated_finding}
    several = template.finding_max > 1  # each outlined lesion is read on its own
    measured = {s.id for s in template.finding_fields if s.concept == "laterality"}
    ureter = None if several else (anatomy or {}).get("dilated_ureter")
    return FieldReaderConfig(
        template=template.id,
        sequences=PROTOCOL,
        study_fields={k: v for k, v in study.items() if k in stated},
        finding_fields={} if several else finding,
        lesion_fields={k: v for k, v in finding.items() if k not in measured} if several else {},
        # mask labels 1..finding_max are findings; higher labels are deposits (implants)
        label_classes={str(k): 1 for k in range(1, template.finding_max + 1)}
        | {str(template.finding_max + 1 + k): 3 for k in range(4)}
        | {
            str(k + p): 2 if solid_tissue else 1
            for p in sorted(parts)
            for k in range(1, template.finding_max + 1)
        }
        if several
        else {"1": 1, "2": 2, "3": 3} | ({str(ureter): DILATED_URETER} if ureter else {}),
        segment_classes=SEGMENT_CLASSES + 1 if ureter else SEGMENT_CLASSES,
        solid_tissue=several and bool(parts) and solid_tissue,
        **READER_PRESETS[preset],
    )


def answer_index(values: list[str], value) -> int:
    """The index of a stated value among a field's answers (-1: not one of them)."""
    key = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return values.index(key) if key in values else -1


def report_targets(cfg: FieldReaderConfig, report: Report) -> tuple[list[int], float]:
    """Each head's answer index (-1 where the report does not state it) and the size."""
    study = {k: v.value for k, v in report.fields.items()}
    finding = {k: v.value for k, v in report.findings[0].fields.items()} if report.findings else {}
    answers = [
        answer_index(vals, study[k]) if k in study else -1 for k, vals in cfg.study_fields.items()
    ]
    answers += [
        answer_index(vals, finding[k]) if k in finding else -1
        for k, vals in cfg.finding_fields.items()
    ]
    size = float(finding.get("size_mm") or float("nan"))
    return answers, size


def _drop_families(present: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Hide whole families (DCE, DWI+ADC) at `rate`, never T2W (the staging anatomy)."""
    kept = present.clone()
    for group in family_groups(PROTOCOL):
        if any(PROTOCOL[i] == "T2W" for i in group):
            continue
        hide = torch.rand(present.shape[0], generator=generator) < rate
        for i in group:
            kept[hide, i] = False
    return kept


def train_field_reader(args: FieldTrainArgs, log=print) -> dict:
    """Outline first, then read: the segmenter trains on the masks; the criterion heads then
    train on what the frozen segmenter and encoder give (`fit_heads`), with the epoch
    chosen on the held-back tenth; last, the size correction. Saved to `args.out`."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    cache_dir = args.cache_dir or args.out / "cache"
    if args.config not in READER_PRESETS:
        raise ConfigError(f"unknown config {args.config!r}; choose one of {sorted(READER_PRESETS)}")
    if args.reading not in READINGS:
        raise ConfigError(
            f"unknown --reading {args.reading!r}; choose one of {', '.join(READINGS)}"
        )
    grid = FieldReaderConfig("probe", PROTOCOL, {}, **READER_PRESETS[args.config])
    probe = load_examples(args.data, grid, cache_dir, template_id=args.template, limit=args.limit)
    template = load_template(probe.reports[0].template.id)
    cfg = reader_config(
        template,
        probe.reports,
        args.config,
        parts=part_offsets(probe.truth),
        anatomy=anatomy_labels(probe.truth) if args.outline_parts else {},
        solid_tissue=args.outline_parts,
    )
    cfg.small_parts = args.small_parts
    rows = [report_targets(cfg, r) for r in probe.reports]
    model = FieldReader(cfg)
    images, present, labels, masks, affines = [], [], [], [], []
    for i in range(len(probe.images)):
        arrays = probe.images.arrays(i)
        images.append(torch.from_numpy(arrays["image"].astype(np.float16)))
        present.append(torch.from_numpy(arrays["present"]))
        masks.append(arrays["mask"])
        labels.append(torch.from_numpy(model.outline_classes(arrays["mask"])))
        affines.append(arrays["affine"])
    answers = torch.tensor([r[0] for r in rows])
    n = len(rows)
    order = torch.randperm(n, generator=generator).tolist()
    n_val = max(1, round(args.val_fraction * n)) if n > 4 else 0
    val, train = order[:n_val], order[n_val:]
    start = time.time()
    if args.outline_from is not None:
        history = [{"outline_from": str(args.outline_from)}]
        _load_outline(model, args.outline_from)
    else:
        if args.init_from is not None:
            from reportgen.model.outline_pretraining import load_pretrained

            load_pretrained(model, args.init_from, decoder=args.init_decoder)
            parts = "encoder and decoder" if args.init_decoder else "encoder"
            log(f"outline: {parts} start from {args.init_from}")
        history = _train_outline(model, images, present, labels, train, args, generator, log)
    model.eval()
    log("reading: the criterion heads on the frozen outline and encoder")
    best = fit_heads(model, images, present, answers, train, val, args, generator, log)
    if model.lesion is not None:
        from reportgen.model.lesion_training import fit_lesion_heads

        lesions = fit_lesion_heads(
            model, images, present, masks, affines, probe, train, val, generator, log,
            augmented=args.augment_reading,
        )  # fmt: skip
        coef = size_fit(*lesions)
    else:
        coef = fit_size(model, images, present, affines, [r[1] for r in rows], train)
    model.size_coef.copy_(torch.tensor(coef))
    summary = {
        "notice": NOT_FOR_CLINICAL_USE,
        "template": cfg.template,
        "studies": n,
        "held_back": n_val,
        "best_val_field_acc": best,
        "size_coef": coef,
        "history": history,
        "args": args.to_dict(),
        "seconds": round(time.time() - start, 1),
    }
    save_reader(model, args.out, summary)
    return summary


def _batch(images, present, labels, idx, generator, family_dropout: float, augmented: bool):
    """One outline batch. Another scanner changes gain, contrast, bias, noise and slice
    thickness, not anatomy: those are varied (`augment`); only left-right is flipped (no
    staging criterion has a side; up, down, front and back are anatomy)."""
    x = torch.stack([images[i] for i in idx]).float()
    y = torch.stack([labels[i] for i in idx])
    if augmented:
        x, y = augment(x, y, generator, flip_axes=(0,))
    else:
        x, y = flip_and_gain(x, y, generator)
    p = _drop_families(torch.stack([present[i] for i in idx]), family_dropout, generator)
    return x, p, y


OUTLINE_PARTS = ("unet.down.", "unet.up.", "unet.head.")


def _load_outline(model: FieldReader, folder: Path) -> None:
    """The segmenter's weights from another reader of the same grid and widths."""
    try:
        state = {
            name: v
            for k, v in read_weights(folder).items()
            if (name := legacy_outline_names(k)).startswith(OUTLINE_PARTS)
        }
    except InputError as exc:
        raise ConfigError(f"{folder}: {exc.problem}") from exc
    missing = [k for k in model.state_dict() if k.startswith(OUTLINE_PARTS) and k not in state]
    if missing:
        raise ConfigError(f"{folder} has no outline of this reader's shape (missing {missing[:2]})")
    model.load_state_dict(state, strict=False)


RARE_CLASS = 0.2  # an outline class fewer than this share of the training studies hold


def rare_class_weights(
    labels: list[torch.Tensor], share: float, classes: int
) -> torch.Tensor | None:
    """Per-study drawing weights under which the studies holding a rare outline class
    (one fewer than `RARE_CLASS` of them hold) make up `share` of the draws; None when no
    class is rare or no study is common. Weighing voxels up is not enough for a class
    most studies lack: O-RADS peritoneal implants are in 8% of studies, and the outline
    trained on each study once per epoch gave them a probability of 0.07 at true implants
    (development set under shift); fine-tuned with 40% of draws from implant studies, 0.83."""
    held = torch.stack([torch.bincount(y.flatten(), minlength=classes)[1:] > 0 for y in labels])
    frequency = held.float().mean(0)
    rare_classes = (frequency > 0) & (frequency < RARE_CLASS)
    rare = held[:, rare_classes].any(1)
    if not rare_classes.any() or bool(rare.all()):
        return None
    return torch.where(rare, share / rare.sum(), (1 - share) / (~rare).sum())


def _epoch_order(train: list[int], weights: torch.Tensor | None, generator) -> list[int]:
    """One outline epoch's studies: each once in random order, or (with rare-class
    `weights`) as many draws, with replacement."""
    if weights is None:
        return torch.tensor(train)[torch.randperm(len(train), generator=generator)].tolist()
    draws = torch.multinomial(weights, len(train), replacement=True, generator=generator)
    return torch.tensor(train)[draws].tolist()


def _train_outline(model, images, present, labels, train, args, generator, log) -> list[dict]:
    """The segmenter: primary tumour, extension and nodes (the 'find' of find-and-measure)."""
    params = [p for name, p in model.named_parameters() if not name.startswith(("trunk", "heads"))]
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    adam = adamw(params, args.lr, args.weight_decay)
    opt = Optimiser(adam, one_cycle(adam, args.lr, steps_per_epoch * args.epochs))
    weights = None
    if args.rare_share > 0:
        classes = model.cfg.segment_classes
        weights = rare_class_weights([labels[i] for i in train], args.rare_share, classes)
        log(
            "outline: no outline class is rare; every study drawn once per epoch"
            if weights is None
            else f"outline: {args.rare_share:.0%} of draws from studies holding a rare class"
        )
    history, start = [], time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = _epoch_order(train, weights, generator)
        running = 0.0
        for b in range(0, len(perm), args.batch_size):
            x, p, y = _batch(
                images,
                present,
                labels,
                perm[b : b + args.batch_size],
                generator,
                args.family_dropout,
                args.augment,
            )
            seg, _ = model.features(x, p)
            by_size = (
                part_size_weights(y, seg.shape[1], OUTLINE_WEIGHTING)
                if model.cfg.small_parts
                else None
            )
            loss = segmentation_loss(seg, y, by_size, "present" if args.present_dice else "pooled")
            opt.step(loss)
            running += float(loss.detach())
        history.append({"epoch": epoch + 1, "outline_loss": round(running / steps_per_epoch, 4)})
        log(
            f"outline epoch {epoch + 1}/{args.epochs} loss {running / steps_per_epoch:.3f} "
            f"({time.time() - start:.0f} s)"
        )
    return history


@torch.no_grad()
def _summaries(
    model, images, present, idx, patterns, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Head inputs of studies `idx` under each sequence pattern ("all", "no_dce", ...);
    pattern "varied" is every sequence of an acquisition-varied copy (`varied_copy`)."""
    rows, owners = [], []
    dce = [i for i, s in enumerate(PROTOCOL) if s.startswith("DCE_")]
    diffusion = [i for i, s in enumerate(PROTOCOL) if s in ("DWI", "ADC")]
    for pattern in patterns:
        for b in range(0, len(idx), 16):
            chunk = idx[b : b + 16]
            p = torch.stack([present[i] for i in chunk]).clone()
            if pattern == "no_dce":
                p[:, dce] = False
            if pattern == "no_diffusion":
                p[:, diffusion] = False
            x = torch.stack([images[i] for i in chunk]).float()
            if pattern == "varied":
                x = varied_copy(x, generator)
            rows.append(model.summary(x, p)[0])
            owners.extend(chunk)
    return torch.cat(rows), owners


def fit_heads(model, images, present, answers, train, val, args, generator, log) -> float:
    """The criterion heads on frozen features (every study with all its sequences, without
    DCE and without diffusion, so a study missing a family is read as trained); the
    epoch with the best held-back field accuracy is kept."""
    model.eval()
    patterns = ("all", "no_dce", "no_diffusion", *(("varied",) if args.augment_reading else ()))
    features, owners = _summaries(model, images, present, train, patterns, generator)
    held = None
    if val:
        held_features, held_owners = _summaries(model, images, present, val, ("all",))
        held = (held_features, answers[held_owners])

    def read(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k.removeprefix("field:"): v for k, v in model.read(x).items()}

    params = [*model.trunk.parameters(), *model.heads.parameters()]
    names = [*model.cfg.study_fields, *model.cfg.finding_fields]
    model.trees, model.cfg.tree_shapes = None, {}  # the neural heads first: the embedding
    best = fit_classifiers(
        model, read, params, features, answers[owners], names, held,
        epochs=200, batch=64, lr=1e-3, weight_decay=0.05, generator=generator, log=log,
        label="reading",
    )  # fmt: skip
    if args.reading == "trees":
        fit_tree_heads(model, features, answers[owners], names, args.seed, args.tree_iterations)
        best = head_accuracy(read, *held, names) if held is not None and len(held[0]) else 0.0
        log(f"reading: boosted trees, held-back accuracy {best:.3f}")
    return best


def criterion_classifier(seed: int, iterations: int = TREE_ITERATIONS, balanced: bool = False):
    """The boosted-tree classifier that reads one criterion (unfitted); `balanced` weighs
    each answer by the inverse of its frequency (rare descriptors count as much)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=iterations,
        learning_rate=0.05,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        class_weight="balanced" if balanced else None,
        random_state=seed,
    )


def fit_tree_heads(
    model,
    features: torch.Tensor,
    targets: torch.Tensor,
    names,
    seed: int,
    iterations: int = TREE_ITERATIONS,
) -> None:
    """One boosted-tree classifier per criterion on the measured columns of `features`
    (`FieldReader.measured_columns`); criteria a study does not state are left out of
    that criterion's fit. Hyper-parameters were chosen on a development set of phantoms
    (seed 555), never on the held-out evaluation sets."""
    from reportgen.model.tree_heads import TreeHeads, constant_ensemble, ensemble_from_sklearn

    columns = model.measured_columns()
    x = features.numpy()[:, columns]
    answers = {**model.cfg.study_fields, **model.cfg.finding_fields}
    heads = TreeHeads({})
    for j, name in enumerate(names):
        stated = (targets[:, j] >= 0).numpy()
        y = targets[stated, j].numpy()
        values = len(answers[name])
        if len(np.unique(y)) < 2:  # a tiny set may state one answer only (or none)
            heads.fields[name] = constant_ensemble(int(y[0]) if len(y) else 0, values)
            continue
        fitted = criterion_classifier(seed, iterations).fit(x[stated], y)
        heads.fields[name] = ensemble_from_sklearn(fitted, columns, values)
    model.trees = heads
    model.cfg.tree_shapes = heads.shapes


def fit_classifiers(
    module,
    read,
    params,
    x,
    y,
    names,
    held,
    *,
    epochs,
    batch,
    lr,
    weight_decay,
    generator,
    log,
    label,
) -> float:
    """Cross-entropy on each named head (targets of -1 ignored) with AdamW; the epoch with
    the best accuracy on `held` (features, targets) is kept in `module`."""
    opt = Optimiser(adamw(params, lr, weight_decay))
    best, best_state = -1.0, None
    for epoch in range(epochs):
        module.train()
        perm = torch.randperm(len(x), generator=generator)
        for b in range(0, len(perm), batch):
            idx = perm[b : b + batch]
            if len(idx) < 2:  # batch norm needs two rows
                continue
            out = read(x[idx])
            loss = sum(
                F.cross_entropy(out[name], y[idx, j], ignore_index=-1)
                for j, name in enumerate(names)
                if (y[idx, j] >= 0).any()
            )
            opt.step(loss)
        module.eval()
        score = head_accuracy(read, *held, names) if held is not None and len(held[0]) else 0.0
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in module.state_dict().items()}
        if (epoch + 1) % max(1, epochs // 4) == 0:
            log(
                f"{label} epoch {epoch + 1}/{epochs}: held-back accuracy {score:.3f} (best {best:.3f})"
            )
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return best


@torch.no_grad()
def head_accuracy(read, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> float:
    """Accuracy over every stated (non -1) target of every named head."""
    out = read(x)
    right = total = 0
    for j, name in enumerate(names):
        ok = y[:, j] >= 0
        right += int((out[name].argmax(1)[ok] == y[ok, j]).sum())
        total += int(ok.sum())
    return right / max(total, 1)


def fit_size(model, images, present, affines, sizes, idx: list[int]) -> list[float]:
    """Least squares log(true) = a + b log(outlined) over the training studies."""
    xs, ys = [], []
    with torch.no_grad():
        for i in idx:
            if not math.isfinite(sizes[i]):
                continue
            _, lab = predict_outline(
                model, images[i][None].float(), present[i][None], require_primary=True
            )
            mm = outlined_size_mm(lab[0].numpy(), affines[i])
            if mm > 0:
                xs.append(math.log(mm))
                ys.append(math.log(sizes[i]))
    return size_fit(xs, ys)


def size_fit(xs: list[float], ys: list[float]) -> list[float]:
    """[a, b] of log(true) = a + b log(outlined), from log diameters."""
    if len(xs) < 10:
        return [0.0, 1.0]
    x, y = np.array(xs), np.array(ys)
    b, a = np.polyfit(x, y, 1)
    if not 0.5 <= b <= 1.5:  # too few or too alike to fit a slope: correct the ratio only
        return [float(np.median(y - x)), 1.0]
    return [float(a), float(b)]
