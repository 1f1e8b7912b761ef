"""Benchmark: E2C training throughput (samples/s) of the pendulum ``full`` model.

Times, in one run on the same batches:

* latentrl's training step: float32, one encoder pass over [x_t; x_t+1] and one decoder pass
  over [z_t; z^_t+1], closed-form rank-one KL, fused AdamW on CUDA (optionally compiled);
* a straightforward float64, unfused step in the shape of public reimplementations: separate
  passes per image, sigmoid + binary cross-entropy on probabilities, and the transition KL
  through full covariance matrices with ``inverse`` and ``logdet``.

With ``--kinds``, it times instead one training step of each named model kind
(:mod:`latentrl.kinds`) side by side, each with its default loss settings, on the same
transitions: chains of the filter kind's window (``loss.filter.window``), which a kind
trained on whole windows reads as ``batch_size // window`` windows and every other kind as
``batch_size`` single transitions.

Usage::

    python experiments/benchmarks/bench_train.py [--steps 30] [--batch-size 128]
        [--device auto] [--compile] [--kinds e2c filter pcc pc3]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentrl.devices import resolve_device
from latentrl.envs.contract import ControlEnv
from latentrl.envs.pendulum import PixelPendulumEnv
from latentrl.kinds import MODEL_KINDS, ModelKind, build_model
from latentrl.losses import Continuation, LossConfig, objective
from latentrl.models import E2C, ModelConfig
from latentrl.pipeline import experiment_config


def naive_float64_loss(model: E2C, x_t: Tensor, u_t: Tensor, x_next: Tensor) -> Tensor:
    """The same E2C bound, computed the way public reimplementations do (float64, unfused)."""
    target_t, target_next = x_t.double() / 255.0, x_next.double() / 255.0
    q_t, q_next = model.encode(target_t), model.encode(target_next)
    noise = torch.randn(q_t.mean.shape, device=q_t.mean.device).double()  # as latentrl draws it
    z_t = q_t.mean + torch.exp(0.5 * q_t.logvar) * noise
    lin = model.transition(z_t, u_t.double())
    z_hat = (lin.A @ z_t[..., None]).squeeze(-1) + (lin.B @ u_t.double()[..., None]).squeeze(-1)
    z_hat = z_hat + lin.o
    reconstruction = torch.sigmoid(model.decode(z_t))
    prediction = torch.sigmoid(model.decode(z_hat))
    nll_t = F.binary_cross_entropy(reconstruction, target_t, reduction="none").sum((1, 2, 3))
    nll_next = F.binary_cross_entropy(prediction, target_next, reduction="none").sum((1, 2, 3))
    kl_prior = 0.5 * (q_t.mean.square() + q_t.logvar.exp() - 1.0 - q_t.logvar).sum(-1)
    mean1 = (lin.A @ q_t.mean[..., None]).squeeze(-1) + (lin.B @ u_t.double()[..., None]).squeeze(
        -1
    )
    mean1 = mean1 + lin.o
    cov1 = lin.A @ torch.diag_embed(q_t.logvar.exp()) @ lin.A.transpose(-1, -2)
    cov2 = torch.diag_embed(q_next.logvar.exp())
    cov2_inv = torch.linalg.inv(cov2)
    diff = (q_next.mean - mean1)[..., None]
    kl_transition = 0.5 * (
        torch.diagonal(cov2_inv @ cov1, dim1=-2, dim2=-1).sum(-1)
        + (diff.transpose(-1, -2) @ cov2_inv @ diff).squeeze((-1, -2))
        - q_t.mean.shape[-1]
        + torch.logdet(cov2)
        - torch.logdet(cov1)
    )
    return (nll_t + nll_next + kl_prior + 0.25 * kl_transition).mean()


def pendulum_batches(count: int, batch_size: int, seed: int = 0) -> list[tuple[Tensor, ...]]:
    env, rng = PixelPendulumEnv(), np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        states = env.sample_states(batch_size, rng)
        actions = rng.uniform(-2, 2, size=(batch_size, 1)).astype(np.float32)
        next_states = env.next_states(states, actions)
        batches.append(
            (
                torch.from_numpy(env.observe(states)),
                torch.from_numpy(actions),
                torch.from_numpy(env.observe(next_states)),
            )
        )
    return batches


def env_chains(
    env: ControlEnv, count: int, rows: int, window: int, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """``count`` batches of ``rows`` chains of ``window`` transitions of the control env
    ``env`` from uniform states and uniform random actions: observations uint8
    ``(rows, window + 1, k, H, W)``, actions ``(rows, window, m)``."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    batches = []
    for _ in range(count):
        states = env.sample_states(rows, rng)
        frames, actions = [env.observe(states)], []
        for _ in range(window):
            u = rng.uniform(low, high, size=(rows, len(low))).astype(np.float32)
            states = env.next_states(states, u)
            frames.append(env.observe(states))
            actions.append(u)
        batches.append(
            (torch.from_numpy(np.stack(frames, 1)), torch.from_numpy(np.stack(actions, 1)))
        )
    return batches


