"""The experiment files shown in the docs are valid experiment files: each TOML block of
docs/*.md resolves, preset by preset, to a config (with the env's facts filled in)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from latentrl.experiment_files import preset_names, read_toml
from latentrl.pipeline import experiment_config

DOCS = Path(__file__).resolve().parents[1] / "docs"
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
EXAMPLES = [
    (page.relative_to(DOCS).as_posix(), index, block)
    for page in sorted(DOCS.rglob("*.md"))
    for index, block in enumerate(TOML_BLOCK.findall(page.read_text()))
]


def test_the_docs_show_experiment_files() -> None:
    assert {page for page, _, _ in EXAMPLES} >= {"configuration.md", "new_environment.md"}


@pytest.mark.parametrize(("page", "index", "text"), EXAMPLES, ids=lambda v: str(v)[:24])
def test_each_experiment_file_in_the_docs_resolves(
    page: str, index: int, text: str, tmp_path: Path
) -> None:
    path = tmp_path / f"example{index}.toml"
    path.write_text(text)
    names = preset_names(read_toml(path)) or [None]
    for name in names:
        config = experiment_config(path, name)
        assert config.name == path.stem and config.model.obs_shape and config.model.action_dim
