"""One logger, several outputs: a local metrics file (always), W&B, and the console.

A logger writes into one directory (a :class:`latentrl.run_directory.LogDirectory`: the run
directory for training, its ``eval/`` for an evaluation)::

    metrics.jsonl      one JSON object per `Logger.log` call (always written)
    summary.json       final numbers, merged over `Logger.log_summary` calls
    images/*.png       `Logger.log_images`, named {name}_{step:07d}.png
    wandb_id.txt       the W&B run id, so a resumed training continues the same run
    wandb/             W&B's own files (offline runs are uploaded from here)

W&B is optional at every level: it is imported only when used, and if it fails to start or to
log, the logger warns once and carries on with the local outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
import netrc
import secrets
import shlex
import string
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from latentrl.config import IGNORED_SETTINGS, flat_defaults, flat_fields
from latentrl.recipe import experiment_and_preset
from latentrl.run_directory import LogDirectory

WandbMode = Literal["online", "offline", "disabled"]

# Older spellings that wandb itself still accepts in WANDB_MODE.
_MODE_ALIASES: dict[str, WandbMode] = {"dryrun": "offline", "run": "online"}
# wandb >= 0.31 talks to api.forge.coreweave.com by default and still reads keys stored for
# api.wandb.ai, so a key for either host means "logged in".
_DEFAULT_WANDB_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")
# A W&B server that cannot be reached must not hold a training run for wandb's default 90 s.
_WANDB_INIT_TIMEOUT_S = 60.0
_RESERVED_KEYS = frozenset({"step", "time"})


def resolve_wandb_mode(requested: str | None, env: Mapping[str, str]) -> WandbMode:
    """Decide the W&B mode before `wandb.init`, without any network call.

    An explicit request wins, then the WANDB_MODE variable in `env`; otherwise "online" when the
    user is logged in (see `wandb_logged_in`) and "offline" when not. "online" without
    credentials falls back to "offline" with a warning, because wandb would otherwise stop to
    ask for an API key.
    """
    if requested is not None:
        mode = _parse_mode(requested, "the requested W&B mode")
    elif env.get("WANDB_MODE"):
        mode = _parse_mode(env["WANDB_MODE"], "the WANDB_MODE environment variable")
    else:
        return "online" if wandb_logged_in(env) else "offline"
    if mode == "online" and not wandb_logged_in(env):
        warnings.warn(
            "W&B online mode needs an API key (run `wandb login` or set WANDB_API_KEY); "
            "logging offline instead, upload later with `wandb sync`.",
            stacklevel=2,
        )
        return "offline"
    return mode


def _parse_mode(value: str, source: str) -> WandbMode:
    choices = get_args(WandbMode)
    mode = _MODE_ALIASES.get(value.strip().lower(), value.strip().lower())
    if mode not in choices:
        raise ValueError(f"{source} is {value!r}; choose one of {', '.join(choices)}.")
    return cast(WandbMode, mode)


def wandb_logged_in(env: Mapping[str, str]) -> bool:
    """True when `env` has WANDB_API_KEY or the user's netrc holds a key for the W&B host."""
    if env.get("WANDB_API_KEY"):
        return True
    if env.get("NETRC"):
        path = Path(env["NETRC"]).expanduser()
    else:
        path = Path(env.get("HOME") or Path.home()) / ".netrc"
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return False
    base_url = env.get("WANDB_BASE_URL")
    hosts = (urlsplit(base_url).netloc,) if base_url else _DEFAULT_WANDB_HOSTS
    for host in hosts:
        creds = entries.authenticators(host)
        if creds and creds[2]:
            return True
    return False


