"""The lesion detector: one small 3D U-Net and its checkpoint (its loss and trainer are
`reportgen.model.detector_training`).

It marks where lesions are likely, for two users: the report model reads a zoomed crop
around each candidate it finds (`reportgen.model.candidates`), and MAE pretraining uses
its probability map as the lesion prior for studies without a mask
(`reportgen pretrain --train-detector` / `--detector`). There is no other detector.

The network is the product's one U-Net (`reportgen.model.unet`), configured.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reportgen.checkpoint import load_weights, read_config, write_checkpoint
from reportgen.model.unet import UNet3D, UNetSpec

DETECTOR_TYPE = "reportgen-lesion-detector"


class LesionDetector(UNet3D):
    """The detector (and, wider, the segmenter): a three-level U-Net at the input's
    resolution, sequences (B, S, X, Y, Z) -> lesion logits (B, X, Y, Z)."""

    def __init__(self, in_channels: int, width: int = 8):
        super().__init__(
            UNetSpec(
                in_channels,
                (width, 2 * width, 4 * width),
                out_channels=1,
                norm="instance",
                bias=True,
                full_resolution=True,
                upsample="transpose",
                decoder_convs=1,
            )
        )

    def forward(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return super().forward(images, present)[:, 0]


def save_detector(detector: LesionDetector, folder: Path, info: dict) -> Path:
    """A standalone detector checkpoint; `info` records the grid and sequences it reads."""
    config = {"in_channels": detector.spec.in_channels, "width": detector.spec.widths[0]}
    return write_checkpoint(folder, detector.state_dict(), {**config, **info}, DETECTOR_TYPE)


def load_detector(folder: Path) -> tuple[LesionDetector, dict]:
    """(detector in eval mode, its config) from a folder written by `save_detector`."""
    config = read_config(folder, DETECTOR_TYPE)
    detector = LesionDetector(int(config["in_channels"]), int(config["width"]))
    load_weights(detector, folder)
    return detector.eval(), config


@torch.no_grad()
def lesion_probability(
    detector: LesionDetector, images: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Probability map (B, X, Y, Z) on the grid of `images`."""
    return torch.sigmoid(detector(images.float(), present))
