"""Worker processes that die with their parent, ``kill -9`` of the parent included.

A worker started with the ``spawn`` context (collection workers, the sub-envs of an
``AsyncVectorEnv``) blocks on a pipe that it holds both ends of, so it does not notice when
its parent is killed: it would live on as an orphan, and keep multiprocessing's resource
tracker alive with it. :func:`die_with_parent`, called first thing in the worker, asks Linux to
send the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon
thread polls the parent's pid. Once the workers are gone the resource tracker sees its pipe
close and exits too. Linux sends the signal when the *thread* that started the worker ends:
the pools here start their workers from the main thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid``, the process that started it, dies.

    A no-op in the parent itself (Gymnasium's ``AsyncVectorEnv`` also calls its env factory
    there, once, to read the spaces)."""
    if os.getpid() == parent_pid:
        return
    if not (sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL)):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    # The parent may have died before the signal was armed: then this process was reparented.
    if os.getppid() != parent_pid:
        os._exit(1)


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    os._exit(1)


class ChildOf:
    """A picklable callable for a ``spawn`` worker: ``die_with_parent`` of the process that
    made this object, then ``function(*args, **kwargs)``. Made in the parent, called in the
    worker (an initializer, or an env factory of an ``AsyncVectorEnv``)."""

    def __init__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.parent_pid = os.getpid()
        self.function, self.args, self.kwargs = function, args, kwargs

    def __call__(self) -> Any:
        die_with_parent(self.parent_pid)
        return self.function(*self.args, **self.kwargs)