def run_group(name: str, preset: str, settings: Mapping[str, Any]) -> str:
    """The W&B group of a run: ``NAME/PRESET/DIGEST``, DIGEST a hash of the settings that
    differ from their defaults (``settings``: the config as a dict), the training seed left out,
    so that the seeds of one setting share a group, a run with other settings gets its own, and
    a field added to latentrl later, at its default, moves no group. Which planner options are
    on counts whatever their fields. A run of an env's default recipe is
    ``ENV_ID/recipe/DIGEST`` (:func:`~latentrl.recipe.experiment_and_preset`)."""
    data = settings.get("data")
    env_id = data.get("env_id") if isinstance(data, Mapping) else None
    name, preset = experiment_and_preset(name, preset, env_id)
    text = json.dumps(group_settings(settings), sort_keys=True, default=str)
    return f"{name}/{preset}/{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def group_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's W&B group digest hashes (:func:`run_group`): ``section.field`` -> value for
    each field of ``settings`` not at its default, without the seed and the other fields of
    :data:`~latentrl.config.IGNORED_SETTINGS` (a run on a GPU joins its CPU twins), and
    ``plan.options`` -> the names of the planner options configured."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        flat |= flat_fields(value, key) if isinstance(value, Mapping) else {key: value}
    defaults = flat_defaults()
    changed = {
        key: value
        for key, value in flat.items()
        if key not in IGNORED_SETTINGS and (key not in defaults or defaults[key] != value)
    }
    plan = settings.get("plan")
    if isinstance(plan, Mapping) and isinstance(plan.get("options"), Mapping):
        changed["plan.options"] = sorted(plan["options"])
    return changed


