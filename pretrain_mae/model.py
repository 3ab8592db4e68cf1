"""A 3D multi-sequence masked autoencoder with timm ViT blocks (fused attention).

The encoder embeds every (sequence, patch) token with a shared linear projection plus a
learned sequence embedding and a fixed 3D sine-cosine position, and runs only on the
visible tokens it is given. A light decoder puts mask tokens back and predicts the
pixels of every token; the loss is MSE on per-patch normalised pixels of masked tokens
of sequences the study has. Optional MOME-style modality experts give each family of
sequences (T2, diffusion, DCE) its own feed-forward network inside every block, with
attention shared; optional multi-scale output returns features from several depths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import Attention, Block
from torch import nn

from pretrain_mae.config import MAEConfig
from pretrain_mae.patches import patchify, sincos_3d, token_ids

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class ExpertBlock(nn.Module):
    """A transformer block with shared attention and one MLP per sequence family."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, n_experts: int, drop_path: float = 0.0
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
        self.norm2 = LayerNorm(dim)
        self.experts = nn.ModuleList(Mlp(dim, int(dim * mlp_ratio)) for _ in range(n_experts))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, families: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask=attn_mask))
        h = self.norm2(x)
        out = torch.zeros_like(h)
        for e, mlp in enumerate(self.experts):
            sel = families == e
            if sel.any():
                out[sel] = mlp(h[sel]).to(out.dtype)
        return x + self.drop_path(out)


@dataclass
class EncodedTokens:
    """Encoder output for the tokens a study has (padded to the longest in the batch)."""

    features: torch.Tensor  # (B, K, D) final, normalised
    valid: torch.Tensor  # (B, K) bool
    sequence_ids: torch.Tensor  # (B, K)
    patch_ids: torch.Tensor  # (B, K)
    multiscale: list[torch.Tensor]  # (B, K, D) per configured depth


class MaskedAutoencoder3D(nn.Module):
    def __init__(self, cfg: MAEConfig):
        super().__init__()
        self.cfg = cfg
        d, dd, s = cfg.embed_dim, cfg.decoder_dim, len(cfg.sequences)
        seq_ids, patch_ids = token_ids(cfg)
        family_of_seq = torch.tensor(cfg.sequence_family_ids)
        self.register_buffer("seq_ids", seq_ids, persistent=False)
        self.register_buffer("patch_ids", patch_ids, persistent=False)
        self.register_buffer("family_ids", family_of_seq[seq_ids], persistent=False)
        self.register_buffer("pos_embed", sincos_3d(d, cfg.patches_per_axis), persistent=False)
        self.register_buffer(
            "decoder_pos_embed", sincos_3d(dd, cfg.patches_per_axis), persistent=False
        )
        # Encoder
        self.patch_embed = nn.Linear(cfg.patch_voxels, d)
        self.seq_embed = nn.Parameter(torch.zeros(s, d))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        if cfg.modality_experts:
            self.blocks = nn.ModuleList(
                ExpertBlock(d, cfg.num_heads, cfg.mlp_ratio, len(cfg.family_names), r)
                for r in rates
            )
        else:
            self.blocks = nn.ModuleList(
                Block(
                    d,
                    cfg.num_heads,
                    cfg.mlp_ratio,
                    qkv_bias=True,
                    norm_layer=LayerNorm,
                    drop_path=r,
                )
                for r in rates
            )
        self.norm = LayerNorm(d)
        # Decoder
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_seq_embed = nn.Parameter(torch.zeros(s, dd))
        self.decoder_blocks = nn.ModuleList(
            Block(dd, cfg.decoder_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
            for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, cfg.patch_voxels)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.seq_embed, self.decoder_seq_embed, self.mask_token):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- encoder -------------------------------------------------------------------------
    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        return (
            self.patch_embed(patches)
            + self.seq_embed[self.seq_ids]
            + self.pos_embed[self.patch_ids]
        )

    def encode(
        self, tokens: torch.Tensor, index: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the encoder on the tokens at `index` (B, K); `valid` masks padding keys."""
        x = torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1]))
        attn_mask = None if valid is None else valid[:, None, None, :]
        families = self.family_ids[index]
        scales = []
        for depth, block in enumerate(self.blocks, start=1):
            x = (
                block(x, families, attn_mask)
                if self.cfg.modality_experts
                else block(x, attn_mask=attn_mask)
            )
            if depth in self.cfg.multiscale_layers:
                scales.append(x)
        return self.norm(x), scales

    # -- pretraining ---------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        keep: torch.Tensor,
        target: torch.Tensor,
        keep_valid: torch.Tensor | None = None,
        return_pred: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, S, X, Y, Z); keep (B, K) visible token indices, `keep_valid` marking
        padding; target (B, L) bool. Returns the loss (MSE on normalised pixels of target
        tokens) and, with `return_pred`, the predictions for every token.
        """
        patches = patchify(images, self.cfg)
        latent, _ = self.encode(self.embed(patches), keep, keep_valid)
        y = self.decoder_embed(latent)
        b, length = patches.shape[:2]
        mask_token = self.mask_token.to(y.dtype)
        if (
            keep_valid is not None
        ):  # padding positions carry their own pixels: never decode from them
            y = torch.where(keep_valid[..., None], y, mask_token)
        full = mask_token.expand(b, length, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, y.shape[-1]), y)
        full = full + (
            self.decoder_seq_embed[self.seq_ids] + self.decoder_pos_embed[self.patch_ids]
        ).to(full.dtype)
        for block in self.decoder_blocks:
            full = block(full)
        hidden = self.decoder_norm(full)
        # Predict pixels only where the loss looks (the widest layer, so this matters).
        goal = patches[target]
        if self.cfg.norm_pix_loss:
            mean, var = goal.mean(-1, keepdim=True), goal.var(-1, keepdim=True)
            goal = (goal - mean) / (var + 1e-6).sqrt()
        scored = self.decoder_pred(hidden[target])
        if goal.shape[0]:
            loss = ((scored.float() - goal.float()) ** 2).mean()
        else:
            loss = scored.sum() * 0.0
        pred = self.decoder_pred(hidden) if return_pred else None
        return loss, pred

    # -- features for downstream models ------------------------------------------------------
    def available_index(self, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the tokens of present sequences (B, K) and which are real (not padding)."""
        available = present[:, self.seq_ids]  # (B, L)
        order = torch.argsort((~available).to(torch.int8), dim=1, stable=True)
        k = int(available.sum(1).max())
        index = order[:, :k]
        return index, torch.gather(available, 1, index)

    def embed_grid(self, images: torch.Tensor, cfg: MAEConfig) -> torch.Tensor:
        """Every token of images on another grid `cfg` (a zoomed crop), embedded with this
        encoder's patch and sequence embeddings and positions on that grid."""
        if cfg.patch != self.cfg.patch or cfg.sequences != self.cfg.sequences:
            raise ValueError("a grid read by this encoder needs its patch size and sequences")
        seq_ids, patch_ids = token_ids(cfg)
        pos = sincos_3d(self.cfg.embed_dim, cfg.patches_per_axis).to(images.device)
        return self.patch_embed(patchify(images, cfg)) + self.seq_embed[seq_ids] + pos[patch_ids]

    def forward_features(self, images: torch.Tensor, present: torch.Tensor) -> EncodedTokens:
        """Encode every token of the sequences each study has (missing ones are left out)."""
        index, valid = self.available_index(present)
        features, scales = self.encode(self.embed(patchify(images, self.cfg)), index, valid)
        return EncodedTokens(features, valid, self.seq_ids[index], self.patch_ids[index], scales)
