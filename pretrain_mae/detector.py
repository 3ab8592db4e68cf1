"""A small 3D U-Net (MONAI) that predicts a lesion prior where studies have no mask.

`reportgen pretrain --train-detector` trains it on the studies that do have masks;
lesion-aware masking then uses its probability map for the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DETECTOR_FILE = "detector.safetensors"


def build_detector(in_channels: int):
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=1,
        channels=(8, 16, 32, 64),
        strides=(2, 2, 2),
        num_res_units=1,
    )


def train_detector(
    dataset,
    out: Path,
    steps: int = 200,
    batch_size: int = 4,
    lr: float = 2e-3,
    seed: int = 0,
    progress=None,
) -> dict:
    """Train on the studies of `dataset` that have a lesion mask; returns training stats."""
    from monai.losses import DiceCELoss

    from pretrain_mae.data import collate

    labelled = [i for i in range(len(dataset)) if dataset[i]["has_mask"]]
    if not labelled:
        from reportgen.errors import InputError

        raise InputError(out, "no study in --data has a lesion mask to train the detector on")
    torch.manual_seed(seed)
    channels = dataset[labelled[0]]["image"].shape[0]
    net = build_detector(channels)
    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        pick = torch.randint(len(labelled), (batch_size,), generator=g)
        batch = collate([dataset[labelled[int(i)]] for i in pick])
        logits = net(batch["image"] * batch["present"][:, :, None, None, None])
        loss = loss_fn(logits, batch["lesion"][:, None])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step, float(loss))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / DETECTOR_FILE))
    stats = {
        "in_channels": channels,
        "trained_on": len(labelled),
        "steps": steps,
        "final_loss": sum(losses[-10:]) / min(10, len(losses)),
    }
    (out / "detector.json").write_text(json.dumps(stats, indent=2))
    return stats


def load_detector(folder: Path):
    stats = json.loads((folder / "detector.json").read_text())
    net = build_detector(stats["in_channels"])
    net.load_state_dict(load_file(str(folder / DETECTOR_FILE)))
    return net.eval()


@torch.no_grad()
def lesion_prior(net, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(net(images * present[:, :, None, None, None]))[:, 0]
