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

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from reportgen.io.sequences import PROTOCOL, sequence_family
from reportgen.model.crop_reader import CropReader, CropReaderConfig
from reportgen.model.engine import Optimiser, adamw, one_cycle
from reportgen.report import load_template
from reportgen.report.template import FieldSpec

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
