"""Fault injection: kill -9 at random points of collect, train and evaluate, then resume; and
flipped bytes in every file of a dataset and of a checkpoint.

Usage::

    python experiments/benchmarks/fault_injection.py [--trials 60] [--seed 0]
        [--flips-per-file 20] [--work DIR] [--json OUT.json]

First the three commands run uninterrupted on tiny settings (a few hundred pendulum
transitions collected by two workers, two epochs of the debug model, two short evaluation
episodes): the references. Then each trial starts one of the commands (in turn), sends it
SIGKILL after a seeded random delay within the reference's duration, and finishes the work
as a user would: ``collect`` with the same command plus ``--resume``; ``train`` with
``latentrl train --run-dir RUN --resume`` (or the first command again when the kill came
before the run directory held a config); ``evaluate`` with the same command again (unless
the kill came after its results.json was written: the evaluation is whole). A trial
passes when the result is bit-exact against the reference (dataset files byte-identical,
``model.safetensors`` identical, ``results.json`` equal but for timings and the run's path)
and no process of the killed command outlives it (a child, or anything in its process group,
still running after a grace period is an orphan; this script kills it afterwards).

The corruption part flips one random byte (XOR with a random nonzero mask) at random positions
of every file of the reference dataset and checkpoint, one position at a time, and checks that
loading them as ``train`` and ``train --resume`` / ``evaluate`` do raises a ``UserError`` of
one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

GRACE_SECONDS = 15.0
"""How long the processes of a killed command get to exit before they count as orphans."""
COMMANDS = ("collect", "train", "evaluate")
LATENTRL = [sys.executable, "-m", "latentrl.cli"]
COLLECT_ARGS = ["latentrl/Pendulum-v0", "--transitions", "480", "--chunk-size", "96"]
COLLECT_ARGS += ["--chain-length", "16", "--workers", "2", "--seed", "3"]
TRAIN_ARGS = ["--experiment", "pendulum", "--preset", "debug", "--seed", "0"]
TRAIN_ARGS += ["--set", "train.epochs=2", "--set", "train.probe_steps=50", "--wandb", "disabled"]
EVAL_ARGS = ["--episodes", "2", "--set", "eval.horizon=25", "--set", "plan.horizon=8"]
EVAL_ARGS += ["--wandb", "disabled"]
TIMING_KEYS = ("ms_per_step",)


# --- commands ---------------------------------------------------------------------------------


def collect_command(out: Path) -> list[str]:
    return [*LATENTRL, "collect", *COLLECT_ARGS, "--out", str(out)]


def train_command(data: Path, run: Path) -> list[str]:
    return [*LATENTRL, "train", *TRAIN_ARGS, "--data", str(data), "--run-dir", str(run)]


def evaluate_command(run: Path) -> list[str]:
    return [*LATENTRL, "evaluate", str(run), *EVAL_ARGS]


def command_env() -> dict[str, str]:
    """One thread per process (a busy 2-core machine), W&B off, MuJoCo headless."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    env.update(WANDB_SILENT="true", MUJOCO_GL=env.get("MUJOCO_GL", "egl"))
    return env


def run_to_end(command: list[str], log: Path) -> float:
    """Run ``command`` to completion (RuntimeError naming the log on failure); its seconds."""
    start = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(command, stdout=out, stderr=out, env=command_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}; see {log}")
    return time.perf_counter() - start


# --- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of ``pid`` from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _live_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for other in _live_pids():
        stat = _stat(other)
        if stat is not None:
            children.setdefault(stat[1], []).append(other)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int], group: int) -> set[int]:
    """Of ``pids`` and the members of process group ``group``, those still running (zombies
    count as gone: they have exited)."""
    candidates = pids | {p for p in _live_pids() if (_stat(p) or ("", 0, 0))[2] == group}
    return {p for p in candidates if (stat := _stat(p)) is not None and stat[0] != "Z"}


