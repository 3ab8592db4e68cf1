"""`reportgen pretrain-reader`: masked-image pretraining of a staging reader's U-Net.

A reader learns its outline from labelled studies (masks and reports). Unlabelled
studies can teach its encoder-decoder first: hidden patches of each sequence are zeroed
and the network fills them in from what stays visible, the other sequences included
(SimMIM-style masked image modelling for a CNN; the loss is on hidden voxels only).
Which patches are hidden is `pretrain_mae.masking`'s choice, so the readers can compare
random masking with lesion-aware masking (lesion cores hidden more, borders kept
visible). The lesion prior comes from the truth masks, or, where few studies are
labelled, from a reader trained on those few (`prior_from`): its outline on every
unlabelled study. `train-reader --init-from DIR` starts the outline from the result.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pretrain_mae.config import MAEConfig
from pretrain_mae.masking import STRATEGIES, MaskingOptions, draw_mask
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.checkpoint import read_config, read_weights, write_checkpoint
from reportgen.data.truth import lesion_mask
from reportgen.errors import ConfigError, InputError
from reportgen.io.sequences import PROTOCOL
from reportgen.model.augment import augment
from reportgen.model.data import load_examples
from reportgen.model.engine import Optimiser, adamw, one_cycle
from reportgen.model.field_reader import (
    DILATED_URETER,
    READER_PRESETS,
    FieldReader,
    FieldReaderConfig,
    legacy_outline_names,
    predict_outline,
)
from reportgen.model.train_args import OutlinePretrainArgs

PRETRAINED_TYPE = "reportgen-outline-pretraining"  # config.json's model_type
ENCODER_DECODER = ("unet.down.", "unet.up.")  # what pretraining teaches; the head is new


def masking_grid(cfg: FieldReaderConfig, patch: tuple[int, int, int]) -> MAEConfig:
    """The token grid `pretrain_mae.masking` draws on: the reader's grid cut into patches."""
    try:
        return MAEConfig(
            name="reader-masking",
            sequences=tuple(cfg.sequences),
            grid_shape=cfg.grid_shape,
            grid_spacing=cfg.grid_spacing,
            patch=tuple(patch),
        )
    except ValueError as exc:
        raise ConfigError(f"masking patch {tuple(patch)}: {exc}") from exc


def hidden_voxels(
    grid: MAEConfig, present: torch.Tensor, options: MaskingOptions, generator, lesion=None
) -> torch.Tensor:
    """(B, S, X, Y, Z) bool: the voxels hidden from the network (masked patches of the
    sequences a study has)."""
    mask = draw_mask(grid, present, options, generator, lesion=lesion)
    b, s = present.shape
    per_patch = mask.target.reshape(b, s, *grid.patches_per_axis)
    for axis, size in enumerate(grid.patch):
        per_patch = per_patch.repeat_interleave(size, dim=2 + axis)
    return per_patch


