"""The training engine's learning-rate schedule: every run length trains."""

from __future__ import annotations

import pytest
import torch

from reportgen.model.engine import adamw, one_cycle


@pytest.mark.parametrize("total_steps", [1, 2, 3, 5, 10, 11, 40])
def test_one_cycle_runs_every_step_of_a_short_run_and_never_exceeds_the_peak(total_steps):
    # OneCycleLR divided by zero for 10 steps or fewer (`--fine-steps 10` stopped there)
    weight = torch.nn.Parameter(torch.zeros(2))
    optimiser = adamw([weight], lr=0.01, weight_decay=0.0)
    schedule = one_cycle(optimiser, 0.01, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert len(rates) == total_steps
    assert all(0.0 < rate <= 0.01 + 1e-12 for rate in rates)
    if total_steps >= 3:  # a warm-up to the peak, then down
        assert max(rates) == pytest.approx(0.01, rel=0.05)
        assert rates[-1] < max(rates)


def test_one_cycle_keeps_its_ten_percent_warm_up_where_it_always_worked():
    weight = torch.nn.Parameter(torch.zeros(2))
    optimiser = adamw([weight], lr=0.01, weight_decay=0.0)
    schedule = one_cycle(optimiser, 0.01, 100)
    assert isinstance(schedule, torch.optim.lr_scheduler.OneCycleLR)
    rates = []
    for _ in range(100):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert int(max(range(100), key=rates.__getitem__)) in (9, 10)  # the peak after 10%
