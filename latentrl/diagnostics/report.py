"""What ``latentrl diagnose`` shows of its measurements: one line per item, the numbers for
summary.json, and the PNG figures. Pure functions of the report dict (:mod:`.measure`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Report = Mapping[str, Any]
"""``{"elbo_gap": ..., "amortization": ..., "gradients": ..., "transition": ...}``, each
part present when it was measured."""


def _pm(stats: Mapping[str, float], digits: int = 2) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['se']:.{digits}f}"


def summary_lines(report: Report) -> list[str]:
    """One line per measured item, for the console and report.json."""
    lines = []
    if "elbo_gap" in report:
        g = report["elbo_gap"]
        lines.append(
            f"ELBO gap: log p(x) - ELBO = {_pm(g['gap'])} nats per image "
            f"(log p(x) {_pm(g['log_px'], 1)}, ELBO {_pm(g['elbo'], 1)}; "
            f"{g['samples']} importance samples, {g['images']} images)"
        )
    if "amortization" in report:
        a = report["amortization"]
        lines.append(
            f"amortization gap: {_pm(a['amortization_gap'])} nats, approximation gap "
            f"{_pm(a['approximation_gap'])} nats, of a gap of {_pm(a['gap_best'])} with "
            f"log p(x) the better of the two proposals (the encoder's fell short by "
            f"{_pm(a['encoder_proposal_shortfall'])}; per-image q_i after {a['steps']} Adam "
            f"steps, the last 10% gained {a['late_improvement']['mean']:.3f}); parameters "
            f"|θ|+2|z|N = {a['parameters']['per_image']:,} vs |θ|+|φ| = "
            f"{a['parameters']['amortized']:,}"
        )
    if "gradients" in report:
        r = report["gradients"]
        plain, base = r["ratio_score_function"], r["ratio_score_function_baseline"]
        lines.append(
            f"gradient variance, score function / reparameterized: {plain['mean']:.3g} ± "
            f"{plain['se']:.2g} (median {plain['median']:.3g}), with a baseline "
            f"{base['mean']:.3g} ± {base['se']:.2g} (median {base['median']:.3g}): score-function "
            f"samples to match one reparameterized sample ({r['images']} images, "
            f"{r['repeats']} repeats of {r['draws']} draws)"
        )
    if "transition" in report:
        t = report["transition"]
        if "kl" in t:
            k = t["kl"]
            lines.append(
                f"transition KL: closed form {_pm(k['closed_form'], 3)}, Monte Carlo "
                f"{_pm(k['monte_carlo'], 3)} ({k['samples']} draws; mean |z| "
                f"{k['abs_z_mean']:.2f})"
            )
        roll, h = t["rollout"], t["horizon"]
        lines.append(
            f"linearization rolled {h} steps: error {roll['linear']['mean'][0]:.3f} after 1, "
            f"{roll['linear']['mean'][-1]:.3f} after {h} (the model's own rollout "
            f"{roll['model']['mean'][-1]:.3f}; units of the encodings' spread)"
        )
    if "goal" in report:
        lines.extend(goal_lines(report["goal"]))
    return lines


HOLDING_LIMIT = 1.0
"""A holding action beyond the box's edge (share > 1): the model cannot hold its own goal."""


def goal_lines(g: Mapping[str, Any]) -> list[str]:
    """The goal check's two lines, each ending in what the numbers mean for the planner."""
    share = g["holding_box_share"]
    action = ", ".join(f"{u:.3g}" for u in g["holding_action"])
    verdict = (
        "the planner cannot hold the goal in this model"
        if share > HOLDING_LIMIT
        else "within the box"
    )
    push = g["push"]
    cosine, size, wrong = push["cosine"]["mean"], push["size_ratio"]["mean"], push["wrong_way"]
    steps = push["steps"]
    return [
        f"goal: the model drifts {g['drift']:.3f} of a typical step's move at the goal image; "
        f"the action that holds it, [{action}], reaches {share:.2f} of the action box's "
        f"half-width: {verdict}",
        f"pushes near the goal ({push['states']} true states, opposite full pushes): the "
        f"model's effect points as the frames' with cosine {cosine[0]:.2f} after 1 step and "
        f"{cosine[-1]:.2f} after {steps} (1: the same way; the wrong way from "
        f"{100 * wrong[-1]:.0f}% of the states), at {size[-1]:.2f}x their size; the frames' "
        f"effect after 1 step is {push['effect_in_std'][0]:.2f} posterior standard deviations "
        f"(below 1 it hides in the encoder's noise)",
        *([cost_line(g["cost"])] if "cost" in g else []),
    ]


