"""Reconstruction pictures: original / masked / reconstructed, one row per sequence."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pretrain_mae.config import MAEConfig
from pretrain_mae.patches import patchify, unpatchify


@torch.no_grad()
def reconstruction_png(
    model,
    cfg: MAEConfig,
    image: torch.Tensor,
    keep: torch.Tensor,
    keep_valid: torch.Tensor,
    available: torch.Tensor,
) -> bytes:
    """PNG bytes for one study (image (S, X, Y, Z)) at its central slice."""
    model.eval()
    _, pred = model(image[None], keep[None], available[None], keep_valid[None], return_pred=True)
    patches = patchify(image[None], cfg)
    if cfg.norm_pix_loss:  # back to image intensities with each patch's own statistics
        pred = pred * (patches.var(-1, keepdim=True) + 1e-6).sqrt() + patches.mean(-1, keepdim=True)
    visible = torch.zeros(patches.shape[1], dtype=torch.bool).scatter_(0, keep[keep_valid], True)
    masked = unpatchify(patches * visible[None, :, None], cfg)[0]
    recon = unpatchify(torch.where(visible[None, :, None], patches, pred.float()), cfg)[0]
    z = image.shape[-1] // 2
    rows = [
        i for i in range(len(cfg.sequences)) if available.reshape(len(cfg.sequences), -1)[i].any()
    ]
    fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2 * len(rows)), squeeze=False)
    for r, s in enumerate(rows):
        for c, (title, vol) in enumerate(
            (("original", image), ("masked", masked), ("reconstructed", recon))
        ):
            axes[r, c].imshow(
                vol[s, :, :, z].T.float().numpy(),
                origin="lower",
                cmap="gray",
                vmin=0,
                vmax=float(image[s].max()) or 1.0,
            )
            axes[r, c].set_axis_off()
            axes[r, c].set_title(f"{cfg.sequences[s]} {title}", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=70)
    plt.close(fig)
    model.train()
    return buffer.getvalue()
