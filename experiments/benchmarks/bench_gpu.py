"""Benchmark: the figures of the GPU path in one command (it runs on a CPU as well).

Prints, on the chosen device:

1. **training**: samples/s of one training step of the pendulum ``full`` model (or of
   ``--experiment NAME PRESET``'s, on its env's frames) for each model kind
   (:mod:`latentrl.kinds`), with the experiment's loss settings (E2C with its multi-step
   term over windows of 8; the filter kind on ``batch // 8`` windows of 8), fused AdamW on
   CUDA, at each ``--batch-sizes`` (``train.batch_size``: samples = transitions), in float32
   and, on a GPU, under bfloat16 autocast (``train.bf16``; ``--precisions``: a CPU with bf16
   matrix units, such as Intel's AMX, gains from it too);
2. **latent MPC**: ms per control step of the latent agent (:class:`LatentMPCAgent`, the
   pendulum ``full`` plan settings: horizon, iteration cap, 1,024 shooting sequences) for 20
   and for 1,000 episodes at once; the model is freshly initialised unless ``--run`` names a
   trained run (the cost of a step does not depend on the weights, but its iterations can);
3. **iLQR against mpc.pytorch** on the problems of ``bench_planner.py`` (its code, as the
   agents run the solver: parallel line search, compiled on a GPU as ``plan.compile=auto``
   does), when mpc.pytorch is installed;
4. **the pipeline**: wall time of ``latentrl run pendulum`` end to end (collect, train,
   evaluate) in a temporary directory, with its result.

``--quick`` (a CPU in about two minutes): batch 128, 5 timed steps, 16 shooting sequences,
the smallest planner problems, no pipeline. Figures go to docs/benchmarks.md, never here.

Usage::

    python experiments/benchmarks/bench_gpu.py                       # everything (GPU: minutes)
    python experiments/benchmarks/bench_gpu.py --quick               # on a CPU
    python experiments/benchmarks/bench_gpu.py --pipeline skip --batch-sizes 128 4096 16384
    python experiments/benchmarks/bench_gpu.py --quick --kinds e2c --precisions float32 bf16 \
        --experiment pc3_cartpole close                              # a CPU's bf16 units
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_planner  # a script beside this one
from bench_train import env_chains

from latentrl.agents.latent import LatentMPCAgent, planner_compiles
from latentrl.checkpoint import load_model
from latentrl.config import ExperimentConfig, PlanConfig
from latentrl.devices import device_description, resolve_device
from latentrl.envs import make_env, require_control_env
from latentrl.envs.pendulum import PixelPendulumEnv
from latentrl.errors import UserError
from latentrl.kinds import MODEL_KINDS, build_model, model_kind
from latentrl.losses import Continuation
from latentrl.pipeline import experiment_config

POOL = 3
"""Distinct batches per timing, cycled: rendering thousands of chains per step would time
the CPU's image rendering, not the step."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_config(kind: str, experiment: str = "pendulum", preset: str = "full") -> ExperimentConfig:
    """The experiment's preset (by default the pendulum ``full``) with ``model.kind=kind``."""
    return experiment_config(experiment, preset, 0, [f"model.kind={kind}"])


