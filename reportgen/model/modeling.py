"""Images -> report tokens: the MAE encoder, a projection, and a GPT-2 decoder with
cross-attention to the image tokens (built from config; nothing is downloaded).

Also: an InfoNCE image-report alignment (its embeddings serve `reportgen similar`), and
the hooks the RL step needs (per-token log-probabilities, a frozen copy, hidden states
for a value head).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_mae.checkpoint import (
    CONFIG,
    WEIGHTS,
    load_weights,
    read_config,
    weights_sha256,
    write_checkpoint,
)
from pretrain_mae.config import MAEConfig
from pretrain_mae.errors import PretrainError
from pretrain_mae.model import MaskedAutoencoder3D
from pretrain_mae.patches import token_ids
from reportgen.errors import InputError
from reportgen.model.candidates import (
    GEOMETRY_FEATURES,
    Candidate,
    crop_around,
    find_candidates,
    geometry_features,
)
from reportgen.model.config import ReportModelConfig
from reportgen.model.detector import LesionDetector
from reportgen.model.vocab import ReportVocab

REPORT_TYPE = "reportgen-report"
TIED = "decoder.lm_head.weight"
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


@dataclass
class RegionsOfInterest:
    """Fine-resolution crops around the detected lesion candidates of a batch."""

    crops: torch.Tensor  # (B, K, S, X, Y, Z)
    geometry: torch.Tensor  # (B, K, GEOMETRY_FEATURES)
    valid: torch.Tensor  # (B, K) bool
    candidates: list[list[Candidate]]  # per study, on the encoder grid


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
        if cfg.roi is not None:
            self._build_roi_reader(width)
        self.apply_freeze()

    def _build_roi_reader(self, width: int) -> None:
        """Detector + a zoomed reading of each candidate: the encoder's frozen lower blocks
        (shared, so the file stays small) and trainable copies of its last blocks."""
        roi, enc = self.cfg.roi, self.encoder_cfg
        _, spacing = self.cfg.input_grid()
        self.roi_cfg = replace(enc, grid_shape=tuple(roi["roi_shape"]), grid_spacing=spacing)
        seq_ids, _ = token_ids(self.roi_cfg)
        self.register_buffer("roi_seq_ids", seq_ids, persistent=False)
        self.detector = LesionDetector(len(enc.sequences), roi["detector_width"])
        n = self.cfg.trainable_blocks
        self.roi_blocks = nn.ModuleList(copy.deepcopy(b) for b in list(self.encoder.blocks)[-n:])
        self.roi_norm = copy.deepcopy(self.encoder.norm)
        self.roi_proj = nn.Sequential(
            nn.Linear(enc.embed_dim, self.cfg.n_embd), nn.LayerNorm(self.cfg.n_embd)
        )
        self.geometry_embed = nn.Sequential(
            nn.Linear(GEOMETRY_FEATURES, self.cfg.n_embd),
            nn.GELU(),
            nn.Linear(self.cfg.n_embd, self.cfg.n_embd),
        )
        self.candidate_embed = nn.Parameter(
            0.02 * torch.randn(roi["max_candidates"], self.cfg.n_embd)
        )

    def init_roi_reader_from_encoder(self) -> None:
        """Start the zoomed blocks from the (just loaded) pretrained encoder's last blocks."""
        n = self.cfg.trainable_blocks
        for own, pretrained in zip(self.roi_blocks, list(self.encoder.blocks)[-n:], strict=True):
            own.load_state_dict(pretrained.state_dict())
        self.roi_norm.load_state_dict(self.encoder.norm.state_dict())

    @property
    def input_cfg(self) -> MAEConfig:
        """The encoder's config on the grid studies are prepared on (finer with `roi`)."""
        shape, spacing = self.cfg.input_grid()
        return replace(self.encoder_cfg, grid_shape=shape, grid_spacing=spacing)

    # -- encoder ---------------------------------------------------------------------------
    def apply_freeze(self) -> None:
        """Encoder per `cfg.freeze`; the detector is trained in its own stage, then fixed."""
        if self.cfg.roi is not None:
            for p in self.detector.parameters():
                p.requires_grad = False
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
        """Images on the input grid -> decoder memory (B, K, n_embd) and its mask."""
        memory, mask, _ = self.encode_with_regions(images, present)
        return memory, mask

    def encode_with_regions(
        self, images: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, RegionsOfInterest | None]:
        """As `encode`, also returning the lesion candidates the memory was read from."""
        if not bool(present.any(1).all()):
            raise InputError("study", "has none of the sequences the model was trained on")
        coarse = self.pooled(images)
        frozen = self.cfg.freeze == "frozen" and not images.requires_grad  # saliency needs grads
        with torch.no_grad() if frozen else contextlib.nullcontext():
            enc = self.encoder.forward_features(coarse, present)
        feats = enc.features
        if self.cfg.use_multiscale and enc.multiscale:
            feats = torch.cat([feats, *enc.multiscale], dim=-1)
        memory, mask = self.memory_proj(feats), enc.valid
        if self.cfg.roi is None:
            return memory, mask, None
        regions = self.propose(images, coarse, present)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            stem, stem_valid = self.roi_stem(regions.crops, present, regions.valid)
        roi_memory, roi_mask = self.roi_memory(stem, stem_valid, regions.geometry, regions.valid)
        return torch.cat([memory, roi_memory], 1), torch.cat([mask, roi_mask], 1), regions

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Input-grid images -> the whole-study encoder's grid (averaging, so grids align)."""
        f = self.cfg.pool_factor
        return (
            images
            if f == 1
            else F.avg_pool3d(images.flatten(0, 1), f).unflatten(0, images.shape[:2])
        )

    # -- lesion candidates -------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, coarse: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Lesion probability on the encoder grid (B, X, Y, Z)."""
        return torch.sigmoid(self.detector(coarse.detach(), present))

    def propose(
        self, images: torch.Tensor, coarse: torch.Tensor, present: torch.Tensor
    ) -> RegionsOfInterest:
        roi, enc = self.cfg.roi, self.encoder_cfg
        prob = self.detect(coarse, present).float().cpu().numpy()
        return self.regions_at(
            images,
            [
                find_candidates(p, enc.grid_spacing, roi["threshold"], roi["max_candidates"])[0]
                for p in prob
            ],
        )

    def regions_at(
        self, images: torch.Tensor, candidates: list[list[Candidate]]
    ) -> RegionsOfInterest:
        """Crops (input resolution) and geometry of given candidates, padded to max_candidates."""
        roi, enc, f = self.cfg.roi, self.encoder_cfg, self.cfg.pool_factor
        b, s = images.shape[:2]
        k = roi["max_candidates"]
        shape = tuple(roi["roi_shape"])
        crops = images.new_zeros((b, k, s, *shape))
        geometry = images.new_zeros((b, k, GEOMETRY_FEATURES))
        valid = torch.zeros((b, k), dtype=torch.bool, device=images.device)
        for i, found in enumerate(candidates):
            for j, cand in enumerate(found[:k]):
                crops[i, j] = crop_around(images[i], cand.centre * f + (f - 1) / 2, shape)
                geometry[i, j] = torch.from_numpy(
                    geometry_features(cand, enc.grid_shape, enc.grid_spacing)
                )
                valid[i, j] = True
        return RegionsOfInterest(crops, geometry, valid, candidates)

    def roi_stem(
        self, crops: torch.Tensor, present: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared lower encoder blocks over every valid crop: (N, T, D), token validity."""
        flat = crops[valid]
        seen = present[:, None].expand(-1, valid.shape[1], -1)[valid]
        tokens_valid = seen[:, self.roi_seq_ids]
        if not len(flat):
            return crops.new_zeros(
                (0, len(self.roi_seq_ids), self.encoder_cfg.embed_dim)
            ), tokens_valid
        x = self.encoder.embed_grid(flat, self.roi_cfg)
        attn_mask = tokens_valid[:, None, None, :]
        for block in list(self.encoder.blocks)[: -self.cfg.trainable_blocks]:
            x = block(x, attn_mask=attn_mask)
        return x, tokens_valid

    def roi_memory(
        self,
        stem: torch.Tensor,
        stem_valid: torch.Tensor,
        geometry: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per candidate slot: a geometry token then its zoomed tokens, (B, K * (1 + T), n_embd)."""
        b, k = valid.shape
        t = self.roi_seq_ids.numel()
        slots = geometry.new_zeros((b, k, 1 + t, self.cfg.n_embd))
        slots_valid = torch.zeros((b, k, 1 + t), dtype=torch.bool, device=geometry.device)
        if not len(stem):
            return (slots + self.candidate_embed[None, :, None, :]).flatten(
                1, 2
            ), slots_valid.flatten(1, 2)
        x = stem
        attn_mask = stem_valid[:, None, None, :]
        for block in self.roi_blocks:
            x = block(x, attn_mask=attn_mask)
        zoomed = self.roi_proj(self.roi_norm(x))
        slots[valid] = torch.cat([self.geometry_embed(geometry[valid])[:, None], zoomed], 1).to(
            slots.dtype
        )
        slots_valid[valid] = torch.cat([stem_valid.new_ones((len(stem_valid), 1)), stem_valid], 1)
        slots = slots + self.candidate_embed[None, :, None, :]
        return slots.flatten(1, 2), slots_valid.flatten(1, 2)

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
    """Write the model directory (the project's checkpoint convention, plus the vocabulary);
    returns the weights' SHA-256 (the checkpoint hash reports cite)."""
    state = dict(model.state_dict())
    state.pop(TIED, None)  # tied to the token embeddings
    write_checkpoint(folder, state, model.cfg.to_dict(), REPORT_TYPE, extra_files=vocab.files())
    return weights_sha256(folder)


def load_model(folder: Path, device: str | torch.device = "cpu") -> tuple[ReportModel, ReportVocab]:
    """A model directory -> (model in eval mode, vocab); weights via safetensors, strict keys."""
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise InputError(folder, f"not a report model directory (needs {CONFIG} and {WEIGHTS})")
    try:
        cfg = ReportModelConfig.from_dict(read_config(folder, REPORT_TYPE))
        vocab = ReportVocab.load(folder)
        if len(vocab) != cfg.vocab_size:
            raise InputError(
                folder, f"vocabulary has {len(vocab)} tokens but the model expects {cfg.vocab_size}"
            )
        model = ReportModel(cfg)
        load_weights(model, folder, device, derived=(TIED,))
    except PretrainError as exc:
        raise InputError(exc.path, exc.problem) from exc
    model.decoder.tie_weights()
    return model.to(device).eval(), vocab
