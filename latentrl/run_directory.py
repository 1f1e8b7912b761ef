"""The layout of a run directory: every path a command reads or writes in one, in one place.

A run directory (``runs/{env}__{experiment}__{seed}__{time}/``) holds::

    config.json                 the ExperimentConfig the run was trained with
    run.json                    {"dataset": DIR, "code": [...]}: where its dataset lives (for
                                --resume), the latentrl versions that trained it
    metrics.jsonl               one JSON object per logged step (training)
    summary.json                final numbers (training, probe)
    wandb_id.txt, wandb/        the W&B run id and W&B's own files
    images/*.png                logged images, {name}_{step:07d}.png
    checkpoint/                 model, optimizer and generator states, trainer.json,
                                manifest.json (the SHA-256 of each file)
    checkpoint.tmp/, .old/      a checkpoint being written, the previous one being replaced
    eval/                       the evaluation (``latentrl evaluate``; ``--out DIR`` writes
                                the same files into DIR instead):
        results.json            protocol, settings and metrics per agent
        trajectories.npz        states, actions, costs per agent
        states.png              goal distance and state coordinates over time
        videos/AGENT_episode_XX.gif
        metrics.jsonl, summary.json, wandb_id.txt, wandb/   its own log, as above
    diagnose/                   the model's diagnostics (``latentrl diagnose``):
        report.json             every number, written last; *.png its figures
        metrics.jsonl, summary.json, wandb_id.txt, wandb/   its own log, as above
    .eval.lock                  while an evaluation writes eval/ (:mod:`latentrl.locks`; a
                                training holds ``.{run name}.lock`` beside the run directory)
    .diagnose.lock              while ``latentrl diagnose`` writes diagnose/

No torch here: the CLI, ``compare`` and the agent registry read runs without it.
"""

from __future__ import annotations

import itertools
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from latentrl.code_version import code_version
from latentrl.errors import UserError

if TYPE_CHECKING:
    from latentrl.config import ExperimentConfig

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
WANDB_ID_FILE = "wandb_id.txt"
WANDB_DIR = "wandb"
IMAGES_DIR = "images"
CHECKPOINT_DIR = "checkpoint"
EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
TRAJECTORIES_FILE = "trajectories.npz"
PLOT_FILE = "states.png"
VIDEOS_DIR = "videos"
DIAGNOSE_DIR = "diagnose"
REPORT_FILE = "report.json"


