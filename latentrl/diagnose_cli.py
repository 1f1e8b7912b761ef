"""The ``latentrl diagnose`` sub-command: its flags and its handler (:mod:`latentrl.diagnose`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from latentrl.diagnostics.settings import DiagnoseSettings
from latentrl.experiment_cli import DefaultsHelpFormatter, add_wandb_option, config_flag
from latentrl.run_directory import check_writable


def diagnose_command(args: argparse.Namespace) -> int:
    """``latentrl diagnose``: the flags given override :class:`DiagnoseSettings`' defaults."""
    from latentrl.diagnose import diagnose_run

    if args.out is not None:
        check_writable(args.out, "--out")
    names = (
        "images",
        "samples",
        "fit_steps",
        "gradient_images",
        "repeats",
        "draws",
        "goal_states",
        "goal_steps",
        "seed",
    )
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        result = diagnose_run(
            args.run_dir,
            args.out,
            DiagnoseSettings(**given),
            data=args.data,
            overwrite=args.overwrite,
            wandb_mode=args.wandb,
        )
    except KeyboardInterrupt:
        return 130
    print(f"wrote {result.out}")
    return 0


def add_diagnose_parser(commands: argparse._SubParsersAction) -> None:
    """``latentrl diagnose RUN_DIR``."""
    diagnose = commands.add_parser(
        "diagnose",
        formatter_class=DefaultsHelpFormatter,
        help="measure a trained model as a latent variable model: ELBO gap, amortization "
        "gap, gradient estimators, the transition's KL and linearization; and whether it can "
        "hold its goal",
        description="On the run's validation images: log p(x) by importance sampling (the "
        "IWAE bound as the samples grow) against the ELBO; per-image variational parameters "
        "against the encoder; the variance of the reparameterized and score-function "
        "gradients; the transition KL in closed form against Monte Carlo and the "
        "linearization over a growing horizon; in the run's env, the action that holds the "
        "goal in the model and the model's effect of a push near the goal against the "
        "frames'. Writes RUN_DIR/diagnose/: report.json, PNGs, and the diagnose/... numbers "
        "into the run's summary.json.",
    )
    diagnose.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    diagnose.add_argument(
        "--out", type=Path, help="the report's folder (default: RUN_DIR/diagnose/)"
    )
    diagnose.add_argument(
        "--data", type=Path, help="dataset directory (default: the run's own dataset)"
    )
    defaults = DiagnoseSettings()
    flags = {
        "images": "validation images for the ELBO and amortization gaps",
        "samples": "importance samples per image (K of the IWAE curve)",
        "fit_steps": "Adam steps of the per-image variational parameters",
        "gradient_images": "images whose gradient estimators are compared",
        "repeats": "gradient estimates per image and estimator, for their variance",
        "draws": "draws per gradient estimate, the same for every estimator",
        "goal_states": "true states near the goal for the push check",
        "goal_steps": "steps of each push in the push check",
        "seed": "seed of the images and every draw",
    }
    for name, text in flags.items():
        diagnose.add_argument(
            "--" + name.replace("_", "-"),
            type=config_flag(DiagnoseSettings, name),
            default=None,
            help=f"{text} (default: {getattr(defaults, name)})",
        )
    diagnose.add_argument(
        "--overwrite", action="store_true", help="replace an earlier report in the same folder"
    )
    add_wandb_option(diagnose)
    diagnose.set_defaults(handler=diagnose_command)
