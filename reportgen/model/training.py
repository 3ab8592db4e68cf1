"""`reportgen train`: fit the report decoder (and optionally the encoder) on studies with reports.

With a frozen encoder (the default) the image tokens of every study are computed once;
sequence dropout then hides a random subset of sequences from the decoder's
cross-attention, so the model learns to report from any subset. With a trainable
encoder the dropped sequences are removed before the encoder, as at inference.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from pretrain_mae.data import collate
from pretrain_mae.masking import drop_groups, drop_sequences
from reportgen.checkpoint import weights_sha256, write_model_card
from reportgen.errors import ConfigError, InputError
from reportgen.io.sequences import family_groups
from reportgen.model.config import PRESETS, ReportModelConfig, input_grid
from reportgen.model.copying import Memory
from reportgen.model.data import load_examples
from reportgen.model.detector_training import fit_detector
from reportgen.model.engine import Optimiser, adamw, warmup_cosine
from reportgen.model.evidence import visible
from reportgen.model.grammar import TemplateGrammar
from reportgen.model.mae_training import load_pretrained
from reportgen.model.modeling import ReportModel, load_model, save_model
from reportgen.model.roi_training import (
    CrossFittedReadouts,
    batch_regions,
    cache_regions,
    detection_summary,
    findings_in_candidate_order,
    fit_readouts,
    load_detector_from,
    pooled_arrays,
    segmenter_windows,
)
from reportgen.model.train_args import ReportTrainArgs
from reportgen.model.vocab import ReportVocab, train_sentencepiece
from reportgen.render.text import render_text
from reportgen.report import load_template
from reportgen.report.assessable import restrict_to_study

# The detector trains on random windows of the encoder grid this size (voxels).
DETECTOR_WINDOW = (48, 48, 32)
# Which measured evidence a template's domain has (reportgen.model.evidence).
EVIDENCE_BY_DOMAIN = {"breast": "breast"}


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def train_report_model(args: ReportTrainArgs, log=print) -> Path:
    """Train and write the model directory `args.out`; returns it."""
    from tqdm.auto import tqdm

    last = args.out / "last"
    if args.resume and not last.exists():
        raise InputError(args.out, "nothing to resume (no 'last' checkpoint here)")
    if not args.resume and (args.out / "config.json").exists():
        raise InputError(args.out, "already holds a model; choose a new --out or pass --resume")
    encoder = load_pretrained(args.encoder)
    enc_cfg = encoder.cfg
    if args.resume:
        model, vocab = load_model(last)
        roi = model.cfg.roi
    else:
        roi = PRESETS[args.config].get("roi") if args.roi else None
    if (
        roi is not None
        and (args.freeze or PRESETS[args.config].get("freeze", "frozen")) != "frozen"
    ):
        raise ConfigError(
            "lesion-centred reading trains with a frozen encoder (--freeze frozen or --no-roi)"
        )
    shape, spacing = input_grid(enc_cfg.to_dict(), roi)
    examples = load_examples(
        args.data,
        replace(enc_cfg, grid_shape=shape, grid_spacing=spacing),
        args.cache_dir or args.out / "cache",
        args.template,
    )
    template = load_template(examples.reports[0].template.id)
    if args.resume:
        cfg = model.cfg
    else:
        texts = [render_text(r, lang, template) for r in examples.reports for lang in ("en", "zh")]
        texts += [r.comment for r in examples.reports if r.comment]
        vocab = ReportVocab.for_template(template, train_sentencepiece(texts, args.sp_vocab_size))
        if roi is not None and args.evidence and template.domain in EVIDENCE_BY_DOMAIN:
            roi = {**roi, "evidence": EVIDENCE_BY_DOMAIN[template.domain]}
        copying = args.copy_values and roi is not None and bool(roi.get("evidence"))
        overrides = dict(PRESETS[args.config], roi=roi, copy_values=copying, readout=copying)
        if args.freeze:
            overrides["freeze"] = args.freeze
        if args.sequence_dropout is not None:
            overrides["sequence_dropout"] = args.sequence_dropout
        cfg = ReportModelConfig(
            template=template.id,
            encoder=enc_cfg.to_dict(),
            encoder_source_sha256=weights_sha256(args.encoder),
            vocab_size=len(vocab),
            use_multiscale=bool(enc_cfg.multiscale_layers),
            **overrides,
        )
        torch.manual_seed(args.seed)
        model = ReportModel(cfg)
        missing = model.encoder.load_state_dict(encoder.state_dict(), strict=False).missing_keys
        if missing:
            raise InputError(args.encoder, f"encoder weights incomplete: {missing[:3]}")
        if cfg.roi is not None:
            model.init_roi_reader_from_encoder()
        model.attach_vocab(vocab)
    n = len(examples.reports)
    reports = examples.reports
    regions = None
    cross_fitted: CrossFittedReadouts | None = None
    groups = family_groups(enc_cfg.sequences)
    if cfg.roi is not None:
        coarse, present, lesion = pooled_arrays(model, examples.images)
        if args.detector_from is not None:
            load_detector_from(model, args.detector_from)
            log(f"lesion detector taken from {args.detector_from}")
        elif not args.resume:
            torch.manual_seed(args.seed)
            loss = fit_detector(
                model.detector,
                coarse,
                present,
                lesion,
                [examples.images[i]["has_mask"] for i in range(n)],
                args.detector_steps,
                8,
                2e-3,
                args.seed,
                args.progress,
                window=DETECTOR_WINDOW,
                groups=groups,
            )
            log(f"lesion detector trained ({args.detector_steps} steps, final loss {loss:.3f})")
            if model.has_evidence:
                windows, flags, targets = segmenter_windows(
                    model, examples.images, coarse, present, args.seed
                )
                loss = fit_detector(
                    model.segmenter,
                    windows,
                    flags,
                    targets,
                    [True] * len(windows),
                    args.segmenter_steps,
                    16,
                    2e-3,
                    args.seed,
                    args.progress,
                    desc="segmenter",
                    groups=groups,
                )
                del windows, flags, targets
                log(
                    f"lesion segmenter trained ({args.segmenter_steps} steps, final loss "
                    f"{loss:.3f})"
                )
        regions = cache_regions(model, examples.images, coarse, present, args.progress)
        log(detection_summary(regions, [len(r.findings) for r in reports]))
        if model.has_evidence and model.cfg.readout:
            if not args.resume:
                for name, accuracy in fit_readouts(model, regions, reports, args.seed).items():
                    log(f"{name} readout fit (on its training rows: {accuracy})")
            cross_fitted = CrossFittedReadouts(model, regions, reports, args.seed)
        reports = [
            findings_in_candidate_order(r, m) for r, m in zip(reports, regions.matched, strict=True)
        ]
    grammar = TemplateGrammar(template, vocab)
    targets = TargetReports(grammar, reports, list(enc_cfg.sequences), vocab.pad_id)
    longest = max(len(grammar.encode(r)) for r in reports)
    if longest > cfg.n_positions:
        raise InputError(
            args.data, f"a report needs {longest} tokens; the config allows {cfg.n_positions}"
        )

    cached_memory = None
    if cfg.freeze == "frozen":  # image tokens once; the trainable projection runs per step
        cached_memory = (
            _encode_all(model, examples.images, n)
            if regions is None
            else _encode_all_coarse(model, coarse, present)
        )

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, args.lr, args.weight_decay)
    scheduler = warmup_cosine(optimizer, args.steps, max(1, args.steps // 20))
    opt = Optimiser(optimizer, scheduler, clip=1.0, clip_params=params)
    start_step = 0
    if args.resume:
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = state["step"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_args.json").write_text(json.dumps(args.to_dict(), indent=2))
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(args.out / "tb"), purge_step=start_step)
    bar = tqdm(
        total=args.steps, initial=start_step, desc="train", unit="step", disable=not args.progress
    )
    model.train()
    t0, seen = time.perf_counter(), 0
    out = {}
    for step in range(start_step, args.steps):
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(n, (min(args.batch_size, n),), generator=g).tolist()
        if cached_memory is not None:
            feats, valid, seq_ids = (t[idx] for t in cached_memory)
            seq_present = (
                F.one_hot(seq_ids, len(enc_cfg.sequences)).bool() & valid[..., None]
            ).any(1)
            kept = drop_sequences(
                seq_present, cfg.sequence_dropout, torch.rand(seq_present.shape, generator=g)
            )
            kept = drop_groups(
                kept, groups, cfg.family_dropout, torch.rand((len(idx), len(groups)), generator=g)
            )
            valid = valid & torch.gather(kept, 1, seq_ids)
            memory = Memory(model.memory_proj(feats), valid)
            if regions is not None:
                memory = _with_regions(model, memory, regions, idx, kept, cross_fitted)
            ids, attn = targets.batch(idx, kept)
            out = model(None, None, ids, attn, memory=memory)
        else:
            batch = collate([examples.images[i] for i in idx])
            present = drop_sequences(
                batch["present"],
                cfg.sequence_dropout,
                torch.rand(batch["present"].shape, generator=g),
            )
            present = drop_groups(
                present,
                groups,
                cfg.family_dropout,
                torch.rand((len(idx), len(groups)), generator=g),
            )
            ids, attn = targets.batch(idx, present)
            out = model(batch["image"], present, ids, attn)
        opt.step(out["loss"])
        seen += len(idx)
        rate = seen / max(1e-9, time.perf_counter() - t0)
        bar.set_postfix(loss=f"{out['loss'].item():.3f}", studies_s=f"{rate:.1f}")
        bar.update(1)
        if (step + 1) % 10 == 0:
            for key in ("loss", "lm_loss", "nce_loss"):
                writer.add_scalar(f"{key}/train", out[key].item(), step + 1)
        if (step + 1) % args.checkpoint_every == 0 and step + 1 < args.steps:
            _checkpoint(model, vocab, optimizer, scheduler, step + 1, last)
    bar.close()
    writer.close()
    model.eval()
    digest = save_model(model, vocab, args.out)
    summary = {
        "template": template.id,
        "studies": n,
        "steps": args.steps,
        "final_loss": round(float(out["loss"].detach()), 4) if out else None,
        "weights_sha256": digest,
        "encoder": str(args.encoder),
        "encoder_sha256": cfg.encoder_source_sha256,
        "vocab_size": len(vocab),
        "sentencepiece_pieces": vocab.sp_size,
    }
    (args.out / "training_summary.json").write_text(json.dumps(summary, indent=2))
    write_card(args.out, cfg, summary, args)
    shutil.rmtree(last, ignore_errors=True)
    if args.cache_dir is None:  # the default cache lives in the model folder only while training
        shutil.rmtree(args.out / "cache", ignore_errors=True)
    log(f"report model ({template.id}) trained on {n} studies; saved in {args.out}")
    return args.out


@torch.no_grad()
def _encode_all(
    model: ReportModel, images, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encoder features, validity and sequence index of every token of every study."""
    model.eval()
    feats, valids, seqs = [], [], []
    for start in range(0, n, 16):
        batch = collate([images[i] for i in range(start, min(n, start + 16))])
        enc = model.encoder.forward_features(batch["image"], batch["present"])
        f = enc.features
        if model.cfg.use_multiscale and enc.multiscale:
            f = torch.cat([f, *enc.multiscale], -1)
        feats.append(f)
        valids.append(enc.valid)
        seqs.append(enc.sequence_ids)
    return _padded(feats, valids, seqs)


