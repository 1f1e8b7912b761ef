"""The ``latentrl`` command.

Each sub-command parses its arguments and calls one library function. Mistakes a user can
make (``UserError``) print one line and exit with status 2; Ctrl-C exits with 130 after saying
how to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from latentrl.config import DataConfig, EvalConfig, TrainConfig
from latentrl.diagnose_cli import add_diagnose_parser
from latentrl.errors import UserError
from latentrl.experiment_cli import (
    DATA_ROOT,
    RUNS_ROOT,
    DefaultsHelpFormatter,
    OneLineParser,
    add_experiment_options,
    add_experiments_parser,
    add_run_parser,
    add_train_sources,
    add_wandb_option,
    config_flag,
    json_object,
    refuse_with_resume,
    train_config,
)
from latentrl.field_rules import Allowed, flag_type
from latentrl.run_directory import check_writable
from latentrl.sweep_cli import add_sweep_parser
from latentrl.threads import configure_threads

if TYPE_CHECKING:
    import torch

    from latentrl.config import ExperimentConfig

Handler = Callable[[argparse.Namespace], int]


def _collect(args: argparse.Namespace) -> int:
    from latentrl.collect import collect

    check_writable(args.out, "--out")
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
            near_goal_widths=args.near_goal_widths,
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
    from latentrl.devices import resolve_device
    from latentrl.distributed import decided_by_rank0, launched_world, process_group, rank_device
    from latentrl.pipeline import ensure_dataset
    from latentrl.run_directory import RunDirectory, new_run_dir
    from latentrl.train import train

    world = launched_world()
    if args.resume:
        if args.run_dir is None:
            raise UserError("--resume needs --run-dir: the run to continue")
        refuse_with_resume(args)
        run = RunDirectory(args.run_dir).require_run()
        config = apply_overrides(load_config(run.config), args.set)
        device = resolve_device(config.train.device)
        data = args.data or run.dataset()
        run_dir = args.run_dir
    else:
        config = train_config(args)
        device = resolve_device(config.train.device)  # before anything is written
        if args.run_dir is not None:
            RunDirectory(args.run_dir).require_new()
            check_writable(args.run_dir, "--run-dir")
        else:
            check_writable(args.runs_root or RUNS_ROOT, "--runs-root")
        if args.data is None:
            check_writable(args.data_root or DATA_ROOT, "--data-root")
    if args.nproc > 1 and not world.distributed:
        return _launch(args, config, device)

    def dataset_and_run() -> tuple[Path, Path]:
        data = args.data or ensure_dataset(config.data, args.data_root or DATA_ROOT)
        return data, args.run_dir or new_run_dir(args.runs_root or RUNS_ROOT, config)

    with process_group(rank_device(device, world), world) as world:
        if not args.resume:  # decided once, by rank 0, when several processes train
            data, run_dir = decided_by_rank0(world, dataset_and_run)
        try:
            result = train(config, run_dir, data, resume=args.resume, wandb_mode=args.wandb)
        except KeyboardInterrupt:
            if world.writes:
                print(
                    f"\ninterrupted: continue with `latentrl train --run-dir {run_dir} --resume` "
                    "(from its last checkpoint)",
                    file=sys.stderr,
                )
            return 130
    if world.writes:
        print(f"trained {result.epochs} epochs ({result.steps} steps): {result.run_dir}")
    return 0


def _launch(args: argparse.Namespace, config: ExperimentConfig, device: torch.device) -> int:
    """``train`` again in ``--nproc`` processes (torch's elastic launcher, as torchrun)."""
    import torch

    from latentrl.distributed import World, check_world, launch
    from latentrl.kinds import model_kind

    kind = model_kind(config.model.kind)
    check_world(config.train, kind.window(config.loss), kind.whole_windows, World(size=args.nproc))
    if device.type == "cuda" and args.nproc > torch.cuda.device_count():
        raise UserError(
            f"--nproc {args.nproc} but this machine has {torch.cuda.device_count()} GPU(s): "
            "one process per GPU; lower --nproc"
        )
    argv = list(args.argv)
    for i, word in enumerate(argv):
        if word == "--nproc":
            del argv[i : i + 2]
            break
        if word.startswith("--nproc="):
            del argv[i]
            break
    return launch(args.nproc, argv)


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
            out=args.out,
            wandb_mode=args.wandb,
            overwrite=args.overwrite,
            baselines_from=args.baselines_from,
        )
    except KeyboardInterrupt:
        return 130
    print(f"wrote {result.eval_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from latentrl.compare import compare_runs, output_paths

    check_writable(output_paths(args.out, args.run_dirs[0])[0], "--out")
    compare_runs(args.run_dirs, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="latentrl",
        description="Embed to Control: learn locally linear latent dynamics from pixels, "
        "plan with iLQR.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collect = commands.add_parser(
        "collect",
        formatter_class=DefaultsHelpFormatter,
        help="collect an image-transition dataset",
        description="Collect (x_t, u_t, x_t+1, s_t, s_t+1) transitions into a dataset directory.",
    )
    collect.add_argument("env_id", help="e.g. latentrl/Pendulum-v0, or my_module:MyEnv-v0")
    collect.add_argument(
        "--transitions",
        type=config_flag(DataConfig, "transitions"),
        required=True,
        help="how many to collect",
    )
    collect.add_argument(
        "--mode",
        choices=("uniform", "rollout"),
        default="uniform",
        help="uniform: states and controls drawn uniformly (E2C); rollout: random-policy "
        "episodes (default: uniform)",
    )
    collect.add_argument("--out", type=Path, required=True, help="dataset directory")
    collect.add_argument(
        "--seed", type=config_flag(DataConfig, "seed"), default=0, help="collection seed"
    )
    collect.add_argument(
        "--workers",
        type=config_flag(DataConfig, "workers"),
        default=1,
        help="worker processes (rollout: parallel envs)",
    )
    collect.add_argument(
        "--chunk-size",
        type=flag_type(Allowed(int, low=1)),
        default=10_000,
        help="transitions per file",
    )
    collect.add_argument(
        "--chain-length",
        type=config_flag(DataConfig, "chain_length"),
        default=1,
        help="uniform mode: transitions per chain from each drawn state, for a multi-step "
        "loss (default: 1, independent transitions)",
    )
    collect.add_argument(
        "--near-goal-share",
        type=config_flag(DataConfig, "near_goal_share"),
        default=0.0,
        help="uniform mode: share of the chains that start near the goal state rather than "
        "anywhere (default: 0)",
    )
    collect.add_argument(
        "--near-goal-widths",
        type=flag_type(Allowed(float, above=0, high=1)),
        nargs="+",
        metavar="FRACTION",
        help="the near-goal box's half-width in each state coordinate, as a fraction of the "
        "state box's half-width (1: the whole range); default: 0.2 in every coordinate",
    )
    collect.add_argument(
        "--env-kwargs", type=json_object, default={}, help="gymnasium.make keyword arguments, JSON"
    )
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    collect.add_argument("--resume", action="store_true", help="finish an interrupted dataset")
    collect.set_defaults(handler=_collect)

    check = commands.add_parser(
        "check-env",
        formatter_class=DefaultsHelpFormatter,
        help="check an environment against Gymnasium's API and the latentrl contract",
    )
    check.add_argument("env_id", help="e.g. latentrl/Pendulum-v0, or my_module:MyEnv-v0")
    check.add_argument(
        "--env-kwargs", type=json_object, default={}, help="gymnasium.make keyword arguments, JSON"
    )
    check.set_defaults(handler=_check_env)

    train = commands.add_parser(
        "train",
        help="train a latent dynamics model (any model.kind) on a dataset",
        description="Train the model of an experiment file, a config file, or an env with the "
        "schema's defaults (collecting its dataset if needed, or training on --data), or "
        "continue an interrupted run with --run-dir DIR --resume. model.obs_shape and "
        "model.action_dim come from the env; with --data the env, its kwargs, mode, size, "
        "chain length, near-goal share and seed come from the dataset's metadata.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_train_sources(train)
    train.add_argument(
        "--seed",
        type=config_flag(TrainConfig, "seed"),
        default=None,
        help="training seed (default: 0)",
    )
    train.add_argument(
        "--data", type=Path, help="dataset directory (default: collect or reuse one in DATA_ROOT)"
    )
    train.add_argument(
        "--run-dir", type=Path, help="run directory (default: RUNS_ROOT/ENV__NAME__SEED__TIME)"
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument(
        "--nproc",
        type=flag_type(Allowed(int, low=1)),
        default=1,
        help="training processes on this machine (DistributedDataParallel through torch's "
        "elastic launcher, as `torchrun --standalone --nproc-per-node N`): one per GPU, or "
        "CPU processes with gloo; each trains on its block of every train.batch_size batch",
    )
    add_experiment_options(train)
    train.set_defaults(handler=_train)

    add_run_parser(commands)
    add_sweep_parser(commands)
    add_experiments_parser(commands)

    from latentrl.config import AGENTS

    evaluate = commands.add_parser(
        "evaluate",
        formatter_class=DefaultsHelpFormatter,
        help="evaluate a trained run: latent MPC against the oracle and random actions",
        description="Run the task's evaluation protocol (same seeded start states for every "
        "agent) and write RUN_DIR/eval/ (or --out DIR): results.json, trajectories, a state "
        "plot, GIFs.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument(
        "--episodes",
        type=config_flag(EvalConfig, "episodes"),
        help="default: the run's eval.episodes",
    )
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
        "--out",
        type=Path,
        metavar="DIR",
        help="write the evaluation into DIR instead of RUN_DIR/eval/, leaving the run as it "
        "is (another planner or task on the same model); `latentrl compare` reads DIR like a "
        "run (default: RUN_DIR/eval/)",
    )
    evaluate.add_argument(
        "--overwrite",
        action="store_true",
        help="evaluate again into RUN_DIR/eval/ (or --out DIR); agents not run again keep "
        "their results if they ran on the same episodes and settings",
    )
    evaluate.add_argument(
        "--baselines-from",
        type=Path,
        metavar="OTHER_RUN",
        help="take the oracle and random agents from OTHER_RUN's evaluation (or from a folder "
        "an evaluation was written to with --out) instead of running them again, where they ran "
        "on the same episodes and settings (they do not depend on the model)",
    )
    add_wandb_option(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    compare = commands.add_parser(
        "compare",
        formatter_class=DefaultsHelpFormatter,
        help="compare evaluated runs: mean ± standard error across seeds, and a bar plot",
        description="Read each run's eval/results.json and summary.json, group the runs by "
        "experiment and preset, print mean ± standard error across seeds per agent, and write "
        "a bar plot (PNG) and, beside it, the numbers (JSON) and a Markdown table.",
    )
    compare.add_argument(
        "run_dirs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="evaluated runs, or folders of `latentrl evaluate RUN --out DIR`",
    )
    compare.add_argument(
        "--out",
        type=Path,
        help="the plot: a .png file or a directory (default: compare.png in the directory "
        "that holds the first RUN_DIR, e.g. runs/compare.png); the JSON and Markdown go beside it",
    )
    compare.set_defaults(handler=_compare)
    add_diagnose_parser(commands)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM (``kill``, a batch scheduler's stop) interrupts the command as
    Ctrl-C does: it stops where it is safe, says how to continue, and exits with 130. Only
    the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: ``sys.argv[1:]``); returns its exit status. Bad
    arguments and UserErrors print one line on stderr and return 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        configure_threads()  # the CPUs this process may use (latentrl.threads)
        with sigterm_as_ctrl_c():
            return handler(args)
    except UserError as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 says it once
            print(f"latentrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
