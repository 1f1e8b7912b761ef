"""Agents of an earlier evaluation that still hold: reused instead of run again.

``latentrl evaluate --overwrite`` keeps the agents it does not run again, and
``--baselines-from OTHER_RUN`` takes the agents that do not depend on the model from another
run, where they ran on the same episodes (:meth:`EvalHeader.protocol`) with the settings their
numbers depend on (the registry's ``settings``: the eval seed, the plan for the latent agent,
the oracle's horizon).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentrl.agents.registry import AGENT_NAMES, agent_entry
from latentrl.episodes import Rollout
from latentrl.errors import UserError
from latentrl.results import AgentResults, EvalHeader, EvalResults
from latentrl.run_directory import EvalDirectory


def agent_settings(header: EvalHeader, agent: str) -> dict[str, Any]:
    """The settings of an evaluation that ``agent``'s numbers depend on, beside the protocol
    (:meth:`EvalHeader.protocol`), as the registry names them: the eval seed for all, the plan
    for the latent agent, the oracle's own horizon."""
    return agent_entry(agent).settings(header.eval or {}, header.plan or {})


@dataclass(frozen=True)
class EarlierAgents:
    """Agents of an earlier evaluation: their results, rollouts (no timings, no frames: the
    results hold the timings), GIFs (path relative to the eval dir -> bytes), and the runs
    they were first evaluated in, where that was another run (``baselines_from`` of that
    ``results.json``)."""

    entries: dict[str, AgentResults]
    rollouts: dict[str, Rollout]
    gifs: dict[Path, bytes]
    origins: dict[str, str]

    @classmethod
    def none(cls) -> EarlierAgents:
        return cls({}, {}, {}, {})


def reusable_agents(
    eval_dir: EvalDirectory,
    results: EvalResults,
    names: Sequence[str] | None,
    echo: Callable[[str], None],
) -> EarlierAgents:
    """Of ``names`` (None: all those not in ``results.agents``), the agents of the evaluation
    in ``eval_dir`` that ran on the episodes of ``results`` (the same protocol) with the
    settings their numbers depend on; says which it drops and why. An unreadable evaluation
    gives none, and says so."""
    if names is not None and not names:
        return EarlierAgents.none()
    try:
        earlier = EvalResults.read(eval_dir.results)
        if names is None:
            names = [name for name in earlier.agents if name not in results.agents]
        candidates = [name for name in names if name in earlier.agents]
        with np.load(eval_dir.trajectories) as npz:
            arrays = {key: npz[key] for key in npz.files}
        same_episodes = earlier.header.protocol() == results.header.protocol()
        kept = [
            name
            for name in candidates
            if same_episodes
            and agent_settings(earlier.header, name) == agent_settings(results.header, name)
        ]
        rollouts = {
            name: Rollout(
                arrays[f"{name}/states"],
                arrays[f"{name}/actions"],
                arrays[f"{name}/costs"],
                np.full(results.header.horizon, np.nan),
                None,
            )
            for name in kept
        }
        gifs = {
            path.relative_to(eval_dir.path): path.read_bytes()
            for name in kept
            for path in eval_dir.agent_videos(name)
        }
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        UserError,
        zipfile.BadZipFile,
    ) as exc:
        echo(
            f"the earlier evaluation in {eval_dir.path} is unreadable ({exc}); nothing is kept "
            "from it"
        )
        return EarlierAgents.none()
    dropped = sorted(set(candidates) - set(kept))
    if dropped:
        echo(
            f"dropped the earlier results of {', '.join(dropped)} in {eval_dir.path}: other "
            "start states or settings than this evaluation's"
        )
    origins = earlier.baselines_from
    return EarlierAgents(
        {name: earlier.agents[name] for name in kept},
        rollouts,
        gifs,
        {name: origins[name] for name in kept if name in origins},
    )


def merge_agents(
    results: EvalResults, rollouts: dict[str, Rollout], earlier: EarlierAgents
) -> tuple[EvalResults, dict[str, Rollout]]:
    """``results`` and ``rollouts`` with the ``earlier`` agents added, all in registry order;
    the eval section's ``agents`` lists them and ``baselines_from`` the other runs they were
    evaluated in."""
    if not earlier.entries:
        return results, rollouts
    order = [name for name in AGENT_NAMES if name in rollouts or name in earlier.entries]
    agents = {
        name: results.agents[name] if name in rollouts else earlier.entries[name] for name in order
    }
    merged = {
        name: rollouts[name] if name in rollouts else earlier.rollouts[name] for name in order
    }
    return results.with_agents(agents, earlier.origins), merged


def keep_earlier_agents(
    out: EvalDirectory,
    results: EvalResults,
    rollouts: dict[str, Rollout],
    echo: Callable[[str], None],
) -> tuple[EvalResults, dict[str, Rollout], dict[Path, bytes]]:
    """``results`` and ``rollouts`` with the agents of the evaluation in ``out`` that were not
    run again, where they ran on the same episodes with the same settings, and their GIFs
    (path relative to ``out`` -> bytes) to write back."""
    earlier = reusable_agents(out, results, None, echo)
    if not earlier.entries:
        return results, rollouts, {}
    echo(f"kept the earlier results of {', '.join(earlier.entries)} (same episodes and settings)")
    results, rollouts = merge_agents(results, rollouts, earlier)
    return results, rollouts, earlier.gifs
