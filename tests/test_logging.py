"""Tests for latentrl.logging: W&B mode decisions, metrics file, images, summary, W&B calls."""

from __future__ import annotations

import json
import math
import re
import sys
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from latentrl.logging import Logger, read_metrics, resolve_wandb_mode, summary_line
from latentrl.run_directory import METRICS_FILE, WANDB_ID_FILE, run_name

# -- resolve_wandb_mode ------------------------------------------------------------------------

NETRC_WANDB = "machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n"
NETRC_FORGE = "machine api.forge.coreweave.com\n  login user\n  password " + "k" * 40 + "\n"
NETRC_OTHER = "machine example.com\n  login user\n  password secret\n"


@pytest.mark.parametrize(
    ("requested", "env", "netrc_text", "expected"),
    [
        ("disabled", {}, None, "disabled"),
        ("offline", {"WANDB_API_KEY": "key"}, None, "offline"),
        ("online", {"WANDB_API_KEY": "key"}, None, "online"),
        ("offline", {"WANDB_MODE": "online", "WANDB_API_KEY": "key"}, None, "offline"),
        (" Disabled ", {}, None, "disabled"),
        (None, {"WANDB_MODE": "disabled", "WANDB_API_KEY": "key"}, None, "disabled"),
        (None, {"WANDB_MODE": "dryrun"}, None, "offline"),
        (None, {"WANDB_MODE": "online", "WANDB_API_KEY": "key"}, None, "online"),
        (None, {"WANDB_API_KEY": "key"}, None, "online"),
        (None, {}, NETRC_WANDB, "online"),
        (None, {}, NETRC_FORGE, "online"),
        (None, {}, NETRC_OTHER, "offline"),
        (None, {}, "this is not a netrc file", "offline"),
        (None, {"WANDB_BASE_URL": "https://wandb.example.com"}, NETRC_WANDB, "offline"),
        (None, {"WANDB_API_KEY": ""}, None, "offline"),
        (None, {}, None, "offline"),
    ],
)
def test_resolve_wandb_mode_decision_table(
    tmp_path: Path, requested: str | None, env: dict, netrc_text: str | None, expected: str
) -> None:
    if netrc_text is not None:
        (tmp_path / ".netrc").write_text(netrc_text)
    assert resolve_wandb_mode(requested, {"HOME": str(tmp_path), **env}) == expected


def test_resolve_wandb_mode_reads_netrc_named_by_netrc_variable(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "credentials"
    path.parent.mkdir()
    path.write_text("machine wandb.example.com\n  login user\n  password abc\n")
    env = {"HOME": str(tmp_path), "NETRC": str(path), "WANDB_BASE_URL": "https://wandb.example.com"}
    assert resolve_wandb_mode(None, env) == "online"
    assert resolve_wandb_mode(None, {"HOME": str(tmp_path)}) == "offline"


@pytest.mark.parametrize(("requested", "env"), [("online", {}), (None, {"WANDB_MODE": "online"})])
def test_online_without_credentials_falls_back_to_offline(
    tmp_path: Path, requested: str | None, env: dict
) -> None:
    with pytest.warns(UserWarning, match="wandb login"):
        mode = resolve_wandb_mode(requested, {"HOME": str(tmp_path), **env})
    assert mode == "offline"


def test_invalid_wandb_mode_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'cloud'; choose one of online, offline, disabled\.$"):
        resolve_wandb_mode("cloud", {"HOME": str(tmp_path)})
    with pytest.raises(ValueError, match="WANDB_MODE environment variable is 'bogus'"):
        resolve_wandb_mode(None, {"HOME": str(tmp_path), "WANDB_MODE": "bogus"})


# -- names and console lines -------------------------------------------------------------------


def test_run_name_is_cleanrl_style_and_filesystem_safe() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5)
    assert (
        run_name("latentrl/Pendulum-v0", "e2c", 7, when) == "Pendulum-v0__e2c__7__20240102-030405"
    )
    assert run_name("CartPole-v1", "e2c big/lr 3", 0, when) == (
        "CartPole-v1__e2c_big_lr_3__0__20240102-030405"
    )


