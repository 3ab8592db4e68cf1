"""Reading a lesion at the acquisition's own resolution: a small 3D CNN on its crop.

The lexicon's descriptors are what a radiologist sees at 0.6-1 mm (spicules, an
irregular margin, a rim, dark septations); on the 2 mm model grid they are gone. So each
lesion is read from `reportgen.preprocessing.lesion_crop` (every series straight from its
own grid onto 0.9 x 0.9 x 2 mm around the lesion, scaled within the crop) by one network
with a head per template field it reads (`CropReaderConfig.fields`), which outputs a
distribution over the field's values. Which series were acquired goes in beside the
pooled features, so a crop without DCE reads what T2W and DWI show; a field the study's
series cannot show is never asked (`reportgen.report.assessable`).

The network is the readability benchmark's (`bench/descriptor_readability.py`), one
definition for both: a measured ceiling and the product read with the same eyes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from reportgen.checkpoint import (
    StrictConfig,
    load_model_folder,
    read_model_folder,
    save_model_folder,
    write_model_card,
)
from reportgen.io.sequences import PROTOCOL
from reportgen.preprocessing import LESION_CROP

CROP_READER_TYPE = "reportgen-crop-reader"
CROP_READER_FOLDER = "crop_reader"  # inside a report model's folder

# BI-RADS MRI: what a lesion's crop shows (its side, clock face, depth and size are
# measured in world millimetres, not read).
BIRADS_CROP_FIELDS = (
    "type",
    "shape",
    "margin",
    "internal_enhancement",
    "nme_distribution",
    "nme_pattern",
    "kinetics_initial",
    "kinetics_delayed",
    "t2_signal",
    "diffusion",
)


@dataclass
class CropReaderConfig(StrictConfig):
    KIND: ClassVar[str] = "crop-reader"

    template: str = "birads_mri"
    fields: dict[str, list[str]] = field(default_factory=dict)  # field -> its values, in order
    crop_shape: tuple[int, int, int] = LESION_CROP.shape
    crop_spacing: tuple[float, float, float] = LESION_CROP.spacing
    width: int = 16
    dropout: float = 0.2
    name: str = "reportgen-crop-reader"
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        self.fields = {k: list(v) for k, v in self.fields.items()}
        self.crop_shape = tuple(int(n) for n in self.crop_shape)  # type: ignore[assignment]
        self.crop_spacing = tuple(float(s) for s in self.crop_spacing)  # type: ignore[assignment]

    @classmethod
    def for_template(cls, template, fields: tuple[str, ...] = BIRADS_CROP_FIELDS, **kw):
        """Heads for `fields` of `template`, with the template's values in its order."""
        return cls(
            template=template.id,
            fields={k: list(template.field(k).values) for k in fields},
            **kw,
        )


def _block(i: int, o: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv3d(i, o, 3, stride, 1), nn.GroupNorm(4, o), nn.GELU())


class CropReader(nn.Module):
    """Crop (B, len(PROTOCOL), *crop_shape) and acquired series (B, len(PROTOCOL)) -> one
    logit vector per field."""

    def __init__(self, cfg: CropReaderConfig):
        super().__init__()
        self.cfg = cfg
        w, c = cfg.width, len(PROTOCOL)
        self.body = nn.Sequential(
            _block(c, w, 1),
            _block(w, w, 1),
            _block(w, 2 * w, 2),
            _block(2 * w, 2 * w, 1),
            _block(2 * w, 4 * w, 2),
            _block(4 * w, 4 * w, 1),
            _block(4 * w, 8 * w, 2),
            _block(8 * w, 8 * w, 1),
        )
        self.drop = nn.Dropout(cfg.dropout)
        # one head per field, in `cfg.fields` order (a ModuleDict would clash with
        # nn.Module's own attribute names: a field called "type")
        self.heads = nn.ModuleList(nn.Linear(16 * w + c, len(v)) for v in cfg.fields.values())

    def forward(self, crop: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(crop)
        pooled = torch.cat([h.mean((2, 3, 4)), h.amax((2, 3, 4))], 1)
        features = torch.cat([self.drop(pooled), present.float()], 1)
        return {k: head(features) for k, head in zip(self.cfg.fields, self.heads, strict=True)}

    @torch.no_grad()
    def read(
        self, crops: torch.Tensor, present: torch.Tensor, batch: int = 32
    ) -> list[dict[str, torch.Tensor]]:
        """Each crop's distribution over every field's values (softmax), in eval mode."""
        self.eval()
        out: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(crops), batch):
            logits = self(crops[start : start + batch].float(), present[start : start + batch])
            probs = {k: v.softmax(-1) for k, v in logits.items()}
            out += [
                {k: p[i] for k, p in probs.items()} for i in range(len(next(iter(probs.values()))))
            ]
        return out


def save_crop_reader(model: CropReader, folder: Path, summary: dict | None = None) -> Path:
    return save_model_folder(model, folder, CROP_READER_TYPE, summary, card=write_card)


def write_card(folder: Path) -> None:
    """The model card: what it reads, what it was trained and scored on."""
    cfg, summary = read_model_folder(folder, CROP_READER_TYPE, CropReaderConfig)
    args = summary.get("args", {})
    facts = [
        f"Reads {', '.join(cfg.fields)} ({cfg.template}) from a lesion's crop of "
        f"{' x '.join(map(str, cfg.crop_shape))} voxels of "
        f"{' x '.join(f'{s:g}' for s in cfg.crop_spacing)} mm, every series from its own grid.",
    ]
    if summary.get("train_lesions"):
        facts.append(
            f"Trained on {summary['train_lesions']} lesions of {args.get('cases')} "
            f"{args.get('protocol')} phantom cases (seed {args.get('seed')}), "
            f"{args.get('epochs')} epochs."
        )
    held = summary.get("heldout")
    if held:
        scores = ", ".join(f"{k} {v['balanced_accuracy']:.2f}" for k, v in held["fields"].items())
        facts.append(
            f"Balanced accuracy on {held['lesions']} lesions of seed {held['seed']}: {scores}."
        )
    if args:
        facts.append(
            "Reproduce: `reportgen train-crop-reader "
            + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in args.items()
                if k not in ("out", "workers") and v is not None
            )
            + " --out DIR`."
        )
    write_model_card(folder, "Breast crop reader", facts)


def load_crop_reader(folder: Path, device: str = "cpu") -> CropReader:
    """Weights through safetensors with strict keys; a config that does not fit is an error."""
    return load_model_folder(folder, CROP_READER_TYPE, CropReaderConfig, CropReader, device)
