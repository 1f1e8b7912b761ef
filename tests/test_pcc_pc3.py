"""The PCC and PC3 kinds end to end on the point-mass plug-in env, through the command line:
train (``--set model.kind=...``), evaluate and compare work unchanged for both."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import pytest
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.checkpoint import load_model
from latentrl.cli import main
from latentrl.collect import collect
from latentrl.errors import UserError
from latentrl.logging import read_metrics
from latentrl.losses import LossConfig, MultiStepConfig
from latentrl.models.pc3 import PC3
from latentrl.models.pcc import PCC
from latentrl.pipeline import experiment_config

TINY = [
    "model.hidden_sizes=[64]",
    "model.transition_hidden_sizes=[16]",
    "model.latent_dim=2",
    "train.epochs=3",
    "train.batch_size=50",
    "train.learning_rate=0.003",
    "train.image_every=3",
    "train.probe_steps=100",
    "eval.episodes=1",
    "eval.gifs=1",
    "eval.oracle_horizon=20",
    "plan.horizon=5",
    "plan.max_iterations=2",
]


def _sets(assignments: list[str]) -> list[str]:
    return [item for a in assignments for item in ("--set", a)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pm"
    return collect(POINT_MASS_ID, 1_200, out, seed=0, progress=False)


@pytest.mark.parametrize(
    ("kind", "model_class", "falling", "images"),
    [
        pytest.param(  # the default run keeps pc3's, the kind unlike the others (no decoder)
            "pcc",
            PCC,
            ("total", "prediction", "consistency"),
            ["latent_map", "reconstruction"],
            marks=pytest.mark.slow,
        ),
        ("pc3", PC3, ("total", "cpc"), ["latent_map"]),
    ],
)
def test_a_kind_trains_evaluates_and_compares_from_the_command_line(
    kind: str,
    model_class: type,
    falling: tuple[str, ...],
    images: list[str],
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    train = ["train", "--data", str(dataset), "--run-dir", str(run), "--wandb", "disabled"]
    assert main([*train, *_sets([f"model.kind={kind}", *TINY])]) == 0
    printed = capsys.readouterr().out
    assert f", model.kind={kind}, on cpu: " in printed.splitlines()[0]
    epoch_lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    # the epoch line shows E2C's next-state column where the kind reports the prediction NLL
    assert ("val_next" in epoch_lines[-1]) == (kind == "pcc")

    rows = [r for r in read_metrics(run) if "val/loss/total" in r]
    first, last = rows[0], rows[-1]
    for term in falling:
        assert last[f"train/loss/{term}"] < first[f"train/loss/{term}"], term
        assert last[f"val/loss/{term}"] < first[f"val/loss/{term}"], term
    if kind == "pc3":  # the InfoNCE bound on the mutual information rises, below log K
        information = [r["val/diag/mutual_information"] for r in (first, last)]
        assert 0 < information[0] < information[1] < math.log(120)  # K: the validation split
    assert sorted({p.name.split("_0")[0] for p in (run / "images").iterdir()}) == images
    summary = json.loads((run / "summary.json").read_text())
    assert summary["probe/r2_x"] > 0.3  # the position is visible in the latent

    model, config = load_model(run)
    assert type(model) is model_class and config.model.kind == kind
    assert config.loss == LossConfig()  # the kind's defaults, and E2C's sections untouched

    assert main(["evaluate", str(run), "--wandb", "disabled"]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert list(results["agents"]) == ["latent", "oracle", "random"]
    latent = results["agents"]["latent"]["aggregate"]
    assert 0.0 <= latent["steps_in_goal"]["mean"] <= 1.0
    frames = iio.imread(run / "eval" / "videos" / "latent_episode_00.gif")
    panels = results["gif_panels"]
    assert panels[0] == "observation" and (panels == ["observation"]) == (kind == "pc3")
    assert frames.shape[1:3] == (64, len(panels) * 64 + (len(panels) - 1) * 2)

    out = tmp_path / "compare.png"
    assert main(["compare", str(run), "--out", str(out)]) == 0
    (group,) = json.loads(out.with_suffix(".json").read_text()).values()
    assert group["runs"] == [str(run)]
    assert group["agents"]["latent"]["steps_in_goal"]["mean"] == latent["steps_in_goal"]["mean"]


@pytest.mark.parametrize("kind", ["pcc", "pc3"])
def test_an_experiment_file_made_for_e2c_runs_as_another_kind(kind: str) -> None:
    # pendulum.toml tunes E2C's multi-step term; as PCC or PC3 those sections are unread
    e2c = experiment_config("pendulum", "debug")
    assert e2c.loss.multi_step.horizon == 8
    config = experiment_config("pendulum", "debug", overrides=[f"model.kind={kind}"])
    assert config.model.kind == kind and config.loss == LossConfig()
    tuned = experiment_config(
        "pendulum", "debug", overrides=[f"model.kind={kind}", f"loss.{kind}.lambda_cur=2.0"]
    )
    assert getattr(tuned.loss, kind).lambda_cur == 2.0
    # a section the kind does not read is refused rather than silently ignored
    with pytest.raises(UserError, match=rf"loss\.multi_step is read by model\.kind=e2c.*'{kind}'"):
        experiment_config(
            "pendulum", "debug", overrides=[f"model.kind={kind}", "loss.multi_step.horizon=4"]
        )
    assert MultiStepConfig().horizon == 1


def test_pc3_with_a_window_trains_its_multi_step_consistency_on_chained_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = collect(POINT_MASS_ID, 600, tmp_path / "chains", seed=0, chain_length=8, progress=False)
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--run-dir", str(run), "--wandb", "disabled"]
    window = ["model.kind=pc3", "loss.pc3.window=4", "train.epochs=2", "train.probe_steps=50"]
    assert main([*train, *_sets([*TINY, *window])]) == 0
    assert "windows of 4 steps: " in capsys.readouterr().out
    rows = [r for r in read_metrics(run) if "val/loss/total" in r]
    assert rows[-1]["train/loss/multi_step"] < rows[0]["train/loss/multi_step"]
    assert "val/loss/multi_step" not in rows[-1]  # validation scores single transitions
    _, config = load_model(run)
    assert config.loss.pc3.window == 4
    # on single transitions the window has nothing to roll through: one line, exit status 2
    singles = collect(POINT_MASS_ID, 300, tmp_path / "singles", seed=0, progress=False)
    train = ["train", "--data", str(singles), "--run-dir", str(tmp_path / "r2")]
    assert main([*train, "--wandb", "disabled", *_sets([*TINY, *window])]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "loss.pc3.window=4 needs chains of at least 4 transitions" in line