def test_summary_line_reads_like_a_log_line() -> None:
    line = summary_line("epoch 3/50", {"loss": 1234.5, "val": 1250.1}, rate=45000.4)
    assert line == "epoch 3/50 loss 1234.5 val 1250.1 (45,000 samples/s)"
    assert summary_line("", {"loss": 0.000123456}) == "loss 0.00012346"


# -- metrics file ------------------------------------------------------------------------------


def _logger(run_dir: Path, **kwargs: Any) -> Logger:
    return Logger(run_dir, "test-run", {"lr": 1e-3}, wandb_mode="disabled", **kwargs)


def test_metrics_jsonl_exact_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now fails
    with _logger(tmp_path) as logger:
        logger.log({"loss": torch.tensor(1.5), "kl": np.float32(0.25), "n": 3}, step=0)
        logger.log({"loss": math.nan, "kl": math.inf, "n": torch.tensor([2.0])}, step=10)
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert len(lines) == 2
    assert "NaN" not in lines[1] and "Infinity" not in lines[1]
    rows = [json.loads(line) for line in lines]
    assert [list(row) for row in rows] == [["step", "time", "loss", "kl", "n"]] * 2
    times = [row.pop("time") for row in rows]
    assert all(isinstance(t, float) for t in times) and 0.0 <= times[0] <= times[1] < 5.0
    assert rows == [
        {"step": 0, "loss": 1.5, "kl": 0.25, "n": 3.0},
        {"step": 10, "loss": None, "kl": None, "n": 2.0},
    ]
    assert read_metrics(tmp_path)[1]["loss"] is None


def test_log_is_flushed_before_close(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    logger.log({"loss": 2.0}, step=5)
    assert read_metrics(tmp_path)[0]["loss"] == 2.0
    logger.close()
    logger.close()  # idempotent


def test_log_rejects_reserved_names_and_non_scalars(tmp_path: Path) -> None:
    with _logger(tmp_path) as logger:
        with pytest.raises(ValueError, match="'step' is reserved"):
            logger.log({"step": 1.0}, step=1)
        with pytest.raises(ValueError, match=r"'z' must be a scalar, got shape \(3,\)"):
            logger.log({"z": torch.zeros(3)}, step=1)
    assert (tmp_path / METRICS_FILE).read_text() == ""


def test_fresh_logger_refuses_to_overwrite_metrics(tmp_path: Path) -> None:
    with _logger(tmp_path) as logger:
        logger.log({"loss": 1.0}, step=1)
    with pytest.raises(FileExistsError, match="resume=True"):
        _logger(tmp_path)


def test_resume_truncates_past_resume_step_and_keeps_id(tmp_path: Path) -> None:
    with _logger(tmp_path) as logger:
        first_id = logger.wandb_id
        for step in range(10):
            logger.log({"loss": float(step)}, step=step)
    with (tmp_path / METRICS_FILE).open("a") as file:
        file.write('{"step": 10, "time": 1.0, "lo')  # killed mid-write
    with _logger(tmp_path, resume=True, resume_step=4) as logger:
        assert logger.wandb_id == first_id
        kept = read_metrics(tmp_path)
        logger.log({"loss": 50.0}, step=5)
    assert [row["step"] for row in kept] == [0, 1, 2, 3, 4]
    rows = read_metrics(tmp_path)
    assert [(row["step"], row["loss"]) for row in rows] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 4.0),
        (5, 50.0),
    ]
    assert rows[-1]["time"] >= kept[-1]["time"]  # time continues across sessions
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first_id


def test_new_run_gets_a_new_id(tmp_path: Path) -> None:
    ids = set()
    for name in ("a", "b"):
        with _logger(tmp_path / name) as logger:
            ids.add(logger.wandb_id)
            assert re.fullmatch(r"[a-z0-9]{8}", logger.wandb_id)
    assert len(ids) == 2