def summary_line(
    head: str, metrics: Mapping[str, float], rate: float | None = None, unit: str = "samples"
) -> str:
    """One console line, e.g. `epoch 3/50 loss 1234.5 val 1250.1 (45,000 samples/s)`."""
    parts = [head, *(f"{key} {value:.5g}" for key, value in metrics.items())]
    line = " ".join(part for part in parts if part)
    return line if rate is None else f"{line} ({rate:,.0f} {unit}/s)"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of run_dir/metrics.jsonl; NaN and infinities were stored as None.

    A truncated last line (the process was killed mid-write) is ignored with a warning; a bad
    line anywhere else raises ValueError.
    """
    path = LogDirectory(Path(run_dir)).metrics
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                warnings.warn(f"{path}: ignoring truncated last line {number}", stacklevel=2)
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({error})") from None
    return rows


class Logger:
    """Records metrics, images and a summary of one run to run_dir, W&B and the console.

    Use it as a context manager or call `close()`. With `resume=True` the metrics file keeps
    only rows with step <= `resume_step` (a killed run may have logged past its last
    checkpoint) and W&B continues the run whose id is in run_dir/wandb_id.txt.
    """

    def __init__(
        self,
        run_dir: Path,
        name: str,
        config: Mapping[str, Any],
        wandb_mode: WandbMode,
        project: str = "latentrl",
        group: str | None = None,
        job_type: str = "train",
        resume: bool = False,
        resume_step: int | None = None,
    ) -> None:
        self.wandb_mode: WandbMode = _parse_mode(wandb_mode, "wandb_mode")
        self.run_dir = Path(run_dir)
        self.paths = LogDirectory(self.run_dir)
        self.name = name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.paths.metrics
        self._time_offset = _prepare_metrics_file(metrics_path, resume, resume_step)
        self._start = time.monotonic()
        self._metrics_file = metrics_path.open("a", encoding="utf-8")
        self.wandb_id = _load_or_create_id(self.paths.wandb_id, resume)
        self._wandb_run: Any = None
        self._bar: tqdm | None = None
        self._closed = False
        if self.wandb_mode != "disabled":
            self._wandb_run = self._start_wandb(
                project=project, group=group, job_type=job_type, config=dict(config)
            )
        if self._wandb_run is None:
            self.wandb_mode = "disabled"
        else:
            self._record_run_id(getattr(self._wandb_run, "id", None))
            if self.wandb_mode == "online":
                self.echo(f"W&B run: {self._wandb_run.url}")

    def _record_run_id(self, run_id: str | None) -> None:
        """Keep the id W&B really used (a sweep agent assigns its own), so that a resumed run
        continues that W&B run."""
        if isinstance(run_id, str) and run_id and run_id != self.wandb_id:
            self.wandb_id = run_id
            self.paths.wandb_id.write_text(run_id + "\n")

    # -- W&B ---------------------------------------------------------------------------------

    def _start_wandb(self, **init_kwargs: Any) -> Any:
        try:
            import wandb

            return wandb.init(
                dir=self.run_dir,
                mode=self.wandb_mode,
                id=self.wandb_id,
                resume="allow",
                name=self.name,
                # silent: our own lines say what matters; console="off": no stdout capture;
                # create_new: a second Logger in one process must not get the first one's run.
                settings=wandb.Settings(
                    silent=True,
                    console="off",
                    reinit="create_new",
                    init_timeout=_WANDB_INIT_TIMEOUT_S,
                ),
                **init_kwargs,
            )
        except Exception as error:  # W&B must never stop a training run
            self.echo(f"warning: W&B did not start ({error}); logging to {self.run_dir} only")
            return None

    def _to_wandb(self, what: str, action: Callable[[Any], object]) -> None:
        """Apply `action` to the W&B run; on failure warn once and stop using W&B."""
        if self._wandb_run is None:
            return
        try:
            action(self._wandb_run)
        except Exception as error:  # W&B must never stop a training run
            self.echo(f"warning: W&B {what} failed ({error}); W&B logging stopped")
            self._wandb_run = None

    @property
    def wandb_sync_command(self) -> str | None:
        """`wandb sync ...` naming this run's offline directories, or None when not offline."""
        if self.wandb_mode != "offline":
            return None
        # A resumed offline run gets a new directory per session, all with the same id.
        found = self.paths.wandb.glob(f"offline-run-*-{self.wandb_id}*")
        paths = sorted(path for path in found if path.is_dir())
        return "wandb sync " + " ".join(shlex.quote(str(path)) for path in paths)

    # -- recording ---------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds of logging in this run, summed over resumed sessions."""
        return self._time_offset + time.monotonic() - self._start

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Append one row {"step", "time", **metrics} to metrics.jsonl and log it to W&B.

        Values: Python or numpy numbers, or one-element tensors. NaN and infinities are
        written as null so the file stays valid JSON; W&B receives them as they are.
        """
        values = _scalars(metrics)
        row = {"step": int(step), "time": round(self.elapsed, 3), **_json_safe(values)}
        self._metrics_file.write(json.dumps(row, allow_nan=False) + "\n")
        self._metrics_file.flush()
        self._to_wandb("log", lambda run: run.log(values, step=int(step)))

    def log_images(self, images: Mapping[str, np.ndarray], step: int) -> dict[str, Path]:
        """Save each image as run_dir/images/{name}_{step:07d}.png and log it to W&B.

        images: name -> uint8 array (H, W) or (H, W, 3). Returns name -> PNG path.
        """
        self.paths.images.mkdir(exist_ok=True)
        paths = {}
        for name, image in images.items():
            _check_image(name, image)
            paths[name] = self.paths.image(name, step)
            Image.fromarray(image).save(paths[name])
        if self._wandb_run is not None:
            import wandb

            media = {name: wandb.Image(image) for name, image in images.items()}
            self._to_wandb("log", lambda run: run.log(media, step=int(step)))
        return paths

    def log_media(self, media: Mapping[str, np.ndarray | Path], step: int) -> None:
        """Log images (uint8 ``(H, W)`` or ``(H, W, 3)``) and GIF/MP4 files already on disk to
        W&B only; the caller keeps the files (see :meth:`log_images` to save images too)."""
        if self._wandb_run is None:
            return
        import wandb

        items: dict[str, Any] = {}
        for name, item in media.items():
            if isinstance(item, Path):
                items[name] = wandb.Video(str(item), format=item.suffix.lstrip("."))
            else:
                _check_image(name, item)
                items[name] = wandb.Image(item)
        self._to_wandb("log", lambda run: run.log(items, step=int(step)))

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """Merge final numbers into run_dir/summary.json and the W&B run summary."""
        values = _scalars(metrics)
        path = self.paths.summary
        summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        summary.update(_json_safe(values))
        _write_atomic(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
        self._to_wandb("summary", lambda run: run.summary.update(values))

    # -- console -----------------------------------------------------------------------------

    def echo(self, message: str) -> None:
        """Print a line above the progress bar; always printed, TTY or not (CI logs)."""
        tqdm.write(message, file=sys.stdout)

    def start_progress(self, total: int, initial: int = 0, desc: str = "") -> None:
        """Open the progress bar (replacing an open one); hidden when stderr is not a TTY."""
        self.close_progress()
        self._bar = tqdm(total=total, initial=initial, desc=desc, disable=None, leave=False)

    def update_progress(self, n: int = 1, postfix: Mapping[str, float] | None = None) -> None:
        """Advance the bar by n and show `postfix` metrics next to it."""
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close_progress(self) -> None:
        """Close the progress bar, if one is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @contextmanager
    def progress(self, total: int, initial: int = 0, desc: str = "") -> Iterator[None]:
        """`with logger.progress(total):` opens the bar and closes it on exit."""
        self.start_progress(total, initial, desc)
        try:
            yield
        finally:
            self.close_progress()

    # -- lifetime ----------------------------------------------------------------------------

    def close(self, exit_code: int = 0) -> None:
        """Close the bar, finish the W&B run, close the metrics file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.close_progress()
        self._to_wandb("finish", lambda run: run.finish(exit_code=exit_code))
        if self.wandb_mode == "offline":
            self.echo(f"W&B offline run saved; upload it with:\n  {self.wandb_sync_command}")
        self._metrics_file.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(exit_code=0 if exc_type is None else 1)


def _prepare_metrics_file(path: Path, resume: bool, resume_step: int | None) -> float:
    """Ready metrics.jsonl for appending; returns the logged time to continue from."""
    if not resume:
        if path.exists() and path.stat().st_size > 0:
            raise FileExistsError(
                f"{path} already holds metrics; pass resume=True to continue that run "
                "or choose a new run directory."
            )
        return 0.0
    if not path.exists():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rewrite below drops a truncated line anyway
        rows = read_metrics(path.parent)
    if resume_step is not None:
        rows = [row for row in rows if row["step"] <= resume_step]
    _write_atomic(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
    return float(rows[-1]["time"]) if rows else 0.0


def _load_or_create_id(path: Path, resume: bool) -> str:
    if resume and path.exists() and path.read_text().strip():
        return path.read_text().strip()
    # Same shape as wandb's own ids (8 lowercase letters and digits), without importing wandb.
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.write_text(run_id + "\n")
    return run_id


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from numbers, numpy scalars and one-element tensors (CPU or GPU)."""
    values = {}
    for key, value in metrics.items():
        if key in _RESERVED_KEYS:
            raise ValueError(f"metric name {key!r} is reserved; rename it")
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        array = np.asarray(value, dtype=np.float64)
        if array.size != 1:
            raise ValueError(f"metric {key!r} must be a scalar, got shape {array.shape}")
        values[key] = float(array.reshape(()))
    return values


def _json_safe(values: Mapping[str, float]) -> dict[str, float | None]:
    return {key: value if math.isfinite(value) else None for key, value in values.items()}


def _check_image(name: str, image: np.ndarray) -> None:
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if image.dtype != np.uint8 or not shape_ok:
        raise ValueError(
            f"image {name!r} must be uint8 of shape (H, W) or (H, W, 3), "
            f"got {image.dtype} {image.shape}"
        )


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
