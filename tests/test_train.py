"""Training: losses fall, resume reproduces an uninterrupted run, NaN stops cleanly."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.checkpoint import load_model
from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig, save_config
from latentrl.devices import resolve_device
from latentrl.errors import UserError
from latentrl.kinds import MODEL_KINDS, build_model
from latentrl.logging import read_metrics
from latentrl.losses import LossConfig, MultiStepConfig, objective
from latentrl.models import ModelConfig
from latentrl.run_directory import CONFIG_FILE, new_run_dir
from latentrl.train import (
    TrainingDivergedError,
    _Loop,
    train,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pm"
    return collect(POINT_MASS_ID, 1_200, out, seed=0, progress=False)


def tiny_config(epochs: int = 4) -> ExperimentConfig:
    return ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=1_200),
        model=ModelConfig(
            obs_shape=(2, 32, 32),
            action_dim=1,
            latent_dim=2,
            hidden_sizes=(64,),
            transition_hidden_sizes=(16,),
        ),
        train=TrainConfig(
            epochs=epochs, batch_size=50, learning_rate=3e-3, image_every=2, probe_steps=100
        ),
    )


def test_training_lowers_the_loss_terms_and_writes_its_artifacts(
    dataset: Path, tmp_path: Path
) -> None:
    result = train(tiny_config(), tmp_path / "run", dataset, wandb_mode="disabled")
    rows = [r for r in read_metrics(result.run_dir) if "val/loss/total" in r]
    first, last = rows[0], rows[-1]
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
    for term in ("total", "reconstruction", "prediction"):
        assert last[f"val/loss/{term}"] < 0.9 * first[f"val/loss/{term}"], term
        assert last[f"train/loss/{term}"] < 0.9 * first[f"train/loss/{term}"], term
    # the transition KL falls as the predicted and encoded next latents come together
    assert last["val/loss/kl_transition"] < first["val/loss/kl_transition"]
    # the open-loop drift is logged after 1, 10, 20 and 40 steps and grows with the steps
    drift = [last[f"val/open_loop_error_{k}"] for k in (1, 10, 20, 40)]
    assert 0 < drift[0] < drift[1] and all(np.isfinite(drift)), drift
    assert result.steps == 4 * (1_080 // 50)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["probe/r2_x"] > 0.5  # the position is clearly visible in the latent
    images = sorted(p.name for p in (result.run_dir / "images").iterdir())
    assert images == [
        f"{kind}_{s:07d}.png" for kind in ("latent_map", "reconstruction") for s in (42, 84)
    ]
    model, config = load_model(result.run_dir)
    assert config == tiny_config() and model.config.latent_dim == 2


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(run_dir)
    return model.state_dict()


def test_resume_after_an_interruption_gives_the_same_weights(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = train(tiny_config(3), tmp_path / "whole", dataset, wandb_mode="disabled").run_dir

    original = _Loop.epoch
    calls = {"n": 0}

    def epoch_then_kill(self: _Loop, state):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, state)

    monkeypatch.setattr(_Loop, "epoch", epoch_then_kill)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(3), tmp_path / "cut", dataset, wandb_mode="disabled")
    monkeypatch.setattr(_Loop, "epoch", original)
    with pytest.raises(UserError, match="already holds a run; continue it with --resume"):
        train(tiny_config(3), tmp_path / "cut", dataset, wandb_mode="disabled")
    resumed = train(tiny_config(3), tmp_path / "cut", dataset, resume=True, wandb_mode="disabled")
    assert resumed.epochs == 3
    a, b = _weights(whole), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [r["step"] for r in read_metrics(tmp_path / "cut") if "epoch" in r]
    assert steps == [21, 42, 63]  # nothing logged twice, nothing lost


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e2c = MODEL_KINDS["e2c"]
    real_loss = e2c.objective
    calls = {"n": 0}

    def loss_that_breaks(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss, metrics = real_loss(*args, **kwargs)
        if calls["n"] > 30:  # during epoch 2 (21 steps an epoch, validation counted too)
            loss = loss * float("nan")
            metrics = {k: v * float("nan") for k, v in metrics.items()}
        return loss, metrics

    monkeypatch.setitem(MODEL_KINDS, "e2c", dataclasses.replace(e2c, objective=loss_that_breaks))
    with pytest.raises(
        TrainingDivergedError, match=r"diverged in epoch 2 .* after epoch 1 is kept"
    ):
        train(tiny_config(3), tmp_path / "nan", dataset, wandb_mode="disabled")
    trainer = json.loads((tmp_path / "nan" / "checkpoint" / "trainer.json").read_text())
    assert trainer["epoch"] == 1
    model, _ = load_model(tmp_path / "nan")
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _PoisonedAdamW(torch.optim.AdamW):
    """AdamW that, after its step number ``at``, sets every weight to ``value``: a run that
    diverges in that very step, after the epoch's losses were summed."""

    at, value, calls = 0, 0.0, 0

    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = super().step(closure)
        type(self).calls += 1
        if type(self).calls == self.at:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(self.value)
        return loss


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(
    ("epochs", "value", "kept"), [(2, 1e10, 1), (1, float("nan"), None)], ids=["1e10", "nan"]
)
def test_weights_broken_in_the_last_step_are_never_saved(
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epochs: int,
    value: float,
    kept: int | None,
) -> None:
    poisoned = type("Poisoned", (_PoisonedAdamW,), {"at": 21 * epochs, "value": value})
    monkeypatch.setattr(torch.optim, "AdamW", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as caught:
        train(tiny_config(epochs), run, dataset, wandb_mode="disabled")
    message = str(caught.value)
    assert f"diverged in epoch {epochs} (non-finite val/loss/" in message
    if kept is None:  # nothing to resume: the message says so and how to start over
        assert not (run / "checkpoint").exists() and not (run / "checkpoint.tmp").exists()
        assert "no checkpoint was written" in message and "start over in a new run" in message
        return
    assert f"the checkpoint after epoch {kept} is kept in {run}" in message
    assert f"latentrl train --run-dir {run} --resume" in message
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["epoch"] == kept
    model, _ = load_model(run)
    assert all(torch.isfinite(p).all() and p.abs().max() < 1e3 for p in model.parameters())
    monkeypatch.undo()  # the resume the message suggests works
    monkeypatch.setenv("WANDB_MODE", "disabled")
    resumed = train(tiny_config(epochs), run, dataset, resume=True, wandb_mode="disabled")
    assert resumed.epochs == epochs


def test_wrong_dataset_and_device_are_refused(dataset: Path, tmp_path: Path) -> None:
    config = tiny_config()
    other = dataclasses.replace(
        config, data=dataclasses.replace(config.data, env_id="latentrl/Pendulum-v0")
    )
    with pytest.raises(
        UserError, match="env_id='point_mass:PointMass-v0' but 'latentrl/Pendulum-v0'"
    ):
        train(other, tmp_path / "x", dataset, wandb_mode="disabled")
    assert not (tmp_path / "x").exists()  # refused before anything was written
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    # a run interrupted before its first checkpoint holds only its config
    (tmp_path / "y").mkdir()
    save_config(config, tmp_path / "y" / CONFIG_FILE)
    with pytest.raises(UserError, match="no checkpoint yet"):
        load_model(tmp_path / "y")


def test_the_multi_step_term_trains_on_chained_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chained = collect(POINT_MASS_ID, 1_200, tmp_path / "chained", chain_length=8, progress=False)
    config = tiny_config(epochs=2)
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, chain_length=8),
        loss=LossConfig(multi_step=MultiStepConfig(horizon=4, encoder_gradient=0.25)),
    )
    windows: list[tuple[int, ...]] = []

    def recording_loss(*args, **kwargs):
        if len(args) > 5 and args[5] is not None:  # a training step with its continuation
            assert args[4] is config.loss
            windows.append(tuple(args[5].action.shape))
        return objective(*args, **kwargs)

    monkeypatch.setitem(
        MODEL_KINDS, "e2c", dataclasses.replace(MODEL_KINDS["e2c"], objective=recording_loss)
    )
    result = train(config, tmp_path / "run", chained, wandb_mode="disabled")
    assert windows and set(windows) == {(config.train.batch_size, 3, 1)}  # K - 1 = 3 steps
    rows = [r for r in read_metrics(result.run_dir) if "train/loss/multi_step" in r]
    assert len(rows) == 2 and all(np.isfinite(r["train/loss/multi_step"]) for r in rows)
    assert rows[-1]["train/loss/multi_step"] > 0
    # independent transitions hold no window of 4 steps: one clear error, no run directory
    unchained = collect(POINT_MASS_ID, 1_200, tmp_path / "plain", progress=False)
    with pytest.raises(UserError, match="no chains of 4 transitions"):
        train(config, tmp_path / "run2", unchained, wandb_mode="disabled")
    assert not (tmp_path / "run2").exists()


