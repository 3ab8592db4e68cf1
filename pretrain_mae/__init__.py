"""Masked-autoencoder pretraining for multiparametric MRI (importable on its own).

Tokens are (sequence, 3D patch) pairs, so any subset of sequences can be fed; the
encoder (timm ViT blocks, fused attention) sees only visible tokens; masking can be
random, lesion-aware or anatomy-preserving, joint or complementary across sequences.
"""

from pretrain_mae.config import MAEConfig
from pretrain_mae.model import MaskedAutoencoder3D

__all__ = ["MAEConfig", "MaskedAutoencoder3D"]
