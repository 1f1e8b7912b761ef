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
