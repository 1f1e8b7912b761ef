"""Is a pendulum's latent space torn? Sweep the angle around the circle and look for a jump.

For each trained run of a pendulum env (state ``(theta, theta_dot)``: Pendulum-v0 or the
MuJoCo PendulumSwingup-v0), encodes the images of 360 evenly spaced angles at a fixed angular
velocity and prints, per velocity, the largest step between the encoder means of neighbouring
angles divided by the median step, and the angle where it happens. A smooth embedding of the
circle gives about 1.5-3; a latent space cut open along a line of states gives 10-20, and the
latent MPC of such a model fails wherever its swing-ups cross the cut (docs/benchmarks.md).

    python experiments/studies/pendulum_tears.py runs/RUN [runs/RUN ...] [--velocities -2 0 2]

Training logs a cheaper, env-independent relative of this number every epoch
(``val/latent_stretch``, :func:`latentrl.latent_diagnostics.latent_stretch`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from latentrl.checkpoint import load_model
from latentrl.envs import make_env
from latentrl.envs.contract import require_control_env
from latentrl.errors import UserError

PENDULUM_STATE = ("theta", "theta_dot")


def circle_jumps(
    encode_mean: Callable[[np.ndarray], np.ndarray],
    observe: Callable[[np.ndarray], np.ndarray],
    velocity: float,
    points: int = 360,
) -> tuple[float, float]:
    """(largest / median latent step between neighbouring angles, angle of the largest in
    degrees) over ``points`` angles at angular velocity ``velocity``."""
    theta = np.linspace(-np.pi, np.pi, points + 1)  # the last point closes the circle
    states = np.stack([theta, np.full_like(theta, velocity)], axis=1)
    z = encode_mean(observe(states))
    steps = np.linalg.norm(np.diff(z, axis=0), axis=-1)
    worst = int(steps.argmax())
    return float(steps[worst] / np.median(steps)), float(np.degrees(theta[worst]))


def report(run: Path, velocities: list[float]) -> str:
    """One line: the jump ratio and its angle at each velocity, for the model of ``run``."""
    model, config = load_model(run)
    model.eval()
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    try:
        task = require_control_env(env)
        if tuple(task.state_names) != PENDULUM_STATE:
            raise UserError(
                f"{run} was trained on {config.data.env_id}, whose state is "
                f"{task.state_names}; this sweep needs a pendulum (theta, theta_dot)"
            )

        def encode_mean(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model.encode(torch.as_tensor(images)).mean.double().numpy()

        cells = []
        for velocity in velocities:
            ratio, angle = circle_jumps(encode_mean, task.observe, velocity)
            cells.append(f"theta_dot {velocity:+.0f}: {ratio:5.1f} at {angle:5.0f} deg")
    finally:
        env.close()
    return f"{run.name}: " + " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--velocities", nargs="+", type=float, default=[-2.0, 0.0, 2.0])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        for run in args.runs:
            print(report(run, args.velocities))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