def kill_after(command: list[str], delay: float, log: Path) -> tuple[bool, int]:
    """Start ``command`` in its own process group, SIGKILL it after ``delay`` seconds; returns
    (killed before it finished, orphans: its processes still alive after the grace period).
    Orphans are killed afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=out, env=command_env(), start_new_session=True
        )
    try:
        process.wait(timeout=delay)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    below = descendants(process.pid)
    if not finished:
        process.kill()
        process.wait()
    deadline = time.monotonic() + GRACE_SECONDS
    left = alive(below, process.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = alive(left, process.pid)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return not finished, len(left)


# --- comparisons ------------------------------------------------------------------------------


def same_files(found: Path, reference: Path, names: list[str]) -> str | None:
    """None when the files ``names`` are byte-identical in both directories, else which not."""
    differ = [
        name
        for name in names
        if not (found / name).is_file()
        or (found / name).read_bytes() != (reference / name).read_bytes()
    ]
    return None if not differ else f"differs: {', '.join(differ)}"


def comparable_results(path: Path) -> dict:
    """results.json without what legitimately differs between two evaluations: wall-clock
    timings and the path of the run."""
    data = json.loads(path.read_text())
    data.pop("run_dir", None)
    for agent in data.get("agents", {}).values():
        for key in TIMING_KEYS:
            agent.get("aggregate", {}).pop(key, None)
    return data


def dataset_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- trials -----------------------------------------------------------------------------------


@dataclass
class References:
    root: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"


def make_references(root: Path) -> References:
    refs = References(root)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "reference.log"
    refs.seconds["collect"] = run_to_end(collect_command(refs.data), log)
    refs.seconds["train"] = run_to_end(train_command(refs.data, refs.run), log)
    refs.seconds["evaluate"] = run_to_end(evaluate_command(refs.run), log)
    return refs


@dataclass(frozen=True)
class Trial:
    command: str
    delay: float
    killed: bool
    orphans: int
    bit_exact: bool
    note: str
    left: str
    """What the kill left for the resume (:func:`left_behind`)."""


def trial(kind: str, delay: float, refs: References, work: Path) -> Trial:
    """One kill-and-resume trial of ``kind`` in the empty directory ``work``."""
    log = work / "log.txt"
    if kind == "collect":
        first = collect_command(work / "data")
        resume = [[*first, "--resume"]]
    elif kind == "train":
        first = train_command(refs.data, work / "run")
        resume = [[*LATENTRL, "train", "--run-dir", str(work / "run"), "--resume"]]
        resume[0] += ["--wandb", "disabled"]
    else:
        shutil.copytree(refs.run, work / "run", ignore=shutil.ignore_patterns("eval"))
        first = evaluate_command(work / "run")
        resume = [first]
    killed, orphans = kill_after(first, delay, log)
    left = left_behind(kind, work) if killed else "finished"
    note = ""
    try:
        if kind == "evaluate" and left == "complete":
            resume = []  # killed on its way out: the evaluation is whole, re-running refuses
        if killed:
            if kind == "train" and not (work / "run" / "config.json").exists():
                resume = [first]  # killed before the run existed: start it again
            for command in resume:
                run_to_end(command, log)
        note = compare(kind, refs, work) or ""
    except RuntimeError as exc:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        note = f"resume failed: {exc} ({last[0][:200]})"
    return Trial(kind, delay, killed, orphans, note == "", note, left)


def left_behind(kind: str, work: Path) -> str:
    """The state a killed command left: chunks written, the last checkpoint, eval files."""
    if kind == "collect":
        meta = work / "data" / "metadata.json"
        return f"{len(json.loads(meta.read_text())['chunks'])} chunks" if meta.exists() else "none"
    if kind == "train":
        run = work / "run"
        trainers = [run / d / "trainer.json" for d in ("checkpoint", "checkpoint.old")]
        found = [json.loads(t.read_text())["epoch"] for t in trainers if t.exists()]
        if found:
            return f"epoch {found[0]}"
        return "config" if (run / "config.json").exists() else "none"
    eval_dir = work / "run" / "eval"
    if (eval_dir / "results.json").exists():
        return "complete"
    return "unfinished eval/" if eval_dir.exists() and any(eval_dir.iterdir()) else "none"


def compare(kind: str, refs: References, work: Path) -> str | None:
    if kind == "collect":
        names, found = dataset_files(refs.data), dataset_files(work / "data")
        extra = sorted(set(found) - set(names))
        return same_files(work / "data", refs.data, names) or (
            f"extra files: {', '.join(extra)}" if extra else None
        )
    if kind == "train":
        checkpoint = work / "run" / "checkpoint"
        return same_files(checkpoint, refs.run / "checkpoint", ["model.safetensors"])
    found, wanted = work / "run" / "eval" / "results.json", refs.run / "eval" / "results.json"
    if not found.is_file():
        return "no results.json"
    return None if comparable_results(found) == comparable_results(wanted) else "results differ"


def run_trials(
    refs: References, count: int, seed: int, root: Path, latest: float = 0.9
) -> list[Trial]:
    """``count`` trials, the commands in turn, each killed after a delay drawn uniformly from
    [0.05, ``latest``] times its reference's duration."""
    rng = np.random.default_rng(seed)
    results: list[Trial] = []
    tally: Counter[str] = Counter()
    bar = tqdm(range(count), desc="kill trials", unit="trial", dynamic_ncols=True)
    for index in bar:
        kind = COMMANDS[index % len(COMMANDS)]
        delay = float(rng.uniform(0.05, latest) * refs.seconds[kind])
        work = root / f"trial-{index:03d}-{kind}"
        work.mkdir(parents=True)
        result = trial(kind, delay, refs, work)
        results.append(result)
        tally["exact"] += result.bit_exact
        tally["orphans"] += result.orphans
        bar.set_postfix(exact=f"{tally['exact']}/{index + 1}", orphans=tally["orphans"])
        if result.bit_exact and result.orphans == 0:
            shutil.rmtree(work)
    return results