def training_batches(
    config: ExperimentConfig, batch_size: int, device: torch.device
) -> list[tuple[Tensor, Tensor, Tensor, Continuation | None]]:
    """:data:`POOL` batches ``(x_t, u_t, x_next, continuation)`` of ``batch_size`` transitions
    of ``config``'s env as its kind trains on them (windows of its training window)."""
    kind = model_kind(config.model.kind)
    window = kind.window(config.loss)
    rows = max(1, batch_size // window) if kind.whole_windows else batch_size
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    try:
        chains = env_chains(require_control_env(env), POOL, rows, window)
    finally:
        env.close()
    batches = []
    for frames, actions in chains:
        frames, actions = frames.to(device), actions.to(device)
        continuation = None
        if window > 1:
            valid = torch.ones(rows, dtype=torch.bool, device=device)
            continuation = Continuation(actions[:, 1:], frames[:, 2:], valid)
        batches.append((frames[:, 0], actions[:, 0], frames[:, 1], continuation))
    return batches


def time_training(
    kind: str,
    batch_size: int,
    steps: int,
    device: torch.device,
    compile_loss: bool,
    bf16: bool = False,
    experiment: tuple[str, str] = ("pendulum", "full"),
) -> float:
    """Samples (transitions) per second of ``kind``'s training step at ``batch_size`` on the
    model of ``experiment`` (name, preset), its forward pass under bfloat16 autocast with
    ``bf16`` (``train.bf16``)."""
    config = bench_config(kind, *experiment)
    torch.manual_seed(0)
    model = build_model(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.learning_rate, fused=device.type == "cuda"
    )
    objective = model_kind(kind).compute
    loss_fn = torch.compile(objective) if compile_loss else objective
    batches = training_batches(config, batch_size, device)

    def step(i: int) -> None:
        x_t, u_t, x_next, continuation = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = loss_fn(model, x_t, u_t, x_next, config.loss, continuation)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip_norm)
        optimizer.step()

    return batch_size / timed(step, steps, device)


def timed(step: Callable[[int], None], steps: int, device: torch.device, warmup: int = 2) -> float:
    """Seconds per call of ``step(i)`` over ``steps`` calls after ``warmup`` untimed ones."""
    for i in range(warmup):
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def time_mpc(
    episodes: int, steps: int, device: torch.device, shooting: int | None, run: Path | None
) -> float:
    """Milliseconds per control step of the latent agent planning ``episodes`` at once."""
    if run is not None:
        model, config = load_model(run, device)
    else:
        config = bench_config("e2c")
        torch.manual_seed(0)
        model = build_model(config.model).to(device)
    plan = config.plan
    if shooting is not None and "shooting" in plan.options:
        from latentrl.config import apply_overrides

        plan = apply_overrides(config, [f"plan.options.shooting.count={shooting}"]).plan
    env, rng = PixelPendulumEnv(), np.random.default_rng(0)
    space = env.action_space
    agent = LatentMPCAgent(model, space.low, space.high, plan, seed=0)
    agent.reset(env.observe(env.goal_state()[None])[0], episodes)
    frames = [env.observe(env.sample_states(episodes, rng)) for _ in range(POOL)]
    # A compiled planner compiles in its first steps, once per shape its solves meet.
    warmup = 3 if agent.planner.config.compile else 1
    return 1e3 * timed(lambda i: agent.act(frames[i % POOL]), steps, device, warmup=warmup)


def planner_comparison(quick: bool, device: torch.device) -> list[dict]:
    """``bench_planner.py``'s table (printed) on ``device``, as the agents run the solver."""
    argv = ["--device", str(device), "--parallel-line-search", "--dynamics", "linear", "tanh"]
    argv += ["--threads", str(torch.get_num_threads())]
    if planner_compiles(PlanConfig().compile, device):
        argv.append("--compile")
    if quick:
        argv += ["--n", "3", "--m", "1", "--T", "10", "--B", "1", "256", "--repeats", "3"]
    return bench_planner.main(argv)


