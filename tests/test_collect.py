"""Collection: modes, parallel workers, interruption and resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl import cli
from latentrl.collect import collect
from latentrl.data import METADATA_FILE, DatasetWriter, chunk_file_name, load_transitions
from latentrl.errors import UserError
from latentrl.sealed_json import seal


def _bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_rollouts_never_cross_an_episode_boundary(tmp_path: Path) -> None:
    from point_mass import PointMassEnv, point_mass_step

    # 2 envs x 50-step episodes: 600 transitions span several automatic resets.
    out = collect(POINT_MASS_ID, 600, tmp_path / "r", mode="rollout", workers=1, progress=False)
    data = load_transitions(out)
    states, actions = data.state.numpy(), data.action.numpy()
    np.testing.assert_array_equal(data.next_state.numpy(), point_mass_step(states, actions))
    np.testing.assert_array_equal(data.obs.numpy(), PointMassEnv().observe(states))
    # episodes start near the left wall at rest: several starts are in the data
    starts = (states[:, 0] < -0.7) & (states[:, 1] == 0.0)
    assert starts.sum() >= 600 // 50
    assert json.loads((out / METADATA_FILE).read_text())["mode"] == "rollout"


@pytest.mark.slow
def test_uniform_bytes_do_not_depend_on_workers(tmp_path: Path) -> None:
    one = collect(POINT_MASS_ID, 1_200, tmp_path / "one", chunk_size=500, progress=False)
    two = collect(POINT_MASS_ID, 1_200, tmp_path / "two", chunk_size=500, workers=2, progress=False)
    assert _bytes(one) == _bytes(two)


def test_interrupted_collection_is_marked_partial_and_resumes_to_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = collect(POINT_MASS_ID, 1_000, tmp_path / "whole", chunk_size=300, progress=False)

    original = DatasetWriter.write_chunk

    def write_then_stop(self: DatasetWriter, arrays: dict) -> None:
        if self.chunks_done == 2:
            raise KeyboardInterrupt
        original(self, arrays)

    monkeypatch.setattr(DatasetWriter, "write_chunk", write_then_stop)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        collect(POINT_MASS_ID, 1_000, part, chunk_size=300, progress=False)
    meta = json.loads((part / METADATA_FILE).read_text())
    assert meta["complete"] is False and len(meta["chunks"]) == 2
    with pytest.raises(UserError, match=r"partial dataset .*--resume"):
        load_transitions(part)
    with pytest.raises(UserError, match=r"partial dataset .*pass --resume"):
        collect(POINT_MASS_ID, 1_000, part, chunk_size=300, progress=False)
    with pytest.raises(UserError, match="cannot resume"):
        collect(POINT_MASS_ID, 1_000, part, chunk_size=300, seed=1, resume=True, progress=False)

    monkeypatch.setattr(DatasetWriter, "write_chunk", original)
    collect(POINT_MASS_ID, 1_000, part, chunk_size=300, resume=True, progress=False)
    assert _bytes(part) == _bytes(whole)


def test_existing_data_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = collect(POINT_MASS_ID, 100, tmp_path / "d", progress=False)
    before = _bytes(out)
    with pytest.raises(UserError, match=r"already holds a complete dataset .*--overwrite"):
        collect(POINT_MASS_ID, 100, out, seed=5, progress=False)
    assert _bytes(out) == before
    collect(POINT_MASS_ID, 100, out, resume=True, progress=False)  # complete: nothing to do
    assert _bytes(out) == before
    collect(POINT_MASS_ID, 100, out, seed=5, overwrite=True, progress=False)
    assert _bytes(out)[chunk_file_name(0)] != before[chunk_file_name(0)]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not part of a latentrl dataset"):
        collect(POINT_MASS_ID, 100, foreign, overwrite=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transitions": 0}, "^transitions must be an int >= 1, got 0$"),
        ({"transitions": -5}, "^transitions must be an int >= 1, got -5$"),
        ({"mode": "random"}, "^mode must be one of 'uniform', 'rollout', got 'random'$"),
        ({"workers": 0}, "^workers must be an int in \\[1, 256\\], got 0$"),
        ({"seed": -1}, "^seed must be an int in \\[0, 4294967295\\], got -1$"),
        ({"chunk_size": 0}, "^chunk_size must be an int >= 1, got 0$"),
        ({"env_kwargs": {"bogus": 1}}, "takes no keyword argument\\(s\\) 'bogus'"),
        ({"env_id": "latentrl/Nope-v0"}, "unknown environment 'latentrl/Nope-v0'"),
        ({"env_id": "no_such_module:Env-v0"}, "cannot import the module"),
        ({"env_id": "CartPole-v1"}, "does not implement the latentrl environment contract"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"env_id": POINT_MASS_ID, "transitions": 10, "out_dir": tmp_path / "x"} | kwargs
    with pytest.raises(UserError, match=message):
        collect(**args, progress=False)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["collect", "latentrl/Nope-v0", "--transitions", "5", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("latentrl collect: error: unknown environment")


def test_cli_collect_and_check_env(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    assert cli.main(["collect", POINT_MASS_ID, "--transitions", "40", "--out", str(out)]) == 0
    assert len(load_transitions(out)) == 40
    assert cli.main(["check-env", POINT_MASS_ID]) == 0
    printed = capsys.readouterr().out
    assert "9 passed, 0 failed" in printed and "FAIL" not in printed


def test_check_env_reports_a_broken_contract(capsys: pytest.CaptureFixture) -> None:
    import gymnasium as gym
    from point_mass import PointMassEnv

    class LyingObserve(PointMassEnv):
        def observe(self, states: np.ndarray) -> np.ndarray:
            return np.zeros((len(states), 2, 32, 32), dtype=np.uint8)

    gym.register(id="LyingPointMass-v0", entry_point=LyingObserve, max_episode_steps=50)
    try:
        assert cli.main(["check-env", "LyingPointMass-v0"]) == 1
    finally:
        gym.registry.pop("LyingPointMass-v0")
    printed = capsys.readouterr().out
    assert (
        "FAIL  observe is a pure function of the state: AssertionError: different states" in printed
    )


def test_chained_bytes_do_not_depend_on_workers(tmp_path: Path) -> None:
    kwargs = {"chunk_size": 300, "chain_length": 7, "progress": False}
    one = collect(POINT_MASS_ID, 700, tmp_path / "one", **kwargs)
    two = collect(POINT_MASS_ID, 700, tmp_path / "two", workers=2, **kwargs)
    assert _bytes(one) == _bytes(two)


def test_chain_length_is_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="uniform mode only"):
        collect(POINT_MASS_ID, 100, tmp_path / "r", mode="rollout", chain_length=4)
    with pytest.raises(UserError, match="chain_length must be an int >= 1, got 0"):
        collect(POINT_MASS_ID, 100, tmp_path / "z", chain_length=0)


def test_a_near_goal_share_of_the_chains_starts_near_the_goal(tmp_path: Path) -> None:
    from point_mass import GOAL_X, PointMassEnv, point_mass_step

    kwargs = {"chunk_size": 400, "chain_length": 4, "progress": False}
    plain = collect(POINT_MASS_ID, 800, tmp_path / "plain", **kwargs)
    out = collect(POINT_MASS_ID, 800, tmp_path / "near", near_goal_share=0.25, **kwargs)
    data = load_transitions(out)
    states = data.state.numpy()
    np.testing.assert_array_equal(
        data.next_state.numpy(), point_mass_step(states, data.action.numpy())
    )
    np.testing.assert_array_equal(data.obs.numpy(), PointMassEnv().observe(states))
    starts = states[::4]  # each chunk holds 100 chains, the first 25 of them near the goal
    near = (np.abs(starts[:, 0] - GOAL_X) <= 0.2 + 1e-12) & (np.abs(starts[:, 1]) <= 0.4 + 1e-12)
    assert near.reshape(2, 100)[:, :25].all()
    assert near.reshape(2, 100)[:, 25:].mean() < 0.1  # a uniform start is near it 4% of the time
    assert json.loads((out / METADATA_FILE).read_text())["near_goal_share"] == 0.25
    assert "near_goal_share" not in json.loads((plain / METADATA_FILE).read_text())
    two = collect(POINT_MASS_ID, 800, tmp_path / "two", near_goal_share=0.25, workers=2, **kwargs)
    assert _bytes(two) == _bytes(out)
    with pytest.raises(UserError, match="cannot resume"):
        (out / METADATA_FILE).write_bytes(
            seal({**json.loads((out / METADATA_FILE).read_text()), "complete": False})
        )
        collect(POINT_MASS_ID, 800, out, resume=True, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"near_goal_share": 1.5}, r"near_goal_share must be a finite number in \[0, 1\], got 1.5"),
        ({"near_goal_share": 0.5, "mode": "rollout"}, "uniform mode only"),
    ],
)
def test_near_goal_share_is_checked(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        collect(POINT_MASS_ID, 100, tmp_path / "bad", **kwargs)


def test_near_goal_widths_shape_the_box_the_chains_start_in(tmp_path: Path) -> None:
    from point_mass import GOAL_X

    kwargs = {"chunk_size": 400, "chain_length": 4, "progress": False, "near_goal_share": 1.0}
    out = collect(POINT_MASS_ID, 800, tmp_path / "wide", near_goal_widths=[0.2, 1.0], **kwargs)
    starts = load_transitions(out).state.numpy()[::4]
    # x within 0.2 of the state box's half-width (1) of the goal, v over its whole range (+-2)
    assert np.abs(starts[:, 0] - GOAL_X).max() == pytest.approx(0.2, rel=0.05)
    assert np.abs(starts[:, 1]).max() == pytest.approx(2.0, rel=0.05)
    assert json.loads((out / METADATA_FILE).read_text())["near_goal_widths"] == [0.2, 1.0]
    default = collect(POINT_MASS_ID, 800, tmp_path / "default", **kwargs)
    assert "near_goal_widths" not in json.loads((default / METADATA_FILE).read_text())
    assert np.abs(load_transitions(default).state.numpy()[::4, 1]).max() <= 0.4 + 1e-12
    (out / METADATA_FILE).write_bytes(
        seal({**json.loads((out / METADATA_FILE).read_text()), "complete": False})
    )
    resumed = collect(POINT_MASS_ID, 800, out, near_goal_widths=(0.2, 1.0), resume=True, **kwargs)
    assert json.loads((resumed / METADATA_FILE).read_text())["complete"]
    with pytest.raises(UserError, match="cannot resume"):
        (out / METADATA_FILE).write_bytes(
            seal({**json.loads((out / METADATA_FILE).read_text()), "complete": False})
        )
        collect(POINT_MASS_ID, 800, out, near_goal_widths=[0.3, 1.0], resume=True, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"near_goal_widths": [0.2, 1.0]}, "near_goal_share is 0"),
        (
            {"near_goal_widths": [0.2], "near_goal_share": 1.0},
            r"one per state coordinate \(2: x, v\), got \[0.2\]",
        ),
        (
            {"near_goal_widths": [0.2, 0.0], "near_goal_share": 1.0},
            r"near_goal_widths must be a list of which each item is a finite number in "
            r"\(0, 1\]",
        ),
    ],
)
def test_near_goal_widths_are_checked(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        collect(POINT_MASS_ID, 100, tmp_path / "bad", progress=False, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_cli_passes_the_near_goal_share_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "near"
    args = ["collect", POINT_MASS_ID, "--transitions", "40", "--out", str(out)]
    assert cli.main([*args, "--near-goal-share", "0.5"]) == 0
    assert json.loads((out / METADATA_FILE).read_text())["near_goal_share"] == 0.5
    assert cli.main([*args[:-1], str(tmp_path / "bad"), "--near-goal-share", "2"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        "latentrl collect: error: argument --near-goal-share: must be a finite number in "
        "[0, 1], got '2' (see latentrl collect --help)"
    )
    assert not (tmp_path / "bad").exists()
    wide = tmp_path / "wide"
    widths = ["--near-goal-share", "1", "--near-goal-widths", "0.2", "1"]
    assert cli.main([*args[:-1], str(wide), *widths]) == 0
    assert json.loads((wide / METADATA_FILE).read_text())["near_goal_widths"] == [0.2, 1.0]


def test_check_env_catches_chains_that_leave_the_state_box(
    capsys: pytest.CaptureFixture,
) -> None:
    import gymnasium as gym
    from point_mass import PointMassEnv

    class Unclipped(PointMassEnv):
        def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
            return states + 10.0 * self.state_space.high  # out of the box after one step

    gym.register(id="UnclippedPointMass-v0", entry_point=Unclipped, max_episode_steps=50)
    try:
        assert cli.main(["check-env", "UnclippedPointMass-v0"]) == 1
    finally:
        gym.registry.pop("UnclippedPointMass-v0")
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert any(
        "random chains stay valid" in line and "after 1 random step" in line for line in failed
    )