def safe_name(text: str) -> str:
    """``text`` with every character that is not safe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def run_name(env_id: str, experiment: str, seed: int, time: datetime) -> str:
    """cleanrl-style run name ``{env}__{experiment}__{seed}__{YYYYmmdd-HHMMSS}``.

    The env id loses its namespace (latentrl/Pendulum-v0 -> Pendulum-v0) and any character
    that is not safe in a file name, since the name becomes a directory.
    """
    return f"{experiment_prefix(env_id, experiment)}{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def experiment_prefix(env_id: str, experiment: str) -> str:
    """The start ``{env}__{experiment}__`` of the names of an experiment's runs
    (:func:`run_name`)."""
    return f"{safe_name(env_id.rsplit('/', 1)[-1])}__{safe_name(experiment)}__"


def experiment_runs(root: Path, prefix: str) -> list[Path]:
    """The directories under ``root`` named with ``prefix`` (:func:`experiment_prefix`, or a
    run's name less its ``{seed}__{time}``), newest first by the time in their names."""
    found = [path for path in Path(root).glob(f"{prefix}*") if path.is_dir()]
    return sorted(found, key=lambda path: path.name.rsplit("__", 1)[-1], reverse=True)


def experiment_of(run_dir: Path) -> str:
    """The prefix ``{env}__{experiment}__`` of a run directory's name (:func:`run_name`)."""
    return Path(run_dir).name.rsplit("__", 2)[0] + "__"


@dataclass(frozen=True)
class LogDirectory:
    """What :class:`latentrl.logging.Logger` writes into a directory: the run directory for
    training, its ``eval/`` for an evaluation."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def wandb_id(self) -> Path:
        return self.path / WANDB_ID_FILE

    @property
    def wandb(self) -> Path:
        return self.path / WANDB_DIR

    @property
    def images(self) -> Path:
        return self.path / IMAGES_DIR

    def image(self, name: str, step: int) -> Path:
        """``images/{name}_{step:07d}.png``, the name made safe for a file name."""
        return self.images / f"{safe_name(name)}_{int(step):07d}.png"


@dataclass(frozen=True)
class EvalDirectory(LogDirectory):
    """A run's ``eval/``: the artifacts of ``latentrl evaluate`` beside its own log."""

    @property
    def results(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def trajectories(self) -> Path:
        return self.path / TRAJECTORIES_FILE

    @property
    def states_plot(self) -> Path:
        return self.path / PLOT_FILE

    @property
    def videos(self) -> Path:
        return self.path / VIDEOS_DIR

    def video(self, agent: str, episode: int) -> Path:
        """``videos/{agent}_episode_{episode:02d}.gif``."""
        return self.videos / f"{agent}_episode_{episode:02d}.gif"

    def agent_videos(self, agent: str) -> list[Path]:
        """The GIFs of ``agent`` there are, sorted by episode."""
        return sorted(self.videos.glob(f"{agent}_episode_*.gif"))

    def holds_evaluation(self) -> bool:
        """Whether anything is in it (an evaluation, or what is left of one)."""
        return self.path.is_dir() and any(self.path.iterdir())

    def has_results(self) -> bool:
        return self.results.is_file()

    def holds_only_evaluation_files(self) -> bool:
        """Whether everything in it is a file an evaluation writes (so that a folder of only
        these, without ``results.json``, is an unfinished evaluation to replace)."""
        written = {
            RESULTS_FILE,
            TRAJECTORIES_FILE,
            PLOT_FILE,
            VIDEOS_DIR,
            METRICS_FILE,
            SUMMARY_FILE,
            WANDB_ID_FILE,
            WANDB_DIR,
        }
        # a kill while a file was written leaves NAME.tmp beside it
        return all(path.name.removesuffix(".tmp") in written for path in self.path.iterdir())


@dataclass(frozen=True)
class DiagnoseDirectory(LogDirectory):
    """A run's ``diagnose/`` (or the folder ``latentrl diagnose --out`` names)."""

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    def figure(self, name: str) -> Path:
        """``{name}.png``."""
        return self.path / f"{safe_name(name)}.png"

    def has_report(self) -> bool:
        return self.report.is_file()


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of one checkpoint folder (``checkpoint/`` or its ``.tmp``/``.old``)."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def optimizer(self) -> Path:
        return self.path / "optimizer.safetensors"

    @property
    def rng(self) -> Path:
        return self.path / "rng.safetensors"

    @property
    def trainer(self) -> Path:
        return self.path / "trainer.json"

    @property
    def manifest(self) -> Path:
        """The SHA-256 of every other file, written last (absent in older checkpoints)."""
        return self.path / "manifest.json"

    def is_complete(self) -> bool:
        """With trainer.json, the checkpoint is whole: a folder is swapped in only when all of
        it is written."""
        return self.trainer.exists()


@dataclass(frozen=True)
class RunDirectory(LogDirectory):
    """A run directory: its paths, and what a command asks of one (is it a run, its dataset)."""

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_record(self) -> Path:
        """``run.json``: where the run's dataset lives."""
        return self.path / RUN_FILE

    @property
    def checkpoint(self) -> CheckpointFiles:
        return CheckpointFiles(self.path / CHECKPOINT_DIR)

    @property
    def checkpoint_tmp(self) -> CheckpointFiles:
        """Where a checkpoint is written before it is swapped in."""
        return CheckpointFiles(self.path / (CHECKPOINT_DIR + ".tmp"))

    @property
    def checkpoint_old(self) -> CheckpointFiles:
        """The previous checkpoint while the new one is swapped in."""
        return CheckpointFiles(self.path / (CHECKPOINT_DIR + ".old"))

    @property
    def eval(self) -> EvalDirectory:
        return EvalDirectory(self.path / EVAL_DIR)

    @property
    def diagnose(self) -> DiagnoseDirectory:
        return DiagnoseDirectory(self.path / DIAGNOSE_DIR)

    @property
    def name(self) -> str:
        return self.path.name

    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``config.json``)."""
        return self.config.is_file()

    def require_run(self) -> RunDirectory:
        """``self``, or UserError when the folder holds no run."""
        if not self.is_run():
            raise UserError(f"{self.path} is not a latentrl run directory (no {CONFIG_FILE})")
        return self

    def require_new(self) -> RunDirectory:
        """``self`` when a new run may be written here (the folder is missing or empty), else
        UserError: a run is continued with ``--resume``, and no run mixes its files into a
        folder that holds other files."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--run-dir {self.path} is a file, not a directory")
        if not self.path.is_dir() or not any(self.path.iterdir()):
            return self
        if self.is_run():
            raise UserError(
                f"--run-dir {self.path} already holds a run; continue it with --resume, or "
                "choose a new --run-dir"
            )
        raise UserError(
            f"--run-dir {self.path} is not empty and holds no latentrl run: choose a new or "
            "empty directory (a run never mixes its files with others)"
        )

    def record_dataset(self, dataset_dir: Path | str) -> None:
        """Write ``run.json``: the dataset the run trains on, as an absolute path, and the
        code that trains it (:func:`~latentrl.code_version.code_version`) after the codes that
        trained it before a resume, when it differs from the last of them."""
        codes = self.training_code()
        if not codes or codes[-1] != code_version():
            codes.append(code_version())
        record = {"dataset": str(Path(dataset_dir).resolve()), "code": codes}
        self.run_record.write_text(json.dumps(record) + "\n")

    def training_code(self) -> list[dict[str, str]]:
        """The codes that trained the run, in order (``run.json``'s ``code``); empty for a run
        that does not record them (trained before latentrl 0.4.0 recorded its version)."""
        try:
            codes = json.loads(self.run_record.read_text()).get("code", [])
        except (OSError, json.JSONDecodeError, AttributeError):
            return []
        return [dict(c) for c in codes if isinstance(c, dict)] if isinstance(codes, list) else []

    def dataset(self) -> Path:
        """The dataset directory the run was trained on (recorded at its start)."""
        try:
            return Path(json.loads(self.run_record.read_text())["dataset"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            raise UserError(
                f"{self.path} does not record its dataset ({RUN_FILE}); pass --data"
            ) from None

    @classmethod
    def create(
        cls, root: Path, env_id: str, experiment: str, seed: int, now: datetime | None = None
    ) -> RunDirectory:
        """A new, empty ``root/{env}__{experiment}__{seed}__{time}``, created here so that two
        runs started in the same second never share it (the second gets ``-2``, ...)."""
        name = run_name(env_id, experiment, seed, datetime.now() if now is None else now)
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for attempt in itertools.count(1):
            path = root / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path)
        raise AssertionError("unreachable")


def check_writable(path: Path | str, what: str) -> None:
    """UserError unless a command can create or write ``path`` (named ``what``: "--out", ...):
    its nearest existing folder must be a directory this process may write. Checked before a
    command writes anything, so that it never stops half-way for it."""
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a directory")
    folder = existing if existing.is_dir() else existing.parent
    try:  # an unnamed file (O_TMPFILE where the system has it): nothing shows in the folder
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(
            f"{what} {path}: cannot write in {folder} ({exc.strerror or exc}); choose another path"
        ) from None


def dataset_of_run(run_dir: Path | str) -> Path:
    """The dataset directory a run was trained on (:meth:`RunDirectory.dataset`)."""
    return RunDirectory(Path(run_dir)).dataset()


def new_run_dir(root: Path, config: ExperimentConfig, now: datetime | None = None) -> Path:
    """A new, empty run directory for ``config`` under ``root`` (:meth:`RunDirectory.create`)."""
    return RunDirectory.create(root, config.data.env_id, config.name, config.train.seed, now).path
