"""The warm start: the shifted previous plan, its tail repeated or zero, or none."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planning_problems import F64, double_integrator, double_integrator_cost

from latentrl.config import apply_overrides
from latentrl.errors import UserError
from latentrl.pipeline import experiment_config
from latentrl.planning import MPCPlanner, solve_ilqr
from latentrl.planning import mpc as mpc_module
from latentrl.planning.options.warm_start import WarmStart, WarmStartConfig


@pytest.mark.parametrize("fill", ["repeat", "zero", "none"])
def test_warm_start_is_the_shifted_plan(fill: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []

    def recording_solve(dynamics, z0, u_init, *args):  # type: ignore[no-untyped-def]
        seen.append(u_init.clone())
        return solve_ilqr(dynamics, z0, u_init, *args)

    monkeypatch.setattr(mpc_module, "solve_ilqr", recording_solve)
    dyn = double_integrator()
    goal = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)
    warm = WarmStart(WarmStartConfig(fill=fill))  # type: ignore[arg-type]
    planner = MPCPlanner(dyn, double_integrator_cost(goal), 8, -0.5, 0.5, initialisers=[warm])
    planner.reset()
    z = torch.zeros(1, 4, dtype=F64)
    z = dyn.step(z, planner.plan(z))
    first = planner.last_plan
    assert first is not None
    planner.plan(z)
    assert len(seen) == 2 and float(seen[0].abs().max()) == 0.0
    if fill == "none":
        assert float(seen[1].abs().max()) == 0.0
        return
    np.testing.assert_array_equal(seen[1][:, :-1].numpy(), first.u[:, 1:].numpy())
    tail = first.u[:, -1] if fill == "repeat" else torch.zeros(1, 2, dtype=F64)
    np.testing.assert_array_equal(seen[1][:, -1].numpy(), tail.numpy())


def test_the_default_planner_repeats_and_fill_is_checked() -> None:
    planner = MPCPlanner(double_integrator(), double_integrator_cost(torch.zeros(4)), 5)
    assert [type(i) for i in planner.initialisers] == [WarmStart]
    assert planner.initialisers[0].config.fill == "repeat"  # type: ignore[attr-defined]
    with pytest.raises(
        UserError, match=r"warm_start\.fill must be one of 'repeat', 'zero', 'none'"
    ):
        WarmStartConfig(fill="twice")  # type: ignore[arg-type]
    config = apply_overrides(
        experiment_config("pendulum", "debug"), ['plan.options.warm_start.fill="zero"']
    )
    assert config.plan.options["warm_start"] == WarmStartConfig(fill="zero")
