"""latentrl compare: statistics across seeds of hand-written run directories, plot, errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentrl.cli import main
from latentrl.compare import OF_ORACLE, compare_runs, earlier_seeds, read_run, tick_labels
from latentrl.config import apply_overrides, load_config, save_config, to_dict
from latentrl.errors import UserError
from latentrl.pipeline import EnvRecipe, experiment_config

SE3 = 1 / math.sqrt(3)  # s.e. of three values 1 apart per unit of their spacing: sd 1 / sqrt 3


def results_json(agents: dict[str, dict[str, float]]) -> dict:
    """results.json as latentrl.evaluate writes it (aggregates per agent; se over episodes)."""
    return {
        "env_id": "latentrl/Pendulum-v0",
        "episodes": 4,
        "horizon": 200,
        "goal_radius": math.pi / 6,
        "final_steps": 20,
        "agents": {
            name: {
                "aggregate": {key: {"mean": value, "se": 0.01} for key, value in metrics.items()},
                "episodes": [],
            }
            for name, metrics in agents.items()
        },
    }


def metrics(steps: float, success: float, cost: float, ms: float) -> dict[str, float]:
    return {
        "steps_in_goal": steps,
        "steps_in_goal_half_radius": steps / 2,
        "success": success,
        "cost": cost,
        "ms_per_step": ms,
    }


def make_run(
    root: Path,
    experiment: str,
    seed: int,
    agents: dict[str, dict[str, float]] | None,
    probe_r2: float | None = None,
    overrides: tuple[str, ...] = (),
    evaluated: dict[str, object] | None = None,
    name: str | None = None,
) -> Path:
    """A run directory with config.json (the debug preset with ``--set`` ``overrides``),
    summary.json and (unless ``agents`` is None) an evaluation, whose results.json also holds
    the entries of ``evaluated`` (e.g. the plan and eval settings the evaluation ran with)."""
    run = root / (name or f"{experiment}__{seed}")
    run.mkdir(parents=True)
    config = apply_overrides(
        experiment_config(experiment, "debug"), [f"train.seed={seed}", *overrides]
    )
    save_config(config, run / "config.json")
    if probe_r2 is not None:
        summary = {"val/state_loss": 1.0, "probe/r2_mean": probe_r2, "epochs": 3}
        (run / "summary.json").write_text(json.dumps(summary))
    if agents is not None:
        (run / "eval").mkdir()
        results = results_json(agents) | (evaluated or {})
        (run / "eval" / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """Three pendulum seeds (latent varies, oracle and random constant) and one planar run."""
    latent = [metrics(0.2, 0.0, 100.0, 10.0), metrics(0.4, 0.5, 110.0, 20.0)]
    latent.append(metrics(0.6, 1.0, 120.0, 30.0))
    pendulum = [
        make_run(
            tmp_path,
            "pendulum",
            seed,
            {
                "latent": latent[seed],
                "oracle": metrics(0.9, 1.0, 50.0, 5.0),
                "random": metrics(0.0, 0.0, 300.0, 0.02),
            },
            probe_r2=0.9 - 0.1 * seed,
        )
        for seed in range(3)
    ]
    planar = make_run(tmp_path, "planar", 7, {"oracle": metrics(1.0, 1.0, 5.0, 2.0)}, probe_r2=0.95)
    return [*pendulum, planar]


def row_cells(table: str, agent: str, nth: int = 0) -> list[str]:
    """The cells (split on two or more spaces) of the ``nth`` row of ``agent``."""
    rows = [line for line in table.splitlines() if f"  {agent}  " in f"  {line}  "]
    return [cell.strip() for cell in rows[nth].split("  ") if cell.strip()]


def test_table_reports_mean_and_standard_error_across_seeds(runs: list[Path], tmp_path: Path):
    result = compare_runs(runs, tmp_path / "out" / "cmp.png", echo=lambda _: None)
    table = result.table
    assert table.splitlines()[0].split() == [
        "experiment", "seeds", "agent", "steps", "in", "goal", "%", "of", "oracle", "%",
        "success", "%", "cost", "ms/step", "probe", "R²",
    ]  # fmt: skip
    # latent: steps 20/40/60 %, success 0/50/100 %, cost 100/110/120, ms 10/20/30, R² .9/.8/.7
    assert row_cells(table, "latent") == [
        "pendulum (debug)", "0 1 2", "latent",
        f"40.0 ± {20 * SE3:.1f}", f"44 ± {20 * SE3 / 0.9:.0f}",  # 40% of the oracle's 90%
        f"50.0 ± {50 * SE3:.1f}", f"110.0 ± {10 * SE3:.1f}",
        f"20.00 ± {10 * SE3:.2f}", f"0.800 ± {0.1 * SE3:.3f}",
    ]  # fmt: skip
    assert f"{20 * SE3:.1f}" == "11.5" and f"{0.1 * SE3:.3f}" == "0.058"
    assert row_cells(table, "oracle") == ["oracle", "90.0 ± 0.0", "-", "100.0 ± 0.0",
                                          "50.0 ± 0.0", "5.00 ± 0.00"]  # fmt: skip
    assert row_cells(table, "random")[1:] == [
        "0.0 ± 0.0",
        "0 ± 0",
        "0.0 ± 0.0",
        "300.0 ± 0.0",
        "0.02 ± 0.00",
    ]
    # one planar run: means only (no standard error from a single seed), R² on its only row
    assert row_cells(table, "oracle", 1) == [
        "planar (debug)", "7", "oracle", "100.0", "-", "100.0", "5.0", "2.00", "0.950"
    ]  # fmt: skip

    data = json.loads(result.json_path.read_text())
    latent = data["pendulum (debug)"]["agents"]["latent"]
    assert latent["steps_in_goal"] == pytest.approx({"mean": 0.4, "se": 0.2 * SE3, "n": 3})
    assert latent["cost"] == pytest.approx({"mean": 110.0, "se": 10 * SE3, "n": 3})
    share = {"mean": 0.4 / 0.9, "se": 0.2 * SE3 / 0.9, "n": 3}
    assert latent["steps_in_goal_of_oracle"] == pytest.approx(share)
    assert data["pendulum (debug)"]["seeds"] == [0, 1, 2]
    assert data["planar (debug)"]["agents"]["oracle"]["cost"] == {"mean": 5.0, "se": None, "n": 1}

    assert result.plot == tmp_path / "out" / "cmp.png" and result.json_path.suffix == ".json"
    markdown = result.markdown_path.read_text().splitlines()
    assert result.markdown_path == tmp_path / "out" / "cmp.md"
    assert markdown[2] == (
        f"| pendulum (debug) | 0 1 2 | latent | 40.0 ± 11.5 (20.0, 40.0, 60.0) | 44 ± 13 "
        f"| 6 of 12 | 110.0 ± {10 * SE3:.1f} | 0.700-0.900 |"
    )  # 4 episodes a run: 0 + 2 + 4 successes
    assert markdown[3] == (
        "|  |  | oracle | 90.0 ± 0.0 (90.0, 90.0, 90.0) | - | 12 of 12 | 50.0 ± 0.0 |  |"
    )
    assert markdown[5] == "| planar (debug) | 7 | oracle | 100.0 | - | 4 of 4 | 5.0 | 0.950 |"
    with Image.open(result.plot) as image:
        assert image.format == "PNG" and image.size == (1280, 340)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 20  # bars, error bars, text: not a blank canvas
    assert result.plot.stat().st_size > 10_000


def test_runs_named_twice_count_once_and_missing_summary_is_blank(tmp_path: Path) -> None:
    run = make_run(tmp_path, "pendulum", 0, {"latent": metrics(0.5, 1.0, 80.0, 12.0)})
    result = compare_runs([run, run / ".." / run.name], tmp_path, echo=lambda _: None)
    assert row_cells(result.table, "latent")[1:] == ["0", "latent", "50.0", "-", "100.0", "80.0",
                                                     "12.00", "-"]  # fmt: skip  # no oracle
    assert result.plot == tmp_path / "compare.png" and result.plot.exists()
    assert read_run(run).training == {}


def test_without_out_the_plot_and_json_go_beside_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_run(tmp_path / "runs", "pendulum", 0, {"latent": metrics(0.5, 1.0, 80.0, 1.0)})
    later = {"latent": metrics(0.7, 1.0, 70.0, 1.0)}
    other = make_run(tmp_path / "elsewhere", "pendulum", 1, later)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = compare_runs([first, other], echo=lambda _: None)
    assert result.plot == tmp_path / "runs" / "compare.png" and result.plot.exists()
    assert result.json_path == tmp_path / "runs" / "compare.json" and result.json_path.exists()
    assert list(cwd.iterdir()) == []


def test_refuses_directories_without_a_run_or_an_evaluation(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a latentrl run directory"):
        compare_runs([tmp_path], tmp_path / "c.png")
    bare = make_run(tmp_path, "pendulum", 1, None, probe_r2=0.5)
    with pytest.raises(UserError, match=r"no evaluation yet .*run `latentrl evaluate .*` first"):
        compare_runs([bare], tmp_path / "c.png")
    broken = make_run(tmp_path, "pendulum", 2, {"latent": metrics(0.1, 0.0, 1.0, 1.0)})
    (broken / "eval" / "results.json").write_text('{"agents": {"latent": {}}}')
    with pytest.raises(UserError, match="does not look like latentrl evaluation results"):
        compare_runs([broken], tmp_path / "c.png")
    with pytest.raises(UserError, match=r"--out must be a \.png file"):
        compare_runs([broken], tmp_path / "c.pdf")
    assert not (tmp_path / "c.png").exists()


def test_leaves_out_runs_not_evaluated_yet_beside_evaluated_ones(
    runs: list[Path], tmp_path: Path
) -> None:
    training = make_run(tmp_path, "pendulum", 7, None)
    lines: list[str] = []
    comparison = compare_runs([*runs, training], tmp_path / "c.png", echo=lines.append)
    alone = compare_runs(runs, tmp_path / "alone.png", echo=lambda line: None)
    assert comparison.table == alone.table
    assert lines[0] == (
        f"left out 1 run(s) without an evaluation yet (training, or stopped before its "
        f"evaluation): {training}; `latentrl evaluate RUN` adds one"
    )


def test_cli_prints_the_table_and_exits_2_with_one_line_on_errors(
    runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plot.png"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pendulum (debug)" in printed and f"40.0 ± {20 * SE3:.1f}" in printed
    assert out.exists() and out.with_suffix(".json").exists()

    bare = make_run(tmp_path, "planar", 3, None)
    assert main(["compare", str(bare)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == (
        f"latentrl compare: error: {bare} has no evaluation yet "
        "(no eval/results.json); run `latentrl evaluate "
        f"{bare}` first"
    )


def test_runs_of_one_preset_with_other_settings_are_separate_groups(tmp_path: Path) -> None:
    """Runs that share a preset name but not their settings are not pooled: each set of
    settings is a group, named A, B, ..., listed with the settings that set it apart. Fields
    that change no number (device, GIFs) and the seed do not split a group."""
    plan = to_dict(experiment_config("pendulum", "debug").plan)

    def run(seed: int, steps: float, overrides: tuple[str, ...] = (), r: float = 0.01) -> Path:
        evaluated = {"plan": plan | {"r": r}}
        latent = {"latent": metrics(steps, 1.0, 100.0, 10.0)}
        return make_run(tmp_path, "pendulum", seed, latent, 0.9, overrides, evaluated)

    runs = [
        run(0, 0.2),
        run(1, 0.4, ('train.device="cpu"', "eval.gifs=0")),  # the same settings as seed 0
        run(2, 0.8, ("data.chain_length=1", "loss.multi_step.horizon=1")),
        run(3, 0.6, r=0.001),  # evaluated with another plan
    ]
    result = compare_runs(runs, tmp_path / "c.png", echo=lambda _: None)
    names = [g.name for g in result.groups]
    assert names == ["pendulum (debug) A", "pendulum (debug) B", "pendulum (debug) C"]
    assert [[r.seed for r in g.runs] for g in result.groups] == [[0, 1], [2], [3]]
    assert row_cells(result.table, "latent")[:4] == [
        "pendulum (debug) A", "0 1", "latent", "30.0 ± 10.0"  # 20 and 40: sd 14.1, se 10
    ]  # fmt: skip
    assert row_cells(result.table, "latent", 1)[3] == "80.0"  # not pooled with seeds 0, 1
    differs = {
        "data.chain_length": [16, 1, 16],
        "loss.multi_step.horizon": [8, 1, 8],
        "plan.r": [0.01, 0.01, 0.001],
    }
    assert [g.differs for g in result.groups] == [
        {k: v[i] for k, v in sorted(differs.items())} for i in range(3)
    ]
    lines = result.table.splitlines()
    assert (
        "pendulum (debug) B: data.chain_length=1, loss.multi_step.horizon=1, plan.r=0.01" in lines
    )
    data = json.loads(result.json_path.read_text())
    assert data["pendulum (debug) C"]["differs"]["plan.r"] == 0.001
    assert data["pendulum (debug) A"]["seeds"] == [0, 1]


def test_the_plot_names_the_shared_experiment_once_and_each_group_by_what_is_left() -> None:
    assert tick_labels(["cartpole (recipe) A", "cartpole (recipe) B"]) == (
        "cartpole (recipe)",
        ["A", "B"],
    )
    assert tick_labels(["pendulum (full)", "pendulum (debug)"]) == (
        "pendulum",
        ["(full)", "(debug)"],
    )
    # shared words stop before a name would be left empty; other experiments share nothing
    assert tick_labels(["pendulum (full)", "pendulum (full) A"]) == (
        "pendulum",
        ["(full)", "(full) A"],
    )
    assert tick_labels(["pendulum (full)", "planar (full)"])[0] == ""
    assert tick_labels(["pendulum (full)"]) == ("", ["pendulum (full)"])


def test_runs_of_two_presets_that_came_to_the_same_settings_are_one_group(
    tmp_path: Path,
) -> None:
    """A preset and another preset with ``--set`` that resolve to the same settings pool their
    seeds in one group named after both, and `latentrl run` joins them as earlier seeds; other
    settings of the first preset stay a group of their own."""

    def run(seed: int, preset: str, steps: float, overrides: tuple[str, ...] = ()) -> Path:
        latent = {"latent": metrics(steps, 1.0, 100.0, 10.0)}
        path = make_run(tmp_path, "pendulum", seed, latent, 0.9, overrides, name=f"{preset}{seed}")
        config = load_config(path / "config.json")
        save_config(dataclasses.replace(config, preset=preset), path / "config.json")
        return path

    runs = [
        run(0, "debug", 0.2, ("train.epochs=5",)),
        run(1, "long", 0.4, ("train.epochs=5",)),  # a preset "long" that sets train.epochs = 5
        run(2, "long", 0.6, ("train.epochs=5",)),
        run(3, "debug", 0.8),
    ]
    result = compare_runs(runs, tmp_path / "c.png", echo=lambda _: None)
    assert [g.name for g in result.groups] == ["pendulum (debug, long)", "pendulum (debug)"]
    assert [[r.seed for r in g.runs] for g in result.groups] == [[0, 1, 2], [3]]
    assert row_cells(result.table, "latent")[:4] == [
        "pendulum (debug, long)", "0 1 2", "latent", f"40.0 ± {20 * SE3:.1f}"
    ]  # fmt: skip
    assert earlier_seeds([runs[0]], [runs[3], runs[2], runs[1]]) == [runs[2], runs[1]]


def test_flat_plans_of_older_runs_group_with_their_options_and_options_tell_groups_apart(
    tmp_path: Path,
) -> None:
    """An older results.json wrote the planner options as flat plan fields: a run evaluated
    then pools with one evaluated with the same options as sections. An option's fields set
    groups apart as ``plan.options.NAME.FIELD``."""
    plan = to_dict(experiment_config("pendulum", "debug").plan) | {"options": {}}
    flat = {key: value for key, value in plan.items() if key != "options"} | {
        "restarts": 0, "shooting": 64, "shooting_steps": None, "shooting_beyond": 0.5,
        "blocked_ratio": 0.0, "roadmap_lookahead": 0.0, "recorded_moves": 0,
    }  # fmt: skip
    shooting = {"shooting": {"count": 64, "beyond": 0.5}}
    latent = {"latent": metrics(0.5, 1.0, 100.0, 10.0)}
    runs = [
        make_run(tmp_path, "pendulum", 0, latent, evaluated={"plan": flat}),
        make_run(tmp_path, "pendulum", 1, latent, evaluated={"plan": plan | {"options": shooting}}),
        make_run(tmp_path, "pendulum", 2, latent, evaluated={"plan": plan}),
    ]
    result = compare_runs(runs, tmp_path / "c.png", echo=lambda _: None)
    assert [[r.seed for r in g.runs] for g in result.groups] == [[0, 1], [2]]
    assert result.groups[0].runs[0].settings["plan.options.shooting.count"] == 64
    differs = {
        "plan.options.shooting.beyond": 0.5, "plan.options.shooting.count": 64,
        "plan.options.shooting.score": "cost",  # a field newer than both: its default
    }  # fmt: skip
    assert [g.differs for g in result.groups] == [differs, dict.fromkeys(differs)]
    plain_first = compare_runs(runs[::-1], tmp_path / "d.png", echo=lambda _: None)
    assert [g.differs for g in plain_first.groups] == [dict.fromkeys(differs), differs]


def test_a_latent_only_group_shows_the_baselines_of_runs_with_its_protocol(
    tmp_path: Path,
) -> None:
    """The oracle and random agents depend on the env, the start states, the episode length,
    the oracle's horizon and the evaluation seed only: a group without them takes them from
    other runs with the same protocol (marked *), never from runs with other starts."""
    starts = {"start_states": [[3.1, 0.0], [3.2, 0.0]]}
    baselines = {"oracle": metrics(0.7, 1.0, 300.0, 40.0), "random": metrics(0.0, 0.0, 1700.0, 0.1)}
    old = make_run(
        tmp_path, "pendulum", 0, {"latent": metrics(0.1, 0.0, 900.0, 9.0), **baselines},
        overrides=("data.chain_length=1", "loss.multi_step.horizon=1"), evaluated=starts,
    )  # fmt: skip
    other_starts = make_run(
        tmp_path, "pendulum", 5, {"oracle": metrics(0.2, 0.0, 1.0, 1.0)}, name="other",
        overrides=("data.chain_length=1", "loss.multi_step.horizon=1"),
        evaluated={"start_states": [[0.0, 0.0], [0.1, 0.0]]},
    )  # fmt: skip
    new = [
        make_run(tmp_path, "pendulum", s, {"latent": metrics(0.5 + 0.1 * s, 1.0, 400.0, 30.0)},
                 evaluated=starts)
        for s in (1, 2)
    ]  # fmt: skip
    result = compare_runs([*new, old, other_starts], tmp_path / "c.png", echo=lambda _: None)
    groups = {g.name: g for g in result.groups}
    assert list(groups) == ["pendulum (debug) A", "pendulum (debug) B"]  # old and other: one
    latest = groups["pendulum (debug) A"]
    assert list(latest.agents) == ["latent", "oracle", "random"]
    assert latest.borrowed == {"oracle": (old,), "random": (old,)}  # not other_starts' oracle
    assert latest.agents["oracle"]["steps_in_goal"].mean == pytest.approx(0.7)
    assert row_cells(result.table, "oracle*")[:2] == ["oracle*", "70.0"]
    assert row_cells(result.table, "random*")[1] == "0.0"
    assert f"oracle*, random* of pendulum (debug) A: from {old} (same env, starts" in result.table
    assert groups["pendulum (debug) B"].borrowed == {}  # its own oracle, over its two runs
    data = json.loads(result.json_path.read_text())
    assert data["pendulum (debug) A"]["borrowed"] == {"oracle": [str(old)], "random": [str(old)]}


def test_refuses_unreadable_evaluation_settings(tmp_path: Path) -> None:
    run = make_run(
        tmp_path, "pendulum", 0, {"latent": metrics(0.5, 1.0, 1.0, 1.0)},
        evaluated={"plan": {"horizon": "forty"}},
    )  # fmt: skip
    with pytest.raises(UserError, match=r"results.json: unreadable plan or eval settings"):
        compare_runs([run], tmp_path / "c.png")


def test_a_latent_only_group_takes_no_baselines_from_an_env_with_other_physics(
    tmp_path: Path,
) -> None:
    """The same starts under another torque limit are other episodes: the oracle of a run with
    max_torque 1.0 is no baseline for a run with max_torque 2.0."""
    starts = {"start_states": [[3.1, 0.0], [3.2, 0.0]]}
    baselines = {"oracle": metrics(0.7, 1.0, 300.0, 40.0), "random": metrics(0.0, 0.0, 1700.0, 0.1)}
    weak = make_run(
        tmp_path, "pendulum", 0, {"latent": metrics(0.1, 0.0, 900.0, 9.0), **baselines},
        overrides=('data.env_kwargs={"max_torque": 1.0}',), evaluated=starts, name="weak",
    )  # fmt: skip
    strong = make_run(
        tmp_path, "pendulum", 1, {"latent": metrics(0.5, 1.0, 400.0, 30.0)},
        overrides=('data.env_kwargs={"max_torque": 2.0}',), evaluated=starts, name="strong",
    )  # fmt: skip
    stronger = make_run(
        tmp_path, "pendulum", 2, {"latent": metrics(0.5, 1.0, 400.0, 30.0)},
        overrides=('data.env_kwargs={"max_torque": 1.0}', 'eval.env_kwargs={"max_torque": 2.0}'),
        evaluated=starts, name="stronger",
    )  # fmt: skip
    result = compare_runs([weak, strong, stronger], tmp_path / "c.png", echo=lambda _: None)
    borrowed = {g.name: g.borrowed for g in result.groups}
    assert list(borrowed.values()) == [{}, {}, {}]
    assert [list(g.agents) for g in result.groups] == [
        ["latent", "oracle", "random"], ["latent"], ["latent"],
    ]  # fmt: skip


def test_loss_sections_a_kind_does_not_read_do_not_tell_groups_apart(tmp_path: Path) -> None:
    """The pendulum file sets E2C's multi-step term; a filter-kind run of it leaves that
    section at its defaults and does not read it, so beside an E2C run only the model kind
    tells the two groups apart."""
    latent = {"latent": metrics(0.5, 1.0, 100.0, 10.0)}
    e2c = make_run(tmp_path, "pendulum", 0, latent, 0.9)
    filtered = [make_run(tmp_path, "pendulum", seed, latent, 0.9) for seed in (1, 2)]
    for seed, run in enumerate(filtered, 1):  # as `--set model.kind=filter` resolves the file
        config = experiment_config("pendulum", "debug", seed, ["model.kind=filter"])
        save_config(config, run / "config.json")
    assert read_run(e2c).settings["loss.multi_step.horizon"] == 8  # the file's, read by E2C
    assert "loss.multi_step.horizon" not in read_run(filtered[0]).settings
    result = compare_runs([e2c, *filtered], tmp_path / "c.png", echo=lambda _: None)
    assert [[r.seed for r in g.runs] for g in result.groups] == [[0], [1, 2]]
    assert [g.differs for g in result.groups] == [{"model.kind": "e2c"}, {"model.kind": "filter"}]
    assert 'pendulum (debug) B: model.kind="filter"' in result.table.splitlines()


def test_a_baselines_only_evaluation_lends_its_agents_and_is_not_a_seed(tmp_path: Path) -> None:
    """``latentrl evaluate RUN --out DIR --agents oracle random`` of one latent-only seed has the
    settings of its run: it gives the group its baselines, not a fourth seed."""
    starts = {"start_states": [[3.1, 0.0], [3.2, 0.0]]}
    trained = [
        make_run(tmp_path, "pendulum", s, {"latent": metrics(0.5, 1.0, 400.0, 30.0)},
                 evaluated=starts)
        for s in range(3)
    ]  # fmt: skip
    baselines = {"oracle": metrics(0.8, 1.0, 300.0, 40.0), "random": metrics(0.0, 0.0, 1700.0, 0.1)}
    lender = make_run(tmp_path, "pendulum", 0, baselines, evaluated=starts, name="baselines")
    result = compare_runs([*trained, lender], tmp_path / "c.png", echo=lambda _: None)
    [group] = result.groups
    assert [r.seed for r in group.runs] == [0, 1, 2]
    assert group.borrowed == {"oracle": (lender,), "random": (lender,)}
    assert group.agents["latent"][OF_ORACLE.key].mean == pytest.approx(0.5 / 0.8)
    assert row_cells(result.table, "latent")[:2] == ["pendulum (debug)", "0 1 2"]
    oracle_row = result.markdown_path.read_text().splitlines()[3]
    assert oracle_row == "|  |  | oracle* | 80.0 | - | 4 of 4 | 300.0 |  |"  # the lender's episodes


def test_a_baselines_only_evaluation_a_group_does_not_need_is_named_under_the_table(
    tmp_path: Path,
) -> None:
    starts = {"start_states": [[3.1, 0.0], [3.2, 0.0]]}
    agents = {"latent": metrics(0.5, 1.0, 400.0, 30.0), "oracle": metrics(0.8, 1.0, 1.0, 1.0)}
    trained = [make_run(tmp_path, "pendulum", s, agents, evaluated=starts) for s in range(2)]
    oracle = {"oracle": metrics(0.8, 1.0, 1.0, 1.0)}
    lender = make_run(tmp_path, "pendulum", 0, oracle, evaluated=starts, name="b")
    result = compare_runs([*trained, lender], tmp_path / "c.png", echo=lambda _: None)
    [group] = result.groups
    assert [r.seed for r in group.runs] == [0, 1]
    assert group.unused == (lender,)
    assert f"{lender}: model-free agents only, not a seed of pendulum (debug)" in result.table
    markdown = result.markdown_path.read_text()
    assert f"- {lender}: model-free agents only, not a seed of pendulum (debug)" in markdown


def test_a_run_of_an_envs_default_recipe_is_named_after_its_env(tmp_path: Path) -> None:
    """`latentrl run --env ID` runs have no experiment file: their group is the env's recipe."""
    latent = {"latent": metrics(0.5, 1.0, 100.0, 10.0)}
    runs = [make_run(tmp_path, "pendulum", seed, latent, 0.9) for seed in (0, 1)]
    for seed, run in enumerate(runs):
        config = experiment_config(EnvRecipe("latentrl/Pendulum-v0"), seed=seed)
        save_config(config, run / "config.json")
    result = compare_runs(runs, tmp_path / "c.png", echo=lambda _: None)
    assert [g.name for g in result.groups] == ["latentrl/Pendulum-v0 (recipe)"]
    assert row_cells(result.table, "latent")[:2] == ["latentrl/Pendulum-v0 (recipe)", "0 1"]
