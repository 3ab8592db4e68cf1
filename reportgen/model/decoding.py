"""Template-constrained decoding as a transformers LogitsProcessor.

Every decoding strategy transformers offers (greedy, beam, sampling) calls the processor
at each step, so each of them can only write what the template automaton allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from reportgen.model.copying import Memory
from reportgen.model.grammar import TemplateGrammar
from reportgen.model.modeling import ReportModel
from reportgen.model.vocab import ReportVocab


class TemplateLogitsProcessor(LogitsProcessor):
    """Sets every token the template does not allow next to -inf."""

    def __init__(self, grammar: TemplateGrammar):
        self.grammar = grammar
        self.eos = grammar.vocab.eos_id
        self.pad = grammar.vocab.pad_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids.tolist()):
            body = ids[1:]  # after <bos>
            # finished rows are padded by generate
            allowed = [self.pad, self.eos] if self.eos in body else list(self.grammar.allowed(body))
            mask[row, allowed] = 0.0
        return scores + mask


@dataclass
class Drafted:
    """One generated token sequence with what the evaluation and the report need."""

    ids: list[int]  # without <bos>
    probs: list[torch.Tensor]  # per generated step: distribution over the allowed tokens


@torch.no_grad()
def draft_tokens(
    model: ReportModel,
    vocab: ReportVocab,
    grammar: TemplateGrammar | None,
    memory: Memory | None,
    *,
    num_beams: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    max_new_tokens: int | None = None,
) -> list[Drafted]:
    """Generate under the template's constraints (`grammar=None`: unconstrained baseline)."""
    if memory is None:  # generate() would silently run unconditioned
        raise ValueError("generation needs the image tokens (encoder_hidden_states)")
    b = memory.tokens.shape[0]
    start = torch.full((b, 1), vocab.bos_id, dtype=torch.long, device=memory.tokens.device)
    processors = LogitsProcessorList(
        [TemplateLogitsProcessor(grammar)] if grammar is not None else []
    )
    out = model.decoder.generate(
        input_ids=start,
        attention_mask=torch.ones_like(start),
        logits_processor=processors,
        max_new_tokens=max_new_tokens or model.cfg.n_positions - 1,
        num_beams=num_beams,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_k=None,
        top_p=None,
        eos_token_id=vocab.eos_id,
        pad_token_id=vocab.pad_id,
        bos_token_id=vocab.bos_id,
        output_scores=True,
        return_dict_in_generate=True,
        **memory.decoder_kwargs(),
    )
    sequences = out.sequences[:, 1:].tolist()
    steps = [torch.softmax(s.float(), -1) for s in out.scores] if num_beams == 1 else []
    drafts = []
    for row, ids in enumerate(sequences):
        if vocab.eos_id in ids:
            ids = ids[: ids.index(vocab.eos_id) + 1]
        drafts.append(Drafted(ids=ids, probs=[p[row] for p in steps[: len(ids)]]))
    return drafts