def reconstruction_loss(
    predicted: torch.Tensor, images: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """Mean squared error on hidden voxels, at the decoder's resolution (half the grid)."""
    target = F.avg_pool3d(images, 2)
    weight = F.avg_pool3d(hidden.float(), 2)
    return ((predicted - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def outline_prior(reader_dir: Path, images: list[torch.Tensor], present) -> list[torch.Tensor]:
    """Where a trained reader outlines tumour (any class) on each study: the lesion prior
    for lesion-aware masking when only a few studies are labelled."""
    from reportgen.model.field_model import load_reader

    reader = load_reader(reader_dir)
    reader.eval()
    out = []
    for image, seen in zip(images, present, strict=True):
        _, labels = predict_outline(reader, image[None].float(), seen[None])
        tumour = (labels[0] > 0) & (labels[0] != DILATED_URETER)
        out.append(tumour.to(torch.uint8))
    return out


def pretrain_outline(args: OutlinePretrainArgs, log=print) -> dict:
    """Masked-image pretraining of a reader's encoder-decoder on the studies of `args.data`
    (their reports and masks unused, except the masks as lesion prior); saved to `args.out`."""
    if args.masking not in STRATEGIES or args.masking == "anatomy":
        raise ConfigError(f"unknown --masking {args.masking!r}; choose random or lesion")
    if args.config not in READER_PRESETS:
        raise ConfigError(f"unknown config {args.config!r}; choose one of {sorted(READER_PRESETS)}")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    cfg = FieldReaderConfig("pretraining", PROTOCOL, {}, **READER_PRESETS[args.config])
    grid = masking_grid(cfg, args.patch)
    options = MaskingOptions(strategy=args.masking, mask_ratio=args.mask_ratio)
    examples = load_examples(
        args.data, cfg, args.cache_dir or args.out / "cache", template_id=args.template
    )
    images, present, priors = [], [], []
    for i in range(len(examples.images)):
        arrays = examples.images.arrays(i)
        images.append(torch.from_numpy(arrays["image"].astype("float16")))
        present.append(torch.from_numpy(arrays["present"]))
        tumour = lesion_mask(arrays["mask"], examples.truth[i] or {}) > 0
        priors.append(torch.from_numpy(tumour.astype("uint8")))
    if args.masking == "lesion" and args.prior_from is not None:
        log(f"lesion prior: {args.prior_from}'s outline on {len(images)} studies")
        priors = outline_prior(args.prior_from, images, present)
    model = FieldReader(cfg)
    head = nn.Conv3d(cfg.widths[0], len(cfg.sequences), 1)
    params = [
        *(p for name, p in model.named_parameters() if name.startswith(ENCODER_DECODER)),
        *head.parameters(),
    ]
    steps = math.ceil(len(images) / args.batch_size)
    adam = adamw(params, args.lr, args.weight_decay)
    opt = Optimiser(adam, one_cycle(adam, args.lr, steps * args.epochs))
    history, start = [], time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(images), generator=generator).tolist()
        running = 0.0
        for b in range(0, len(perm), args.batch_size):
            idx = perm[b : b + args.batch_size]
            x = torch.stack([images[i] for i in idx]).float()
            prior = torch.stack([priors[i] for i in idx]).long()
            x, prior = augment(x, prior, generator, flip_axes=(0,))
            p = torch.stack([present[i] for i in idx])
            hidden = hidden_voxels(grid, p, options, generator, lesion=prior.float())
            decoded, _ = model.decode(x * ~hidden, p)
            loss = reconstruction_loss(head(decoded), x, hidden)
            opt.step(loss)
            running += loss.item()
        history.append({"epoch": epoch + 1, "loss": round(running / steps, 5)})
        log(f"pretraining epoch {epoch + 1}/{args.epochs} loss {running / steps:.4f} "
            f"({time.time() - start:.0f} s)")  # fmt: skip
    summary = {
        "notice": NOT_FOR_CLINICAL_USE,
        "model_type": PRETRAINED_TYPE,
        "studies": len(images),
        "reader": {k: v for k, v in cfg.to_dict().items() if k in ("grid_shape", "widths")},
        "sequences": list(cfg.sequences),
        "history": history,
        "args": args.to_dict(),
        "seconds": round(time.time() - start, 1),
    }
    save_pretrained(model, args.out, summary)
    return summary


def save_pretrained(model: FieldReader, folder: Path, summary: dict) -> None:
    """The encoder-decoder's weights and the run's summary, as every checkpoint is written."""
    state = {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_DECODER)}
    config = {k: v for k, v in summary.items() if k != "model_type"}
    write_checkpoint(folder, state, config, PRETRAINED_TYPE)


def load_pretrained(model: FieldReader, folder: Path, decoder: bool = True) -> None:
    """Start `model`'s encoder-decoder (or, without `decoder`, its encoder only: the
    decoder learned to fill in intensities, which the outline may not want) from a
    `pretrain-reader` folder (safetensors)."""
    try:
        read_config(folder, PRETRAINED_TYPE, "pretrain-reader")
        state = {legacy_outline_names(k): v for k, v in read_weights(folder).items()}
    except InputError as exc:
        raise ConfigError(f"{folder} is not a pretrain-reader folder: {exc.problem}") from exc
    parts = ENCODER_DECODER if decoder else ENCODER_DECODER[:1]
    own = {k: v for k, v in model.state_dict().items() if k.startswith(parts)}
    wrong = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
    if wrong:
        raise ConfigError(f"{folder} was pretrained for another reader size (e.g. {wrong[0]})")
    model.load_state_dict({k: state[k] for k in own}, strict=False)
