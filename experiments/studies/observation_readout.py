"""How precisely an env's observation shows its state: a supervised readout from the pixels.

A latent model can only hold what its images show. This fits an MLP (2 x 512, ReLU) from the
raw pixels of each env's observations straight to the true state (angles as cos, sin), on
states drawn from the whole state box and, a third of them, near the goal
(:func:`latentrl.envs.contract.sample_near_goal_states`), and reports the RMS error per state
coordinate on held-out states of both kinds. No model, no run directory: it compares
observations, for example two versions of an env that differ only in how far apart their
frames are:

    python experiments/studies/observation_readout.py \
        latentrl/CartpoleSwingup-v0 latentrl/CartpoleSwingupGap2-v0

Prints a Markdown table; ``--out FILE`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from latentrl.envs import make_env, require_control_env
from latentrl.envs.contract import ControlEnv, sample_near_goal_states
from latentrl.errors import UserError
from latentrl.models.encoder import build_mlp
from latentrl.probe import state_errors, state_features

HIDDEN = 512
BATCH = 256


def readout_errors(
    task: ControlEnv,
    box_states: int,
    near_states: int,
    *,
    epochs: int,
    seed: int,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """RMS error per state coordinate of a pixel-to-state MLP, ``{"near goal": {name: rms},
    "state box": {...}}``, on a held-out sixth of each kind of state."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    kinds = {
        "state box": task.sample_states(box_states, rng),
        "near goal": sample_near_goal_states(task, near_states, rng),
    }
    train_x, train_s, held_out = [], [], {}
    for kind, states in kinds.items():
        images = torch.from_numpy(task.observe(states)).flatten(1)
        cut = len(states) // 6
        held_out[kind] = (images[:cut], states[:cut])
        train_x.append(images[cut:])
        train_s.append(states[cut:])
    x, states = torch.cat(train_x), np.concatenate(train_s)
    names, angles = list(task.state_names), list(task.angle_dims)
    targets, _ = state_features(torch.from_numpy(states), names, angles)
    mean, std = targets.mean(0), targets.std(0).clamp_min(1e-6)
    torch.manual_seed(seed)
    net = build_mlp([x.shape[1], HIDDEN, HIDDEN, targets.shape[1]])
    steps_per_epoch = len(x) // BATCH
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    scaled = (targets - mean) / std
    for _ in tqdm(range(epochs), desc="readout", unit="epoch", disable=not progress):
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * BATCH : (step + 1) * BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(net(x[batch].float() / 255), scaled[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
    out = {}
    with torch.no_grad():
        for kind, (images, truth) in held_out.items():
            predicted = (net(images.float() / 255) * std + mean).double().numpy()
            rms = np.sqrt(np.mean(state_errors(predicted, truth, angles) ** 2, axis=0))
            out[kind] = {name: float(v) for name, v in zip(names, rms, strict=True)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="How precisely each env's observation shows its state: the held-out RMS "
        "error per state coordinate of an MLP read straight from the pixels."
    )
    parser.add_argument("env_ids", nargs="+", help="environments to compare")
    parser.add_argument("--states", type=int, default=24_000, help="states from the box")
    parser.add_argument(
        "--near-states", type=int, default=12_000, help="states near the goal (default 12000)"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    try:
        if min(args.states, args.near_states) < 6 or args.epochs < 1:
            raise UserError(
                f"need at least 6 states of each kind and 1 epoch, got --states {args.states}, "
                f"--near-states {args.near_states}, --epochs {args.epochs}"
            )
        report: dict[str, Any] = {"epochs": args.epochs, "seed": args.seed, "envs": {}}
        for env_id in args.env_ids:
            env = make_env(env_id)
            try:
                task = require_control_env(env)
                start = time.perf_counter()
                errors = readout_errors(
                    task, args.states, args.near_states, epochs=args.epochs, seed=args.seed
                )
            finally:
                env.close()
            report["envs"][env_id] = {"rms": errors, "seconds": time.perf_counter() - start}
            names = list(task.state_names)
            print(f"\n{env_id}: RMS error of the pixel readout ({args.epochs} epochs)")
            print("| states | " + " | ".join(names) + " |")
            print("|---|" + "---|" * len(names))
            for kind, rms in errors.items():
                print(f"| {kind} | " + " | ".join(f"{rms[n]:.3f}" for n in names) + " |")
        if args.out is not None:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
