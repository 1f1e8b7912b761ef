"""Every bad input at the boundary: exit status 2, one line on stderr, no traceback, nothing
written.

The table is generated: every field of the config schema (plan.options.* included) gets bad
values made from the allowed values it declares (:mod:`latentrl.field_rules`), driven through
``--set`` of every sub-command that takes it; every flag of every sub-command gets bad values
of its own. Each case runs the CLI in-process (``latentrl.cli.main``) in a folder whose every
file and directory is compared before and after; a few run as real processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from latentrl import cli
from latentrl.config import ExperimentConfig
from latentrl.field_rules import RULE, Allowed
from latentrl.planning.options.registry import option_specs

ROOT = Path(__file__).resolve().parents[1]
SLOW = pytest.mark.slow
FIXTURE_RUN = ROOT / "tests" / "fixtures" / "legacy_runs" / "pendulum"

UNCHECKED_BY_RULE = {
    "data.env_kwargs": ['{"bogus": 1}', "5", '{"render_mode": 5}', '{"frames": 0}'],
    "eval.agents": ['["expert"]', "[]", '["latent", "latent"]', '"latent"'],
    "eval.env_kwargs": ['{"bogus": 1}', "5", '{"frames": 3}'],
    "plan.options": ['{"nope": {}}', "5", '{"shooting": 5}'],
}
"""Fields whose allowed values are not a range (checked in their section), and bad values."""


# --- the table --------------------------------------------------------------------------------


def schema_fields() -> dict[str, Allowed | None]:
    """Every settable field of the config schema by its ``--set`` key, with its rule."""
    found: dict[str, Allowed | None] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{key}.")
            else:
                found[key] = f.metadata.get(RULE)

    walk(ExperimentConfig, "")
    for name, spec in option_specs().items():
        walk(spec.config, f"plan.options.{name}.")
    return found


def _json(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value)


def bad_values(allowed: Allowed) -> list[str]:
    """``--set`` texts (JSON) that ``allowed`` refuses: just outside each bound, not finite,
    of another type, null where it is not optional."""
    one = [] if allowed.kind is str else ['"text"']
    if allowed.kind is int:
        one += ["1.5", "true"]
        one += [] if allowed.low is None else [_json(int(allowed.low) - 1)]
        one += [] if allowed.high is None else [_json(int(allowed.high) + 1)]
    elif allowed.kind is float:
        one += ["NaN", "Infinity", "-Infinity", "true"]
        for bound, step in ((allowed.low, -0.5), (allowed.high, 0.5)):
            one += [] if bound is None else [_json(float(bound) + step)]
        one += [_json(float(b)) for b in (allowed.above, allowed.below) if b is not None]
    elif allowed.kind is bool:
        one += ["1", '"yes"']
    elif allowed.kind is str:
        one += ['""', "5", '"nope"' if allowed.choices else '"tpu"' if allowed.extra else '""']
    if allowed.items:
        return [f"[{v}]" for v in one if v not in ("true",)] + ['"text"', "5"]
    return one if allowed.optional else [*one, "null"]


def set_cases() -> tuple[list[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(sub-command, key, JSON text): every field through every sub-command that sets it; and
    the fast subset of the default run: one bad value and one sub-command per field, taken in
    turn so that every kind of bad value and every sub-command appears."""
    cases, fast = [], set()
    for index, (key, allowed) in enumerate(schema_fields().items()):
        values = UNCHECKED_BY_RULE.get(key) if allowed is None else bad_values(allowed)
        assert values, f"{key} declares no allowed values: give it checked(...) in its section"
        values = list(dict.fromkeys(values))
        commands = ["train", "run"]
        if key.startswith(("eval.", "plan.")):
            commands.append("evaluate")
        cases += [(command, key, text) for command in commands for text in values]
        fast.add((commands[index % len(commands)], key, values[index % len(values)]))
    return cases, fast


