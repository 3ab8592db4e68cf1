"""Fitting the readouts (`reportgen.model.readout`): each trained on the training studies'
measured values against what their reports state, under every way a family of
sequences can be missing. Drafting never imports this module."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.model.engine import Optimiser, adamw
from reportgen.model.readout import Readout, SizeReadout


def fit_readout(
    readout: Readout,
    features: torch.Tensor,
    targets: torch.Tensor,
    keep: list[torch.Tensor] | None = None,
    steps: int = 600,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, float]:
    """Fit on (N, F) features and (N, fields) value indices (-1: unknown, skipped), each
    row also under every (F,) feature-visibility mask of `keep` (sequences missing); full
    batch, seconds. Returns each field's training accuracy on the unmasked rows (for the
    log and the model card; held-out accuracy is `reportgen evaluate`'s)."""
    if not readout.fields or not len(features):
        return {}
    _restart(readout.heads, seed)
    features = features.float()
    rows = _under_each(features, keep)
    targets_all = targets.repeat(len(keep), 1) if keep else targets
    known = (targets_all >= 0) & readout.measured(rows)
    if not known.any():  # nothing stated to learn from: the readout stays untrained
        return {}
    used = rows[known.any(1)]
    readout.mean.copy_(used.mean(0))
    readout.std.copy_(used.std(0).clamp(min=1e-3))
    params = list(readout.heads.parameters())
    for p in params:
        p.requires_grad = True
    opt = Optimiser(adamw(params, lr, weight_decay=1e-3))
    for _ in range(steps):
        logits = readout.logits(rows)
        loss = sum(
            F.cross_entropy(logits[f][known[:, k]], targets_all[known[:, k], k])
            for k, f in enumerate(readout.fields)
            if known[:, k].any()
        )
        opt.step(loss)
    for p in params:
        p.requires_grad = False
    predicted = readout.predict(features)
    seen = (targets >= 0) & readout.measured(features)
    return {
        f: round(float((predicted[seen[:, k], k] == targets[seen[:, k], k]).float().mean()), 4)
        for k, f in enumerate(readout.fields)
        if seen[:, k].any()
    }


def _restart(net: nn.Module, seed: int) -> None:
    """From scratch: a refit (a cross-fitting fold) must not remember an earlier fit."""
    torch.manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()


def _under_each(features: torch.Tensor, keep: list[torch.Tensor] | None) -> torch.Tensor:
    """The rows once under each feature-visibility mask of `keep` (or as they are)."""
    return torch.cat([features * k.to(features.dtype) for k in keep]) if keep else features


def readout_targets(readout: Readout, stated: list[dict | None]) -> torch.Tensor:
    """(N, fields) index of each row's stated value (a report's or a finding's `fields`),
    -1 where not stated, unknown, or the row has nothing (None)."""
    out = torch.full((len(stated), len(readout.fields)), -1, dtype=torch.long)
    for i, fields in enumerate(stated):
        for k, f in enumerate(readout.fields):
            value = (fields or {}).get(f)
            if value is not None and str(value.value) in readout.values[f]:
                out[i, k] = readout.values[f].index(str(value.value))
    return out


def keep_patterns(needs: np.ndarray, groups: list[list[int]]) -> list[torch.Tensor]:
    """(F,) feature-visibility masks for a layout's `needs` (features x sequences): all
    sequences, each family missing, and each family alone."""
    from reportgen.model.evidence import visible

    s = needs.shape[1]
    kept = [np.ones(s, dtype=bool)]
    for group in groups:
        without = np.ones(s, dtype=bool)
        without[group] = False
        alone = np.zeros(s, dtype=bool)
        alone[group] = True
        kept += [without, alone]
    return [torch.from_numpy(visible(needs, k[None])[0]) for k in kept]


def fit_size_readout(
    readout: SizeReadout,
    features: torch.Tensor,
    sizes: torch.Tensor,
    keep: list[torch.Tensor] | None = None,
    steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
) -> float:
    """Fit on (N, F) features and (N,) stated sizes in mm (NaN: unknown, skipped), each
    row also under every feature-visibility mask of `keep`. Returns the training MAE in
    mm of the unmasked rows (held-out error is `reportgen evaluate`'s)."""
    readout.fitted.fill_(False)  # a fold copied from a fitted readout must not keep its fit
    known = torch.isfinite(sizes)
    features, sizes = features[known].float(), sizes[known].float()
    if not len(features):
        return float("nan")
    _restart(readout.net, seed)
    rows = _under_each(features, keep)
    targets = sizes.repeat(len(keep)) if keep else sizes
    readout.mean.copy_(rows.mean(0))
    readout.std.copy_(rows.std(0).clamp(min=1e-3))
    params = list(readout.net.parameters())
    for p in params:
        p.requires_grad = True
    opt = Optimiser(adamw(params, lr, weight_decay=0.1))
    log_measured, log_target = torch.log(readout.measured_mm(rows)), torch.log(targets)
    readout.train()
    for _ in range(steps):
        loss = F.smooth_l1_loss(readout.log_correction(rows) + log_measured, log_target, beta=0.05)
        opt.step(loss)
    readout.eval()
    for p in params:
        p.requires_grad = False
    readout.fitted.fill_(True)
    return round(float((readout.predict(features) - sizes).abs().mean()), 3)
