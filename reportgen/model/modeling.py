"""Images -> report tokens: the MAE encoder, a projection, and a GPT-2 decoder with
cross-attention to the image tokens (built from config; nothing is downloaded).

Also: an InfoNCE image-report alignment (its embeddings serve `reportgen similar`), and
the hooks the RL step needs (per-token log-probabilities, a frozen copy, hidden states
for a value head).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_mae.config import MAEConfig
from pretrain_mae.model import MaskedAutoencoder3D
from pretrain_mae.patches import token_ids
from reportgen.checkpoint import (
    CONFIG,
    WEIGHTS,
    load_weights,
    read_config,
    strict_config,
    weights_sha256,
    write_checkpoint,
)
from reportgen.errors import InputError
from reportgen.model import vocab as V
from reportgen.model.candidates import (
    GEOMETRY_FEATURES,
    Candidate,
    crop_around,
    crop_start,
    find_candidates,
    geometry_features,
    outline,
)
from reportgen.model.config import ReportModelConfig
from reportgen.model.copying import CopyingGPT2LMHeadModel, Memory
from reportgen.model.detector import LesionDetector
from reportgen.model.evidence import (
    CANDIDATE_FEATURES,
    CANDIDATE_LAYOUT,
    POINTER_FIELDS,
    TISSUE_FEATURES,
    TISSUE_LAYOUT,
    StudyReading,
    needs_matrix,
    read_candidate,
    read_study,
)
from reportgen.model.readout import (
    CANDIDATE_READOUT,
    TISSUE_READOUT,
    Readout,
    SizeReadout,
    readout_values,
    value_tokens,
)
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


# Which of a study's outlined candidates are lesions, given them and the study's reading
# (and any it finds itself, through `ReportModel.measured_candidate`); most likely first.
Chooser = Callable[[list[Candidate], StudyReading], list[Candidate]]


@dataclass
class RegionsOfInterest:
    """Fine-resolution crops around the detected lesion candidates of a batch."""

    crops: torch.Tensor  # (B, K, S, X, Y, Z)
    geometry: torch.Tensor  # (B, K, GEOMETRY_FEATURES)
    valid: torch.Tensor  # (B, K) bool
    candidates: list[list[Candidate]]  # per study, on the encoder grid
    measured: torch.Tensor | None = None  # (B, K, CANDIDATE_FEATURES), with evidence
    pointers: torch.Tensor | None = None  # (B, K, len(POINTER_FIELDS)) token ids, -1: none
    tissue: torch.Tensor | None = None  # (B, TISSUE_FEATURES), with evidence


class ReportModel(nn.Module):
    def __init__(self, cfg: ReportModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder_cfg = strict_config(MAEConfig, cfg.encoder, "MAE encoder")
        self.encoder = drop_mae_decoder(MaskedAutoencoder3D(self.encoder_cfg))
        width = self.encoder_cfg.embed_dim * (
            1 + (len(self.encoder_cfg.multiscale_layers) if cfg.use_multiscale else 0)
        )
        self.memory_proj = nn.Sequential(nn.Linear(width, cfg.n_embd), nn.LayerNorm(cfg.n_embd))
        # with measured evidence the decoder can copy the measured values it points to
        self.decoder = (CopyingGPT2LMHeadModel if cfg.copy_values else GPT2LMHeadModel)(
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
        self._pointer_ids: dict[tuple[str, str], int] = {}
        self._size_grid: list[str] = []
        self.tissue_readout: Readout | None = None
        self.candidate_readout: Readout | None = None
        self.size_readout: SizeReadout | None = None
        if roi["evidence"]:
            n = self.cfg.n_embd
            self.segmenter = LesionDetector(len(enc.sequences), roi["segmenter_width"])
            self.measure_embed = nn.Sequential(
                nn.Linear(CANDIDATE_FEATURES, n), nn.GELU(), nn.Linear(n, n)
            )
            self.tissue_embed = nn.Sequential(
                nn.Linear(TISSUE_FEATURES, n), nn.GELU(), nn.Linear(n, n)
            )
            self.pointer_role = nn.Parameter(0.02 * torch.randn(len(POINTER_FIELDS), n))
            if self.cfg.readout:
                template = self.cfg.template
                self.tissue_readout = Readout(
                    TISSUE_LAYOUT, readout_values(template, TISSUE_READOUT), TISSUE_READOUT
                )
                self.candidate_readout = Readout(
                    CANDIDATE_LAYOUT,
                    readout_values(template, CANDIDATE_READOUT),
                    CANDIDATE_READOUT,
                )
                self.tissue_role = nn.Parameter(
                    0.02 * torch.randn(len(self.tissue_readout.fields), n)
                )
                self.readout_role = nn.Parameter(
                    0.02 * torch.randn(len(self.candidate_readout.fields), n)
                )
                self._tissue_table = self.tissue_readout.token_table(lambda v: -1)
                self._candidate_table = self.candidate_readout.token_table(lambda v: -1)
                self.size_readout = SizeReadout(CANDIDATE_LAYOUT)
            for name, layout in (("candidate", CANDIDATE_LAYOUT), ("tissue", TISSUE_LAYOUT)):
                needs = torch.from_numpy(needs_matrix(layout, tuple(enc.sequences)))
                self.register_buffer(f"{name}_needs", needs, persistent=False)

    @property
    def has_evidence(self) -> bool:
        return self.cfg.roi is not None and bool(self.cfg.roi["evidence"])

    def attach_vocab(self, vocab: ReportVocab) -> None:
        """Learn which token spells each value a measurement can point to (side, clock
        face, size): pointer tokens are embedded with the decoder's own embeddings."""
        if not self.has_evidence:
            return
        from reportgen.report import load_template

        template = load_template(self.cfg.template)
        ids: dict[tuple[str, str], int] = {}
        for field_id in POINTER_FIELDS:
            if not template.has_field(field_id):
                continue
            spec = template.field(field_id)
            if spec.type == "enum":
                values = [(v, V.value_token(v)) for v in spec.values]
            else:
                values = [(n, V.number_token(n)) for n in V.number_grid(spec)]
                self._size_grid = [n for n, _ in values]
            for value, token in values:
                if token in vocab.tokens:
                    ids[(field_id, value)] = vocab.id(token)
        self._pointer_ids = ids
        if self.tissue_readout is not None and self.candidate_readout is not None:

            def token_id(value: str) -> int:
                token = V.value_token(value)
                return vocab.id(token) if token in vocab.tokens else -1

            self._tissue_table = self.tissue_readout.token_table(token_id)
            self._candidate_table = self.candidate_readout.token_table(token_id)

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
            stages = [self.detector, *([self.segmenter] if self.has_evidence else [])]
            for p in (p for stage in stages for p in stage.parameters()):
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

    def encode(self, images: torch.Tensor, present: torch.Tensor) -> Memory:
        """Images on the input grid -> the decoder's memory."""
        return self.encode_with_regions(images, present)[0]

    def encode_with_regions(
        self, images: torch.Tensor, present: torch.Tensor, choose: Chooser | None = None
    ) -> tuple[Memory, RegionsOfInterest | None]:
        """As `encode`, also returning the lesion candidates the memory was read from;
        `choose` decides which outlined candidates are lesions (`outline_candidates`)."""
        if not bool(present.any(1).all()):
            raise InputError("study", "has none of the sequences the model was trained on")
        coarse = self.pooled(images)
        frozen = self.cfg.freeze == "frozen" and not images.requires_grad  # saliency needs grads
        with torch.no_grad() if frozen else contextlib.nullcontext():
            enc = self.encoder.forward_features(coarse, present)
        feats = enc.features
        if self.cfg.use_multiscale and enc.multiscale:
            feats = torch.cat([feats, *enc.multiscale], dim=-1)
        memory = Memory(self.memory_proj(feats), enc.valid)
        if self.cfg.roi is None:
            return memory, None
        regions = self.propose(images, coarse, present, choose)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            stem, stem_valid = self.roi_stem(regions.crops, present, regions.valid)
        memory = memory.cat(
            self.roi_memory(
                stem,
                stem_valid,
                regions.geometry,
                regions.valid,
                regions.measured,
                regions.pointers,
            )
        )
        if regions.tissue is not None:
            memory = self.with_tissue(memory, regions.tissue)
        return memory, regions

    def with_tissue(
        self, memory: Memory, tissue: torch.Tensor, read: torch.Tensor | None = None
    ) -> Memory:
        """Append the whole-study tissue measures as one memory token, and with a tissue
        readout one copyable token per category it reads (FGT amount, BPE level, ...);
        `read` gives those categories instead (training: read out of fold)."""
        token = self.tissue_embed(tissue.to(memory.tokens.dtype))[:, None]
        part = Memory(token, memory.mask.new_ones((len(token), 1)))
        if self.tissue_readout is not None:
            read = self.tissue_readout.predict(tissue) if read is None else read
            ids = value_tokens(read, self._tissue_table)
            pointed = self.decoder.transformer.wte(ids.clamp(min=0)) + self.tissue_role
            part = Memory(
                torch.cat([token, pointed.to(token.dtype)], 1),
                torch.cat([part.mask, ids >= 0], 1),
                F.pad(ids, (1, 0), value=-1) if self.cfg.copy_values else None,
            )
        return memory.cat(part)

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
        self,
        images: torch.Tensor,
        coarse: torch.Tensor,
        present: torch.Tensor,
        choose: Chooser | None = None,
    ) -> RegionsOfInterest:
        roi, enc = self.cfg.roi, self.encoder_cfg
        prob = self.detect(coarse, present).float().cpu().numpy()
        if not self.has_evidence:
            return self.regions_at(
                images,
                [
                    find_candidates(p, enc.grid_spacing, roi["threshold"], roi["max_candidates"])[0]
                    for p in prob
                ],
            )
        found, tissue = [], []
        for b, p in enumerate(prob):
            proposals = find_candidates(
                p, enc.grid_spacing, roi["threshold"], roi["max_proposals"]
            )[0]
            outlined, study = self.outline_candidates(images[b], present[b], proposals, choose)
            found.append(outlined)
            tissue.append(torch.from_numpy(study.features))
        return self.regions_at(images, found, torch.stack(tissue).to(images.device))

    @torch.no_grad()
    def outline_candidates(
        self,
        image: torch.Tensor,
        present: torch.Tensor,
        proposals: list[Candidate],
        choose: Chooser | None = None,
    ) -> tuple[list[Candidate], StudyReading]:
        """Segment each proposal at input resolution, measure what is outlined, and keep
        up to `max_candidates` distinct lesions the segmenter is sure of (`min_outline_score`),
        strongest proposal first. `choose(outlined, study)` may instead decide which are
        lesions, and add its own (`measured_candidate`): every distinct outline is given."""
        roi, f = self.cfg.roi, self.cfg.pool_factor
        shape = tuple(roi["roi_shape"])
        _, spacing = self.cfg.input_grid()
        volume = image.detach().float().cpu()
        study = read_study(
            volume.numpy(), present.cpu().numpy(), tuple(self.encoder_cfg.sequences), spacing
        )
        kept: list[Candidate] = []
        if proposals:
            centres = [c.centre * f + (f - 1) / 2 for c in proposals]
            crops = torch.stack([crop_around(volume, c, shape) for c in centres])
            seen = present.cpu()[None].expand(len(crops), -1)
            prob = torch.sigmoid(self.segmenter(crops, seen)).numpy()
            grid = np.array(volume.shape[1:])
            taken = np.zeros(tuple(grid), dtype=bool)
            for cand, centre, p in zip(proposals, centres, prob, strict=True):
                got = outline(p, roi["segment_threshold"])
                if got is None:
                    continue
                voxels, score = got
                if score < roi["min_outline_score"]:
                    continue
                voxels = voxels + np.array(crop_start(centre, shape))
                voxels = voxels[((voxels >= 0) & (voxels < grid)).all(1)]
                if not len(voxels) or taken[tuple(voxels.T)].any():
                    continue
                taken[tuple(voxels.T)] = True
                kept.append(self.measured_candidate(cand, voxels, score, study))
                if choose is None and len(kept) == roi["max_candidates"]:
                    break
        if choose is not None:
            kept = choose(kept, study)[: roi["max_candidates"]]
        return kept, study

    def measured_candidate(
        self, cand: Candidate | None, voxels: np.ndarray, score: float, study: StudyReading
    ) -> Candidate:
        """A candidate outlined by `voxels` (input grid, (N, 3)) and measured; `cand` is the
        detector's proposal it came from (None: found another way)."""
        f = self.cfg.pool_factor
        mask = np.zeros(tuple(study.images[next(iter(study.images))].shape), dtype=bool)
        mask[tuple(voxels.T)] = True
        reading = read_candidate(mask, score, study, self._size_grid)
        if self.size_readout is not None and bool(self.size_readout.fitted):
            size = self.size_readout.predict(torch.from_numpy(reading.features))
            # The readout corrects partial volume; it may not extrapolate past the
            # outline's box (a forced prostate outlined 12 x 42 x 18 mm read 83 mm).
            size = min(float(size), reading.longest_possible_mm)
            reading.pointers["size_mm"] = self.size_value(size)
        if cand is None:
            _, spacing = self.cfg.input_grid()
            cand = Candidate(
                centre=voxels.mean(0) / f,
                low=voxels.min(0) // f,
                high=voxels.max(0) // f,
                volume_mm3=float(len(voxels) * np.prod(spacing)),
                peak=score,
                component=0,
            )
        return replace(
            cand,
            low=voxels.min(0) // f,
            high=voxels.max(0) // f,
            peak=score,
            fine_centre=reading.centre_voxel,
            reading=reading,
            outline=voxels,
        )

    def size_value(self, mm: float) -> str:
        """The template's size value nearest `mm` (what a size pointer spells)."""
        return min(self._size_grid, key=lambda v: abs(float(v) - mm))

    def size_token_ids(self, mm: torch.Tensor) -> torch.Tensor:
        """Sizes in mm (...) -> vocabulary ids of the nearest size values (-1: none)."""
        if not self._size_grid:
            return torch.full(mm.shape, -1, dtype=torch.long, device=mm.device)
        grid = torch.tensor([float(v) for v in self._size_grid], device=mm.device)
        ids = torch.tensor(
            [self._pointer_ids.get(("size_mm", v), -1) for v in self._size_grid],
            device=mm.device,
        )
        return ids[(mm.float()[..., None] - grid).abs().argmin(-1)]

    def regions_at(
        self,
        images: torch.Tensor,
        candidates: list[list[Candidate]],
        tissue: torch.Tensor | None = None,
    ) -> RegionsOfInterest:
        """Crops (input resolution), geometry and measurements of given candidates, padded
        to max_candidates."""
        roi, enc, f = self.cfg.roi, self.encoder_cfg, self.cfg.pool_factor
        b, s = images.shape[:2]
        k = roi["max_candidates"]
        shape = tuple(roi["roi_shape"])
        crops = images.new_zeros((b, k, s, *shape))
        geometry = images.new_zeros((b, k, GEOMETRY_FEATURES))
        valid = torch.zeros((b, k), dtype=torch.bool, device=images.device)
        measured = pointers = None
        if self.has_evidence:
            measured = images.new_zeros((b, k, CANDIDATE_FEATURES))
            pointers = torch.full((b, k, len(POINTER_FIELDS)), -1, device=images.device)
            if tissue is None:
                tissue = images.new_zeros((b, TISSUE_FEATURES))
        for i, found in enumerate(candidates):
            for j, cand in enumerate(found[:k]):
                centre = cand.fine_centre if cand.fine_centre is not None else cand.centre * f
                if cand.fine_centre is None:
                    centre = centre + (f - 1) / 2
                crops[i, j] = crop_around(images[i], centre, shape)
                geometry[i, j] = torch.from_numpy(
                    geometry_features(cand, enc.grid_shape, enc.grid_spacing)
                )
                valid[i, j] = True
                if measured is not None and cand.reading is not None:
                    measured[i, j] = torch.from_numpy(cand.reading.features)
                    for m, field_id in enumerate(POINTER_FIELDS):
                        value = cand.reading.pointers.get(field_id)
                        pointers[i, j, m] = self._pointer_ids.get((field_id, value), -1)
        return RegionsOfInterest(crops, geometry, valid, candidates, measured, pointers, tissue)

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
        measured: torch.Tensor | None = None,
        pointers: torch.Tensor | None = None,
        read: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
    ) -> Memory:
        """Per candidate slot: a summary token (geometry, with evidence its measurements),
        with evidence one pointer token per measured value (copyable: the decoder can
        write it), then its zoomed tokens: (B, K * (1 + P + T), n_embd). `read` and
        `sizes` give the categories and sizes read instead (training: out of fold)."""
        b, k = valid.shape
        t = self.roi_seq_ids.numel()
        p = len(POINTER_FIELDS) if self.has_evidence else 0
        if self.candidate_readout is not None:
            p += len(self.candidate_readout.fields)
        slots = geometry.new_zeros((b, k, 1 + p + t, self.cfg.n_embd))
        slots_valid = torch.zeros((b, k, 1 + p + t), dtype=torch.bool, device=geometry.device)
        copy_ids = torch.full((b, k, 1 + p + t), -1, dtype=torch.long, device=geometry.device)
        if not len(stem):
            slots = slots + self.candidate_embed[None, :, None, :]
            return self._slot_memory(slots, slots_valid, copy_ids)
        x = stem
        attn_mask = stem_valid[:, None, None, :]
        for block in self.roi_blocks:
            x = block(x, attn_mask=attn_mask)
        zoomed = self.roi_proj(self.roi_norm(x))
        summary = self.geometry_embed(geometry[valid])
        parts, parts_valid = [], [stem_valid.new_ones((len(stem_valid), 1))]
        if p:
            summary = summary + self.measure_embed(measured[valid].to(summary.dtype))
            ids = pointers[valid]
            if sizes is not None:  # sizes read out of fold (training)
                ids = ids.clone()
                ids[:, POINTER_FIELDS.index("size_mm")] = self.size_token_ids(sizes[valid])
            role = self.pointer_role
            if self.candidate_readout is not None:  # and the categories read from them
                read = (
                    self.candidate_readout.predict(measured[valid]) if read is None else read[valid]
                )
                ids = torch.cat([ids, value_tokens(read, self._candidate_table)], 1)
                role = torch.cat([role, self.readout_role])
            pointed = self.decoder.transformer.wte(ids.clamp(min=0)) + role
            parts.append(pointed.to(summary.dtype))
            parts_valid.append(ids >= 0)
            copy_ids[valid] = F.pad(ids.long(), (1, t), value=-1)
        slots[valid] = torch.cat([summary[:, None], *parts, zoomed], 1).to(slots.dtype)
        slots_valid[valid] = torch.cat([*parts_valid, stem_valid], 1)
        slots = slots + self.candidate_embed[None, :, None, :]
        return self._slot_memory(slots, slots_valid, copy_ids)

    def _slot_memory(self, slots, slots_valid, copy_ids) -> Memory:
        """Candidate slots flattened to memory; copy ids only for a decoder that copies."""
        ids = copy_ids.flatten(1, 2) if self.cfg.copy_values else None
        return Memory(slots.flatten(1, 2), slots_valid.flatten(1, 2), ids)

    # -- decoder ---------------------------------------------------------------------------
    def decode(
        self,
        memory: Memory,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ):
        return self.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=True,
            **memory.decoder_kwargs(),
        )

    def token_logprobs(
        self, memory: Memory, ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """log p(token_t | tokens_<t, image) for t >= 1 (B, T-1): what PPO and explanations use."""
        logits = self.decode(memory, ids, attention_mask).logits[:, :-1].float()
        return torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None])[..., 0]

    # -- contrastive alignment ---------------------------------------------------------------
    def image_embedding(self, memory: Memory) -> torch.Tensor:
        weights = memory.mask[..., None].to(memory.tokens.dtype)
        pooled = (memory.tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
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
        memory: Memory | None = None,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss: next-token cross-entropy + weighted InfoNCE."""
        memory = memory if memory is not None else self.encode(images, present)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        out = self.decode(memory, input_ids, attention_mask, labels)
        img = self.image_embedding(memory)
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
    cfg = ReportModelConfig.from_dict(read_config(folder, REPORT_TYPE))
    vocab = ReportVocab.load(folder)
    if len(vocab) != cfg.vocab_size:
        raise InputError(
            folder, f"vocabulary has {len(vocab)} tokens but the model expects {cfg.vocab_size}"
        )
    model = ReportModel(cfg)
    load_weights(model, folder, device, derived=(TIED,))
    model.decoder.tie_weights()
    model.attach_vocab(vocab)
    return model.to(device).eval(), vocab
