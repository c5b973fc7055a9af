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
else wants it (so no core idles either). A process with uploads waiting says so *before* it
releases its last slot. Announced only after, at its next poll, the slot often went to a busy
process that polled a moment earlier: 38-46 % of the analyses of bench/load.py started beside
another in the same process, 10-17 % since.
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
        self._count = threading.Lock()    # guards the three below
        self._running = 0                 # slots held by this process
        self._waiting = 0                 # threads of this process waiting for a slot
        self._want_fd: int | None = None  # the want flock, held while waiting and none running

    def _update_want(self) -> None:
        """Hold the want flock exactly while threads wait here and none runs (under ``_count``)."""
        wanting = self._waiting > 0 and self._running == 0
        if wanting and self._want_fd is None:
            fd = os.open(self.directory / f"want-{os.getpid()}", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)    # only this process uses its own file: never blocks
            self._want_fd = fd
        elif not wanting and self._want_fd is not None:
            os.close(self._want_fd)
            self._want_fd = None

    def _count_change(self, running: int = 0, waiting: int = 0) -> None:
        with self._count:
            self._running += running
            self._waiting += waiting
            self._update_want()

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

    def _acquire(self) -> int:
        with self._door:
            while True:
                if self._running == 0 or not self._others_want():
                    fd = self._try_any()
                    if fd is not None:
                        return fd
                time.sleep(self.poll_s)

    @contextmanager
    def hold(self) -> Iterator[None]:
        self._count_change(waiting=+1)
        try:
            fd = self._acquire()
        except BaseException:
            self._count_change(waiting=-1)
            raise
        self._count_change(waiting=-1, running=+1)
        try:
            yield
        finally:
            self._count_change(running=-1)   # waiters announce themselves before the slot is free
            os.close(fd)              # closing the last descriptor releases the flock


def slots_from_env(default_n: int = 1) -> ProcessSlots | HostSlots:
    """``MESOSCAN_ANALYSIS_SLOTS_DIR`` set (gunicorn.conf.py does): slots shared by the host's
    processes, ``MESOSCAN_ANALYSIS_SLOTS`` of them (default: one per core). Otherwise a
    per-process limit of ``MESOSCAN_ANALYSIS_SLOTS`` (default ``default_n``)."""
    directory = os.environ.get("MESOSCAN_ANALYSIS_SLOTS_DIR")
    n = os.environ.get("MESOSCAN_ANALYSIS_SLOTS")
    if directory:
        return HostSlots(directory, int(n) if n else (os.cpu_count() or 1))
    return ProcessSlots(int(n) if n else default_n)