SET_CASES, FAST_SET_CASES = set_cases()


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder holding a run, a user's folder, a file: what must never change."""
    root = tmp_path_factory.mktemp("playground")
    shutil.copytree(FIXTURE_RUN, root / "runs" / "pendulum_run")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("mine")
    (root / "afile").write_text("a file")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root``: (size, mtime in ns) of files, (-1, 0) of directories."""
    shot = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        shot[str(path.relative_to(root))] = (
            (-1, 0) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
        )
    return shot


def refused_cleanly(
    argv: list[str], root: Path, capsys: pytest.CaptureFixture[str], expect: str = ""
) -> str:
    """Run ``latentrl argv`` in ``root``; assert exit 2, one line on stderr (containing
    ``expect``), no traceback, nothing under ``root`` created or changed. Returns the line."""
    before = snapshot(root)
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    assert expect in lines[0], (argv, lines[0])
    assert snapshot(root) == before, argv
    return lines[0]


@pytest.fixture
def in_playground(playground: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The playground as the working directory; a bad input taken for a good one fails at
    once instead of collecting, training or evaluating."""
    import latentrl.collect
    import latentrl.evaluate
    import latentrl.pipeline
    import latentrl.train

    def accepted(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad input was accepted: the command began its work")

    for module, name in (
        (latentrl.collect, "tqdm"),
        (latentrl.pipeline, "ensure_dataset"),
        (latentrl.pipeline, "train"),
        (latentrl.train, "train"),
        (latentrl.evaluate, "_make_agents"),
    ):
        monkeypatch.setattr(module, name, accepted)
    monkeypatch.chdir(playground)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield playground


def set_argv(command: str, key: str, text: str) -> list[str]:
    assignment = f"{key}={text}"
    if command == "evaluate":
        return ["evaluate", "runs/pendulum_run", "--set", assignment]
    if command == "run":
        return ["run", "pendulum", "--preset", "debug", "--set", assignment]
    return ["train", "--experiment", "pendulum", "--preset", "debug", "--set", assignment]


@pytest.mark.parametrize(
    ("command", "key", "text"),
    [pytest.param(*c, marks=() if c in FAST_SET_CASES else SLOW) for c in SET_CASES],
)
def test_every_bad_config_value_is_one_line_and_writes_nothing(
    in_playground: Path, capsys: pytest.CaptureFixture[str], command: str, key: str, text: str
) -> None:
    line = refused_cleanly(set_argv(command, key, text), in_playground, capsys)
    field = key.rsplit(".", 1)[-1]
    assert field in line or key.split(".")[0] in line or "--set" in line, line


def test_the_table_covers_every_field_and_many_values() -> None:
    keys = {key for _, key, _ in SET_CASES}
    assert keys == set(schema_fields())
    assert {"train.batch_size", "plan.options.shooting.count", "eval.device"} <= keys
    assert len(SET_CASES) > 600  # the number in the report is len(SET_CASES) + len(FLAG_CASES)


# --- flags of every sub-command -----------------------------------------------------------------

COLLECT = ["collect", "latentrl/Pendulum-v0", "--transitions", "8", "--out", "new_data"]
FLAG_CASES: list[tuple[list[str], str]] = [
    ([], "required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["collect", "latentrl/Pendulum-v0", "--out", "x"], "--transitions"),
    *[
        ([*COLLECT, flag, value], flag)
        for flag, values in {
            "--transitions": ["0", "-1", "abc", "1.5"],
            "--seed": ["-1", str(2**32), "x"],
            "--workers": ["0", "-2", "1000"],
            "--chunk-size": ["0", "-1"],
            "--chain-length": ["0", "x"],
            "--near-goal-share": ["-0.1", "1.5", "nan", "inf", "x"],
            "--env-kwargs": ["[1]", "notjson", "5"],
            "--mode": ["sideways"],
        }.items()
        for value in values
    ],
    ([*COLLECT, "--env-kwargs", '{"bogus": 1}'], "'bogus'"),
    ([*COLLECT, "--env-kwargs", '{"render_mode": 5}'], "refused the env_kwargs"),
    ([*COLLECT, "--env-kwargs", '{"frames": 0}'], "frames must be an int >= 1"),
    ([*COLLECT, "--env-kwargs", '{"frame_gap": 1.5}'], "frame_gap must be an int >= 1"),
    ([*COLLECT, "--overwrite", "--resume"], "exclude each other"),
    ([*COLLECT, "--mode", "rollout", "--chain-length", "3"], "uniform mode only"),
    ([*COLLECT[:-1], "/proc/latentrl/data"], "--out"),
    ([*COLLECT[:-1], "afile/data"], "is a file"),
    ([*COLLECT[:-1], "mine"], "not part of a latentrl dataset"),
    ([*COLLECT[:-1], "runs/pendulum_run"], "not part of a latentrl dataset"),
    (["collect", "latentrl/Nope-v0", "--transitions", "8", "--out", "d"], "unknown environment"),
    (["collect", "nomodule:X-v0", "--transitions", "8", "--out", "d"], "cannot import"),
    (["check-env", "latentrl/Pendulum-v0", "--env-kwargs", '{"bogus": 1}'], "'bogus'"),
    (["check-env", "latentrl/Pendulum-v0", "--env-kwargs", "[1]"], "--env-kwargs"),
    (["check-env", "latentrl/Nope-v0"], "unknown environment"),
    (["train"], "say what to train"),
    (["train", "--experiment", "nope"], "nope"),
    (["train", "--config", "missing.toml"], "missing.toml"),
    (["train", "--env", "latentrl/Nope-v0"], "unknown environment"),
    (["train", "--env", "latentrl/Pendulum-v0", "--env-kwargs", '{"bogus": 1}'], "'bogus'"),
    (["train", "--experiment", "pendulum", "--env-kwargs", "{}"], "--env-kwargs goes with --env"),
    (["train", "--env", "latentrl/Pendulum-v0", "--preset", "debug"], "--preset applies"),
    (["train", "--data", "nowhere"], "no dataset at nowhere"),
    (["train", "--data", "mine"], "no dataset at mine"),
    (["train", "--experiment", "pendulum", "--seed", "-1"], "--seed"),
    (["train", "--experiment", "pendulum", "--seed", "x"], "--seed"),
    (["train", "--experiment", "pendulum", "--wandb", "loud"], "--wandb"),
    (["train", "--experiment", "pendulum", "--set", "train"], "section.field=value"),
    (["train", "--experiment", "pendulum", "--set", "train.bogus=1"], "no field 'bogus'"),
    (["train", "--experiment", "pendulum", "--set", "bogus.x=1"], "no config section"),
    (["train", "--experiment", "pendulum", "--set", "model.action_dim=2"], "cannot be set"),
    (["train", "--experiment", "pendulum", "--seed", "1", "--set", "train.seed=2"], "conflicts"),
    (["run", "pendulum", "--set", "train.seed=2"], "conflicts with the training seed 0"),
    (["train", "--experiment", "pendulum", "--set", "train.device=cuda:7"], "train.device"),
    (["train", "--experiment", "pendulum", "--runs-root", "/proc/latentrl"], "--runs-root"),
    (["train", "--experiment", "pendulum", "--data-root", "afile/x"], "--data-root"),
    (["train", "--experiment", "pendulum", "--run-dir", "mine"], "holds no latentrl run"),
    (["train", "--experiment", "pendulum", "--run-dir", "runs/pendulum_run"], "--resume"),
    (["train", "--experiment", "pendulum", "--run-dir", "afile"], "is a file"),
    (["train", "--resume"], "--resume needs --run-dir"),
    (["train", "--resume", "--run-dir", "mine"], "not a latentrl run directory"),
    (["train", "--resume", "--run-dir", "nowhere"], "not a latentrl run directory"),
    *[
        (["train", "--resume", "--run-dir", "runs/pendulum_run", *extra], extra[0])
        for extra in (
            ["--experiment", "planar"],
            ["--config", "x.toml"],
            ["--env", "latentrl/Planar-v0"],
            ["--preset", "debug"],
            ["--seed", "3"],
            ["--runs-root", "elsewhere"],
            ["--data-root", "elsewhere"],
        )
    ],
    (["train", "--resume", "--run-dir", "runs/pendulum_run", "--set", "train.epochs=0"], "epochs"),
    (["evaluate", "nowhere"], "not a latentrl run directory"),
    (["evaluate", "mine"], "not a latentrl run directory"),
    (["evaluate", "runs/pendulum_run", "--episodes", "0"], "--episodes"),
    (["evaluate", "runs/pendulum_run", "--episodes", "-3"], "--episodes"),
    (["evaluate", "runs/pendulum_run", "--episodes", "x"], "--episodes"),
    (["evaluate", "runs/pendulum_run", "--agents", "expert"], "--agents"),
    (["evaluate", "runs/pendulum_run", "--baselines-from", "mine"], "holds no evaluation"),
    (["evaluate", "runs/pendulum_run", "--set", "data.seed=1"], "only eval.* and plan.*"),
    (["evaluate", "runs/pendulum_run", "--set", "eval.device=cuda:7"], "eval.device"),
    (["evaluate", "runs/pendulum_run", "--set", "eval.horizon=1000"], "time limit"),
    (["diagnose", "nowhere"], "not a latentrl run directory"),
    (["diagnose", "mine"], "not a latentrl run directory"),
    (["diagnose", "runs/pendulum_run"], "does not record its dataset"),
    (["diagnose", "runs/pendulum_run", "--data", "nowhere"], "no dataset at nowhere"),
    (["diagnose", "runs/pendulum_run", "--images", "0"], "--images"),
    (["diagnose", "runs/pendulum_run", "--samples", "x"], "--samples"),
    (["diagnose", "runs/pendulum_run", "--repeats", "1"], "--repeats"),
    (["diagnose", "runs/pendulum_run", "--out", "/proc/latentrl/d"], "--out"),
    (["compare", "nowhere"], "nowhere"),
    (["compare", "runs/pendulum_run"], "eval"),
    (["compare", "runs/pendulum_run", "--out", "/proc/latentrl/c.png"], "--out"),
    (["compare", "runs/pendulum_run", "--out", "c.txt"], "--out"),
    (["run", "nope"], "nope"),
    (["run", "pendulum", "--seeds", "-1"], "--seeds"),
    (["run", "pendulum", "--seeds", "x"], "--seeds"),
    (["run", "pendulum", "--seeds", "0", "0"], "twice"),
    (["run", "pendulum", "--preset", "huge"], "huge"),
    (["run", "pendulum", "--out", "/proc/latentrl/c.png"], "--out"),
    (["run", "pendulum", "--out", "c.txt"], "--out"),
    (["run", "pendulum", "--runs-root", "afile/runs"], "--runs-root"),
    (["run", "pendulum", "--data-root", "/proc/latentrl"], "--data-root"),
    (["run", "pendulum", "--set", "train.device=tpu"], "train.device"),
    (["train", "--experiment", "pendulum", "--nproc", "0"], "--nproc"),
    (["train", "--experiment", "pendulum", "--nproc", "x"], "--nproc"),
    (["train", "--experiment", "pendulum", "--nproc", "3"], "do not split evenly across 3"),
    (
        ["train", "--experiment", "pendulum", "--set", "train.compile=true", "--nproc", "2"],
        "train.compile=true on 2 processes",
    ),
    (
        [
            "train",
            "--experiment",
            "pendulum",
            "--set",
            "model.kind=filter",
            "--set",
            "train.batch_size=24",
            "--nproc",
            "2",
        ],
        "train.batch_size // 8",
    ),
    (["run", "pendulum", "--set-json", "[1]"], "--set-json"),
    (["run", "pendulum", "--set-json", '{"train.seed": -1}'], "--set-json train.seed"),
    (["run", "pendulum", "--set-json", '{"train.seed": 1}', "--seeds", "0"], "drop --seeds"),
    (["run", "pendulum", "--set-json", '{"plan.bogus": 1}'], "no field 'bogus'"),
    (["sweep", "pendulum"], "give at least one parameter"),
    (["sweep", "nope", "--param", "plan.horizon=5"], "nope"),
    (["sweep", "pendulum", "--param", "horizon=5"], "section.field="),
    (["sweep", "pendulum", "--param", "plan.horizon=5,0"], "the trial plan.horizon=0 would fail"),
    (["sweep", "pendulum", "--param", "plan.horizn=5"], "no field 'horizn'"),
    (["sweep", "pendulum", "--param", "plan.r=uniform:1:0"], "below max"),
    (["sweep", "pendulum", "--param", "plan.r=uniform:0.1:1"], "grid needs lists"),
    (["sweep", "pendulum", "--param", "plan.horizon=5", "--method", "gird"], "--method"),
    (["sweep", "pendulum", "--param", "plan.horizon=5", "--metric", "val/x"], "eval/AGENT/NAME"),
    (["sweep", "pendulum", "--param", "plan.horizon=5", "--seeds", "-1"], "--seeds"),
    (["sweep", "pendulum", "--params", "missing.toml"], "missing.toml"),
    (
        ["sweep", "pendulum", "--param", "plan.horizon=5", "--out", "/proc/latentrl/s.yaml"],
        "--out",
    ),
    (["experiments", "extra"], "unrecognized arguments"),
    (["experiments", "--bogus"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("argv", "expect"), FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_every_bad_flag_is_one_line_and_writes_nothing(
    in_playground: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expect: str
) -> None:
    refused_cleanly(argv, in_playground, capsys, expect)


def test_every_sub_command_has_bad_flags_in_the_table() -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    tried = {argv[0] for argv, _ in FLAG_CASES if argv} | {c for c, _, _ in SET_CASES}
    assert set(commands) <= tried


def test_a_device_the_machine_lacks_is_named(
    in_playground: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--experiment", "pendulum", "--set", "train.device=cuda"]
    if torch.cuda.is_available():
        argv[-1] = f"train.device=cuda:{torch.cuda.device_count()}"
    line = refused_cleanly(argv, in_playground, capsys)
    assert line.startswith("latentrl train: error: train.device='cuda")


# --- as a user runs them: real processes ----------------------------------------------------

PROCESS_CASES = [
    ["collect", "latentrl/Pendulum-v0", "--transitions", "8", "--out", "d", "--seed", "-1"],
    [
        "collect",
        "latentrl/Pendulum-v0",
        "--transitions",
        "8",
        "--out",
        "d",
        "--env-kwargs",
        '{"bogus": 1}',
    ],
    ["check-env", "latentrl/Pendulum-v0", "--env-kwargs", '{"bogus": 1}'],
    ["train", "--experiment", "pendulum", "--set", "train.batch_size=0"],
    ["train", "--experiment", "pendulum", "--set", "train.learning_rate=NaN"],
]


@pytest.mark.parametrize(
    "argv",
    # two in the default run: a process takes seconds to start (torch, gymnasium)
    [
        pytest.param(a, marks=() if a[0] in ("check-env", "train") and "NaN" not in a[-1] else SLOW)
        for a in PROCESS_CASES
    ],
    ids=[" ".join(a[:1] + a[-2:]) for a in PROCESS_CASES],
)
def test_a_real_process_prints_one_line_and_exits_2(playground: Path, argv: list[str]) -> None:
    before = snapshot(playground)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "latentrl.cli", *argv],
        cwd=playground,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"latentrl {argv[0]}: error: "), done.stderr
    assert snapshot(playground) == before


def test_the_training_seed_is_given_once_and_kept() -> None:
    from latentrl.experiment_cli import train_config

    parser = cli.build_parser()
    argv = ["train", "--experiment", "pendulum", "--preset", "debug"]
    assert train_config(parser.parse_args([*argv, "--set", "train.seed=2"])).train.seed == 2
    assert train_config(parser.parse_args([*argv, "--seed", "3"])).train.seed == 3
    assert train_config(parser.parse_args(argv)).train.seed == 0