# --- corruption -------------------------------------------------------------------------------


def flip_trials(
    files: list[Path], load: Callable[[], None], per_file: int, rng: np.random.Generator
) -> Counter[str]:
    """Flip one byte of each file at ``per_file`` random positions, one at a time, and call
    ``load``: counts ``detected`` (a UserError of one line), ``missed`` (no error) and
    ``traceback`` (another exception)."""
    from latentrl.errors import UserError

    counts: Counter[str] = Counter()
    for path in files:
        original = path.read_bytes()
        positions = rng.choice(len(original), size=min(per_file, len(original)), replace=False)
        for position in positions:
            data = bytearray(original)
            data[position] ^= int(rng.integers(1, 256))
            path.write_bytes(bytes(data))
            try:
                load()
                counts["missed"] += 1
                counts[f"missed {path.name}"] += 1
            except UserError as exc:
                counts["detected" if "\n" not in str(exc) else "multi-line"] += 1
            except Exception as exc:  # any other exception is the finding: a traceback
                counts["traceback"] += 1
                counts[f"traceback {path.name} ({type(exc).__name__})"] += 1
            finally:
                path.write_bytes(original)
    return counts


def corruption(refs: References, per_file: int, seed: int) -> dict[str, Counter[str]]:
    """Byte flips in every file of the reference dataset and of its checkpoint."""
    import torch

    from latentrl.checkpoint import load_checkpoint, load_model
    from latentrl.config import load_config
    from latentrl.data import load_transitions
    from latentrl.models import E2C

    rng = np.random.default_rng(seed)
    dataset = sorted(refs.data.iterdir())
    counts = {"dataset": flip_trials(dataset, lambda: load_transitions(refs.data), per_file, rng)}
    config = load_config(refs.run / "config.json")

    def resume_and_evaluate() -> None:
        model = E2C(config.model)
        optimizer = torch.optim.AdamW(model.parameters())
        load_checkpoint(refs.run, model, optimizer, torch.Generator())
        load_model(refs.run)

    checkpoint = sorted((refs.run / "checkpoint").iterdir())
    counts["checkpoint"] = flip_trials(checkpoint, resume_and_evaluate, per_file, rng)
    return counts


# --- report -----------------------------------------------------------------------------------


def kill_table(results: list[Trial]) -> str:
    rows = [("command", "trials", "killed", "resumed bit-exact", "orphans")]
    for kind in (*COMMANDS, "all"):
        chosen = [r for r in results if kind in (r.command, "all")]
        rows.append(
            (
                kind,
                str(len(chosen)),
                str(sum(r.killed for r in chosen)),
                str(sum(r.bit_exact for r in chosen)),
                str(sum(r.orphans for r in chosen)),
            )
        )
    return _table(rows)


def left_table(results: list[Trial]) -> str:
    """Per command, how many kills left which state behind."""
    rows = [("command", "what the kill left (trials)")]
    for kind in COMMANDS:
        counts = Counter(r.left for r in results if r.command == kind)
        rows.append((kind, ", ".join(f"{state}: {n}" for state, n in sorted(counts.items()))))
    return _table(rows)


def flip_table(counts: dict[str, Counter[str]]) -> str:
    rows = [("files of", "flips", "detected (one line)", "missed", "traceback")]
    for what, c in counts.items():
        total = c["detected"] + c["missed"] + c["traceback"] + c["multi-line"]
        rows.append((what, str(total), str(c["detected"]), str(c["missed"]), str(c["traceback"])))
    return _table(rows)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60, help="kill trials, all commands")
    parser.add_argument("--seed", type=int, default=0, help="seed of the delays and flips")
    parser.add_argument("--flips-per-file", type=int, default=20, help="0 skips corruption")
    parser.add_argument(
        "--latest",
        type=float,
        default=0.9,
        help="latest kill, as a share of the reference's duration (a busy machine's reference "
        "is slow: lower it so that fewer commands finish before their kill)",
    )
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the trials and counts here")
    args = parser.parse_args()

    root = args.work or Path(tempfile.mkdtemp(prefix="latentrl-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {root}")
    refs = make_references(root / "reference")
    print("reference seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in refs.seconds.items()))
    results = run_trials(refs, args.trials, args.seed, root / "trials", args.latest)
    print(kill_table(results))
    print(left_table(results))
    for r in results:
        if not r.bit_exact or r.orphans:
            print(f"  {r.command} killed at {r.delay:.2f} s: {r.note or 'ok'}, {r.orphans} orphans")
    counts = corruption(refs, args.flips_per_file, args.seed) if args.flips_per_file else {}
    if counts:
        print(flip_table(counts))
        for what, c in counts.items():
            for key, n in sorted(c.items()):
                if key.startswith(("missed ", "traceback ")):
                    print(f"  {what}: {key}: {n}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "reference_seconds": refs.seconds,
                    "trials": [r.__dict__ for r in results],
                    "flips": {k: dict(v) for k, v in counts.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
