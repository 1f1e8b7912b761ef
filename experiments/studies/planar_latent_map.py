"""Where does a planar model's latent cost point? A map of |z(s) - z(goal)| over the field.

The latent planner descends the latent distance to the goal's encoding. Where that distance has
a minimum away from the goal, the planner drives the agent there and stays: the map shows such
basins, and the latent codes coloured by x and y (on their two principal axes where the latent
has more than 2 dimensions) show the folds behind them. Printed per run:
the grid points (0.5 px apart, free states only) where the latent distance is lower than at all
8 neighbours, other than the goal's own (the true distance has none: the obstacles are discs),
and the Spearman rank correlation between latent and true distance to the goal (1: the latent
cost orders the states as the true one does). For an evaluated run the map also marks where
the latent agent's failed episodes ended, and the script counts those within 2 px of a minimum.
With ``--roadmap`` a second map shows what the agent follows with ``plan.options.roadmap``:
the cost-to-go, in steps, of each state's node on the roadmap of the run's training frames
(:class:`latentrl.agents.FrameRoadmap`), and its rank correlation with the true distance. (Its
grid minima are not counted: the agent walks the roadmap's paths rather than descending this
map, and a map of nodes' costs is noisy at the grid's 0.5 px.)

    python experiments/studies/planar_latent_map.py runs/Planar-v0__planar__0__* --out map.png
    python experiments/studies/planar_latent_map.py RUN --roadmap    # needs the run's dataset
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from latentrl.agents import roadmap_of_run
from latentrl.checkpoint import load_model
from latentrl.config import load_config
from latentrl.diagnostics.ranks import rank_correlation
from latentrl.envs import make_env
from latentrl.envs.planar import AGENT_RADIUS, FIELD_SIZE, PlanarEnv, planar_is_free
from latentrl.errors import UserError
from latentrl.run_directory import RunDirectory

ENV_ID = "latentrl/Planar-v0"
GRID_STEP = 0.5
NEAR_PX = 2.0
"""A failed episode ended "at" a minimum when its final state is this close to it."""


def field_grid() -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates ``(k,)`` over the state box and the states ``(k * k, 2)`` (x, y)."""
    ticks = np.arange(AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS + 1e-9, GRID_STEP)
    x, y = np.meshgrid(ticks, ticks)
    return ticks, np.stack([x.ravel(), y.ravel()], axis=1)


def planar_task(run_dir: Path) -> PlanarEnv:
    """The run's planar env, made with its ``env_kwargs`` (obstacles, goal, goal radius)."""
    data = load_config(RunDirectory(run_dir).require_run().config).data
    if data.env_id != ENV_ID:
        raise UserError(f"{run_dir} is a run of {data.env_id}, not of {ENV_ID}")
    env = make_env(data.env_id, **data.env_kwargs).unwrapped
    assert isinstance(env, PlanarEnv)
    return env


def outside_goal(states: np.ndarray, task: PlanarEnv) -> np.ndarray:
    """The rows of ``states (j, 2)`` outside the task's goal region."""
    return states[task.goal_distance(states) > task.goal_radius]


def spurious_minima(distance: np.ndarray, ticks: np.ndarray, task: PlanarEnv) -> np.ndarray:
    """States ``(j, 2)`` where ``distance (k, k)`` (rows y, NaN where blocked) is below all 8
    neighbours, the task's goal region excepted."""
    padded = np.pad(distance, 1, constant_values=np.nan)
    neighbours = np.stack(
        [
            padded[1 + di : 1 + di + distance.shape[0], 1 + dj : 1 + dj + distance.shape[1]]
            for di in (-1, 0, 1)
            for dj in (-1, 0, 1)
            if (di, dj) != (0, 0)
        ]
    )
    with np.errstate(invalid="ignore"):
        lowest = np.all(np.isnan(neighbours) | (distance[None] < neighbours), axis=0)
    rows, cols = np.nonzero(lowest & ~np.isnan(distance))
    return outside_goal(np.stack([ticks[cols], ticks[rows]], axis=1), task)


def principal_plane(codes: np.ndarray) -> np.ndarray:
    """``codes (k, n)`` as they are for n = 2, else on their two principal axes: ``(k, 2)``."""
    if codes.shape[1] == 2:
        return codes
    centred = codes - codes.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return centred @ axes[:2].T


def failed_ends(run_dir: Path, task: PlanarEnv) -> np.ndarray | None:
    """Final states ``(k, 2)`` of the latent agent's episodes that ended outside the goal
    region, from the run's evaluation; None if the latent agent was not evaluated."""
    path = run_dir / "eval" / "trajectories.npz"
    if not path.exists():
        return None
    try:
        with np.load(path) as trajectories:
            if "latent/states" not in trajectories.files:
                return None
            ends = trajectories["latent/states"][:, -1]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"cannot read {path} ({exc}); evaluate the run again with "
            f"`latentrl evaluate {run_dir} --overwrite`"
        ) from None
    return outside_goal(ends, task)


def near_any(points: np.ndarray, targets: np.ndarray, within: float) -> np.ndarray:
    """Boolean ``(k,)``: ``points (k, 2)`` within ``within`` of any of ``targets (j, 2)``."""
    if len(targets) == 0:
        return np.zeros(len(points), dtype=bool)
    gaps = np.linalg.norm(points[:, None] - targets[None], axis=-1)
    return gaps.min(axis=1) <= within


