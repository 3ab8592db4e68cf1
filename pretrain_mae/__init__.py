"""Masked-autoencoder pretraining for multiparametric MRI (importable on its own).

Tokens are (sequence, 3D patch) pairs, so any subset of sequences can be fed; the
encoder (timm ViT blocks, fused attention) sees only visible tokens; masking can be
random, lesion-aware or anatomy-preserving, joint or complementary across sequences.

This package imports nothing of reportgen's: the studies come in as a torch Dataset
(items as `pretrain_mae.data.collate` batches them) and a lesion prior, if any, as a
function; it is trained and its checkpoints kept by `reportgen.model.mae_training`. Its
names load on first use, so importing one module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pretrain_mae.config import MAEConfig
    from pretrain_mae.model import MaskedAutoencoder3D

__all__ = ["MAEConfig", "MaskedAutoencoder3D"]


def __getattr__(name: str):
    if name == "MAEConfig":
        from pretrain_mae.config import MAEConfig

        return MAEConfig
    if name == "MaskedAutoencoder3D":
        from pretrain_mae.model import MaskedAutoencoder3D

        return MaskedAutoencoder3D
    raise AttributeError(f"module 'pretrain_mae' has no attribute {name!r}")
