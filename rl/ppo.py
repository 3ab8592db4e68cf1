"""PPO on the report decoder's token policy, under the template's constraints.

The policy is the *constrained* one: at each step the logits of tokens the template
automaton forbids are masked before the softmax, exactly as when sampling, so the
log-probabilities PPO uses are those of the distribution the rollouts came from. The
encoder (and its projection) stay frozen: image memory is computed once per study.
Per-token reward = -beta * (log pi - log pi_ref) with the clinical reward added on the
last token; GAE (gamma, lambda), whitened advantages, clipped policy and value losses,
an entropy bonus, and Ziegler et al.'s adaptive KL coefficient.

With `samples_per_study` k > 1 each study is drafted k times and each draft's clinical
reward is taken relative to the mean of the study's other k - 1 drafts (the RLOO
baseline of Ahmadian et al., 2024): the reward then says which drafts of *this* study
were better, not which studies are easy, which a value head fed a few dozen images
cannot learn. The baseline does not depend on the draft it is subtracted from, so the
policy gradient stays unbiased.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from trl.trainer.utils import disable_dropout_in_model, entropy_from_logits, selective_log_softmax

from reportgen.model.copying import Memory
from reportgen.model.decoding import Drafted, draft_tokens
from reportgen.model.engine import Optimiser, adamw
from reportgen.model.generate import ReportGenerator
from reportgen.report import Report

MASKED = -1e9  # not -inf: keeps p*log p finite for the entropy of the masked distribution


@dataclass
class PPOConfig:
    steps: int = 200
    batch_size: int = 8  # rollouts per step
    samples_per_study: int = 1  # k drafts per study, leave-one-out baseline when k > 1
    ppo_epochs: int = 2
    minibatch_size: int = 4
    lr: float = 5e-5
    clip_range: float = 0.2
    value_clip_range: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    gamma: float = 1.0
    lam: float = 0.95
    init_kl_coef: float = 0.05
    target_kl: float = 1.0  # per-sequence KL (nats) the adaptive controller aims for
    kl_horizon: int = 1000
    adaptive_kl: bool = True
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class ValueHead(nn.Module):
    """V(prefix) from the decoder's last hidden state."""

    def __init__(self, width: int):
        super().__init__()
        self.head = nn.Linear(width, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).squeeze(-1)


class AdaptiveKL:
    """beta <- beta * (1 + clip(KL/target - 1, -0.2, 0.2) * n / horizon)."""

    def __init__(self, value: float, target: float, horizon: int, adaptive: bool = True):
        self.value, self.target, self.horizon, self.adaptive = value, target, horizon, adaptive

    def update(self, kl: float, n: int) -> None:
        if self.adaptive:
            error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
            self.value *= 1 + error * n / self.horizon


