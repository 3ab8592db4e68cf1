"""Training the pancreas CT reader's two outlines (`pancreas_reader`) from phantoms.

Each study is prepared once (cached as .npz when a cache folder is given): the whole
abdomen on the coarse 4 mm grid, and a fine 1 x 1 x 2 mm crop centred on its pancreas,
moved by a few millimetres drawn per study, as the coarse outline's own error will move
it when drafting. The coarse outline trains on whole studies, its small parts (deposits,
nodes) weighted up as the staging readers' are; the fine one on 64 x 64 x 64 mm patches,
most of them centred on a lesion or a vessel whose contact the report states (what the
report depends on is a small share of the crop). Studies holding what is rare are drawn
`rare_weight` times as often (distant disease for the coarse outline, a cyst for the
fine one): in 8 epochs of uniform draws the coarse outline learned no deposit (held-back
Dice 0.00) and the fine one outlined cysts at 0.27. Augmentation draws what another scanner
changes (`synth.ct`'s shift): bolus timing (enhancement scaled), dose noise, slice
thickness (a blur along z); and a share of studies is shown with the non-contrast phase
only, as a plain CT arrives. No flips: the anatomy is lateralised (the SMV lies right of
the SMA), and a flip would teach the wrong side.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reportgen.checkpoint import save_model_folder, write_model_card
from reportgen.data import read_manifest
from reportgen.errors import ConfigError, InputError
from reportgen.io import load_study
from reportgen.model.engine import Optimiser, adamw, one_cycle
from reportgen.model.losses import OUTLINE_WEIGHTING, part_size_weights, segmentation_loss
from reportgen.model.pancreas_reader import (
    COARSE_LESIONS,
    FINE_LESIONS,
    READER_TYPE,
    PancreasReader,
    PancreasReaderConfig,
    box_centre,
    class_lookup,
    region_features,
    typicality,
)
from reportgen.model.train_args import PancreasTrainArgs
from reportgen.parallel import parallel_map
from reportgen.preprocessing import CT_CHANNELS, CT_WINDOW_HU, prepare_ct

CROP_JITTER_MM = 5.0  # the fine crop's centre moves this much (sd, per axis) per study
FINE_PATCH = (64, 64, 32)  # 64 x 64 x 64 mm on the fine grid
# where a fine patch is centred when it is centred on something: the lesion first, else
# a vessel whose contact the template states
FOCUS = (
    "tumour",
    "cyst",
    "superior_mesenteric_artery",
    "celiac_axis",
    "common_hepatic_artery",
    "superior_mesenteric_vein",
    "portal_vein",
)
COARSE_RARE = ("liver_metastasis", "lymph_node", "peritoneal_nodule")
FINE_RARE = ("cyst",)
PRECISIONS = ("auto", "bf16", "fp32")
WINDOW_WIDTH = CT_WINDOW_HU[1] - CT_WINDOW_HU[0]
NC, PANC, PV = (CT_CHANNELS.index(n) for n in ("CT_NC", "CT_PANC", "CT_PV"))


@dataclass
class PreparedPair:
    """One study on both grids: images (3, ...) float16 in window units, labels uint8."""

    coarse_image: np.ndarray
    coarse_labels: np.ndarray
    fine_image: np.ndarray
    fine_labels: np.ndarray
    present: np.ndarray


def _grids_digest(cfg: PancreasReaderConfig) -> str:
    """What a cached study's arrays depend on (grids and classes): a cache written for
    other classes is never read as this one's labels."""
    keys = ("coarse_shape", "coarse_spacing", "fine_shape", "fine_spacing")
    keys += ("coarse_classes", "fine_classes", "sequences")
    text = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _prepare(job: tuple[str, dict, int, str | None, PancreasReaderConfig]) -> PreparedPair:
    """Prepare (or read from the cache) one training study."""
    folder, row, seed, cache, cfg = job
    path = Path(cache) / f"{row['id']}-{seed}-{_grids_digest(cfg)}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as data:
            return PreparedPair(**{k: data[k] for k in data.files})
    study = load_study(Path(folder) / row["dir"])
    truth = row["truth"]
    coarse = prepare_ct(study, cfg.coarse_grid)
    coarse_labels = class_lookup(truth, cfg.coarse_classes, COARSE_LESIONS)[coarse.mask]
    organ = np.isin(coarse_labels, [cfg.coarse_classes.index(n) for n in ("pancreas", "lesion")])
    if not organ.any():
        raise InputError(Path(folder) / row["dir"], "has no pancreas in its lesion mask")
    rng = np.random.default_rng([seed, int(row.get("index", 0))])
    centre = box_centre(organ, coarse.affine) + rng.normal(0, CROP_JITTER_MM, 3)
    fine = prepare_ct(study, cfg.fine_grid, centre_mm=centre)
    pair = PreparedPair(
        coarse_image=coarse.image.astype(np.float16),
        coarse_labels=coarse_labels.astype(np.uint8),
        fine_image=fine.image.astype(np.float16),
        fine_labels=class_lookup(truth, cfg.fine_classes, FINE_LESIONS)[fine.mask].astype(np.uint8),
        present=coarse.present,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **pair.__dict__)
        partial.replace(path)
    return pair