@torch.no_grad()
def latent_map(run_dir: Path, roadmap: bool = False) -> dict[str, np.ndarray | float]:
    """The latent distance to the goal over :func:`field_grid`, its minima and the codes; with
    ``roadmap`` also the roadmap's cost-to-go (``road_*`` keys)."""
    task = planar_task(run_dir)
    goal = task.goal_state()
    model, _ = load_model(run_dir)
    ticks, states = field_grid()
    free = planar_is_free(states, task.layout)
    images = task.observe(np.concatenate([states[free], goal[None]]))
    codes = model.encode(torch.from_numpy(images)).mean.double().numpy()
    z, z_goal = codes[:-1], codes[-1]
    distance = np.full(len(states), np.nan)
    distance[free] = np.linalg.norm(z - z_goal, axis=1)
    true_distance = np.where(free, task.goal_distance(states), np.nan)
    grid = distance.reshape(len(ticks), len(ticks))
    road = {}
    if roadmap:
        cost = roadmap_costs(run_dir, model, images, codes, free)
        road = {
            "road_cost": cost.reshape(grid.shape),
            "road_rank_correlation": rank_correlation(cost[free], true_distance[free]),
        }
    return road | {
        "ticks": ticks,
        "distance": grid,
        "states": states[free],
        "codes": principal_plane(z),
        "latent_dim": z.shape[1],
        "minima": spurious_minima(grid, ticks, task),
        "true_minima": spurious_minima(true_distance.reshape(grid.shape), ticks, task),
        "rank_correlation": rank_correlation(distance[free], true_distance[free]),
        "failed_ends": failed_ends(run_dir, task),
        "goal": goal,
    }


def roadmap_costs(
    run_dir: Path, model: torch.nn.Module, images: np.ndarray, codes: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """Cost-to-go ``(k * k,)`` (NaN where blocked) of the roadmap node of each free grid state,
    whose ``images`` and ``codes`` come first, the goal's last."""
    roadmap = roadmap_of_run(run_dir, model)
    latents = torch.from_numpy(codes).to(roadmap.latents)
    frames = torch.from_numpy(images)
    roadmap.set_goal(frames[-1], latents[-1])
    assert roadmap.cost is not None
    cost = np.full(len(free), np.nan)
    cost[free] = roadmap.cost[roadmap.locate(frames[:-1], latents[:-1])].double().numpy()
    return cost


def _field_panel(ax, fig, values, m: dict, minima: np.ndarray | None, title: str) -> None:  # type: ignore[no-untyped-def]
    """A map over the field with its minima, the failed episodes' ends and the goal."""
    extent = (AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS, AGENT_RADIUS)
    image = ax.imshow(values, extent=extent, cmap="viridis")
    if minima is not None:
        ax.scatter(*minima.T, marker="x", color="white", s=25, label="minimum")
    if m["failed_ends"] is not None and len(m["failed_ends"]):
        ax.scatter(
            *m["failed_ends"].T,
            facecolors="none",
            edgecolors="red",
            linewidths=2.0,
            s=90,
            label="a failed episode's end",
        )
    ax.scatter(*m["goal"], marker="*", color="white", s=120, label="goal")
    ax.set(title=title, xlabel="x (px)", ylabel="y (px)")
    ax.set(xlim=(0, FIELD_SIZE), ylim=(FIELD_SIZE, 0))  # ends at a wall stay visible
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=7, facecolor="0.5")
    fig.colorbar(image, ax=ax, shrink=0.8)


def plot_maps(maps: dict[str, dict], path: Path) -> None:
    roadmap = any("road_cost" in m for m in maps.values())
    columns = 4 if roadmap else 3
    fig, axes = plt.subplots(
        len(maps), columns, figsize=(4.4 * columns, 4.2 * len(maps)), squeeze=False
    )
    for row, (name, m) in zip(axes, maps.items(), strict=True):
        title = f"{Path(name).name}\n|z(s) - z(goal)|, ρ = {m['rank_correlation']:.2f}"
        _field_panel(row[0], fig, m["distance"], m, m["minima"], title)
        if roadmap:
            title = f"roadmap cost-to-go (steps), ρ = {m['road_rank_correlation']:.2f}"
            _field_panel(row[1], fig, m["road_cost"], m, None, title)
        for ax, axis, label in ((row[-2], 0, "x"), (row[-1], 1, "y")):
            # every third point keeps the picture and a third of the file
            codes, states = m["codes"][::3], m["states"][::3]
            ax.scatter(*codes.T, c=states[:, axis], s=2, cmap="viridis")
            names = ("z1", "z2") if m["latent_dim"] == 2 else ("1st principal axis", "2nd")
            ax.set(title=f"latent codes coloured by {label}", xlabel=names[0], ylabel=names[1])
            ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)  # 3x smaller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained planar run directories")
    parser.add_argument("--out", type=Path, default=Path("planar_latent_map.png"))
    parser.add_argument("--roadmap", action="store_true", help="also map the roadmap's cost-to-go")
    args = parser.parse_args(argv)
    try:
        maps = {str(run): latent_map(run, args.roadmap) for run in args.runs}
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, m in maps.items():
        minima = ", ".join(f"({x:g}, {y:g})" for x, y in m["minima"])
        print(
            f"{name}: rank correlation {m['rank_correlation']:.3f}; {len(m['minima'])} "
            f"minima away from the goal (the true distance: {len(m['true_minima'])}): "
            f"{minima or 'none'}"
        )
        if "road_cost" in m:
            print(f"  roadmap cost-to-go: rank correlation {m['road_rank_correlation']:.3f}")
        if m["failed_ends"] is not None:
            ends = m["failed_ends"]
            near = int(near_any(ends, m["minima"], NEAR_PX).sum())
            print(
                f"  its latent agent's evaluation: {len(ends)} episodes ended outside the goal "
                f"region, {near} of them within {NEAR_PX:g} px of one of these minima"
            )
    plot_maps(maps, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