def pipeline(preset: str, device: torch.device) -> tuple[float, dict]:
    """Wall seconds of ``latentrl run pendulum --preset PRESET`` in a temporary directory,
    and its latent agent's evaluation summary."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "latentrl", "run", "pendulum", "--preset", preset]
        command += ["--runs-root", f"{folder}/runs", "--data-root", f"{folder}/data"]
        command += ["--wandb", "disabled", "--set", f"train.device={device}"]
        command += ["--set", f"eval.device={device}"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        (summary,) = Path(folder, "runs").glob("*/eval/summary.json")
        return seconds, json.loads(summary.read_text())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--quick", action="store_true", help="a short run for a CPU")
    parser.add_argument("--kinds", nargs="+", choices=sorted(MODEL_KINDS), default=None)
    parser.add_argument(
        "--experiment", nargs=2, metavar=("NAME", "PRESET"), default=["pendulum", "full"],
        help="the experiment whose model the training section times, on its env's frames",
    )  # fmt: skip
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed training steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the objective")
    parser.add_argument(
        "--precisions", nargs="+", choices=("float32", "bf16"), default=None,
        help="training precisions (default: both on a GPU, float32 on a CPU)",
    )  # fmt: skip
    parser.add_argument("--episodes", type=int, nargs="+", default=[20, 1_000])
    parser.add_argument("--mpc-steps", type=int, default=None, help="timed control steps")
    parser.add_argument("--shooting", type=int, default=None, help="shooting sequences")
    parser.add_argument("--run", type=Path, default=None, help="a trained run for the MPC")
    parser.add_argument("--pipeline", choices=("full", "debug", "skip"), default=None)
    parser.add_argument("--skip-planner", action="store_true", help="no mpc.pytorch table")
    args = parser.parse_args(argv)
    try:
        bench_config("e2c", *args.experiment)
    except UserError as exc:
        parser.error(str(exc))
    gpu = resolve_device(args.device).type == "cuda"
    quick = args.quick
    args.kinds = args.kinds or sorted(MODEL_KINDS)
    args.precisions = args.precisions or (["float32", "bf16"] if gpu else ["float32"])
    args.batch_sizes = args.batch_sizes or ([128] if quick or not gpu else [128, 4_096])
    args.steps = args.steps or (5 if quick else 30)
    args.mpc_steps = args.mpc_steps or (1 if quick else 5)
    args.shooting = args.shooting or (16 if quick else None)
    args.pipeline = args.pipeline or ("skip" if quick else "full")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    print(
        f"bench_gpu: torch {torch.__version__}, {device} ({device_description(device)}), "
        f"{torch.get_num_threads()} CPU threads, {time.strftime('%Y-%m-%d %H:%M')}",
        flush=True,
    )
    summary = []
    experiment, preset = args.experiment
    print(f"\n1. training, {experiment} {preset} model (samples/s)", flush=True)
    for precision in args.precisions:
        for batch in args.batch_sizes:
            for kind in args.kinds:
                bf16 = precision == "bf16"
                rate = time_training(
                    kind, batch, args.steps, device, args.compile, bf16, (experiment, preset)
                )
                label = f"{kind:>6} {precision:>7} batch {batch:>6}"
                print(f"  {label}: {rate:>10,.0f} samples/s", flush=True)
                summary.append(f"training {kind} {precision} batch {batch}: {rate:,.0f} samples/s")
    shooting = "the preset's" if args.shooting is None else str(args.shooting)
    print(f"\n2. latent MPC, pendulum full plan, {shooting} shooting sequences", flush=True)
    for episodes in args.episodes:
        ms = time_mpc(episodes, args.mpc_steps, device, args.shooting, args.run)
        print(f"  {episodes:>5} episodes: {ms:10.1f} ms per step", flush=True)
        summary.append(f"latent MPC {episodes} episodes: {ms:.1f} ms/step")
    if not args.skip_planner:
        print("\n3. iLQR against mpc.pytorch (bench_planner.py)", flush=True)
        rows = planner_comparison(args.quick, device)
        ratios = [r["speedup"] for r in rows if r["speedup"] == r["speedup"]]
        if ratios:
            summary.append(f"iLQR vs mpc.pytorch: {min(ratios):.1f}x to {max(ratios):.1f}x")
    if args.pipeline != "skip":
        print(f"\n4. latentrl run pendulum --preset {args.pipeline}", flush=True)
        seconds, result = pipeline(args.pipeline, device)
        goal = result.get("eval/latent/steps_in_goal", float("nan"))
        print(f"  {seconds / 60:.1f} min; latent steps in goal {goal:.3f}", flush=True)
        summary.append(f"pipeline ({args.pipeline}): {seconds / 60:.1f} min, in goal {goal:.3f}")
    print("\nsummary:\n  " + "\n  ".join(summary))


if __name__ == "__main__":
    main()
