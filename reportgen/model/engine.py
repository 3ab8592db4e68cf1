"""The one training engine: every fit in the product takes its optimiser steps here.

The detector and segmenter, the readouts, the staging readers and their outline
pretraining, the body-region reader, the report decoder, the MAE and the PPO policy
each draw their own batches and compute their own loss (that is what differs between
them); what a step *does* with a loss is the same everywhere and lives in `Optimiser`:
zero the gradients, back-propagate, clip if asked, step, advance the schedule. So there
is one place that calls `.backward()`, one AdamW set-up (`adamw`) and one place to add
gradient accumulation, AMP loss scaling or logging of the gradient norm, for every model.

Drafting never imports this module (an import-linter contract).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LRScheduler

Params = Iterable[torch.nn.Parameter] | Iterable[dict]


def adamw(
    params: Params,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """The product's optimiser: AdamW (`params` may be parameter groups with their own
    weight decay, as the MAE's are)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)


ONE_CYCLE_WARMUP = 0.1  # share of the steps spent warming up


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int) -> LRScheduler:
    """One-cycle schedule with a 10% warm-up (the staging readers' outline and its
    pretraining). OneCycleLR divides by its warm-up's length less one step, so a run of 10
    steps or fewer (a quick check: `--fine-steps 10`) stopped with ZeroDivisionError; such
    a run peaks after its first step instead, and one of 1 or 2 steps keeps `lr` throughout."""
    if total_steps < 3:
        for group in optimizer.param_groups:
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    warmup = ONE_CYCLE_WARMUP if ONE_CYCLE_WARMUP * total_steps > 1 else 2.0 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, lr, total_steps=total_steps, pct_start=warmup
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> LRScheduler:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total` (the MAE and
    the report decoder)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))


def lr_factor(step: int, total: int, warmup: int) -> float:
    """The learning-rate multiplier of `warmup_cosine` at `step`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Optimiser:
    """An optimiser, its schedule (if any) and its gradient clipping (if any): `step(loss)`
    takes one training step. `clip` bounds the global gradient norm of `clip_params`
    (default: every parameter the optimiser updates)."""

    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None = None
    clip: float | None = None
    clip_params: list[torch.nn.Parameter] | None = None

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self._clipped(), self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def _clipped(self) -> list[torch.nn.Parameter]:
        if self.clip_params is not None:
            return self.clip_params
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """What resuming needs (optimiser and schedule), for the checkpoint's trainer state."""
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
