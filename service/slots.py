"""Analysis slots: how many analyses may run at once, in one process or across the host.

An analysis is CPU-bound (about a core-second per photo); running more at once than there are
cores only thrashes caches and memory. Under gunicorn every worker process accepts requests on
its own, so a per-process limit leaves cores idle whenever one worker happens to hold most of
the queued uploads. :class:`HostSlots` therefore shares N slots between every process of the
host: slot *i* is an exclusive ``flock`` on the file ``DIR/slot-i``. The kernel releases a lock
when its process dies, so a crashed or killed worker never leaks a slot.

Waiting threads of one process line up behind a local lock, so only one of them polls the
slot files (every ``poll_s``) and the others sleep without touching the GIL.

A free slot goes first to a process that runs no analysis: two analyses in one process share its
GIL and allocator and ran at 1.75x the single rate on two cores, against 1.93x for two processes
(12 MP photos, two threads of one process against two processes). A process that waits
with nothing running says so by an exclusive ``flock`` on ``DIR/want-PID``; a process that
already runs an analysis leaves free slots to such processes, and takes one only when nobody
else wants it (so no core idles either).
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class ProcessSlots:
    """At most ``n`` holders at once among the threads of this process."""

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self._sem = threading.BoundedSemaphore(self.n)

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._sem:
            yield


class HostSlots:
    """At most ``n`` holders at once among all processes using ``directory``."""

    def __init__(self, directory: str | os.PathLike, n: int, poll_s: float = 0.005):
        self.n = max(1, int(n))
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.poll_s = poll_s
        self._door = threading.Lock()     # one poller per process
        self._count = threading.Lock()
        self._running = 0                 # slots held by this process

    def _want(self) -> int:
        """Announce that this process waits with nothing running (until the descriptor closes)."""
        fd = os.open(self.directory / f"want-{os.getpid()}", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)    # only this process uses its own file: never blocks
        return fd

    def _others_want(self) -> bool:
        """Whether another live process waits for a slot with none running."""
        mine = f"want-{os.getpid()}"
        for path in self.directory.glob("want-*"):
            if path.name == mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True               # its owner holds it: waiting (a dead owner's is free)
            finally:
                os.close(fd)
        return False

    def _try_any(self) -> int | None:
        for i in range(self.n):
            fd = os.open(self.directory / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._door:
            want_fd = None
            try:
                while True:
                    if self._running == 0 and want_fd is None:
                        want_fd = self._want()
                    if self._running == 0 or not self._others_want():
                        fd = self._try_any()
                        if fd is not None:
                            break
                    time.sleep(self.poll_s)
            finally:
                if want_fd is not None:
                    os.close(want_fd)
            with self._count:
                self._running += 1
        try:
            yield
        finally:
            os.close(fd)              # closing the last descriptor releases the flock
            with self._count:
                self._running -= 1


def slots_from_env(default_n: int = 1) -> ProcessSlots | HostSlots:
    """``MESOSCAN_ANALYSIS_SLOTS_DIR`` set (gunicorn.conf.py does): slots shared by the host's
    processes, ``MESOSCAN_ANALYSIS_SLOTS`` of them (default: one per core). Otherwise a
    per-process limit of ``MESOSCAN_ANALYSIS_SLOTS`` (default ``default_n``)."""
    directory = os.environ.get("MESOSCAN_ANALYSIS_SLOTS_DIR")
    n = os.environ.get("MESOSCAN_ANALYSIS_SLOTS")
    if directory:
        return HostSlots(directory, int(n) if n else (os.cpu_count() or 1))
    return ProcessSlots(int(n) if n else default_n)