def _padded(feats: list, valids: list, seqs: list):
    """Encoder outputs of several batches, padded to one token count and stacked."""
    width = max(f.shape[1] for f in feats)
    return (
        torch.cat([F.pad(f, (0, 0, 0, width - f.shape[1])) for f in feats]),
        torch.cat([F.pad(v, (0, width - v.shape[1])) for v in valids]),
        torch.cat([F.pad(s, (0, width - s.shape[1])) for s in seqs]),
    )


@torch.no_grad()
def _encode_all_coarse(model: ReportModel, coarse: torch.Tensor, present: torch.Tensor):
    """`_encode_all` for studies already pooled to the encoder grid."""
    model.eval()
    feats, valids, seqs = [], [], []
    for start in range(0, len(coarse), 16):
        enc = model.encoder.forward_features(
            coarse[start : start + 16].float(), present[start : start + 16]
        )
        feats.append(enc.features)
        valids.append(enc.valid)
        seqs.append(enc.sequence_ids)
    return _padded(feats, valids, seqs)


class TargetReports:
    """Each training report as the token sequence a draft from the sequences left after
    dropout should be: fields those sequences cannot show (kinetics and BPE without DCE,
    diffusion without DWI/ADC) are left out, as `TemplateGrammar.for_sequences` leaves
    them out at inference. Trained on the full report instead, the decoder learned to
    write kinetics with its DCE evidence hidden, and so to ignore that evidence: on
    validation phantoms it agreed with the measured kinetics category 4 times in 10."""

    def __init__(self, grammar: TemplateGrammar, reports: list, names: list[str], pad_id: int):
        self.grammar, self.reports, self.names, self.pad_id = grammar, reports, names, pad_id
        self._encoded: dict[tuple[int, frozenset[str]], list[int]] = {}

    def encode(self, study: int, kept: list[bool]) -> list[int]:
        """The report as the kept sequences can show it (`restrict_to_study`: without
        contrast, a non-mass enhancement is no finding and BI-RADS is 0), as tokens."""
        used = [name for name, k in zip(self.names, kept, strict=True) if k]
        grammar = self.grammar.for_sequences(used)
        key = (study, frozenset(used))
        if key not in self._encoded:
            seen = restrict_to_study(self.reports[study], grammar.template, used)
            self._encoded[key] = grammar.encode(seen)
        return self._encoded[key]

    def batch(self, idx: list[int], kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and attention mask for studies `idx` with sequences `kept` (B, S)."""
        rows = [self.encode(i, k) for i, k in zip(idx, kept.tolist(), strict=True)]
        return _pad(rows, self.pad_id)


def _with_regions(
    model: ReportModel,
    memory,
    regions,
    idx: list[int],
    kept: torch.Tensor,
    cross_fitted: CrossFittedReadouts | None = None,
):
    """Append the candidate (and tissue) tokens; sequence dropout applies to them as to the
    whole study: a dropped sequence's zoomed tokens and measurements are hidden too, and
    the readouts (out of fold) read what is left."""
    batch = batch_regions(regions, idx)
    valid = batch["valid"]
    kept_per_crop = kept[:, None].expand(-1, valid.shape[1], -1)[valid]
    stem_valid = batch["stem_valid"] & kept_per_crop[:, model.roi_seq_ids]
    measured = batch["measured"]
    if measured is not None:
        seen = visible(model.candidate_needs.numpy(), kept.numpy())
        measured = measured * torch.from_numpy(seen)[:, None, :].to(measured.dtype)
    tissue = batch["tissue"]
    if tissue is not None:
        seen = torch.from_numpy(visible(model.tissue_needs.numpy(), kept.numpy()))
        tissue = tissue * seen.to(tissue.dtype)
    read_candidates = read_tissue = sizes = None
    if cross_fitted is not None and measured is not None and tissue is not None:
        read_candidates, read_tissue, sizes = cross_fitted.read(idx, measured, tissue)
    memory = memory.cat(
        model.roi_memory(
            batch["stem"],
            stem_valid,
            batch["geometry"],
            valid,
            measured,
            batch["pointers"],
            read_candidates,
            sizes,
        )
    )
    if tissue is not None:
        memory = model.with_tissue(memory, tissue, read_tissue)
    return memory


def _checkpoint(model, vocab, optimizer, scheduler, step: int, last: Path) -> None:
    tmp = last.with_name("last.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, vocab, tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
        tmp / "trainer_state.pt",
    )
    shutil.rmtree(last, ignore_errors=True)
    tmp.rename(last)


def write_card(folder: Path, cfg: ReportModelConfig, summary: dict, args: ReportTrainArgs) -> None:
    write_model_card(
        folder,
        f"{cfg.name} ({cfg.template})",
        [
            f"""Template: `{cfg.template}`; vocabulary {summary["vocab_size"]} tokens
  ({summary["sentencepiece_pieces"]} sentencepiece pieces for comments).""",
            f"Encoder: MAE checkpoint `{args.encoder}` (sha256 {cfg.encoder_source_sha256}), {cfg.freeze}.",
            f"Decoder: GPT-2 with cross-attention, {cfg.n_layer} layers, width {cfg.n_embd}.",
            _reading(cfg),
            f"""Trained on {summary["studies"]} studies from `{args.data}` for {summary["steps"]} steps
  (final loss {summary["final_loss"]}).""",
        ],
    )


def _reading(cfg: ReportModelConfig) -> str:
    if cfg.roi is None:
        return "Reads the whole study on the encoder grid."
    roi = cfg.roi
    _, spacing = cfg.input_grid()
    return (
        f"Lesion-centred reading: studies prepared at {spacing[0]:g} mm; a 3D U-Net detector "
        f"proposes up to {roi['max_candidates']} lesion candidates, each read as a "
        f"{'x'.join(map(str, roi['roi_shape']))}-voxel crop by the encoder's frozen lower blocks "
        f"and {cfg.trainable_blocks} fine-tuned copies of its last blocks."
        + (
            f" Outlines the segmenter scores under {roi['min_outline_score']:g} are dropped; "
            "each candidate is measured (size, side, clock face, signal, curve, form)."
            if roi["evidence"]
            else ""
        )
        + (
            " Readouts fit on the training reports turn the measures into the template's "
            "words (tissue composition, BPE, lesion descriptors) as tokens the decoder "
            "can copy, and correct the measured size; a finding states the size measured "
            "at the side and clock face it states."
            if cfg.readout
            else ""
        )
    )
