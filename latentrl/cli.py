"""The ``latentrl`` command.

Each sub-command parses its arguments and calls one library function. Mistakes a user can
make (``UserError``) print one line and exit with status 2; Ctrl-C exits with 130 after saying
how to resume.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from latentrl.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"g\": 9.81}'")
    return value


def _collect(args: argparse.Namespace) -> int:
    from latentrl.collect import collect

    try:
        path = collect(
            args.env_id,
            args.transitions,
            args.out,
            mode=args.mode,
            seed=args.seed,
            workers=args.workers,
            chunk_size=args.chunk_size,
            chain_length=args.chain_length,
            near_goal_share=args.near_goal_share,
            env_kwargs=args.env_kwargs,
            overwrite=args.overwrite,
            resume=args.resume,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {args.out} holds a partial dataset. Finish it with the same "
            "command plus --resume.",
            file=sys.stderr,
        )
        return 130
    print(f"wrote {args.transitions} transitions to {path}")
    return 0


def _check_env(args: argparse.Namespace) -> int:
    from latentrl.env_check import check_environment

    results = check_environment(args.env_id, **args.env_kwargs)
    for result in results:
        print(result.line())
    failed = sum(not r.passed for r in results)
    print(f"{args.env_id}: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _train(args: argparse.Namespace) -> int:
    from latentrl.config import apply_overrides, load_config
    from latentrl.pipeline import ensure_dataset, experiment_config
    from latentrl.run_directory import RunDirectory, new_run_dir
    from latentrl.train import train

    if args.resume:
        if args.run_dir is None:
            raise UserError("--resume needs --run-dir: the run to continue")
        run = RunDirectory(args.run_dir)
        config = apply_overrides(load_config(run.config), args.set)
        data = args.data or run.dataset()
        run_dir = args.run_dir
    else:
        if args.experiment is None:
            raise UserError("name an --experiment (e.g. pendulum), or --resume a --run-dir")
        config = experiment_config(args.experiment, args.preset, args.seed, args.set)
        data = args.data or ensure_dataset(config.data, args.data_root)
        run_dir = args.run_dir or new_run_dir(args.runs_root, config)
    try:
        result = train(config, run_dir, data, resume=args.resume, wandb_mode=args.wandb)
    except KeyboardInterrupt:
        return 130
    print(f"trained {result.epochs} epochs ({result.steps} steps): {result.run_dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from latentrl.pipeline import run_experiment

    try:
        results = run_experiment(
            args.experiment,
            args.preset,
            args.seeds,
            args.set,
            runs_root=args.runs_root,
            data_root=args.data_root,
            wandb_mode=args.wandb,
            evaluate=not args.no_evaluate,
        )
    except KeyboardInterrupt:
        return 130
    for result in results:
        where = "" if result.evaluation is None else f" (evaluation: {result.evaluation.eval_dir})"
        print(f"run: {result.train.run_dir}{where}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from latentrl.evaluate import evaluate_run

    overrides = list(args.set)
    if args.episodes is not None:
        overrides.append(f"eval.episodes={args.episodes}")
    if args.agents is not None:
        overrides.append(f"eval.agents={json.dumps(args.agents)}")
    try:
        result = evaluate_run(
            args.run_dir,
            overrides,
            wandb_mode=args.wandb,
            overwrite=args.overwrite,
            baselines_from=args.baselines_from,
        )
    except KeyboardInterrupt:
        return 130
    print(f"wrote {result.eval_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from latentrl.compare import compare_runs

    compare_runs(args.run_dirs, args.out)
    return 0


def _add_wandb_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wandb",
        choices=("online", "offline", "disabled"),
        default=None,
        help="W&B mode (default: online when logged in, else offline)",
    )


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    from latentrl.config import PRESETS

    parser.add_argument("--preset", choices=PRESETS, default="full", help="default: full")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="change one config field, e.g. --set train.epochs=20 (repeatable)",
    )
    parser.add_argument("--runs-root", type=Path, default=Path("runs"), help="default: runs/")
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="default: data/")
    _add_wandb_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentrl",
        description="Embed to Control: learn locally linear latent dynamics from pixels, "
        "plan with iLQR.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collect = commands.add_parser(
        "collect",
        help="collect an image-transition dataset",
        description="Collect (x_t, u_t, x_t+1, s_t, s_t+1) transitions into a dataset directory.",
    )
    collect.add_argument("env_id", help="e.g. latentrl/Pendulum-v0, or my_module:MyEnv-v0")
    collect.add_argument("--transitions", type=int, required=True, help="how many to collect")
    collect.add_argument(
        "--mode",
        choices=("uniform", "rollout"),
        default="uniform",
        help="uniform: states and controls drawn uniformly (E2C); rollout: random-policy "
        "episodes (default: uniform)",
    )
    collect.add_argument("--out", type=Path, required=True, help="dataset directory")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument(
        "--workers", type=int, default=1, help="worker processes (rollout: parallel envs)"
    )
    collect.add_argument("--chunk-size", type=int, default=10_000, help="transitions per file")
    collect.add_argument(
        "--chain-length",
        type=int,
        default=1,
        help="uniform mode: transitions per chain from each drawn state, for a multi-step "
        "loss (default: 1, independent transitions)",
    )
    collect.add_argument(
        "--near-goal-share",
        type=float,
        default=0.0,
        help="uniform mode: share of the chains that start near the goal state rather than "
        "anywhere (default: 0)",
    )
    collect.add_argument("--env-kwargs", type=_json_object, default={}, help="JSON object")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    collect.add_argument("--resume", action="store_true", help="finish an interrupted dataset")
    collect.set_defaults(handler=_collect)

    check = commands.add_parser(
        "check-env",
        help="check an environment against Gymnasium's API and the latentrl contract",
    )
    check.add_argument("env_id")
    check.add_argument("--env-kwargs", type=_json_object, default={}, help="JSON object")
    check.set_defaults(handler=_check_env)

    from latentrl.config import EXPERIMENTS

    train = commands.add_parser(
        "train",
        help="train an E2C model on a dataset",
        description="Train an experiment's model (collecting its dataset if needed), or "
        "continue an interrupted run with --run-dir DIR --resume.",
    )
    train.add_argument("--experiment", choices=EXPERIMENTS, help="e.g. pendulum")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--data", type=Path, help="dataset directory (default: collect/reuse)")
    train.add_argument("--run-dir", type=Path, help="run directory (default: runs/NAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    add_experiment_options(train)
    train.set_defaults(handler=_train)

    run = commands.add_parser(
        "run",
        help="run an experiment end to end for several seeds",
        description="Collect the experiment's dataset (once), then train and evaluate one "
        "run per seed.",
    )
    run.add_argument("experiment", choices=EXPERIMENTS)
    run.add_argument("--seeds", type=int, nargs="+", default=[0], help="default: 0")
    run.add_argument("--no-evaluate", action="store_true", help="train only")
    add_experiment_options(run)
    run.set_defaults(handler=_run)

    from latentrl.config import AGENTS

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a trained run: latent MPC against the oracle and random actions",
        description="Run the task's evaluation protocol (same seeded start states for every "
        "agent) and write RUN_DIR/eval/: results.json, trajectories, a state plot, GIFs.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--episodes", type=int, help="default: the run's eval.episodes")
    evaluate.add_argument(
        "--agents", nargs="+", choices=AGENTS, help=f"default: {' '.join(AGENTS)}"
    )
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="change an eval.* or plan.* setting, e.g. --set plan.horizon=30 (repeatable)",
    )
    evaluate.add_argument(
        "--overwrite",
        action="store_true",
        help="evaluate again into RUN_DIR/eval/; agents not run again keep their results if "
        "they ran on the same episodes and settings",
    )
    evaluate.add_argument(
        "--baselines-from",
        type=Path,
        metavar="OTHER_RUN",
        help="take the oracle and random agents from OTHER_RUN's evaluation instead of running "
        "them again, where they ran on the same episodes and settings (they do not depend on "
        "the model)",
    )
    _add_wandb_option(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    compare = commands.add_parser(
        "compare",
        help="compare evaluated runs: mean ± standard error across seeds, and a bar plot",
        description="Read each run's eval/results.json and summary.json, group the runs by "
        "experiment and preset, print mean ± standard error across seeds per agent, and write "
        "a bar plot (PNG) and the numbers (JSON beside it).",
    )
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    compare.add_argument(
        "--out",
        type=Path,
        help="the plot: a .png file or a directory (default: compare.png in the directory "
        "that holds the first RUN_DIR, e.g. runs/compare.png); the JSON goes beside it",
    )
    compare.set_defaults(handler=_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as exc:
        print(f"latentrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