COST_ORDER_LIMIT = 0.5
"""Below this rank correlation near the goal, the latent distance orders states too unlike the
task's cost for the planner's cost to stand in for it."""


def _rank(value: float | None) -> str:
    return "undefined (a constant distance)" if value is None else f"{value:.2f}"


def cost_line(cost: Mapping[str, Any]) -> str:
    """The goal check's cost line: does |z - z_goal|² order states as the task's cost does."""
    near = cost["near_goal"]["rank_correlation"]
    verdict = (
        ": the planner's cost orders states near the goal unlike the task's"
        if near is None or near < COST_ORDER_LIMIT
        else ""
    )
    return (
        f"cost: |z - z_goal|², the planner's cost, orders {cost['states']} true states near the "
        f"goal as the task's cost does with rank correlation {_rank(near)}, and as many states "
        f"from the whole state box with {_rank(cost['anywhere']['rank_correlation'])} (1: the "
        f"same order){verdict}"
    )


def summary_metrics(report: Report) -> dict[str, float]:
    """``diagnose/...`` numbers for summary.json (a mean and its ``_se`` where one exists)."""
    out: dict[str, float] = {}

    def put(key: str, stats: Mapping[str, float]) -> None:
        out[f"diagnose/{key}"] = stats["mean"]
        if "se" in stats:
            out[f"diagnose/{key}_se"] = stats["se"]

    if "elbo_gap" in report:
        g = report["elbo_gap"]
        for key in ("log_px", "elbo", "gap"):
            put("elbo_gap" if key == "gap" else key, g[key])
    if "amortization" in report:
        a = report["amortization"]
        for key in ("amortization_gap", "approximation_gap", "elbo_fitted", "gap_best"):
            put(key, a[key])
    if "gradients" in report:
        r = report["gradients"]
        put("grad_variance_ratio", r["ratio_score_function"])
        put("grad_variance_ratio_baseline", r["ratio_score_function_baseline"])
    if "transition" in report:
        t = report["transition"]
        if "kl" in t:
            put("transition_kl_closed", t["kl"]["closed_form"])
            put("transition_kl_mc", t["kl"]["monte_carlo"])
        out["diagnose/linear_rollout_error_1"] = t["rollout"]["linear"]["mean"][0]
        out[f"diagnose/linear_rollout_error_{t['horizon']}"] = t["rollout"]["linear"]["mean"][-1]
        out[f"diagnose/model_rollout_error_{t['horizon']}"] = t["rollout"]["model"]["mean"][-1]
    if "goal" in report:
        g = report["goal"]
        for key in ("drift", "holding_box_share", "control_gain"):
            out[f"diagnose/goal_{key}"] = g[key]
        push, last = g["push"], g["push"]["steps"]
        out["diagnose/push_cosine_1"] = push["cosine"]["mean"][0]
        out[f"diagnose/push_cosine_{last}"] = push["cosine"]["mean"][-1]
        out[f"diagnose/push_size_ratio_{last}"] = push["size_ratio"]["mean"][-1]
        out[f"diagnose/push_wrong_way_{last}"] = push["wrong_way"][-1]
        out["diagnose/push_effect_in_std_1"] = push["effect_in_std"][0]
        for where in ("near_goal", "anywhere"):
            rank = g.get("cost", {}).get(where, {}).get("rank_correlation")
            if rank is not None:
                out[f"diagnose/cost_rank_{where}"] = rank
    return out


