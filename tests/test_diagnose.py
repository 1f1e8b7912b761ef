"""``latentrl diagnose`` end to end on tiny trained runs: its report, figures, summaries and
the run-directory rules (no clobbering, unfinished reports replaced, a kind without a
decoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentrl.cli import main
from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig
from latentrl.diagnose import NO_DECODER, diagnose_run
from latentrl.diagnostics.settings import DiagnoseSettings
from latentrl.errors import UserError
from latentrl.locks import hold
from latentrl.models import ModelConfig
from latentrl.train import train

PENDULUM = "latentrl/Pendulum-v0"
SMALL = DiagnoseSettings(
    images=4,
    samples=60,
    fit_steps=6,
    gradient_images=2,
    repeats=3,
    transitions=16,
    kl_samples=200,
    horizon=3,
    goal_states=8,
    goal_steps=2,
)
FIGURES = (
    "amortization.png",
    "goal.png",
    "gradient_variance.png",
    "iwae.png",
    "linearization.png",
)


def tiny_run(root: Path, data: Path, kind: str) -> Path:
    config = ExperimentConfig(
        name="pendulum",
        preset="test",
        data=DataConfig(env_id=PENDULUM, transitions=600, chain_length=4),
        model=ModelConfig(
            (2, 48, 48), 1, kind=kind, hidden_sizes=(32,), transition_hidden_sizes=(16,)
        ),
        train=TrainConfig(epochs=1, batch_size=50, image_every=1, probe_steps=20),
    )
    return train(config, root / kind, data, wandb_mode="disabled").run_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diagnose_data")
    return collect(PENDULUM, 600, root / "data", seed=0, chain_length=4, progress=False)


@pytest.fixture(scope="module")
def e2c_run(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    return tiny_run(tmp_path_factory.mktemp("diagnose_runs"), data, "e2c")


def test_a_diagnosis_writes_its_report_figures_and_summaries(e2c_run: Path) -> None:
    lines: list[str] = []
    result = diagnose_run(e2c_run, settings=SMALL, wandb_mode="disabled", echo=lines.append)
    out = e2c_run / "diagnose"
    assert result.out == out and lines == result.lines and len(lines) == 8
    report = json.loads((out / "report.json").read_text())
    assert report["model_kind"] == "e2c" and report["settings"]["samples"] == 60
    gap = report["elbo_gap"]
    assert gap["images"] == 4 and gap["iwae"]["k"] == [1, 2, 5, 10, 20, 50, 60]
    # log-mean-exp >= mean of the same log-weights: the estimate sits above the ELBO
    assert gap["gap"]["mean"] > 0 and gap["log_px"]["mean"] > gap["elbo"]["mean"]
    assert gap["iwae"]["mean"][-1] > gap["iwae"]["mean"][0]
    assert gap["log_px"]["mean"] < 0  # a Bernoulli likelihood: log p(x) < 0
    amortization = report["amortization"]
    assert amortization["history"]["step"][0] == 0 and amortization["history"]["step"][-1] == 6
    # the per-image ascent starts at the encoder's ELBO and climbs
    assert amortization["elbo_fitted"]["mean"] > amortization["elbo_amortized"]["mean"]
    total = amortization["approximation_gap"]["mean"] + amortization["amortization_gap"]["mean"]
    assert total == pytest.approx(amortization["gap_best"]["mean"], abs=1e-6)
    # log p(x) is the better of two lower bounds: never below the encoder-proposal one
    assert amortization["encoder_proposal_shortfall"]["mean"] >= 0
    assert amortization["gap_best"]["mean"] >= gap["gap"]["mean"]
    counts = amortization["parameters"]
    assert counts["per_image"] == counts["theta"] + 2 * 3 * counts["training_images"]
    assert counts["amortized"] == counts["theta"] + counts["phi"]
    assert counts["training_images"] == 600 - 60  # the run's own split: 15 of 150 chains
    gradients = report["gradients"]
    assert gradients["ratio_score_function"]["mean"] > 1.0
    assert gradients["encoder_parameters"] == counts["phi"]
    transition = report["transition"]
    assert transition["horizon"] == 3 and transition["transitions"] == 16
    assert transition["kl"]["abs_z_mean"] < 3.0
    assert transition["rollout"]["linear"]["mean"][0] == pytest.approx(
        transition["rollout"]["model"]["mean"][0], rel=1e-4
    )
    goal = report["goal"]
    assert goal["push"]["states"] == 8 and len(goal["push"]["cosine"]["mean"]) == 2
    assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in goal["push"]["cosine"]["mean"])
    assert goal["typical_move"] > 0 and len(goal["holding_action"]) == 1
    assert lines[-3].startswith("goal: the model drifts ")
    cost = goal["cost"]
    assert cost["states"] == 8 and len(cost["anywhere"]["task_cost"]) == 8
    near = cost["near_goal"]["rank_correlation"]
    assert -1 <= near <= 1 and lines[-1].startswith("cost: |z - z_goal|², the planner's cost,")
    assert f"with rank correlation {near:.2f}" in lines[-1]
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[1] == 400
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diagnose/elbo_gap"] == pytest.approx(gap["gap"]["mean"])
    assert summary["diagnose/goal_holding_box_share"] == pytest.approx(goal["holding_box_share"])
    assert summary["diagnose/cost_rank_near_goal"] == pytest.approx(near)
    run_summary = json.loads((e2c_run / "summary.json").read_text())
    assert run_summary["diagnose/amortization_gap"] == pytest.approx(
        amortization["amortization_gap"]["mean"]
    )
    assert "probe/r2_mean" in run_summary  # the training's numbers stay

    with pytest.raises(UserError, match="already holds a diagnosis; pass --overwrite"):
        diagnose_run(e2c_run, settings=SMALL, wandb_mode="disabled", echo=lines.append)
    lines.clear()
    with hold(e2c_run):  # as a training of the run would: its summary.json is not touched
        before = (e2c_run / "summary.json").read_text()
        (e2c_run / "summary.json").write_text(json.dumps({"probe/r2_mean": 0.5}))
        again = diagnose_run(
            e2c_run, settings=SMALL, overwrite=True, wandb_mode="disabled", echo=lines.append
        )
        assert json.loads((e2c_run / "summary.json").read_text()) == {"probe/r2_mean": 0.5}
        (e2c_run / "summary.json").write_text(before)
    assert lines[0].startswith(f"{e2c_run} is being trained: its summary.json is left as it is")
    for part in ("elbo_gap", "amortization", "transition", "goal"):  # same seed, same numbers
        assert json.dumps(again.report[part]) == json.dumps(report[part])


def test_an_unfinished_diagnosis_is_replaced_and_other_files_are_refused(
    e2c_run: Path, tmp_path: Path
) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text("")
    (unfinished / "iwae.png").write_bytes(b"")  # killed while writing its figures
    lines: list[str] = []
    diagnose_run(e2c_run, unfinished, SMALL, wandb_mode="disabled", echo=lines.append)
    assert lines[0].startswith("replacing the unfinished diagnosis")
    assert (unfinished / "report.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="holds other files"):
        diagnose_run(e2c_run, mine, SMALL, wandb_mode="disabled")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_the_command_line(e2c_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    flags = ["--images", "2", "--samples", "20", "--fit-steps", "2", "--gradient-images", "2"]
    goal = ["--goal-states", "3", "--goal-steps", "2"]
    code = main(["diagnose", str(e2c_run), "--out", str(out), *flags, *goal, "--repeats", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ELBO gap: log p(x) - ELBO = " in printed and f"wrote {out}" in printed
    assert "pushes near the goal (3 true states, opposite full pushes)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["images"] == 2 and report["goal"]["push"]["steps"] == 2
    assert main(["diagnose", str(e2c_run), "--out", str(out), "--goal-states", "1"]) == 2
    assert "--goal-states" in capsys.readouterr().err
    assert main(["diagnose", str(e2c_run), "--out", str(out), "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["diagnose", str(e2c_run), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_a_kind_without_a_decoder_gets_the_linearization_only(tmp_path: Path, data: Path) -> None:
    run = tiny_run(tmp_path, data, "pc3")
    lines: list[str] = []
    result = diagnose_run(run, settings=SMALL, wandb_mode="disabled", echo=lines.append)
    assert lines[0] == NO_DECODER.format(kind="pc3")
    assert set(result.report) >= {"transition", "model_kind"}
    assert not {"elbo_gap", "amortization", "gradients"} & set(result.report)
    assert "kl" not in result.report["transition"]
    assert np.isfinite(result.report["transition"]["rollout"]["linear"]["mean"]).all()
    assert sorted(p.name for p in (run / "diagnose").glob("*.png")) == [
        "goal.png",
        "linearization.png",
    ]


def test_the_goal_check_is_skipped_with_a_line_where_the_env_cannot_be_made(
    e2c_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unknown(env_id: str, **kwargs: object) -> None:
        raise UserError(f"unknown environment {env_id!r}")

    monkeypatch.setattr("latentrl.diagnose.make_env", unknown)
    lines: list[str] = []
    result = diagnose_run(
        e2c_run, tmp_path / "out", SMALL, wandb_mode="disabled", echo=lines.append
    )
    assert f"goal check skipped: unknown environment {PENDULUM!r}" in lines
    assert "goal" not in result.report and "transition" in result.report
    assert not (tmp_path / "out" / "goal.png").exists()