def prepare_pairs(
    folder: Path, rows: list[dict], cfg: PancreasReaderConfig, args: PancreasTrainArgs, log
) -> list[PreparedPair]:
    cache = str(args.cache_dir) if args.cache_dir else None
    jobs = [(str(folder), row, args.seed, cache, cfg) for row in rows]
    pairs, start = [], time.time()
    for k, pair in enumerate(parallel_map(_prepare, jobs, args.workers), start=1):
        pairs.append(pair)
        if k % 50 == 0 or k == len(jobs):
            log(f"prepared {k}/{len(jobs)} studies ({time.time() - start:.0f} s)")
    return pairs


def augment(
    image: torch.Tensor, present: torch.Tensor, generator: torch.Generator, phase_dropout: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Another scanner's version of a batch (B, 3, X, Y, Z) in window units: enhancement
    scaled 0.8-1.2 (bolus timing), noise up to 15 HU, a blur along z for a thicker slice
    (30%), and, at `phase_dropout`, the non-contrast phase only."""
    out = image.clone()
    present = present.clone()
    u = lambda: float(torch.rand((), generator=generator))  # noqa: E731
    for b in range(out.shape[0]):
        scale = 0.8 + 0.4 * u()
        for phase in (PANC, PV):
            out[b, phase] = out[b, NC] + scale * (out[b, phase] - out[b, NC])
        out[b] += torch.randn(out[b].shape, generator=generator) * (15.0 * u() / WINDOW_WIDTH)
        if u() < 0.3:
            sigma = 0.4 + 0.8 * u()
            radius = 2
            taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
            kernel = (taps / taps.sum()).view(1, 1, 1, 1, -1).repeat(out.shape[1], 1, 1, 1, 1)
            padded = F.pad(out[b : b + 1], (radius, radius, 0, 0, 0, 0), mode="replicate")
            out[b] = F.conv3d(padded, kernel, groups=out.shape[1])[0]
        if u() < phase_dropout:
            present[b] = torch.tensor([c == NC for c in range(len(CT_CHANNELS))])
    return out.clamp(0.0, 1.0), present


def _fine_patch(
    pair: PreparedPair, cfg: PancreasReaderConfig, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A `FINE_PATCH` of the fine crop: at `share`, centred on a lesion voxel (else a
    contact vessel's), otherwise anywhere."""
    labels = pair.fine_labels
    shape = np.asarray(labels.shape)
    patch = np.asarray(FINE_PATCH)
    centre = rng.integers(0, shape)
    if rng.random() < share:
        for names in (FOCUS[:2], FOCUS[2:]):
            held = np.flatnonzero(np.isin(labels, [cfg.fine_classes.index(n) for n in names]))
            if len(held):
                centre = np.array(np.unravel_index(held[rng.integers(len(held))], labels.shape))
                break
    start = np.clip(centre - patch // 2, 0, shape - patch)
    box = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
    return pair.fine_image[(slice(None), *box)], labels[box]


def draw_weights(
    labels: list[np.ndarray], classes: tuple[str, ...], rare: tuple[str, ...], rare_weight: float
) -> np.ndarray:
    """How often each study is drawn (summing to 1): `rare_weight` for one whose labels
    hold a `rare` class, 1 otherwise."""  # fmt: skip
    ids = [classes.index(n) for n in rare]
    weights = np.array([rare_weight if np.isin(ids, y).any() else 1.0 for y in labels])
    return weights / weights.sum()


def cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles): there bf16 autocast runs
    the 3D convolutions about twice as fast (measured on 2 cores: a fine step 0.76 ->
    0.41 s, a coarse one 0.70 -> 0.31 s); without it, emulated bf16 is slower than fp32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def _autocast(precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and cpu_bf16())
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n).tolist()
    held = max(1, round(n * fraction)) if n > 4 else 0
    return sorted(order[held:]), sorted(order[:held])