def test_runs_started_in_the_same_second_get_their_own_directories(
    dataset: Path, tmp_path: Path
) -> None:
    now = datetime(2026, 11, 21, 16, 6, 0)
    first, second = (new_run_dir(tmp_path / "runs", tiny_config(), now) for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == first.name + "-2"
    # a run refused for its input leaves no empty directory behind
    config = tiny_config()
    too_large = dataclasses.replace(
        config, train=dataclasses.replace(config.train, batch_size=5_000)
    )
    with pytest.raises(UserError, match="fewer than one batch"):
        train(too_large, second, dataset, wandb_mode="disabled")
    assert not second.exists() and first.is_dir()


CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    ],
)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_bf16_computes_the_objective_of_float32_to_a_percent(device: str) -> None:
    """One objective on the same weights, batch and noise: bfloat16 autocast against float32
    (the paper-size pendulum model, whose sums over 4,608 pixels bf16 must not spoil)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig((2, 48, 48), 1, latent_dim=3)).to(device)
    x_t, x_next = torch.randint(0, 256, (2, 64, 2, 48, 48), dtype=torch.uint8).to(device)
    u_t = (torch.rand(64, 1) * 4 - 2).to(device)
    totals = {}
    for bf16 in (False, True):
        torch.manual_seed(1)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss, metrics = objective(model, x_t, u_t, x_next, LossConfig())
        totals[bf16] = {k: float(v) for k, v in metrics.items() if k.startswith("loss/")}
        assert loss.dtype == torch.float32
    for key, value in totals[False].items():
        assert totals[True][key] == pytest.approx(value, rel=0.01, abs=0.05), key
    assert totals[True] != totals[False]  # it ran in bf16


def test_bf16_trains_close_to_float32(dataset: Path, tmp_path: Path) -> None:
    """``train.bf16``: the training step under bfloat16 autocast. Its losses stay near
    float32's (the trajectories part, so not bit for bit); the weights stay float32."""
    rows = {}
    for bf16 in (False, True):
        config = tiny_config(epochs=1)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, bf16=bf16))
        result = train(config, tmp_path / f"bf16_{bf16}", dataset, wandb_mode="disabled")
        rows[bf16] = [r for r in read_metrics(result.run_dir) if "val/loss/total" in r][-1]
        model, _ = load_model(result.run_dir)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    for key in ("train/loss/total", "val/loss/total", "val/loss/reconstruction"):
        assert rows[True][key] == pytest.approx(rows[False][key], rel=0.1), key
    assert rows[True]["train/loss/total"] != rows[False]["train/loss/total"]  # it ran in bf16


def test_a_model_with_batch_norm_trains_and_saves_its_running_statistics(
    dataset: Path, tmp_path: Path
) -> None:
    base = tiny_config(2)
    config = dataclasses.replace(base, model=dataclasses.replace(base.model, batch_norm=True))
    result = train(config, tmp_path / "run", dataset, wandb_mode="disabled")
    rows = [r for r in read_metrics(result.run_dir) if "val/loss/total" in r]
    assert rows[-1]["val/loss/reconstruction"] < rows[0]["val/loss/reconstruction"]
    model, saved = load_model(result.run_dir)
    assert saved.model.batch_norm and not model.training  # evaluation reads running stats
    means = [v for k, v in model.state_dict().items() if k.endswith("running_mean")]
    assert len(means) == 2 and all(bool(m.abs().sum() > 0) for m in means)  # trained, saved
