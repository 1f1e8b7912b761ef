"""Benchmark: latentrl's batched box-constrained iLQR beside mpc.pytorch, on the same problems.

Each problem: ``B`` start states ``z0 ~ N(0, I)`` and goals ``g ~ N(0, 4 I)`` under one random
dynamics model, horizon ``T``, cost ``Σ_{t<T} |z_t - g|² + 0.1 |u_t|²  +  10 |z_T - g|²``,
box ``|u| <= 1`` (active for most problems). Dynamics:

* ``linear``: ``z' = A z + B u`` with a random ``A`` of spectral radius 0.99;
* ``tanh``: ``z' = A z + B u + 0.5 tanh(W z + V u)``, smooth and nonlinear like an E2C
  transition; both solvers get its Jacobians in closed form.

Both solvers start from ``u = 0`` with the same iteration cap. Ours stops at a relative cost
decrease below ``--tolerance`` (default 1e-8, stricter than ``ILQRConfig``'s 1e-6: on slowly
converging nonlinear problems 1e-6 stops up to ~4e-4 above the cost mpc.pytorch reaches, whose
own test is a full-step norm below 1e-7 or 5 iterations without a 1e-4 improvement). Each
solution's controls are rolled out again through the true dynamics and scored with the same cost
function (:func:`latentrl.planning.trajectory_cost`), so "cost" means the same thing in both
columns. On ``tanh`` problems the cost is not convex: the two solvers can end in different local
minima (either may be the cheaper one), so compare costs there over many problems. Times are the
median wall time of ``--repeats`` solves after ``--warmup`` untimed ones, with the device
synchronised. Our solver gets ``parallel_line_search`` on CUDA (``--parallel-line-search``
elsewhere) and ``ILQRConfig(compile=True)`` with ``--compile`` (compiled in the warm-up, with
torch's compiled code reset before each problem).

mpc.pytorch (https://github.com/locuslab/mpc.pytorch) is not a dependency of latentrl. Install
it somewhere throw-away, and this script finds it there::

    pip install --no-deps --target /tmp/mpc_pkg mpc

Its horizon counts (x_t, u_t) pairs, so our ``T`` controls are its ``T + 1`` steps (the extra
last control only pays its own cost: zero at the optimum). Its cost ``½ τᵀ C τ + cᵀ τ`` with
``τ = (x, u)`` is ours without the constant: ``C = 2 diag(Q, R)``, ``c = -2 (Q g, 0)``.

mpc 0.0.6 (PyPI) with torch 2.13 on the CPU, float32 and float64, linear and tanh, m = 1 and 2:
solves and even backpropagates (not used here) without errors. It warns that ``Tensor.lu`` and
``Tensor.lu_solve`` (its box QP ``pnqp`` and backward pass, used when m >= 2) will be removed in
a future torch, and that indexing with uint8 masks (``util.bdiag``, backward pass only) is
deprecated; the first torch that removes either breaks it there. ``backprop=False`` is accepted
but unused by 0.0.6, so the solve runs under ``torch.no_grad()``. Per iteration it loops over
the batch in Python (keeping each problem's best solution) and its line search multiplies by
``torch.diag(alphas)``, a ``(B, B)`` matrix: its time grows faster than linearly with ``B``.
CUDA was not tried here.

Usage::

    python experiments/benchmarks/bench_planner.py                      # the full table (minutes)
    python experiments/benchmarks/bench_planner.py --n 3 --m 1 --T 10 --B 1 --repeats 3   # seconds
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentrl.devices import device_description, resolve_device
from latentrl.planning import (
    ILQRConfig,
    LinearDynamics,
    QuadraticCost,
    rollout,
    solve_ilqr,
    trajectory_cost,
)

MPC_TARGET = Path("/tmp/mpc_pkg")
INSTALL_HINT = f"pip install --no-deps --target {MPC_TARGET} mpc"
U_MAX = 1.0


def import_mpc() -> Any | None:
    """The ``mpc.mpc`` module of mpc.pytorch, from the environment or ``MPC_TARGET``; None
    if neither has it."""
    for attempt in range(2):
        try:
            from mpc import mpc

            return mpc
        except ImportError:
            if attempt or not MPC_TARGET.is_dir():
                return None
            sys.path.append(str(MPC_TARGET))
    return None


# --- problems ---------------------------------------------------------------------------------


class TanhDynamics:
    """``z' = A z + B u + a tanh(W z + V u)`` with shared ``A (n, n)``, ``B (n, m)``,
    ``W (n, n)``, ``V (n, m)``; :class:`latentrl.planning.Dynamics` with exact Jacobians."""

    def __init__(self, A: Tensor, B: Tensor, W: Tensor, V: Tensor, a: float = 0.5) -> None:
        self.A, self.B, self.W, self.V, self.a = A, B, W, V, a

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """``z (R, n)``, ``u (R, m)`` -> ``(R, n)``."""
        return z @ self.A.mT + u @ self.B.mT + self.a * torch.tanh(z @ self.W.mT + u @ self.V.mT)

    def jacobians(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂f/∂z (R, n, n), ∂f/∂u (R, n, m))``."""
        slope = self.a * (1 - torch.tanh(z @ self.W.mT + u @ self.V.mT).square())
        return self.A + slope[:, :, None] * self.W, self.B + slope[:, :, None] * self.V

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (R, n, n), B (R, n, m), c (R, n))`` at ``(z, u)``."""
        A, B = self.jacobians(z, u)
        c = self.step(z, u) - (A @ z[..., None]).squeeze(-1) - (B @ u[..., None]).squeeze(-1)
        return A, B, c

    def select(self, index: Tensor) -> TanhDynamics:
        """Itself: one model for every problem."""
        return self


class MPCTanh(torch.nn.Module):
    """:class:`TanhDynamics` in mpc.pytorch's form: ``forward(x, u)`` and ``grad_input``."""

    def __init__(self, dynamics: TanhDynamics) -> None:
        super().__init__()
        self.dynamics = dynamics

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return self.dynamics.step(x, u)

    def grad_input(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        return self.dynamics.jacobians(x, u)


@dataclass(frozen=True)
class Problem:
    """``B`` boxed goal-reaching problems of horizon ``T`` under one dynamics model."""

    kind: str
    dynamics: LinearDynamics | TanhDynamics
    z0: Tensor  # (B, n)
    cost: QuadraticCost
    horizon: int
    m: int


def make_problem(
    kind: str, n: int, m: int, T: int, B: int, device: torch.device, dtype: torch.dtype
) -> Problem:
    """A random problem, the same for every solver (seeded by its sizes)."""
    gen = torch.Generator().manual_seed(1_000 * n + 100 * m + T)
    A = torch.linalg.matrix_exp(0.5 * torch.randn(n, n, generator=gen, dtype=torch.float64))
    A = 0.99 * A / torch.linalg.eigvals(A).abs().max()
    Bm = 0.5 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    if kind == "linear":
        params = [A, Bm]
    else:
        W = torch.randn(n, n, generator=gen, dtype=torch.float64) / n**0.5
        params = [A, Bm, W, torch.randn(n, m, generator=gen, dtype=torch.float64)]
    params = [p.to(device, dtype) for p in params]
    dynamics = LinearDynamics(*params) if kind == "linear" else TanhDynamics(*params)
    z0 = torch.randn(B, n, generator=gen, dtype=torch.float64).to(device, dtype)
    eye_n = torch.eye(n, device=device, dtype=dtype)
    cost = QuadraticCost(
        Q=eye_n,
        R=0.1 * torch.eye(m, device=device, dtype=dtype),
        Q_f=10 * eye_n,
        goal=2 * torch.randn(B, n, generator=gen, dtype=torch.float64).to(device, dtype),
    )
    return Problem(kind, dynamics, z0, cost, T, m)


# --- solvers: each returns controls (B, T, m) -------------------------------------------------


def solve_ours(p: Problem, args: argparse.Namespace) -> Tensor:
    config = ILQRConfig(
        max_iterations=args.iterations,
        tolerance=args.tolerance,
        parallel_line_search=args.parallel_line_search or p.z0.is_cuda,
        compile=args.compile,
    )
    u0 = p.z0.new_zeros(p.z0.shape[0], p.horizon, p.m)
    return solve_ilqr(p.dynamics, p.z0, u0, p.cost, -U_MAX, U_MAX, config).u


def mpc_inputs(p: Problem, mpc: Any) -> tuple[Any, Any]:
    """mpc.pytorch's ``QuadCost`` and dynamics (``LinDx`` or a module) for ``p``."""
    batch, n = p.z0.shape
    steps = p.horizon + 1
    c = p.cost
    C = torch.zeros(steps, batch, n + p.m, n + p.m, dtype=p.z0.dtype, device=p.z0.device)
    C[:-1, :, :n, :n], C[-1, :, :n, :n] = 2 * c.Q, 2 * c.Q_f
    C[:, :, n:, n:] = 2 * c.R
    q = torch.zeros(steps, batch, n + p.m, dtype=p.z0.dtype, device=p.z0.device)
    q[:-1, :, :n], q[-1, :, :n] = -2 * c.goal @ c.Q, -2 * c.goal @ c.Q_f
    if isinstance(p.dynamics, LinearDynamics):
        F = torch.cat([p.dynamics.A, p.dynamics.B], dim=-1).to(p.z0)
        dx = mpc.LinDx(F.expand(steps - 1, batch, n, n + p.m), None)
    else:
        dx = MPCTanh(p.dynamics)
    return mpc.QuadCost(C, q), dx


def solve_mpc(p: Problem, iterations: int, mpc: Any) -> Tensor:
    batch, n = p.z0.shape
    cost, dx = mpc_inputs(p, mpc)
    solver = mpc.MPC(
        n,
        p.m,
        p.horizon + 1,
        u_lower=-U_MAX,
        u_upper=U_MAX,
        lqr_iter=iterations,
        grad_method=mpc.GradMethods.ANALYTIC,
        n_batch=batch,
        verbose=-1,
        exit_unconverged=False,
        detach_unconverged=False,
        backprop=False,
    )
    with torch.no_grad():  # no graph: its fastest mode (the solver is not differentiated here)
        _, u, _ = solver(p.z0, cost, dx)
    return u[:-1].transpose(0, 1)  # (T + 1, B, m) -> (B, T, m)


def timed(solve: Callable[[], Tensor], repeats: int, warmup: int) -> tuple[float, Tensor]:
    """Median seconds of ``repeats`` calls after ``warmup`` calls, and the last result."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        solve()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        u = solve()
        sync()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), u


def score(p: Problem, u: Tensor) -> tuple[Tensor, float]:
    """Cost ``(B,)`` of ``u (B, T, m)`` rolled out through the dynamics, and its largest box
    violation."""
    u = u.to(p.z0)
    z = rollout(p.dynamics, p.z0, u)
    violation = float((u.abs() - U_MAX).clamp(min=0).max())
    return trajectory_cost(p.cost, z, u), violation


# --- the table --------------------------------------------------------------------------------


def bench_one(p: Problem, args: argparse.Namespace, mpc: Any | None) -> dict[str, Any]:
    """Times, costs and ratios of one problem; mpc.pytorch's entries are NaN without it."""
    nan = float("nan")
    if args.compile:
        # Each row times a process that plans this one shape, as MPC does: the graphs compiled
        # for earlier rows would stay cached, and every compiled call checks their guards too
        # (n 3, m 2, T 50, B 1 measured 16 ms alone and 38 ms late in the table).
        torch._dynamo.reset()
    ours_s, u_ours = timed(lambda: solve_ours(p, args), args.repeats, args.warmup)
    J_ours, viol_ours = score(p, u_ours)
    row = {"ours_ms": 1e3 * ours_s, "ours_cost": float(J_ours.mean()), "viol": viol_ours}
    row |= {"mpc_ms": nan, "mpc_cost": nan, "speedup": nan, "rel_cost": nan, "worst": nan}
    if mpc is None:
        return row
    mpc_s, u_mpc = timed(lambda: solve_mpc(p, args.iterations, mpc), args.repeats, args.warmup)
    J_mpc, viol_mpc = score(p, u_mpc)
    rel = (J_ours - J_mpc) / J_mpc.abs().clamp(min=1e-12)  # < 0: ours cheaper
    row |= {
        "mpc_ms": 1e3 * mpc_s,
        "mpc_cost": float(J_mpc.mean()),
        "speedup": mpc_s / ours_s,
        "rel_cost": float(rel.mean()),
        "worst": float(rel.max()),
        "viol": max(viol_ours, viol_mpc),
    }
    return row


COLUMNS = (  # (title, key, format)
    ("ours ms", "ours_ms", "{:.1f}"),
    ("mpc ms", "mpc_ms", "{:.1f}"),
    ("speedup", "speedup", "{:.1f}x"),
    ("ours cost", "ours_cost", "{:.3f}"),
    ("mpc cost", "mpc_cost", "{:.3f}"),
    ("rel. diff", "rel_cost", "{:+.1e}"),
    ("worst", "worst", "{:+.1e}"),
    ("box viol.", "viol", "{:.0e}"),
)


def format_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dynamics", nargs="+", choices=("linear", "tanh"), default=["linear"])
    parser.add_argument("--n", type=int, nargs="+", default=[3, 8], help="state dimensions")
    parser.add_argument("--m", type=int, nargs="+", default=[1, 2], help="control dimensions")
    parser.add_argument("--T", type=int, nargs="+", default=[10, 50], help="horizons")
    parser.add_argument("--B", type=int, nargs="+", default=[1, 256], help="batch sizes")
    parser.add_argument("--iterations", type=int, default=30, help="iteration cap of both")
    parser.add_argument("--tolerance", type=float, default=1e-8, help="ours' stopping test")
    parser.add_argument("--repeats", type=int, default=5, help="timed solves (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed solves first")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--ours-only", action="store_true", help="skip mpc.pytorch")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours with ILQRConfig(compile=True); the warm-up solves compile (not timed)",
    )
    parser.add_argument(
        "--parallel-line-search",
        action="store_true",
        help="ours rolls out all step sizes at once (always on CUDA)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print the table; returns its rows (:func:`bench_one`)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device), getattr(torch, args.dtype)
    mpc = None if args.ours_only else import_mpc()
    # mpc.pytorch's deprecated torch.lu / lu_solve calls (see the module docstring), not ours.
    warnings.filterwarnings("ignore", message=r"torch\.lu(_solve)? is deprecated")
    if mpc is None and not args.ours_only:
        print(f"mpc.pytorch is not installed; timing latentrl alone. To compare: {INSTALL_HINT}")
    print(
        f"torch {torch.__version__}, {device} ({device_description(device)}), {args.dtype}, "
        f"{args.threads} thread(s); median of {args.repeats} after "
        f"{args.warmup} warm-up; iteration cap {args.iterations}, ours' tolerance "
        f"{args.tolerance:g}{', ours compiled' if args.compile else ''}"
        f"{', parallel line search' if args.parallel_line_search else ''}; cost mean over the "
        "batch, rel. diff = mean (ours - mpc) / mpc, worst = its max"
    )
    head = ["dynamics", "n", "m", "T", "B", *(title for title, _, _ in COLUMNS)]
    widths = [8, 3, 2, 3, 4] + [max(len(t), 9) for t, _, _ in COLUMNS]
    print(format_row(head, widths), flush=True)
    rows = []
    for kind, n, m, T, B in itertools.product(args.dynamics, args.n, args.m, args.T, args.B):
        row = bench_one(make_problem(kind, n, m, T, B, device, dtype), args, mpc)
        rows.append(row)
        cells = [kind, str(n), str(m), str(T), str(B)]
        cells += ["-" if math.isnan(row[key]) else fmt.format(row[key]) for _, key, fmt in COLUMNS]
        print(format_row(cells, widths), flush=True)
    if mpc is not None:
        speedups = [r["speedup"] for r in rows]
        geo = statistics.geometric_mean(speedups)
        cheaper = sum(r["rel_cost"] <= 1e-6 for r in rows)
        verdict = "met" if min(speedups) >= 5 and cheaper == len(rows) else "NOT met"
        print(
            f"speedup: geometric mean {geo:.1f}x, min {min(speedups):.1f}x; ours equal or "
            f"cheaper (mean rel. diff <= 1e-6) on {cheaper}/{len(rows)} problems; target "
            f"(>= 5x everywhere at equal or lower cost): {verdict}"
        )
    return rows


if __name__ == "__main__":
    main()