def _train_coarse(model, pairs, train, args, generator, log) -> list[float]:
    net = model.coarse
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    adam = adamw(net.parameters(), args.lr, args.weight_decay)
    opt = Optimiser(adam, one_cycle(adam, args.lr, steps_per_epoch * args.coarse_epochs))
    classes, losses, start = len(model.cfg.coarse_classes), [], time.time()
    weights = torch.from_numpy(
        draw_weights([pairs[i].coarse_labels for i in train], model.cfg.coarse_classes,
                     COARSE_RARE, args.rare_weight)
    )  # fmt: skip
    for epoch in range(args.coarse_epochs):
        net.train()
        draws = torch.multinomial(weights, len(train), replacement=True, generator=generator)
        order = [train[i] for i in draws.tolist()]
        running = 0.0
        for b in range(0, len(order), args.batch_size):
            chosen = [pairs[i] for i in order[b : b + args.batch_size]]
            x = torch.from_numpy(np.stack([p.coarse_image for p in chosen])).float()
            p = torch.from_numpy(np.stack([p.present for p in chosen]))
            y = torch.from_numpy(np.stack([p.coarse_labels for p in chosen]).astype(np.int64))
            x, p = augment(x, p, generator, args.phase_dropout)
            voxel_weights = part_size_weights(y, classes, OUTLINE_WEIGHTING)
            with _autocast(args.precision):
                logits = net(x, p)
            loss = segmentation_loss(logits.float(), y, voxel_weights, "present")
            opt.step(loss)
            running += float(loss.detach())
        losses.append(round(running / steps_per_epoch, 4))
        log(
            f"coarse epoch {epoch + 1}/{args.coarse_epochs} loss {losses[-1]:.3f} "
            f"({time.time() - start:.0f} s)"
        )
    return losses


def _train_fine(model, pairs, train, args, generator, rng, log) -> list[float]:
    net = model.fine
    adam = adamw(net.parameters(), args.lr, args.weight_decay)
    opt = Optimiser(adam, one_cycle(adam, args.lr, args.fine_steps))
    losses, running, start = [], 0.0, time.time()
    weights = draw_weights([pairs[i].fine_labels for i in train], model.cfg.fine_classes,
                           FINE_RARE, args.rare_weight)  # fmt: skip
    for step in range(1, args.fine_steps + 1):
        net.train()
        chosen = [pairs[train[i]] for i in rng.choice(len(train), args.batch_size, p=weights)]
        patches = [_fine_patch(p, model.cfg, args.lesion_share, rng) for p in chosen]
        x = torch.from_numpy(np.stack([image for image, _ in patches])).float()
        p = torch.from_numpy(np.stack([pair.present for pair in chosen]))
        y = torch.from_numpy(np.stack([labels for _, labels in patches]).astype(np.int64))
        x, p = augment(x, p, generator, args.phase_dropout)
        with _autocast(args.precision):
            logits = net(x, p)
        loss = segmentation_loss(logits.float(), y, None, "present")
        opt.step(loss)
        running += float(loss.detach())
        if step % 100 == 0 or step == args.fine_steps:
            losses.append(round(running / (100 if step % 100 == 0 else step % 100), 4))
            running = 0.0
            log(
                f"fine step {step}/{args.fine_steps} loss {losses[-1]:.3f} "
                f"({time.time() - start:.0f} s)"
            )
    return losses