def test_read_metrics_ignores_truncated_last_line(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "lo')
    with pytest.warns(UserWarning, match="truncated last line 2"):
        assert read_metrics(tmp_path) == [{"step": 0, "loss": 1.0}]


def test_read_metrics_rejects_corrupt_middle_line(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"step": 0}\n{"step": \n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_metrics(tmp_path)


# -- images, summary, console -----------------------------------------------------------------


def test_log_images_writes_pngs_of_the_right_size(tmp_path: Path) -> None:
    grey = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    with _logger(tmp_path) as logger:
        paths = logger.log_images({"val/grid": grey, "map": rgb}, step=42)
        with pytest.raises(ValueError, match=r"uint8 of shape \(H, W\) or \(H, W, 3\)"):
            logger.log_images({"bad": grey.astype(np.float32)}, step=43)
    assert paths == {
        "val/grid": tmp_path / "images" / "val_grid_0000042.png",
        "map": tmp_path / "images" / "map_0000042.png",
    }
    with Image.open(paths["val/grid"]) as image:
        assert (image.mode, image.size) == ("L", (7, 5))
        np.testing.assert_array_equal(np.asarray(image), grey)
    with Image.open(paths["map"]) as image:
        assert (image.mode, image.size) == ("RGB", (6, 4))
        assert np.asarray(image)[0, 0].tolist() == [200, 0, 0]


def test_log_summary_merges_into_summary_json(tmp_path: Path) -> None:
    with _logger(tmp_path) as logger:
        logger.log_summary({"success": 0.5, "cost": torch.tensor(3.0)})
        logger.log_summary({"success": 0.75, "nan": math.nan})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"success": 0.75, "cost": 3.0, "nan": None}


def test_console_lines_print_without_a_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _logger(tmp_path) as logger, logger.progress(total=100, initial=10, desc="train"):
        logger.update_progress(30, {"loss": 1.25})
        logger.echo(summary_line("epoch 1/2", {"loss": 1.25}))
    assert capsys.readouterr().out == "epoch 1/2 loss 1.25\n"


# -- W&B, through a stand-in module -----------------------------------------------------------


class _FakeRun:
    def __init__(self, calls: list, fail_on: str | None) -> None:
        self.calls, self.fail_on, self.summary = calls, fail_on, {}
        self.url = "https://wandb.example/run"

    def log(self, data: dict, step: int) -> None:
        if self.fail_on == "log":
            raise RuntimeError("connection lost")
        self.calls.append(("log", data, step))

    def finish(self, exit_code: int) -> None:
        self.calls.append(("finish", exit_code))


def _fake_wandb(monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None) -> list:
    calls: list = []
    module = types.ModuleType("wandb")

    def init(**kwargs: Any) -> _FakeRun:
        if fail_on == "init":
            raise RuntimeError("no route to host")
        calls.append(("init", kwargs))
        return _FakeRun(calls, fail_on)

    module.init = init  # type: ignore[attr-defined]
    module.Settings = dict  # type: ignore[attr-defined]
    module.Image = lambda array: ("Image", array.shape)  # type: ignore[attr-defined]
    module.Video = lambda path, format: ("Video", path, format)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_receives_run_identity_metrics_images_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_wandb(monkeypatch)
    logger = Logger(tmp_path, "run-1", {"lr": 0.1}, "online", group="exp", job_type="evaluate")
    logger.log({"loss": math.nan}, step=3)
    logger.log_images({"grid": np.zeros((2, 3), np.uint8)}, step=3)
    logger.log_summary({"success": 1.0})
    summary = logger._wandb_run.summary
    with pytest.raises(RuntimeError), logger:
        raise RuntimeError("training crashed")
    (_, init), *rest = calls
    assert init["id"] == (tmp_path / WANDB_ID_FILE).read_text().strip() == logger.wandb_id
    assert {k: init[k] for k in ("dir", "mode", "resume", "name", "group", "job_type")} == {
        "dir": tmp_path,
        "mode": "online",
        "resume": "allow",
        "name": "run-1",
        "group": "exp",
        "job_type": "evaluate",
    }
    assert init["project"] == "latentrl" and init["config"] == {"lr": 0.1}
    assert init["settings"]["console"] == "off" and init["settings"]["silent"] is True
    assert rest[0][0] == "log" and math.isnan(rest[0][1]["loss"]) and rest[0][2] == 3
    assert rest[1:] == [("log", {"grid": ("Image", (2, 3))}, 3), ("finish", 1)]
    assert summary == {"success": 1.0}


def test_log_media_sends_images_and_video_files_to_wandb_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_wandb(monkeypatch)
    gif = tmp_path / "episode.gif"
    with Logger(tmp_path, "run-1", {}, "online") as logger:
        logger.log_media({"plot": np.zeros((4, 5, 3), np.uint8), "video": gif}, step=7)
        with pytest.raises(ValueError, match="plot"):
            logger.log_media({"plot": np.zeros((4, 5), np.float32)}, step=8)
    assert calls[1] == (
        "log",
        {"plot": ("Image", (4, 5, 3)), "video": ("Video", str(gif), "gif")},
        7,
    )
    assert not (tmp_path / "images").exists()  # W&B only: the caller keeps its own files


def test_wandb_init_failure_keeps_local_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_wandb(monkeypatch, fail_on="init")
    with Logger(tmp_path, "run", {}, "offline") as logger:
        logger.log({"loss": 1.0}, step=1)
        assert logger.wandb_mode == "disabled"
    out = capsys.readouterr().out
    assert out.count("warning: W&B did not start (no route to host)") == 1
    assert "wandb sync" not in out
    assert read_metrics(tmp_path)[0]["loss"] == 1.0


def test_wandb_log_failure_warns_once_and_continues_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_wandb(monkeypatch, fail_on="log")
    with Logger(tmp_path, "run", {}, "online") as logger:
        for step in range(3):
            logger.log({"loss": float(step)}, step=step)
    assert capsys.readouterr().out.count("W&B log failed (connection lost)") == 1
    assert [row["loss"] for row in read_metrics(tmp_path)] == [0.0, 1.0, 2.0]


# -- W&B offline, for real ---------------------------------------------------------------------


@pytest.fixture
def wandb_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep wandb's config, cache and credentials inside tmp_path and its output quiet."""
    for variable in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable, folder in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / folder))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-home" / "data"))


