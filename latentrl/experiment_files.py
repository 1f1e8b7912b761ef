"""Experiment files: the TOML files that hold what was tuned for one task.

An experiment file's top-level tables (``[data]``, ``[model]``, ``[loss]``, ``[train]``,
``[plan]``, ``[eval]``) hold the settings every preset shares; ``[presets.NAME.SECTION]``
tables change them for preset ``NAME``; ``default_preset`` names the preset used when none is
asked for. A field left out takes the schema's default (:mod:`latentrl.config`), and the env
facts (``model.obs_shape``, ``model.action_dim``) are never written: they come from the env.

The built-in experiments are the files ``experiments/NAME.toml`` of this checkout; any other
path to a ``.toml`` file works the same way.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import latentrl
from latentrl.config import ENV_FACTS, schema_defaults
from latentrl.errors import UserError
from latentrl.kinds import loss_read_by
from latentrl.recipe import default_recipe, task_shape

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tomli backport has the same API
    import tomli as tomllib

EXPERIMENTS_DIR = Path(latentrl.__file__).resolve().parents[1] / "experiments"
"""Where the built-in experiment files live: ``experiments/`` of the checkout."""
NO_PRESET = "default"
"""The preset name of a config that no preset chose (a file without presets, ``--env``)."""
_TOP_LEVEL = ("default_preset", "default_recipe", "presets")


def builtin_experiments(directory: Path = EXPERIMENTS_DIR) -> dict[str, Path]:
    """Name -> path of every experiment file in ``directory``, sorted by name."""
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}


def experiment_path(name_or_file: str | Path, directory: Path = EXPERIMENTS_DIR) -> Path:
    """The file of a built-in experiment name (``pendulum``) or a path to a ``.toml`` file."""
    text = str(name_or_file)
    if text.endswith(".toml") or "/" in text or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise UserError(f"no experiment file at {path}")
        return path
    builtin = builtin_experiments(directory)
    if text not in builtin:
        raise UserError(
            f"unknown experiment {text!r}; choose one of {', '.join(builtin) or '(none)'} "
            f"(the files in {directory}), or give the path to a .toml experiment file"
        )
    return builtin[text]


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file; one UserError naming the file when it is not valid TOML."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise UserError(f"cannot read experiment file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML ({exc}); fix the line it names") from None


def preset_names(document: Mapping[str, Any]) -> list[str]:
    """The presets a parsed experiment file defines, in file order."""
    presets = document.get("presets", {})
    return list(presets) if isinstance(presets, Mapping) else []


def default_preset(document: Mapping[str, Any]) -> str:
    """The preset used when none is asked for: ``default_preset``, else the only preset, else
    :data:`NO_PRESET` for a file without presets."""
    names = preset_names(document)
    chosen = document.get("default_preset")
    if chosen is not None:
        return str(chosen)
    return names[0] if len(names) == 1 else NO_PRESET


def read_experiment(path: Path, preset: str | None = None) -> dict[str, Any]:
    """The config dict of ``preset`` (default: the file's default) in the experiment file at
    ``path``: the schema's defaults, then (with ``default_recipe = true``) the settings the
    default recipe derives from the env (:mod:`latentrl.recipe`), then the file's shared
    tables, then the preset's; a layer that changes ``model.kind`` keeps of the loss settings
    below it only those its kind reads. ``name`` is the file's stem. The env facts are left
    out (:data:`latentrl.config.ENV_FACTS`).

    Raises one UserError naming the file, the field (dotted path) and what is allowed for an
    unknown field (in any preset) or preset, a section that is not a table, or an env fact
    written in the file.
    Types and values are checked when the config is built (:func:`latentrl.pipeline.resolve`).
    """
    document = read_toml(path)
    try:
        shared = _sections(document, "", allowed_extra=_TOP_LEVEL)
        presets = document.get("presets", {})
        if not isinstance(presets, Mapping) or not all(
            isinstance(table, Mapping) for table in presets.values()
        ):
            raise UserError("presets must hold one table per preset, [presets.NAME.SECTION]")
        chosen = default_preset(document) if preset is None else preset
        names = preset_names(document)
        if names and chosen not in names:
            raise UserError(f"unknown preset {chosen!r}; choose one of {', '.join(names)}")
        if not names and chosen != NO_PRESET:
            raise UserError(f"unknown preset {chosen!r}: the file defines no [presets.NAME]")
        tables = {name: _sections(table, f"presets.{name}.") for name, table in presets.items()}
        overrides = tables.get(chosen, {})
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    config: dict[str, Any] = {"name": path.stem, "preset": chosen, **schema_defaults()}
    layers = [shared, overrides]
    use_recipe = document.get("default_recipe", False)
    if not isinstance(use_recipe, bool):
        raise UserError(f"{path}: default_recipe must be true or false, got {use_recipe!r}")
    if use_recipe:  # the env's recipe under the file's tables
        data = dict(config["data"])
        for tables in layers:
            data.update(tables.get("data", {}))
        layers.insert(0, default_recipe(task_shape(data["env_id"], data["env_kwargs"])))
    for tables in layers:
        kind = tables.get("model", {}).get("kind")
        if kind is not None and kind != config["model"].get("kind"):
            # the loss settings below were made for another kind: keep what `kind` reads
            config["loss"] = loss_read_by(str(kind), config["loss"])
        for section, values in tables.items():
            merge_tables(config[section], values)
    return config


def merge_tables(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Write ``values`` into ``target`` (in place), table by table: a nested table
    (``[loss.multi_step]``, ``[plan.options.shooting]``) changes only the fields it names."""
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_tables(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _sections(
    document: Mapping[str, Any], where: str, allowed_extra: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The config sections of one level of an experiment file, their field names checked."""
    defaults = schema_defaults()
    sections: dict[str, dict[str, Any]] = {}
    for key, value in document.items():
        if key in allowed_extra:
            continue
        if key not in defaults:
            allowed = ", ".join([*defaults, *allowed_extra])
            raise UserError(f"unknown field {where}{key}; allowed here: {allowed}")
        if not isinstance(value, Mapping):
            raise UserError(f"{where}{key} must be a table ([{where}{key}]), got {value!r}")
        for name in value:
            dotted = f"{key}.{name}"
            if dotted in ENV_FACTS:
                raise UserError(
                    f"{where}{dotted} comes from the env's spaces; delete it from the file"
                )
            if name not in defaults[key]:
                raise UserError(
                    f"unknown field {where}{dotted}; allowed in [{key}]: {', '.join(defaults[key])}"
                )
        sections[key] = dict(value)
    return sections
