"""The product's one 3D U-Net: the breast detector and segmenter and the staging readers'
outline are each this network, configured (`UNetSpec`), not written again.

Plain torch rather than MONAI's UNet: importing MONAI costs about 5 s, which `reportgen
generate` pays on every cold start, and a few scales are all either user needs. The
configurations differ where their jobs do: the detector reads at the input's resolution
(small lesions), with a learned upsampling and instance norm; a staging reader outlines
at half resolution (large tumours, a fine grid), with group norm and trilinear upsampling,
and sees which sequences a study has as extra input planes.

Checkpoints written before this class existed name its parts otherwise (the detector's
`enc1`, `up3`, `dec2`; the readers' `segment`); `legacy_unet_names` renames them on
load, so every bundled model loads unchanged and strictly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reportgen.checkpoint import rename_on_load


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int  # sequences read
    widths: tuple[int, ...]  # channels per level, shallow to deep
    out_channels: int  # classes of the 1x1 head
    norm: str = "group"  # "group" (4 groups where the width allows, else 1) | "instance"
    bias: bool = False  # convolutions with a bias (the detector's have one)
    full_resolution: bool = False  # the first level at the input's resolution, else half
    upsample: str = "interpolate"  # "interpolate" (trilinear) | "transpose" (learned, 2x)
    decoder_convs: int = 2  # convolutions per decoder level
    present_planes: bool = False  # each sequence's present flag as an extra input plane


class UNet3D(nn.Module):
    """Sequences (B, S, X, Y, Z) and which are present (B, S) -> logits (B, C, ...) at the
    first level's resolution."""

    def __init__(self, spec: UNetSpec):
        super().__init__()
        self.spec = spec
        w = spec.widths
        channels = spec.in_channels * (2 if spec.present_planes else 1)
        stride = [1 if (i == 0 and spec.full_resolution) else 2 for i in range(len(w))]
        self.down = nn.ModuleList(
            [
                self._block(channels if i == 0 else w[i - 1], w[i], stride[i], 2)
                for i in range(len(w))
            ]
        )
        if spec.upsample not in ("interpolate", "transpose"):
            raise ValueError(f"unknown upsampling {spec.upsample!r}")
        # decoder levels, deepest first; each level's upsampling is built just before its
        # block, so a seed initialises every weight as the detector always did
        self.upsample, self.up = nn.ModuleList(), nn.ModuleList()
        for i in range(len(w) - 2, -1, -1):
            if spec.upsample == "transpose":
                self.upsample.append(nn.ConvTranspose3d(w[i + 1], w[i], 2, stride=2))
                width_in = 2 * w[i]
            else:
                width_in = w[i + 1] + w[i]
            self.up.append(self._block(width_in, w[i], 1, spec.decoder_convs))
        self.head = nn.Conv3d(w[0], spec.out_channels, 1)
        rename_on_load(self, legacy_unet_names)

    def _block(self, cin: int, cout: int, stride: int, convs: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for k in range(convs):
            layers += [
                nn.Conv3d(cin if k == 0 else cout, cout, 3, stride=stride if k == 0 else 1,
                          padding=1, bias=self.spec.bias),
                self._norm(cout),
                nn.GELU(),
            ]  # fmt: skip
        return nn.Sequential(*layers)

    def _norm(self, channels: int) -> nn.Module:
        if self.spec.norm == "instance":
            return nn.InstanceNorm3d(channels, affine=True)
        if self.spec.norm == "group":
            return nn.GroupNorm(4 if channels % 4 == 0 else 1, channels)
        raise ValueError(f"unknown norm {self.spec.norm!r}")

    def decode(
        self, images: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last decoder map (B, widths[0], ...) and the deepest map: what the head
        reads, and what masked-image pretraining reconstructs from."""
        planes = present[:, :, None, None, None].to(images.dtype)
        x = images * planes
        if self.spec.present_planes:
            planes = planes.expand_as(images)
            x = torch.cat([x, planes], dim=1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        deep = x
        for i, (block, skip) in enumerate(zip(self.up, reversed(skips[:-1]), strict=True)):
            if self.upsample:
                x = self.upsample[i](x)
            else:
                x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x, deep

    def forward(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return self.head(self.decode(images, present)[0])


_DETECTOR_ENCODER = re.compile(r"enc(\d)\.(\d)\.(\d)\.(weight|bias)$")
_DETECTOR_DECODER = re.compile(r"dec(\d)\.(\d)\.(weight|bias)$")
_DETECTOR_UPSAMPLE = re.compile(r"up(\d)\.(weight|bias)$")


def legacy_unet_names(name: str) -> str:
    """A U-Net tensor's name as this class calls it, from the three-level detector's
    names of before (`enc1.0.0.weight`: level 1, convolution 0, layer 0; `up3`, `dec2`).
    Other names are returned as they are."""
    if m := _DETECTOR_ENCODER.fullmatch(name):
        level, conv, layer, kind = m.groups()
        return f"down.{int(level) - 1}.{3 * int(conv) + int(layer)}.{kind}"
    if m := _DETECTOR_DECODER.fullmatch(name):
        level, layer, kind = m.groups()
        return f"up.{3 - int(level) - 1}.{layer}.{kind}"
    if m := _DETECTOR_UPSAMPLE.fullmatch(name):
        level, kind = m.groups()
        return f"upsample.{3 - int(level)}.{kind}"
    return name
