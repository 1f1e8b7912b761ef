"""Is a run's transition short of what its latent allows, or is the latent itself noisy?

On a run's dataset, the next encoding z_{t+1} (encoder mean of x_{t+1}) is predicted in four
ways, and each is scored on held-out transitions by its RMS error per latent coordinate, in
units of that coordinate's spread (std over the training transitions):

* ``no move``: z_{t+1} = z_t, the size of a typical step;
* ``transition``: the run's own mean transition f(z_t, u_t);
* ``refit (z, u)``: an MLP fitted afterwards to the same pairs (z_t, u_t) -> z_{t+1}: if it
  beats the transition by much, the transition underfits;
* ``true state (s, u)``: an MLP given the true state s_t and u_t instead of z_t;
* ``true next state``: an MLP given s_{t+1} itself, so its error is how far the encodings
  scatter around any smooth function of the state they show (the floor of every prediction).

The fitted MLPs (2x256, Adam) see angles as (cos, sin). Encoder means are what E2C-style
kinds plan from; for the filtering kind, whose belief reads the history, this measures its
encoder's factor only.

    python experiments/studies/one_step_predictability.py runs/RUN
    python experiments/studies/one_step_predictability.py runs/RUN --fit-steps 1000

Prints a Markdown table and writes ``RUN/one_step_predictability.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from latentrl.checkpoint import load_model
from latentrl.data import load_transitions
from latentrl.envs import make_env, require_control_env
from latentrl.errors import UserError
from latentrl.latent_diagnostics import encoder_means
from latentrl.models.encoder import build_mlp
from latentrl.probe import state_features
from latentrl.run_directory import dataset_of_run

HIDDEN = 256
BATCH = 256
HELD_OUT = 0.1
STEP_BLOCK = 4096


def normalised_rmse(prediction: Tensor, target: Tensor, spread: Tensor) -> Tensor:
    """RMS error per coordinate ``(n,)`` of ``prediction`` against ``target`` ``(N, n)``, in
    units of ``spread (n,)``."""
    return ((prediction - target) / spread).square().mean(0).sqrt()


def fit_regressor(
    inputs: Tensor, targets: Tensor, train: Tensor, spread: Tensor, steps: int, seed: int
) -> nn.Module:
    """An MLP from standardised ``inputs (N, p)`` to ``targets (N, n)``, fitted on the rows
    ``train`` by the squared error in units of ``spread``; returns it with the standardisation
    built in (it takes raw inputs)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean, std = inputs[train].mean(0), inputs[train].std(0).clamp_min(1e-6)
    net = build_mlp([inputs.shape[1], HIDDEN, HIDDEN, targets.shape[1]])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        rows = train[torch.randint(len(train), (BATCH,), generator=generator)]
        prediction = net((inputs[rows] - mean) / std)
        loss = ((prediction - targets[rows]) / spread).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    class Standardised(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return net((x - mean) / std)

    return Standardised()


@torch.no_grad()
def transition_means(model: nn.Module, z: Tensor, u: Tensor) -> Tensor:
    """The model's mean next latent ``(N, n)`` from ``z (N, n)`` and ``u (N, m)``."""
    return torch.cat(
        [
            model.step(z[s : s + STEP_BLOCK], u[s : s + STEP_BLOCK])
            for s in range(0, len(z), STEP_BLOCK)
        ]
    )


def measure(run: Path, fit_steps: int, seed: int) -> dict[str, list[float]]:
    """Per predictor, its normalised RMSE per latent coordinate on the held-out transitions
    (module docstring)."""
    model, config = load_model(run)
    data = load_transitions(dataset_of_run(run))
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    try:
        task = require_control_env(env)
        names, angle_dims = list(task.state_names), list(task.angle_dims)
    finally:
        env.close()
    with torch.no_grad():
        z, z_next = encoder_means(model, data.obs), encoder_means(model, data.next_obs)
    u = data.action
    count = len(z)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held = max(1, int(HELD_OUT * count))
    test, train = order[:held], order[held:]
    if len(train) < 2:
        raise UserError(f"the dataset of {run} has {count} transitions: too few to fit on")
    spread = z_next[train].std(0).clamp_min(1e-12)
    state, _ = state_features(data.state, names, angle_dims)
    next_state, _ = state_features(data.next_state, names, angle_dims)

    def fitted(inputs: Tensor) -> Tensor:
        net = fit_regressor(inputs, z_next, train, spread, fit_steps, seed)
        with torch.no_grad():
            return net(inputs[test])

    predictors = {
        "no move": lambda: z[test],
        "transition": lambda: transition_means(model, z[test], u[test]),
        "refit (z, u)": lambda: fitted(torch.cat([z, u], 1)),
        "true state (s, u)": lambda: fitted(torch.cat([state, u], 1)),
        "true next state": lambda: fitted(next_state),
    }

    report: dict[str, list[float]] = {}
    for name, predict in predictors.items():
        report[name] = normalised_rmse(predict(), z_next[test], spread).tolist()
    return report


def markdown_table(report: dict[str, list[float]]) -> str:
    """The report as a Markdown table, one row per predictor, one column per coordinate."""
    n = len(next(iter(report.values())))
    lines = [
        "| predictor of z_{t+1} | " + " | ".join(f"z{i}" for i in range(n)) + " |",
        "|---|" + "---|" * n,
    ]
    for name, errors in report.items():
        lines.append(f"| {name} | " + " | ".join(f"{e:.3f}" for e in errors) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a trained run directory")
    parser.add_argument("--fit-steps", type=int, default=4000, help="Adam steps per fitted MLP")
    parser.add_argument("--seed", type=int, default=0, help="split and fitting seed")
    args = parser.parse_args(argv)
    try:
        if args.fit_steps < 1:
            raise UserError(f"--fit-steps must be at least 1, got {args.fit_steps}")
        report = measure(args.run, args.fit_steps, args.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(report))
    out = args.run / "one_step_predictability.json"
    out.write_text(json.dumps({"normalised_rmse": report, "fit_steps": args.fit_steps}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
