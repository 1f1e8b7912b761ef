"""Fixtures shared by the agents' tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"


@pytest.fixture
def planar_run(tmp_path: Path) -> Path:
    """The legacy planar fixture run, its run.json pointing at its copied dataset."""
    run = tmp_path / "planar"
    shutil.copytree(FIXTURES / "planar", run)
    data = tmp_path / "planar_data"
    shutil.copytree(FIXTURES / "planar_data", data)
    (run / "run.json").write_text(json.dumps({"dataset": str(data)}))
    return run
