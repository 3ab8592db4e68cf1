"""The lesion detector: one small 3D U-Net and its checkpoint (its loss and trainer are
`reportgen.model.detector_training`).

It marks where lesions are likely, for two users: the report model reads a zoomed crop
around each candidate it finds (`reportgen.model.candidates`), and MAE pretraining uses
its probability map as the lesion prior for studies without a mask
(`reportgen pretrain --train-detector` / `--detector`). There is no other detector.

The network is plain torch rather than MONAI's UNet: importing MONAI costs about 5 s,
which `reportgen generate` pays on every cold start, and three scales are all this
needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reportgen.checkpoint import load_weights, read_config, write_checkpoint

DETECTOR_TYPE = "reportgen-lesion-detector"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.InstanceNorm3d(cout, affine=True),
        nn.GELU(),
    )


class LesionDetector(nn.Module):
    """A three-scale 3D U-Net: sequences (B, S, X, Y, Z) -> lesion logits (B, X, Y, Z)."""

    def __init__(self, in_channels: int, width: int = 8):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv(in_channels, w), _conv(w, w))
        self.enc2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.up3 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv(4 * w, 2 * w)
        self.up2 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = _conv(2 * w, w)
        self.head = nn.Conv3d(w, 1, 1)

    def forward(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        x1 = self.enc1(images * present[:, :, None, None, None].to(images.dtype))
        x2 = self.enc2(x1)
        x3 = self.enc3(x2)
        y2 = self.dec2(torch.cat([self.up3(x3), x2], 1))
        y1 = self.dec1(torch.cat([self.up2(y2), x1], 1))
        return self.head(y1)[:, 0]


def save_detector(detector: LesionDetector, folder: Path, info: dict) -> Path:
    """A standalone detector checkpoint; `info` records the grid and sequences it reads."""
    config = {"in_channels": detector.enc1[0][0].in_channels, "width": detector.head.in_channels}
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