def dice_per_class(predicted: np.ndarray, truth: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Dice of each class over the studies that hold it (pooled voxels)."""
    out = {}
    for k, name in enumerate(classes):
        if k == 0 or not (truth == k).any():
            continue
        a, b = predicted == k, truth == k
        out[name] = round(float(2 * (a & b).sum() / max(1, a.sum() + b.sum())), 4)
    return out


@torch.no_grad()
def validation_dice(model: PancreasReader, pairs: list[PreparedPair], held: list[int]) -> dict:
    """Per-class Dice of both outlines on the held-back studies (whole grids)."""
    model.eval()
    result = {}
    for stage, net, classes in (
        ("coarse", model.coarse, model.cfg.coarse_classes),
        ("fine", model.fine, model.cfg.fine_classes),
    ):
        predicted, truth = [], []
        for i in held:
            pair = pairs[i]
            image = getattr(pair, f"{stage}_image")
            x = torch.from_numpy(image[None]).float()
            p = torch.from_numpy(pair.present[None])
            predicted.append(net(x, p)[0].argmax(0).numpy())
            truth.append(getattr(pair, f"{stage}_labels"))
        result[stage] = dice_per_class(np.stack(predicted), np.stack(truth), classes)
    return result


@torch.no_grad()
def fit_typicality(
    model: PancreasReader, pairs: list[PreparedPair], train: list[int], held: list[int]
) -> dict:
    """How typical a CT is of these studies (`pancreas_reader.typicality`): the
    training studies' `region_features` mean and (Ledoit-Wolf) precision, and the 99th
    percentile of the held-back studies' distances as the threshold, written into the
    model's config."""
    from sklearn.covariance import LedoitWolf

    from reportgen.model.pancreas_reader import coarse_reading
    from reportgen.preprocessing import PreparedCT

    model.eval()
    cfg = model.cfg

    def features(i: int) -> np.ndarray:
        pair = pairs[i]
        prepared = PreparedCT("", pair.coarse_image.astype(np.float32), pair.present, None,
                              np.eye(4), cfg.coarse_grid)  # fmt: skip
        return region_features(cfg, *coarse_reading(model, prepared))

    fitted = LedoitWolf().fit(np.stack([features(i) for i in train]))
    cfg.typical_mean = tuple(float(v) for v in fitted.location_)
    cfg.typical_precision = tuple(tuple(float(v) for v in row) for row in fitted.precision_)
    distances = [typicality(cfg, features(i)) for i in (held or train)]
    cfg.typical_threshold = float(np.percentile(distances, 99))
    return {"typical_threshold": round(cfg.typical_threshold, 3), "studies": len(train)}


def train_pancreas_reader(args: PancreasTrainArgs, log=print) -> dict:
    """Fit both outlines on `args.data`, write the reader to `args.out`."""
    if args.precision not in PRECISIONS:
        raise ConfigError(
            f"--precision must be one of {', '.join(PRECISIONS)}, not {args.precision!r}"
        )
    start = time.time()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    rows = read_manifest(args.data)
    rows = [r for r in rows if r.get("truth", {}).get("domain", "pancreas") == "pancreas"]
    if args.limit:
        rows = rows[: args.limit]
    if not rows:
        raise InputError(args.data, "holds no pancreas CT studies (synth --domain pancreas)")
    cfg = PancreasReaderConfig()
    model = PancreasReader(cfg)
    pairs = prepare_pairs(Path(args.data), rows, cfg, args, log)
    train, held = _split(len(pairs), args.val_fraction, args.seed)
    log(f"{len(train)} training studies, {len(held)} held back")
    coarse_losses = _train_coarse(model, pairs, train, args, generator, log)
    fine_losses = _train_fine(model, pairs, train, args, generator, rng, log)
    dice = validation_dice(model, pairs, held) if held else {}
    log(f"held-back Dice: {dice}")
    typical = fit_typicality(model, pairs, train, held)
    log(f"typicality: distance threshold {typical['typical_threshold']} (99% of held-back)")
    summary = {
        "template": cfg.template,
        "studies": len(rows),
        "train_studies": len(train),
        "held_back_studies": len(held),
        "coarse_loss": coarse_losses,
        "fine_loss": fine_losses,
        "held_back_dice": dice,
        "typicality": typical,
        "seconds": round(time.time() - start),
        "args": args.to_dict(),
    }
    save_model_folder(model, args.out, READER_TYPE, summary, card=lambda f: _card(f, summary))
    return summary


def _card(folder: Path, summary: dict) -> None:
    args = summary["args"]
    write_model_card(
        folder,
        "Pancreas CT reader (pancreas_ct)",
        [
            "Outlines a pancreatic protocol CT twice: the abdomen on a 4 mm grid (pancreas, "
            "liver, liver deposits, nodes, peritoneal nodules, ascites, aorta), then the "
            "pancreas and its vessels on a 1 x 1 x 2 mm crop around it; measures each lesion, "
            "duct and vessel contact in world millimetres and degrees and reads the template's "
            "values by stated rules (docs/pancreas_ct.md).",
            f"Trained on {summary['train_studies']} phantom studies ({args['coarse_epochs']} "
            f"coarse epochs, {args['fine_steps']} fine steps of {args['batch_size']}, seed "
            f"{args['seed']}) in {summary['seconds']} s; held-back Dice "
            f"{json_compact(summary['held_back_dice'])}.",
            "Reads a CT's body region from the coarse outline (enough liver and pancreas in a "
            "field of view of at least 100 mm craniocaudally) and how unlike the training "
            "studies it looks (Mahalanobis distance of its organ volumes and confidence; "
            f"threshold {summary['typicality']['typical_threshold']}: 99% of held-back "
            "studies).",
            "Reproduce: `make pancreas-model`.",
        ],
    )


def json_compact(value: dict) -> str:
    return ", ".join(
        f"{stage}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
        for stage, scores in value.items()
    )