def kind_batch(
    kind: ModelKind, frames: Tensor, actions: Tensor
) -> tuple[Tensor, Tensor, Tensor, Continuation | None]:
    """``(x_t, u_t, x_next, continuation)`` of chains ``frames (R, K + 1, ...)``, ``actions
    (R, K, m)`` as ``kind`` trains on them: R windows of K, or R K single transitions."""
    if kind.whole_windows:
        valid = torch.ones(len(frames), dtype=torch.bool, device=frames.device)
        continuation = Continuation(actions[:, 1:], frames[:, 2:], valid)
        return frames[:, 0], actions[:, 0], frames[:, 1], continuation
    return frames[:, :-1].flatten(0, 1), actions.flatten(0, 1), frames[:, 1:].flatten(0, 1), None


def kind_step(
    kind: ModelKind,
    model: E2C,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., tuple[Tensor, dict[str, Tensor]]],
    loss: LossConfig,
) -> Callable[[Tensor, Tensor], None]:
    """One training step of ``kind`` on chains ``(frames, actions)``."""

    def step(frames: Tensor, actions: Tensor) -> None:
        x_t, u_t, x_next, continuation = kind_batch(kind, frames, actions)
        value, _ = loss_fn(model, x_t, u_t, x_next, loss, continuation)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1_000.0)
        optimizer.step()

    return step


def time_kinds(
    names: list[str],
    config: ModelConfig,
    steps: int,
    batch_size: int,
    device: torch.device,
    compile_loss: bool,
) -> None:
    """Print ms per training step of each kind in ``names`` on the same transitions."""
    loss = LossConfig()
    window = MODEL_KINDS["filter"].window(loss)
    rows = max(1, batch_size // window)
    chains = [
        tuple(t.to(device) for t in batch)
        for batch in env_chains(PixelPendulumEnv(), steps + 2, rows, window)
    ]
    print(f"{rows} chains of {window} transitions per step ({rows * window} transitions)")
    baseline = None
    for name in names:
        kind = MODEL_KINDS[name]
        torch.manual_seed(0)
        model = build_model(dataclasses.replace(config, kind=name)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        loss_fn = torch.compile(kind.compute) if compile_loss else kind.compute

        step = kind_step(kind, model, optimizer, loss_fn, loss)
        seconds = time_steps(step, chains, device)
        baseline = baseline or seconds
        print(
            f"{name:>7}: {seconds * 1e3:8.2f} ms/step  {rows * window / seconds:8,.0f} "
            f"transitions/s  {seconds / baseline:5.2f}x the first  "
            f"{model.num_parameters():,} parameters"
        )


def time_steps(
    step: Callable[..., None], batches: list[tuple[Tensor, ...]], device: torch.device
) -> float:
    """Seconds per step after two warm-up steps."""
    for batch in batches[:2]:
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for batch in batches[2:]:
        step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / (len(batches) - 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile latentrl's loss")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=sorted(MODEL_KINDS),
        help="time one training step of each of these model kinds instead",
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    config = experiment_config("pendulum", "full").model
    if args.kinds:
        print(
            f"machine: {platform.machine()}, {torch.get_num_threads()} threads, device {device}; "
            f"torch {torch.__version__}; pendulum full model, batch {args.batch_size}"
        )
        time_kinds(args.kinds, config, args.steps, args.batch_size, device, args.compile)
        return
    batches = [
        tuple(t.to(device) for t in batch)
        for batch in pendulum_batches(args.steps + 2, args.batch_size)
    ]
    torch.manual_seed(0)
    model = E2C(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    loss_fn = torch.compile(objective) if args.compile else objective

    def latentrl_step(x_t: Tensor, u_t: Tensor, x_next: Tensor) -> None:
        loss, _ = loss_fn(model, x_t, u_t, x_next)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1_000.0)
        optimizer.step()

    ours = time_steps(latentrl_step, batches, device)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"torch {torch.__version__}; {model.num_parameters():,} parameters; batch {args.batch_size}"
    )
    print(f"latentrl float32 step: {ours * 1e3:8.2f} ms  {args.batch_size / ours:10,.0f} samples/s")
    if args.skip_naive:
        return
    naive_model = E2C(config).to(device).double()
    naive_optimizer = torch.optim.Adam(naive_model.parameters(), lr=1e-4)

    def naive_step(x_t: Tensor, u_t: Tensor, x_next: Tensor) -> None:
        loss = naive_float64_loss(naive_model, x_t, u_t, x_next)
        naive_optimizer.zero_grad()
        loss.backward()
        naive_optimizer.step()

    naive = time_steps(naive_step, batches, device)
    print(
        f"naive float64 step:    {naive * 1e3:8.2f} ms  {args.batch_size / naive:10,.0f} samples/s"
    )
    print(f"speed-up: {naive / ours:.2f}x")
    # a sanity check that both compute the same objective (same weights, same noise)
    with torch.no_grad():
        naive_model.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
        x_t, u_t, x_next = batches[0]
        torch.manual_seed(1)
        a = float(objective(model, x_t, u_t, x_next)[0])
        torch.manual_seed(1)
        b = float(naive_float64_loss(naive_model, x_t, u_t, x_next))
    print(f"same objective: latentrl {a:.3f} vs naive {b:.3f} nats")


if __name__ == "__main__":
    main()
