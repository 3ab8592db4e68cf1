"""The decoder's memory and a GPT-2 that can copy from it (a pointer-generator head).

Measured values (a candidate's side, clock face and size) sit in the decoder's memory as
tokens spelled with the decoder's own embeddings. Cross-attention alone learned to read
them only loosely (clock face measured right 34/34 times, written right 7/34). The
pointer-generator of See et al. (2017) makes "write the value you point to" one step:

    p(token) = (1 - g) * softmax(logits) + g * sum_j a_j [token == copy_id_j]

with a gate g and an attention a over the memory tokens that can be copied, both read
from the decoder's last hidden state. The mixture is returned as log-probabilities in
the place of the logits, so every transformers decoding strategy, the template's
LogitsProcessor, the loss and PPO work on it unchanged.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions


class Memory(NamedTuple):
    """What the decoder cross-attends to: tokens, which are real, which can be copied."""

    tokens: torch.Tensor  # (B, M, n_embd)
    mask: torch.Tensor  # (B, M) bool
    copy_ids: torch.Tensor | None = None  # (B, M) vocabulary id a token spells, -1: none

    def cat(self, other: Memory) -> Memory:
        """`self` followed by `other` (copy ids -1 where a part has none)."""
        ids = None
        if self.copy_ids is not None or other.copy_ids is not None:
            ids = torch.cat([_ids_or_none(self), _ids_or_none(other)], 1)
        return Memory(
            torch.cat([self.tokens, other.tokens], 1), torch.cat([self.mask, other.mask], 1), ids
        )

    def select(self, index) -> Memory:
        """The rows `index` of the batch."""
        ids = None if self.copy_ids is None else self.copy_ids[index]
        return Memory(self.tokens[index], self.mask[index], ids)

    def decoder_kwargs(self) -> dict:
        """Keyword arguments of the decoder's forward (and of `generate`)."""
        kwargs = {"encoder_hidden_states": self.tokens, "encoder_attention_mask": self.mask.long()}
        if self.copy_ids is not None:
            kwargs["copy_ids"] = self.copy_ids
        return kwargs


def _ids_or_none(memory: Memory) -> torch.Tensor:
    if memory.copy_ids is not None:
        return memory.copy_ids
    return torch.full(memory.mask.shape, -1, dtype=torch.long, device=memory.mask.device)


class CopyingGPT2LMHeadModel(GPT2LMHeadModel):
    """GPT-2 with cross-attention whose next-token distribution can copy memory tokens.

    Without `copy_ids` (or where a study has nothing to copy) it is GPT2LMHeadModel.
    With them, `logits` are the mixture's log-probabilities (each row sums to one in
    probability), which softmax, masking and temperature treat as logits.
    """

    GATE_BIAS = -2.0  # starts as a language model: the gate opens as it learns to copy

    def __init__(self, config):
        super().__init__(config)
        n = config.n_embd
        self.copy_query = nn.Linear(n, n, bias=False)
        self.copy_key = nn.Linear(n, n, bias=False)
        self.copy_gate = nn.Linear(n, 1)
        nn.init.zeros_(self.copy_gate.weight)
        nn.init.constant_(self.copy_gate.bias, self.GATE_BIAS)

    def forward(
        self,
        input_ids=None,
        cache=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        use_cache=None,
        logits_to_keep=0,
        copy_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithCrossAttentions:
        out = self.transformer(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif not isinstance(logits_to_keep, int):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        if copy_ids is not None and bool((copy_ids >= 0).any()):
            logits = self.copy_mixture(hidden, logits, encoder_hidden_states, copy_ids)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )

    def copy_mixture(
        self,
        hidden: torch.Tensor,
        logits: torch.Tensor,
        memory: torch.Tensor,
        copy_ids: torch.Tensor,
    ) -> torch.Tensor:
        """log((1 - g) p_vocab + g p_copy), (B, T, V)."""
        keys, ids, copyable = self.copyable(memory, copy_ids)
        scores = self.copy_query(hidden) @ self.copy_key(keys).transpose(1, 2)
        scores = (scores / math.sqrt(hidden.shape[-1])).float()
        can = copyable.any(1)  # a study without copyable tokens keeps the plain LM
        hide = ~copyable & can[:, None]
        attention = torch.softmax(scores.masked_fill(hide[:, None, :], float("-inf")), -1)
        p_copy = torch.zeros_like(logits, dtype=torch.float32).scatter_add_(
            -1, ids[:, None, :].expand(-1, hidden.shape[1], -1), attention
        )
        gate = self.copy_gate(hidden).float()
        can = can[:, None, None]
        log_gate = torch.where(can, F.logsigmoid(gate), float("-inf"))
        log_rest = torch.where(can, F.logsigmoid(-gate), 0.0)
        log_copy = torch.log(p_copy.clamp_min(1e-30))  # finite: no 0 * inf in the gradient
        return torch.logaddexp(log_rest + F.log_softmax(logits.float(), -1), log_gate + log_copy)

    @staticmethod
    def copyable(memory: torch.Tensor, copy_ids: torch.Tensor):
        """The memory tokens that can be copied, gathered to the front: (keys, ids, valid)."""
        valid = copy_ids >= 0
        width = max(1, int(valid.sum(1).max()))
        order = torch.argsort(valid.to(torch.int8), dim=1, descending=True, stable=True)
        order = order[:, :width]
        keys = torch.gather(memory, 1, order[..., None].expand(-1, -1, memory.shape[-1]))
        return keys, torch.gather(copy_ids, 1, order).clamp(min=0), torch.gather(valid, 1, order)
