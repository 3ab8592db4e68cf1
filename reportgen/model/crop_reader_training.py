"""Training the crop reader (`reportgen.model.crop_reader`) on lesion crops and their truth.

Crops come from lesion views (`reportgen.synth.views`: thousands of lesions without
synthesising whole studies) or from studies with lesion masks. Each step draws a batch,
varies it as an acquisition would (flips on every axis and in-plane quarter turns: a
lesion has no up; shifts of two voxels: the candidate's centre is not the truth's), may
drop a whole sequence family (`family_dropout`: the reader must read a study without DCE
or DWI, and is never asked a field the kept series cannot show), and takes one
cross-entropy step per field over the crops whose truth states it.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reportgen.io.sequences import PROTOCOL, sequence_family
from reportgen.model.crop_reader import CropReader, CropReaderConfig
from reportgen.model.engine import Optimiser, adamw, one_cycle
from reportgen.model.train_args import CropReaderTrainArgs
from reportgen.parallel import parallel_map
from reportgen.preprocessing import lesion_crop
from reportgen.report import load_template
from reportgen.report.template import FieldSpec
from reportgen.synth import SynthOptions
from reportgen.synth.views import lesion_views

FAMILIES = ("dce", "diffusion", "t2")


def field_targets(truth: list[dict], cfg: CropReaderConfig) -> torch.Tensor:
    """(lesions, fields) value indices in `cfg.fields` order; -1 where the truth is silent."""
    out = torch.full((len(truth), len(cfg.fields)), -1, dtype=torch.long)
    for row, values in enumerate(truth):
        for k, (name, options) in enumerate(cfg.fields.items()):
            if values.get(name) in options:
                out[row, k] = options.index(values[name])
    return out


def vary(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips on every axis, an in-plane quarter turn and a shift of up to two voxels."""
    for dim in (2, 3, 4):
        if float(torch.rand((), generator=generator)) < 0.5:
            crops = crops.flip(dim)
    turns = int(torch.randint(0, 4, (), generator=generator))
    crops = torch.rot90(crops, turns, (2, 3))
    shift = [int(v) for v in torch.randint(-2, 3, (3,), generator=generator)]
    return torch.roll(crops, shift, (2, 3, 4))


