"""One writer per directory: a lock file beside it, holding its owner's pid, host and start time.

``collect`` locks its dataset directory, ``train`` its run directory and ``evaluate`` the run's
``eval/`` (``latentrl run`` takes each in turn). The lock of ``PARENT/NAME`` is the file
``PARENT/.NAME.lock``: beside the directory, not in it, so that it exists before the directory
does and never counts as a file of the dataset or run. A second command on the same directory
stops at once with one line naming the owner::

    data/pendulum is being used by another latentrl command (pid 4242, since
    2026-12-04 21:30:05); wait for it or stop it

The lock is an exclusive ``fcntl.flock`` on that file. The kernel drops it when its holder
exits, however it exits (``kill -9`` included), so a lock file left behind by a dead command is
stale by construction and the next command takes it over; the pid, host and time written in it
only make the message. Where ``flock`` is not supported (some network filesystems), a lock file
whose pid is alive on this host counts as held and one whose pid is dead is taken over. The
lock file is removed on release, and so are parent folders that taking it created.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from latentrl.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class LockOwner:
    """Who holds a directory: process id, host name and start time (local, to the second)."""

    pid: int
    host: str
    since: str

    @classmethod
    def me(cls) -> LockOwner:
        now = datetime.now().isoformat(sep=" ", timespec="seconds")
        return cls(pid=os.getpid(), host=socket.gethostname(), since=now)


class DirectoryBusyError(UserError):
    """Another live latentrl command holds the directory's lock."""


def lock_path(directory: Path | str) -> Path:
    """The lock file of ``directory``: ``PARENT/.NAME.lock`` of its real path (symbolic links
    followed, so that two names of one directory share a lock)."""
    path = Path(os.path.realpath(directory))
    return path.parent / f".{path.name}.lock"


def busy_message(directory: Path | str, owner: LockOwner | None) -> str:
    """The one line a command prints when ``owner`` holds ``directory``."""
    gone = ""
    if owner is None:  # the holder has not written its name yet
        who = "pid unknown"
    elif owner.host == socket.gethostname():
        who = f"pid {owner.pid}, since {owner.since}"
    else:  # its liveness cannot be checked from here
        who = f"pid {owner.pid} on {owner.host}, since {owner.since}"
        gone = f"; if it no longer runs, delete {lock_path(directory)}"
    return (
        f"{directory} is being used by another latentrl command ({who}); wait for it or "
        f"stop it{gone}"
    )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def read_owner(path: Path) -> LockOwner | None:
    """The owner written in a lock file (None: absent, empty or not a lock file)."""
    try:
        fields = json.loads(path.read_text())
        return LockOwner(pid=int(fields["pid"]), host=str(fields["host"]), since=fields["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def hold(directory: Path | str) -> Iterator[LockOwner]:
    """Hold the lock of ``directory`` (which need not exist yet) for the ``with`` block.

    Raises DirectoryBusyError with :func:`busy_message` when a live command holds it, and
    UserError when the lock file cannot be created (an unwritable place)."""
    path = lock_path(directory)
    created = _make_parents(path.parent, directory)
    try:
        fd = _acquire(path, directory)
    except BaseException:
        _remove_empty(created)
        raise
    owner = LockOwner.me()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(owner)) + "\n").encode(), 0)
        yield owner
    finally:
        # Unlinked while still locked: a command that opened the file meanwhile notices that
        # the name now leads elsewhere and starts again (see _acquire).
        path.unlink(missing_ok=True)
        os.close(fd)
        _remove_empty(created)


def one_writer(
    argument: str, child: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function runs holding the lock of its directory argument ``argument``
    (or of ``argument / child``), so no two commands write into it at once."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            directory = Path(bound.arguments[argument])
            with hold(directory if child is None else directory / child):
                return function(*args, **kwargs)

        return locked

    return decorate


def _acquire(path: Path, directory: Path | str) -> int:
    """An open descriptor of ``path`` holding its lock; DirectoryBusyError when another holds
    it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # its empty folder was just removed by a command that ended
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as exc:
            raise UserError(
                f"cannot create the lock file {path} ({exc.strerror}); choose a directory you "
                "can write to"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryBusyError(busy_message(directory, read_owner(path))) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            owner = read_owner(path)  # no flock here: the pid decides
            if owner is not None and _held_by_other(owner):
                os.close(fd)
                raise DirectoryBusyError(busy_message(directory, owner)) from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # released and removed between our open and our lock: start again


def _held_by_other(owner: LockOwner) -> bool:
    if owner.host != socket.gethostname():
        return True  # cannot tell whether it is alive: assume so
    return owner.pid != os.getpid() and pid_alive(owner.pid)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _make_parents(parent: Path, directory: Any) -> list[Path]:
    """Create ``parent`` and its missing ancestors; returns those created, deepest first."""
    missing = []
    for folder in (parent, *parent.parents):
        if folder.exists():
            break
        missing.append(folder)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create {parent} for {directory} ({exc.strerror}); choose a directory you "
            "can write to"
        ) from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: something was written there after all
            return
