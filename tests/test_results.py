"""Typed evaluation results: a round trip of results.json files as latentrl writes them."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from latentrl.errors import UserError
from latentrl.results import AgentResults, EvalHeader, EvalResults, MeanSE

FIXTURE = Path(__file__).parent / "fixtures" / "results_pendulum.json"
"""results.json of a Pendulum-v0 run, written by ``latentrl evaluate`` before these types."""
BASELINES = Path(__file__).parent / "fixtures" / "results_pendulum_baselines.json"
"""The same run evaluated again by that code, with ``--overwrite --baselines-from`` the run of
:data:`FIXTURE`: its oracle and random agents were taken from there."""


def test_a_results_json_written_before_the_types_reads_and_writes_back_the_same() -> None:
    text = FIXTURE.read_text()
    results = EvalResults.read(FIXTURE)
    assert json.dumps(results.to_json(), indent=2, allow_nan=False) + "\n" == text
    h = results.header
    assert (h.env_id, h.episodes, h.horizon, h.final_steps) == ("latentrl/Pendulum-v0", 4, 200, 20)
    assert h.goal_radius == pytest.approx(math.pi / 6)
    assert h.state_names == ("theta", "theta_dot") and len(h.start_states or ()) == 4
    assert h.eval is not None and h.eval["oracle_horizon"] == 40
    assert h.plan is not None and h.plan["horizon"] == 20
    assert list(results.agents) == ["latent", "oracle", "random"] and not results.baselines_from
    oracle = results.agents["oracle"]
    assert oracle.episodes[0].start_state == h.start_states[0]
    assert list(oracle.episodes[0].metrics) == [
        "steps_in_goal",
        "steps_in_goal_half_radius",
        "success",
        "cost",
    ]
    steps = [e.metrics["steps_in_goal"] for e in oracle.episodes]
    assert oracle.aggregate["steps_in_goal"].mean == pytest.approx(sum(steps) / 4)
    assert results.means()["oracle"]["success"] == oracle.aggregate["success"].mean


def test_results_written_with_baselines_from_another_run_read_and_write_back_the_same() -> None:
    results = EvalResults.read(BASELINES)
    text = json.dumps(results.to_json(), indent=2, allow_nan=False) + "\n"
    assert text == BASELINES.read_text()
    origin = results.baselines_from["oracle"]
    assert results.baselines_from == {"oracle": origin, "random": origin}
    assert list(results.to_json())[-2:] == ["agents", "baselines_from"]
    first = EvalResults.read(FIXTURE)
    assert results.header.protocol() == first.header.protocol()
    assert results.agents["oracle"] == first.agents["oracle"]
    assert results.agents["latent"].episodes == first.agents["latent"].episodes
    assert results.agents["latent"].aggregate["cost"] == first.agents["latent"].aggregate["cost"]


def test_results_that_took_agents_from_another_run_keep_their_origins(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data["baselines_from"] = {"oracle": "runs/a", "random": "runs/a"}
    data["agents"]["latent"]["aggregate"]["ms_per_step"]["se"] = None
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    results = EvalResults.read(path)
    assert results.baselines_from == {"oracle": "runs/a", "random": "runs/a"}
    assert results.agents["latent"].aggregate["ms_per_step"].se is None
    assert list(results.to_json()) == [*list(json.loads(FIXTURE.read_text())), "baselines_from"]
    out = tmp_path / "again.json"
    results.write(out)
    assert out.read_text() == path.read_text()


def test_hand_written_results_without_the_optional_header_fields() -> None:
    data = {
        "env_id": "latentrl/Pendulum-v0",
        "episodes": 4,
        "horizon": 200,
        "goal_radius": 0.5,
        "final_steps": 20,
        "agents": {"latent": {"aggregate": {"cost": {"mean": 3, "se": 0.5}}, "episodes": []}},
    }
    results = EvalResults.from_json(copy.deepcopy(data))
    assert results.to_json() == data
    assert results.header.start_states is None and results.header.protocol()["start_states"] is None
    assert results.means() == {"latent": {"cost": 3.0}}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"agents": {"latent": {}}}, "no 'env_id'"),
        ([1, 2], "list indices must be integers"),
        (
            json.loads(FIXTURE.read_text()) | {"agents": {"latent": {"aggregate": {}}}},
            "no 'episodes'",
        ),
        (
            json.loads(FIXTURE.read_text())
            | {"agents": {"x": {"aggregate": {"cost": {"mean": "1"}}, "episodes": []}}},
            "mean and se must be numbers",
        ),
        (json.loads(FIXTURE.read_text()) | {"code": "0.4.0"}, "code must be a JSON object"),
    ],
)
def test_what_is_not_results_is_refused_with_one_line(data: object, reason: str) -> None:
    with pytest.raises(UserError) as error:
        EvalResults.from_json(data, "x/results.json")
    message = str(error.value)
    assert message.startswith("x/results.json does not look like latentrl evaluation results")
    assert reason in message and "\n" not in message


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        EvalResults.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="cannot read"):
        EvalResults.read(tmp_path / "bad.json")


def test_with_agents_lists_them_in_the_eval_section_and_adds_origins() -> None:
    results = EvalResults.read(FIXTURE)
    oracle = results.agents["oracle"]
    merged = results.with_agents({"oracle": oracle}, {"oracle": "runs/a"})
    assert list(merged.agents) == ["oracle"] and merged.header.eval is not None
    assert merged.header.eval["agents"] == ["oracle"]
    assert results.header.eval is not None and results.header.eval["agents"] == [
        "latent",
        "oracle",
        "random",
    ]
    assert merged.baselines_from == {"oracle": "runs/a"}
    assert merged.to_json()["baselines_from"] == {"oracle": "runs/a"}


def test_protocols_differ_when_the_starts_do() -> None:
    base = EvalHeader("e", 1, 10, 0.5, 1, start_states=((0.0, 1.0),))
    assert base.protocol() == {
        "env_id": "e",
        "env_kwargs": None,
        "episodes": 1,
        "horizon": 10,
        "goal_radius": 0.5,
        "final_steps": 1,
        "start_states": [[0.0, 1.0]],
    }
    other = EvalHeader("e", 1, 10, 0.5, 1, start_states=((0.0, 1.5),))
    assert base.protocol() != other.protocol()


def test_protocols_differ_when_the_env_kwargs_do() -> None:
    """The same starts in an env with other physics are other episodes: an oracle evaluated
    with max_torque 2 is no baseline for max_torque 1."""
    starts = ((0.0, 1.0),)
    weak = EvalHeader("e", 1, 10, 0.5, 1, start_states=starts, env_kwargs={"max_torque": 1.0})
    strong = EvalHeader("e", 1, 10, 0.5, 1, start_states=starts, env_kwargs={"max_torque": 2.0})
    assert weak.protocol() != strong.protocol()
    plain = EvalHeader("e", 1, 10, 0.5, 1, start_states=starts, env_kwargs={})
    assert plain.protocol() != weak.protocol()
    assert EvalHeader.from_json(weak.to_json()) == weak
    agent = AgentResults({"cost": MeanSE(1.0, None)}, ())
    assert agent.to_json() == {"aggregate": {"cost": {"mean": 1.0, "se": None}}, "episodes": []}
