"""Which latentrl wrote a file: its version and, in a git checkout, the commit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import latentrl
from latentrl.code_version import CHECKOUT, _git_commit, code_version
from latentrl.experiment_files import read_toml

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_the_packages() -> None:
    project = read_toml(ROOT / "pyproject.toml")["project"]
    assert code_version()["version"] == latentrl.__version__ == project["version"]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_in_this_checkout_the_commit_is_head() -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert CHECKOUT == ROOT
    assert code_version()["commit"].removesuffix("+dirty") == head


def test_outside_a_checkout_no_commit(tmp_path: Path) -> None:
    assert _git_commit(tmp_path) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_changed_tracked_files_mark_the_commit_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    head = git("rev-parse", "HEAD")
    (tmp_path / "notes.txt").write_text("untracked\n")  # untracked files do not count
    assert _git_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _git_commit(tmp_path) == head + "+dirty"
