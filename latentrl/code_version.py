"""Which latentrl wrote a file: ``{"version": "0.4.0", "commit": "<sha>"}``.

Recorded where a run trains (``run.json``, one entry per code that trained it, resumes
included) and where it is evaluated (``results.json``), so that numbers, and the oracle and
random agents another run takes over, can be traced to the code that made them. The commit
is read only from a git checkout of latentrl itself (an installed copy records the version
alone); ``+dirty`` marks tracked files changed since that commit.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import latentrl

CHECKOUT = Path(latentrl.__file__).resolve().parent.parent
"""The folder above the package: a git checkout of latentrl when it holds ``.git``."""


@functools.cache
def code_version() -> dict[str, str]:
    """The version of the latentrl that runs and, in a git checkout, its commit."""
    version = {"version": latentrl.__version__}
    commit = _git_commit(CHECKOUT)
    if commit is not None:
        version["commit"] = commit
    return version


def _git_commit(checkout: Path) -> str | None:
    """HEAD of the git checkout ``checkout`` (``+dirty`` with changed tracked files); None
    outside a checkout or without git."""
    if not (checkout / ".git").exists():
        return None
    try:
        head = _git(checkout, "rev-parse", "HEAD")
        changed = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if changed else "")


def _git(checkout: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()