@pytest.mark.usefixtures("wandb_sandbox")
def test_wandb_offline_run_dir_sync_command_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    with Logger(run_dir, "offline-test", {"lr": 0.1}, "offline", group="exp") as logger:
        assert logger.wandb_mode == "offline"
        run_id = logger.wandb_id
        logger.log({"loss": 1.0}, step=1)
        logger.log({"loss": 0.5}, step=2)
        logger.log_images({"grid": np.zeros((4, 4), np.uint8)}, step=2)
    first = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(first) == 1 and (first[0] / f"run-{run_id}.wandb").stat().st_size > 0
    out = capsys.readouterr().out
    assert f"  wandb sync {first[0]}\n" in out and out.count("wandb sync") == 1

    with Logger(run_dir, "offline-test", {}, "offline", resume=True, resume_step=1) as logger:
        assert logger.wandb_id == run_id
        logger.log({"loss": 0.75}, step=2)
    dirs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}*"))
    assert len(dirs) == 2 and dirs[0] == first[0]  # one directory per session, same id
    assert f"  wandb sync {dirs[0]} {dirs[1]}\n" in capsys.readouterr().out
    assert [(row["step"], row["loss"]) for row in read_metrics(run_dir)] == [(1, 1.0), (2, 0.75)]


def test_the_run_id_a_sweep_agent_assigns_is_kept_for_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_wandb(monkeypatch)
    agents_run = _FakeRun(calls, None)
    agents_run.id = "sweep123"  # type: ignore[attr-defined]
    monkeypatch.setattr(sys.modules["wandb"], "init", lambda **kwargs: agents_run)
    with Logger(tmp_path, "trial", {}, "online", job_type="train") as logger:
        assert logger.wandb_id == "sweep123"
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == "sweep123"
