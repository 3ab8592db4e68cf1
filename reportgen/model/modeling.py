"""Images -> report tokens: the MAE encoder, a projection, and a GPT-2 decoder with
cross-attention to the image tokens (built from config; nothing is downloaded).

Also: an InfoNCE image-report alignment (its embeddings serve `reportgen similar`), and
the hooks the RL step needs (per-token log-probabilities, a frozen copy, hidden states
for a value head).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_mae.config import MAEConfig
from pretrain_mae.model import MaskedAutoencoder3D
from reportgen.errors import InputError
from reportgen.model.config import ReportModelConfig
from reportgen.model.vocab import ReportVocab

WEIGHTS = "model.safetensors"
MAE_DECODER_PARTS = (
    "decoder_embed",
    "mask_token",
    "decoder_seq_embed",
    "decoder_blocks",
    "decoder_norm",
    "decoder_pred",
)


def drop_mae_decoder(encoder: MaskedAutoencoder3D) -> MaskedAutoencoder3D:
    """The report model needs only the encoder half of the MAE."""
    for name in MAE_DECODER_PARTS:
        if hasattr(encoder, name):
            delattr(encoder, name)
    encoder.register_buffer("decoder_pos_embed", None, persistent=False)
    return encoder


class ReportModel(nn.Module):
    def __init__(self, cfg: ReportModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder_cfg = MAEConfig.from_dict(cfg.encoder)
        self.encoder = drop_mae_decoder(MaskedAutoencoder3D(self.encoder_cfg))
        width = self.encoder_cfg.embed_dim * (
            1 + (len(self.encoder_cfg.multiscale_layers) if cfg.use_multiscale else 0)
        )
        self.memory_proj = nn.Sequential(nn.Linear(width, cfg.n_embd), nn.LayerNorm(cfg.n_embd))
        self.decoder = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=cfg.vocab_size,
                n_positions=cfg.n_positions,
                n_embd=cfg.n_embd,
                n_layer=cfg.n_layer,
                n_head=cfg.n_head,
                add_cross_attention=True,
                bos_token_id=1,
                eos_token_id=2,
                pad_token_id=0,
                tie_word_embeddings=True,
            )
        )
        self.image_head = nn.Linear(cfg.n_embd, cfg.contrastive_dim)
        self.text_head = nn.Linear(cfg.n_embd, cfg.contrastive_dim)
        self.apply_freeze()

    # -- encoder ---------------------------------------------------------------------------
    def apply_freeze(self) -> None:
        mode = self.cfg.freeze
        for p in self.encoder.parameters():
            p.requires_grad = mode == "full"
        if mode == "partial":
            for block in list(self.encoder.blocks)[-self.cfg.trainable_blocks :]:
                for p in block.parameters():
                    p.requires_grad = True
            for p in self.encoder.norm.parameters():
                p.requires_grad = True

    def encode(
        self, images: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens of the present sequences -> decoder memory (B, K, n_embd) and its mask."""
        if not bool(present.any(1).all()):
            raise InputError("study", "has none of the sequences the model was trained on")
        frozen = self.cfg.freeze == "frozen" and not images.requires_grad  # saliency needs grads
        with torch.no_grad() if frozen else contextlib.nullcontext():
            enc = self.encoder.forward_features(images, present)
        feats = enc.features
        if self.cfg.use_multiscale and enc.multiscale:
            feats = torch.cat([feats, *enc.multiscale], dim=-1)
        return self.memory_proj(feats), enc.valid

    # -- decoder ---------------------------------------------------------------------------
    def decode(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ):
        return self.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask.long(),
            labels=labels,
            output_hidden_states=True,
        )

    def token_logprobs(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """log p(token_t | tokens_<t, image) for t >= 1 (B, T-1): what PPO and explanations use."""
        logits = self.decode(memory, memory_mask, ids, attention_mask).logits[:, :-1].float()
        return torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None])[..., 0]

    # -- contrastive alignment ---------------------------------------------------------------
    def image_embedding(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        weights = memory_mask[..., None].to(memory.dtype)
        pooled = (memory * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.image_head(pooled), dim=-1)

    def text_embedding(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = attention_mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.text_head(pooled), dim=-1)

    def forward(
        self,
        images: torch.Tensor,
        present: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss: next-token cross-entropy + weighted InfoNCE."""
        memory, memory_mask = memory if memory is not None else self.encode(images, present)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        out = self.decode(memory, memory_mask, input_ids, attention_mask, labels)
        img = self.image_embedding(memory, memory_mask)
        txt = self.text_embedding(out.hidden_states[-1], attention_mask)
        logits = img @ txt.T / self.cfg.temperature
        target = torch.arange(len(img), device=img.device)
        nce = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return {
            "loss": out.loss + self.cfg.contrastive_weight * nce,
            "lm_loss": out.loss,
            "nce_loss": nce,
        }


# -- save / load (a directory: config.json, model.safetensors, vocab.json, spm.model) --------------


def save_model(model: ReportModel, vocab: ReportVocab, folder: Path) -> str:
    """Write the model directory; returns the weights' SHA-256 (the checkpoint hash)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.cfg.save(folder)
    vocab.save(folder)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state.pop("decoder.lm_head.weight", None)  # tied to the token embeddings
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    return file_sha256(folder / WEIGHTS)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(folder: Path, device: str | torch.device = "cpu") -> tuple[ReportModel, ReportVocab]:
    """A model directory -> (model in eval mode, vocab); weights via safetensors only."""
    if not (folder / "config.json").is_file() or not (folder / WEIGHTS).is_file():
        raise InputError(folder, f"not a report model directory (needs config.json and {WEIGHTS})")
    cfg = ReportModelConfig.load(folder)
    vocab = ReportVocab.load(folder)
    if len(vocab) != cfg.vocab_size:
        raise InputError(
            folder, f"vocabulary has {len(vocab)} tokens but the model expects {cfg.vocab_size}"
        )
    model = ReportModel(cfg)
    state = load_file(str(folder / WEIGHTS), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "decoder.lm_head.weight"]
    if missing or unexpected:
        raise InputError(
            folder,
            f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    model.decoder.tie_weights()
    return model.to(device).eval(), vocab
