"""Dataset format: round trip, determinism, splits, and every way a dataset can be bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.collect import collect
from latentrl.data import METADATA_FILE, chunk_file_name, load_transitions
from latentrl.errors import UserError


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pm"
    return collect(POINT_MASS_ID, 2_500, out, seed=7, chunk_size=1_000, progress=False)


def test_round_trip_matches_the_environment(dataset_dir: Path) -> None:
    from point_mass import PointMassEnv, point_mass_step

    data = load_transitions(dataset_dir)
    assert len(data) == 2_500
    assert data.obs.dtype == torch.uint8 and data.obs.shape == (2_500, 2, 32, 32)
    assert data.action.dtype == torch.float32 and data.action.shape == (2_500, 1)
    assert data.state.dtype == torch.float64 and data.next_state.shape == (2_500, 2)
    env = PointMassEnv()
    states = data.state.numpy()
    np.testing.assert_array_equal(data.obs.numpy(), env.observe(states))
    np.testing.assert_array_equal(data.next_obs.numpy(), env.observe(data.next_state.numpy()))
    np.testing.assert_array_equal(
        data.next_state.numpy(), point_mass_step(states, data.action.numpy())
    )
    # uniform mode: states fill the valid box, controls fill the action box
    assert states[:, 0].min() < -0.95 and states[:, 0].max() > 0.95
    assert data.action.min() < -0.95 and data.action.max() > 0.95


def test_same_seed_same_bytes_and_other_seed_other_bytes(dataset_dir: Path, tmp_path: Path) -> None:
    again = collect(POINT_MASS_ID, 2_500, tmp_path / "a", seed=7, chunk_size=1_000, progress=False)
    other = collect(POINT_MASS_ID, 2_500, tmp_path / "b", seed=8, chunk_size=1_000, progress=False)
    for name in [METADATA_FILE, *(chunk_file_name(i) for i in range(3))]:
        assert (again / name).read_bytes() == (dataset_dir / name).read_bytes(), name
    assert (other / chunk_file_name(0)).read_bytes() != (
        dataset_dir / chunk_file_name(0)
    ).read_bytes()


def test_metadata_records_provenance(dataset_dir: Path) -> None:
    meta = json.loads((dataset_dir / METADATA_FILE).read_text())
    assert meta["env_id"] == POINT_MASS_ID and meta["mode"] == "uniform" and meta["seed"] == 7
    assert meta["transitions"] == 2_500 and meta["complete"] is True
    assert [c["count"] for c in meta["chunks"]] == [1_000, 1_000, 500]
    assert {"gymnasium", "mujoco", "numpy", "latentrl"} <= set(meta["versions"])
    assert all(len(c["sha256"]) == 64 for c in meta["chunks"])


def test_split_is_deterministic_and_disjoint(dataset_dir: Path) -> None:
    data = load_transitions(dataset_dir)
    train, val = data.split(0.2, seed=1)
    train2, val2 = data.split(0.2, seed=1)
    _, val3 = data.split(0.2, seed=2)
    assert (len(train), len(val)) == (2_000, 500)
    assert torch.equal(val.state, val2.state) and torch.equal(train.obs, train2.obs)
    assert not torch.equal(val.state, val3.state)
    rows = {tuple(r) for r in train.state.tolist()} & {tuple(r) for r in val.state.tolist()}
    assert not rows
    batch = train.batch(torch.tensor([0, 5]))
    assert batch.obs.shape == (2, 2, 32, 32) and batch.obs.dtype == torch.uint8


def test_expectations_are_checked(dataset_dir: Path) -> None:
    load_transitions(dataset_dir, expect={"env_id": POINT_MASS_ID, "obs_shape": (2, 32, 32)})
    with pytest.raises(
        UserError, match="env_id='point_mass:PointMass-v0' but 'latentrl/Pendulum-v0'"
    ):
        load_transitions(dataset_dir, expect={"env_id": "latentrl/Pendulum-v0"})
    with pytest.raises(UserError, match="obs_shape"):
        load_transitions(dataset_dir, expect={"obs_shape": (2, 48, 48)})


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_corrupt_chunk_is_named(dataset_dir: Path, tmp_path: Path) -> None:
    bad = _copy(dataset_dir, tmp_path / "bad")
    chunk = bad / chunk_file_name(1)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"chunk-00001\.safetensors\.gz is corrupt"):
        load_transitions(bad)


def test_truncated_chunk_is_named(dataset_dir: Path, tmp_path: Path) -> None:
    bad = _copy(dataset_dir, tmp_path / "short")
    chunk = bad / chunk_file_name(2)
    chunk.write_bytes(chunk.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"chunk-00002\.safetensors\.gz is corrupt or truncated"):
        load_transitions(bad)


def test_missing_chunk_and_corrupt_metadata(dataset_dir: Path, tmp_path: Path) -> None:
    bad = _copy(dataset_dir, tmp_path / "missing")
    (bad / chunk_file_name(0)).unlink()
    with pytest.raises(UserError, match=r"chunk-00000\.safetensors\.gz is missing"):
        load_transitions(bad)
    (bad / METADATA_FILE).write_text('{"format": "latentrl-transitions", ')
    with pytest.raises(UserError, match=r"metadata\.json is corrupt"):
        load_transitions(bad)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no dataset at"):
        load_transitions(tmp_path / "nothing")
    with pytest.raises(UserError, match="not a latentrl dataset"):
        load_transitions(tmp_path)


@pytest.fixture(scope="module")
def chained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "chained"
    return collect(POINT_MASS_ID, 250, out, seed=3, chunk_size=100, chain_length=8, progress=False)


def test_chained_rows_follow_the_true_dynamics(chained_dir: Path) -> None:
    from point_mass import PointMassEnv, point_mass_step

    data = load_transitions(chained_dir)
    states, actions = data.state.numpy(), data.action.numpy()
    np.testing.assert_array_equal(data.next_state.numpy(), point_mass_step(states, actions))
    np.testing.assert_array_equal(data.obs.numpy(), PointMassEnv().observe(states))
    # chains of 8 restart at every chunk of 100: 12 whole chains and one of 4 per full chunk
    breaks = torch.nonzero(~data.continues()).squeeze(-1) + 1
    starts_in_chunk = [*range(0, 100, 8)]
    expected = [c + s for c in (0, 100, 200) for s in starts_in_chunk if 0 < c + s < 250]
    assert breaks.tolist() == expected
    follows = data.continues()
    np.testing.assert_array_equal(
        data.obs[1:][follows].numpy(), data.next_obs[:-1][follows].numpy()
    )
    meta = json.loads((chained_dir / METADATA_FILE).read_text())
    assert meta["chain_length"] == 8


def test_independent_draws_never_continue_each_other(dataset_dir: Path) -> None:
    data = load_transitions(dataset_dir)
    assert not data.continues().any()
    assert data.window_starts(1).tolist() == list(range(len(data)))
    assert len(data.window_starts(2)) == 0
    assert "chain_length" not in json.loads((dataset_dir / METADATA_FILE).read_text())


def test_window_starts_lie_inside_one_chain(chained_dir: Path) -> None:
    data = load_transitions(chained_dir)
    starts = data.window_starts(5).tolist()
    # per chunk: chains 0..11 start at 8 i and hold starts 8 i .. 8 i + 3; the last chain
    # (4 transitions, 96..99) holds no window of 5
    per_chunk = [8 * i + j for i in range(12) for j in range(4)]
    last_chunk = [200 + s for s in per_chunk[:24]]  # 50 rows: chains 0..5 and a cut one of 2
    assert starts == [c + s for c in (0, 100) for s in per_chunk] + last_chunk
    with pytest.raises(ValueError):
        data.window_starts(0)


def test_split_keeps_chains_whole_and_unchained_splits_as_before(
    chained_dir: Path, dataset_dir: Path
) -> None:
    data = load_transitions(chained_dir)
    train, val = data.split(0.2, seed=0)
    assert len(train) + len(val) == len(data)
    # a chain is never cut: each part has exactly as many chain starts as before the split
    chains = int((~data.continues()).sum()) + 1
    assert sum(int((~part.continues()).sum()) + 1 for part in (train, val)) == chains
    assert len(train.window_starts(5)) + len(val.window_starts(5)) == len(data.window_starts(5))
    # unchained data: the same rows as a plain seeded permutation of the transitions
    plain = load_transitions(dataset_dir)
    _, val_plain = plain.split(0.2, seed=1)
    order = np.random.default_rng(1).permutation(len(plain))[:500]
    assert torch.equal(val_plain.state, plain.state[torch.from_numpy(order)])