def _drop_families(
    crops: torch.Tensor,
    present: torch.Tensor,
    targets: torch.Tensor,
    specs: list[FieldSpec],
    rate: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per crop, each family dropped at `rate` (never all): its channels zeroed, marked
    absent, and the fields that need it left unasked, as is a value only it shows (a
    non-mass enhancement's type without DCE)."""
    crops, present, targets = crops.clone(), present.clone(), targets.clone()
    channels = {
        f: [PROTOCOL.index(n) for n in PROTOCOL if sequence_family(n) == f] for f in FAMILIES
    }
    for i in range(len(crops)):
        dropped = [f for f in FAMILIES if float(torch.rand((), generator=generator)) < rate]
        if len(dropped) == len(FAMILIES):
            dropped = dropped[:-1]
        if not dropped:
            continue
        acquired = set(FAMILIES) - set(dropped)
        for family in dropped:
            crops[i, channels[family]] = 0
            present[i, channels[family]] = False
        for k, spec in enumerate(specs):
            value = int(targets[i, k])
            if value < 0:
                continue
            if set(spec.requires) - acquired or spec.values[value] in spec.values_unseen(acquired):
                targets[i, k] = -1
    return crops, present, targets


def train_crop_reader(
    crops: torch.Tensor,
    present: torch.Tensor,
    targets: torch.Tensor,
    cfg: CropReaderConfig,
    epochs: int = 10,
    batch: int = 16,
    lr: float = 2e-3,
    family_dropout: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> CropReader:
    """Fit a crop reader: `crops` (N, len(PROTOCOL), *crop_shape) (float16 is fine),
    `present` (N, len(PROTOCOL)) bool, `targets` from `field_targets`."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    template = load_template(cfg.template)
    specs = [template.field(k) for k in cfg.fields]
    model = CropReader(cfg)
    batch = min(batch, len(crops))
    per_epoch = len(crops) // batch
    total = max(1, epochs * per_epoch)
    optimizer = adamw(model.parameters(), lr, weight_decay=0.05)
    step = Optimiser(optimizer, one_cycle(optimizer, lr, total))
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(crops), generator=generator)
        losses = []
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            x, p, y = crops[idx].float(), present[idx], targets[idx]
            if family_dropout > 0:
                x, p, y = _drop_families(x, p, y, specs, family_dropout, generator)
            out = model(vary(x, generator), p)
            terms = [
                F.cross_entropy(out[name][y[:, k] >= 0], y[y[:, k] >= 0, k])
                for k, name in enumerate(cfg.fields)
                if (y[:, k] >= 0).any()
            ]
            if not terms:
                continue
            loss = torch.stack(terms).sum()
            step.step(loss)
            losses.append(float(loss.detach()))
        if progress is not None:
            progress(epoch, float(np.mean(losses)) if losses else float("nan"))
    return model.eval()


def _view_crops(job: tuple[SynthOptions, int]) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """The crops of one case's lesion views (a worker's unit)."""
    options, index = job
    if multiprocessing.parent_process() is not None:  # one thread per worker process; the
        torch.set_num_threads(1)  # caller's own threads are left alone when run in-process
    out = []
    for view in lesion_views(options, index):
        image, present = lesion_crop(view.study(), view.centroid_mm())
        out.append((image.astype(np.float16), present, view.fields))
    return out


def view_crops(
    options: SynthOptions, cases: int, workers: int | None = None, progress=None
) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """(crops, present, truth) of every lesion of `cases` lesion views
    (`reportgen.synth.views`), drawn in parallel."""
    crops, present, truth = [], [], []
    for found in parallel_map(_view_crops, [(options, i) for i in range(cases)], workers):
        for image, flags, fields in found:
            crops.append(image)
            present.append(flags)
            truth.append(fields)
        if progress:
            progress(1)
    if not crops:
        raise ValueError("the views drew no lesion")
    return torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(present)), truth


def balanced_accuracy(truth: np.ndarray, guess: np.ndarray) -> float:
    """Mean recall over the classes the truth holds (chance: 1 / classes)."""
    return float(np.mean([(guess[truth == c] == c).mean() for c in np.unique(truth)]))


def score_reader(model: CropReader, crops, present, truth: list[dict]) -> dict:
    """Per field: lesions, accuracy and balanced accuracy on held-out crops."""
    targets = field_targets(truth, model.cfg)
    read = model.read(crops, present)
    out = {}
    for k, name in enumerate(model.cfg.fields):
        keep = targets[:, k] >= 0
        if keep.any():
            t = targets[keep, k].numpy()
            g = np.array([int(r[name].argmax()) for r, m in zip(read, keep, strict=True) if m])
            out[name] = {
                "lesions": int(keep.sum()),
                "accuracy": round(float((g == t).mean()), 4),
                "balanced_accuracy": round(balanced_accuracy(t, g), 4),
            }
    return out


def train_crop_reader_from_views(args: CropReaderTrainArgs, log=print) -> Path:
    """`reportgen train-crop-reader`: lesion views of `args.cases` cases, the reader fit
    on their crops, scored on views of another seed, saved to `args.out`."""
    from tqdm.auto import tqdm

    from reportgen.model.crop_reader import save_crop_reader

    template = load_template("birads_mri")
    cfg = CropReaderConfig.for_template(template, width=args.width)
    start = time.time()
    options = SynthOptions(domain="breast", seed=args.seed, protocol=args.protocol)
    with tqdm(total=args.cases, desc="lesion views", unit="case") as bar:
        crops, present, truth = view_crops(options, args.cases, args.workers, bar.update)
    log(f"{len(crops)} lesions from {args.cases} cases in {time.time() - start:.0f} s")
    model = train_crop_reader(
        crops,
        present,
        field_targets(truth, cfg),
        cfg,
        epochs=args.epochs,
        batch=args.batch_size,
        lr=args.lr,
        family_dropout=args.family_dropout,
        seed=args.seed,
        progress=lambda epoch, loss: log(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.3f}"),
    )
    summary: dict = {
        "args": args.to_dict(),
        "train_lesions": len(crops),
        "seconds": round(time.time() - start),
    }
    if args.heldout_cases:
        held = SynthOptions(domain="breast", seed=args.heldout_seed, protocol=args.protocol)
        h_crops, h_present, h_truth = view_crops(held, args.heldout_cases, args.workers)
        summary["heldout"] = {
            "seed": args.heldout_seed,
            "lesions": len(h_crops),
            "fields": score_reader(model, h_crops, h_present, h_truth),
        }
    save_crop_reader(model, args.out, summary)
    log(f"crop reader written to {args.out}")
    return args.out
