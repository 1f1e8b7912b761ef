"""One writer per directory: a live owner is named in one line, a dead one's lock is taken over,
and collect, train, evaluate and run each take the lock of what they write."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl import cli, locks
from latentrl.collect import collect
from latentrl.config import DataConfig
from latentrl.errors import UserError
from latentrl.locks import DirectoryBusyError, LockOwner, busy_message, hold, lock_path
from latentrl.pipeline import dataset_dir, ensure_dataset

HOLDER = """
import sys, time
from latentrl.locks import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_lock_file_lies_beside_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = tmp_path.resolve()
    assert lock_path(tmp_path / "data" / "pm") == tmp_path / "data" / ".pm.lock"
    monkeypatch.chdir(tmp_path)
    assert lock_path("runs/a/") == tmp_path / "runs" / ".a.lock"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert lock_path("link/pm") == lock_path(tmp_path / "elsewhere" / "pm")


def test_the_holder_is_written_in_the_lock_and_everything_is_removed_after(
    tmp_path: Path,
) -> None:
    target = tmp_path / "new" / "deeper" / "dataset"
    with hold(target) as owner:
        written = json.loads(lock_path(target).read_text())
        assert written == {"pid": os.getpid(), "host": socket.gethostname(), "since": owner.since}
        busy = pytest.raises(DirectoryBusyError, match=f"pid {os.getpid()}, since")
        with busy, hold(target):  # a second holder, even in the same process
            pass
    assert list(tmp_path.iterdir()) == []  # the parents it made were empty: removed too
    with hold(tmp_path / "ds"):
        (tmp_path / "ds").mkdir()
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_a_live_owner_is_named_and_a_killed_one_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DirectoryBusyError) as caught, hold(target):
            pass
        since = json.loads(lock_path(target).read_text())["since"]
        assert str(caught.value) == (
            f"{target} is being used by another latentrl command (pid {holder.pid}, since "
            f"{since}); wait for it or stop it"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 left its lock file behind, naming a dead pid: it is stale and taken over
    assert json.loads(lock_path(target).read_text())["pid"] == holder.pid
    with hold(target) as owner:
        assert owner.pid == os.getpid()
        assert json.loads(lock_path(target).read_text())["pid"] == os.getpid()
    assert not lock_path(target).exists()


def test_without_flock_the_pid_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    target = tmp_path / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    for pid, busy in ((dead.pid, False), (os.getppid(), True)):
        owner = {"pid": pid, "host": host, "since": "2026-12-04 21:00:00"}
        lock_path(target).write_text(json.dumps(owner))
        if busy:
            busy_error = pytest.raises(DirectoryBusyError, match=f"pid {pid}, since 2026-12-04")
            with busy_error, hold(target):
                pass
        else:
            with hold(target) as taken:
                assert taken.pid == os.getpid()


def test_busy_message_names_another_host() -> None:
    owner = LockOwner(pid=7, host="elsewhere", since="2026-12-04 21:00:00")
    assert busy_message("runs/x", owner) == (
        "runs/x is being used by another latentrl command (pid 7 on elsewhere, since "
        "2026-12-04 21:00:00); wait for it or stop it; if it no longer runs, delete "
        f"{lock_path('runs/x')}"
    )


def test_an_unwritable_place_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    refused = pytest.raises(UserError, match=r"cannot create .*file.*; choose a directory you")
    with refused, hold(tmp_path / "file" / "x" / "dataset"):
        pass


@pytest.mark.parametrize(
    ("command", "held"),
    [
        (["collect", POINT_MASS_ID, "--transitions", "10", "--out", "{d}/data"], "{d}/data"),
        (["train", "--data", "{data}", "--run-dir", "{d}/run"], "{d}/run"),
        (["evaluate", "{d}/run"], "{d}/run/eval"),
    ],
    ids=["collect", "train", "evaluate"],
)
def test_each_command_refuses_a_directory_in_use(
    command: list[str],
    held: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path_factory.mktemp("data") / "pm"
    if command[0] == "train":
        collect(POINT_MASS_ID, 100, data, progress=False)
    args = [part.format(d=tmp_path, data=data) for part in command]
    directory = Path(held.format(d=tmp_path))
    with hold(directory):
        assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{directory} is being used by another latentrl command (pid {os.getpid()}" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_run_on_a_dataset_being_collected_says_so(tmp_path: Path) -> None:
    data = DataConfig(env_id=POINT_MASS_ID, transitions=100)
    path = dataset_dir(data, tmp_path)
    with hold(path), pytest.raises(DirectoryBusyError, match="is being used by another"):
        ensure_dataset(data, tmp_path)
    assert list(tmp_path.iterdir()) == []