@dataclass
class Rollout:
    ids: torch.Tensor  # (B, T) with <bos>, padded
    attention: torch.Tensor  # (B, T)
    response: torch.Tensor  # (B, T-1) 1 where position t predicts a generated token
    allowed: torch.Tensor  # (B, T-1, V) tokens the template allowed at each step
    memory: Memory
    reports: list[Report | None]
    drafted: list[Drafted]


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = (values * mask).sum() / mask.sum()
    var = ((values - mean) ** 2 * mask).sum() / mask.sum()
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def leave_one_out(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Each score minus the mean of the other k - 1 scores of its group (consecutive k)."""
    if k == 1:
        return scores
    groups = scores.view(-1, k)
    others = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - others).flatten()


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over the response tokens."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, advantages + values


class PPOTrainer:
    """One policy (the generator's decoder), a frozen reference copy, and a value head."""

    def __init__(
        self,
        generator: ReportGenerator,
        config: PPOConfig,
        reference: nn.Module | None = None,
    ):
        self.generator = generator
        self.cfg = config
        self.policy = generator.model.decoder
        self.reference = reference or copy.deepcopy(self.policy)
        self.reference.eval().requires_grad_(False)
        disable_dropout_in_model(self.policy)  # the first PPO epoch must see ratio == 1
        for p in generator.model.parameters():
            p.requires_grad = False
        for p in self.policy.parameters():
            p.requires_grad = True
        self.value_head = ValueHead(generator.model.cfg.n_embd)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = adamw([*params, *self.value_head.parameters()], config.lr, 0.0)
        self.optimiser = Optimiser(
            self.optimizer,
            clip=config.max_grad_norm,
            clip_params=[*self.policy.parameters(), *self.value_head.parameters()],
        )
        self.kl = AdaptiveKL(
            config.init_kl_coef, config.target_kl, config.kl_horizon, config.adaptive_kl
        )
        self.step = 0

    # -- rollouts -----------------------------------------------------------------------
    @torch.no_grad()
    def memory(self, images: torch.Tensor, present: torch.Tensor) -> Memory:
        return self.generator.model.encode(images, present)

    def allowed_masks(self, ids: list[list[int]], length: int) -> torch.Tensor:
        vocab_size = self.generator.model.cfg.vocab_size
        grammar = self.generator.grammar
        allowed = torch.zeros(len(ids), length - 1, vocab_size, dtype=torch.bool)
        for row, seq in enumerate(ids):
            body = seq[1:]
            for t in range(len(body)):
                allowed[row, t, list(grammar.allowed(body[:t]))] = True
            allowed[row, len(body) :, :] = True  # padding positions: unused, keep finite
        return allowed

    @torch.no_grad()
    def rollout(self, memory: Memory, study_ids: Sequence[str]):
        self.policy.eval()
        drafted = draft_tokens(
            self.generator.model,
            self.generator.vocab,
            self.generator.grammar,
            memory,
            do_sample=True,
            temperature=self.cfg.temperature,
        )
        bos, pad = self.generator.vocab.bos_id, self.generator.vocab.pad_id
        seqs = [[bos, *d.ids] for d in drafted]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
        reports = [
            self.generator.report_of(study_id, d)
            for study_id, d in zip(study_ids, drafted, strict=True)
        ]
        return Rollout(
            ids=ids,
            attention=attention,
            response=attention[:, 1:].clone().float(),
            allowed=self.allowed_masks(seqs, length),
            memory=memory,
            reports=reports,
            drafted=drafted,
        )

    def _forward(self, model: nn.Module, r: Rollout, index, with_value: bool):
        out = model(
            input_ids=r.ids[index],
            attention_mask=r.attention[index],
            **r.memory.select(index).decoder_kwargs(),
            output_hidden_states=with_value,
        )
        logits = (out.logits[:, :-1].float() / self.cfg.temperature).masked_fill(
            ~r.allowed[index], MASKED
        )
        logp = selective_log_softmax(logits, r.ids[index][:, 1:])
        if not with_value:
            return logp, None, None
        entropy = entropy_from_logits(logits)
        values = self.value_head(out.hidden_states[-1][:, :-1].float())
        return logp, entropy, values

    # -- one PPO step -------------------------------------------------------------------
    def train_step(
        self,
        images: torch.Tensor,
        present: torch.Tensor,
        study_ids: Sequence[str],
        score: Callable[[list[Report | None], Sequence[str]], list[float]],
    ) -> dict[str, float]:
        """Sample (`samples_per_study` drafts of each study), score, and update; returns
        the step's statistics."""
        cfg = self.cfg
        k = cfg.samples_per_study
        torch.manual_seed(cfg.seed * 100_003 + self.step)  # step-derived: resume is exact
        random.seed(cfg.seed * 100_003 + self.step)
        memory = self.memory(images, present)
        if k > 1:
            memory = memory.select(torch.arange(len(study_ids)).repeat_interleave(k))
            study_ids = [i for i in study_ids for _ in range(k)]
        r = self.rollout(memory, study_ids)
        raw = torch.tensor(score(r.reports, study_ids), dtype=torch.float32)
        scores = leave_one_out(raw, k)
        everything = torch.arange(len(study_ids))
        with torch.no_grad():
            old_logp, _, old_values = self._forward(self.policy, r, everything, True)
            ref_logp, _, _ = self._forward(self.reference, r, everything, False)
        mask = r.response
        kl_tokens = (old_logp - ref_logp) * mask
        rewards = -self.kl.value * kl_tokens
        last = (mask.sum(1) - 1).long()
        rewards[torch.arange(len(last)), last] += scores
        old_values = old_values * mask
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask) * mask

        self.policy.train()
        stats: dict[str, list[float]] = {
            k: [] for k in ("pg", "vf", "entropy", "clipfrac", "approx_kl")
        }
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(study_ids))
            for start in range(0, len(order), cfg.minibatch_size):
                index = order[start : start + cfg.minibatch_size]
                m = mask[index]
                logp, entropy, values = self._forward(self.policy, r, index, True)
                ratio = torch.exp(logp - old_logp[index])
                adv = advantages[index]
                pg = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                )
                v_clipped = old_values[index] + (values - old_values[index]).clamp(
                    -cfg.value_clip_range, cfg.value_clip_range
                )
                vf = 0.5 * torch.max(
                    (values - returns[index]) ** 2, (v_clipped - returns[index]) ** 2
                )
                n = m.sum().clamp(min=1)
                pg_loss = (pg * m).sum() / n
                vf_loss = (vf * m).sum() / n
                ent = (entropy * m).sum() / n
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * ent
                self.optimiser.step(loss)
                with torch.no_grad():
                    stats["pg"].append(float(pg_loss))
                    stats["vf"].append(float(vf_loss))
                    stats["entropy"].append(float(ent))
                    clipped = ((ratio - 1).abs() > cfg.clip_range).float()
                    stats["clipfrac"].append(float((clipped * m).sum() / n))
                    stats["approx_kl"].append(
                        float((((ratio - 1) - torch.log(ratio)) * m).sum() / n)
                    )
        kl_seq = float(kl_tokens.sum(1).mean())
        self.kl.update(kl_seq, len(study_ids))
        self.step += 1
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out.update(
            reward=float(raw.mean()),
            kl=kl_seq,
            kl_coef=self.kl.value,
            valid=float(np.mean([rep is not None for rep in r.reports])),
            length=float(mask.sum(1).mean()),
        )
        if not all(math.isfinite(v) for v in out.values()):
            raise FloatingPointError(f"PPO step {self.step} produced a non-finite statistic: {out}")
        return out

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "value_head": self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "kl_coef": self.kl.value,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl.value = float(state["kl_coef"])
        self.step = int(state["step"])
