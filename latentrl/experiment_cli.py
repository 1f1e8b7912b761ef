"""The command line of the scripts in experiments/: run one experiment for several seeds, then
compare them.

``python experiments/pendulum.py --preset debug --seeds 0 1 2`` collects the experiment's
dataset (once), trains and evaluates one run per seed (:func:`latentrl.pipeline.run_experiment`,
as ``latentrl run`` does), then prints the table of :mod:`latentrl.compare` for those runs and
writes its plot. Every script is one call of :func:`experiment_main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from latentrl.errors import UserError


def experiment_parser(experiment: str, prog: str | None = None) -> argparse.ArgumentParser:
    """Options of an experiment script: the same as ``latentrl run EXPERIMENT`` plus ``--out``."""
    from latentrl.cli import add_experiment_options
    from latentrl.config import EXPERIMENTS

    if experiment not in EXPERIMENTS:
        raise UserError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}"
        )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"The {experiment} experiment ({EXPERIMENTS[experiment]}): collect its "
        "dataset (once), train and evaluate one run per seed, then compare the seeds (mean ± "
        "standard error) against the oracle and random agents.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="default: 0")
    parser.add_argument(
        "--out",
        type=Path,
        help="comparison plot, .png (default: RUNS_ROOT/EXPERIMENT__PRESET__compare.png); "
        "its numbers go beside it as .json",
    )
    add_experiment_options(parser)
    return parser


def experiment_main(experiment: str, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run ``experiment`` for each seed and compare
    the runs. Returns the exit status: 0, 2 after a UserError (one line on stderr), 130 on
    Ctrl-C."""
    parser = experiment_parser(experiment)
    args = parser.parse_args(argv)
    from latentrl.compare import compare_runs
    from latentrl.pipeline import run_experiment

    try:
        results = run_experiment(
            experiment,
            args.preset,
            args.seeds,
            args.set,
            runs_root=args.runs_root,
            data_root=args.data_root,
            wandb_mode=args.wandb,
        )
        out = args.out or args.runs_root / f"{experiment}__{args.preset}__compare.png"
        compare_runs([r.train.run_dir for r in results], out)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