def _render(figure: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _band(axes: Any, x: list[float], curve: Mapping[str, list[float]], label: str) -> None:
    mean, se = np.asarray(curve["mean"]), np.nan_to_num(np.asarray(curve["se"]))
    axes.plot(x, mean, marker="o", markersize=3, label=label)
    axes.fill_between(x, mean - se, mean + se, alpha=0.25)


def figures(report: Report) -> dict[str, np.ndarray]:
    """uint8 RGB images by name: ``iwae`` (bound against k), ``amortization`` (per-image
    ascent), ``gradient_variance`` (traces, log scale), ``linearization`` (error against
    horizon and against the distance from the linearization point), ``goal`` (a push near
    the goal: the model's effect against the frames'; the task's cost against the latent
    distance to the goal)."""
    images = {}
    if "elbo_gap" in report:
        g = report["elbo_gap"]
        fig = Figure(figsize=(5.5, 4), dpi=100)
        ax = fig.add_subplot()
        _band(ax, g["iwae"]["k"], g["iwae"], "IWAE bound L_k")
        ax.axhline(g["elbo"]["mean"], color="tab:red", linestyle="--", label="ELBO")
        ax.axhline(g["log_px"]["mean"], color="black", linestyle=":", label="log p(x) estimate")
        ax.set(xscale="log", xlabel="importance samples k", ylabel="nats per image (mean)")
        ax.set_title("ELBO gap: the IWAE bound as k grows")
        ax.legend()
        fig.tight_layout()
        images["iwae"] = _render(fig)
    if "amortization" in report:
        a = report["amortization"]
        fig = Figure(figsize=(5.5, 4), dpi=100)
        ax = fig.add_subplot()
        ax.plot(a["history"]["step"], a["history"]["mean"], label="per-image q_i (fitted)")
        ax.axhline(a["elbo_amortized"]["mean"], color="tab:red", linestyle="--", label="encoder q")
        if "elbo_gap" in report:
            log_px = report["elbo_gap"]["log_px"]["mean"]
            ax.axhline(log_px, color="black", linestyle=":", label="log p(x), encoder proposal")
        best = a["log_px_best"]["mean"]
        ax.axhline(best, color="grey", linestyle="-.", label="log p(x), better proposal")
        ax.set(xlabel="Adam step", ylabel="ELBO, nats per image (mean)")
        ax.set_title("Amortization gap")
        ax.legend()
        fig.tight_layout()
        images["amortization"] = _render(fig)
    if "gradients" in report:
        r = report["gradients"]
        names = list(r["trace"])
        means = [r["trace"][n]["mean"] for n in names]
        errors = [np.nan_to_num(r["trace"][n]["se"]) for n in names]
        fig = Figure(figsize=(5.5, 4), dpi=100)
        ax = fig.add_subplot()
        ax.bar(range(len(names)), means, yerr=errors, color=["tab:blue", "tab:red", "tab:orange"])
        ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
        ax.set(yscale="log", ylabel="trace of gradient covariance")
        ax.set_title(f"Encoder gradient, {r['draws']} draw(s) per estimate")
        fig.tight_layout()
        images["gradient_variance"] = _render(fig)
    if "transition" in report:
        t = report["transition"]
        fig = Figure(figsize=(10, 4), dpi=100)
        left, right = fig.subplots(1, 2)
        steps = list(range(1, t["horizon"] + 1))
        _band(left, steps, t["rollout"]["linear"], "linearization at step 0, frozen")
        _band(left, steps, t["rollout"]["model"], "model's mean transition")
        left.set(xlabel="steps ahead", ylabel="error / encodings' spread")
        left.set_title("Predicting the next encodings")
        left.legend()
        right.plot(t["step"]["radius"], t["step"]["median"], marker="o")
        right.set(xscale="log", yscale="log", xlabel="distance from the point / spread")
        right.set(ylabel="linearization error / change (median)")
        right.set_title("One step away from the linearization point")
        fig.tight_layout()
        images["linearization"] = _render(fig)
    if "goal" in report:
        images["goal"] = _goal_figure(report["goal"])
    return images


def _goal_figure(g: Mapping[str, Any]) -> np.ndarray:
    push = g["push"]
    steps = list(range(1, push["steps"] + 1))
    fig = Figure(figsize=(11 if "cost" in g else 5.5, 4), dpi=100)
    axes = fig.subplots(1, 2 if "cost" in g else 1)
    ax = axes[0] if "cost" in g else axes
    _band(ax, steps, push["cosine"], "direction (cosine)")
    _band(ax, steps, push["size_ratio"], "size (model / frames)")
    ax.plot(steps, push["wrong_way"], marker="x", linestyle="--", label="share the wrong way")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(steps)
    ax.set(xlabel="steps of the push", ylabel="model against the frames")
    share = g["holding_box_share"]
    ax.set_title(f"A push near the goal\n(holding the goal takes {share:.2f}x the box)")
    ax.legend(loc="best")
    if "cost" in g:
        _cost_scatter(axes[1], g["cost"])
    fig.tight_layout()
    return _render(fig)


def _cost_scatter(ax: Any, cost: Mapping[str, Any]) -> None:
    """The task's cost against the latent distance per state, log-log (points at 0 left out)."""
    for where, label in (("anywhere", "the whole state box"), ("near_goal", "near the goal")):
        part = cost[where]
        x, y = np.asarray(part["task_cost"]), np.asarray(part["latent_distance"])
        keep = (x > 0) & (y > 0)
        ax.scatter(
            x[keep], y[keep], s=10, alpha=0.6, label=f"{label} ({_rank(part['rank_correlation'])})"
        )
    ax.set(xscale="log", yscale="log", xlabel="task's cost c(s)", ylabel="|z - z_goal|²")
    ax.set_title("Does the latent distance order states as the task's cost?\n(rank correlation)")
    ax.legend(loc="best")
