"""Analysis slots shared by the processes of a host (service/slots.py)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from service.slots import HostSlots, ProcessSlots, slots_from_env


def _hold_and_record(directory: str, n: int, log_path: str, hold_s: float, threads: int) -> None:
    slots = HostSlots(directory, n, poll_s=0.002)

    def one():
        with slots.hold():
            with open(log_path, "a") as f:
                f.write(f"+ {time.monotonic()}\n")
            time.sleep(hold_s)
            with open(log_path, "a") as f:
                f.write(f"- {time.monotonic()}\n")

    ts = [threading.Thread(target=one) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _peak(log_path: str) -> tuple[int, int]:
    # sorted by time, a release before a start at the same instant (a hand-over is not overlap)
    events = sorted((float(t), 1 if sign == "+" else -1)
                    for sign, t in (line.split() for line in open(log_path)))
    running = peak = starts = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
        starts += delta > 0
    return peak, starts


def test_host_slots_bound_concurrency_across_processes(tmp_path):
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hold_and_record, args=(str(tmp_path / "slots"), 2, str(log), 0.05, 4))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    peak, starts = _peak(str(log))
    assert starts == 12          # every holder ran
    assert peak == 2             # never more than the 2 slots, though 3 processes x 4 threads wanted one


def _hold_forever(directory: str, ready) -> None:
    slots = HostSlots(directory, 1)
    with slots.hold():
        ready.set()
        time.sleep(60)


def test_a_killed_holder_frees_its_slot(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(20)
    slots = HostSlots(tmp_path, 1, poll_s=0.002)
    assert slots._try_any() is None          # taken by the other process
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    t0 = time.monotonic()
    with slots.hold():                       # the kernel released the dead process' lock
        waited = time.monotonic() - t0
    assert waited < 5


def test_process_slots_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MESOSCAN_ANALYSIS_SLOTS_DIR", raising=False)
    monkeypatch.setenv("MESOSCAN_ANALYSIS_SLOTS", "3")
    s = slots_from_env()
    assert isinstance(s, ProcessSlots) and s.n == 3
    monkeypatch.setenv("MESOSCAN_ANALYSIS_SLOTS_DIR", str(tmp_path / "d"))
    s = slots_from_env()
    assert isinstance(s, HostSlots) and s.n == 3 and (tmp_path / "d").is_dir()
    monkeypatch.delenv("MESOSCAN_ANALYSIS_SLOTS")
    assert slots_from_env().n == (os.cpu_count() or 1)


def _busy_process(directory: str, log_path: str, first_holding) -> None:
    """Holds a slot for 1 s and meanwhile wants a second one, polling fast."""
    slots = HostSlots(directory, 2, poll_s=0.001)

    def first():
        with slots.hold():
            first_holding.set()
            time.sleep(1.0)

    t = threading.Thread(target=first)
    t.start()
    first_holding.wait(10)
    with slots.hold():
        with open(log_path, "a") as f:
            f.write(f"busy {time.monotonic()}\n")
    t.join()


def _idle_process(directory: str, log_path: str, waiting) -> None:
    """Runs nothing and wants one slot, polling slowly."""
    slots = HostSlots(directory, 2, poll_s=0.02)
    waiting.set()
    with slots.hold():
        with open(log_path, "a") as f:
            f.write(f"idle {time.monotonic()}\n")
        time.sleep(0.2)


def _blocker(directory: str, log_path: str, holding, release) -> None:
    slots = HostSlots(directory, 2)
    with slots.hold():
        holding.set()
        release.wait(20)
        with open(log_path, "a") as f:
            f.write(f"released {time.monotonic()}\n")


def test_a_freed_slot_goes_to_the_process_running_nothing(tmp_path):
    # a blocker holds slot 1 of 2; a busy process holds the other and wants a second; an idle
    # process wants one. When the blocker frees its slot, the idle process gets it, though the
    # busy one polls 20 times as often: two analyses in one process share a GIL.
    directory, log = str(tmp_path / "slots"), str(tmp_path / "log")
    ctx = multiprocessing.get_context("fork")
    holding, release, first_holding, waiting = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_blocker, args=(directory, log, holding, release))]
    procs[0].start()
    assert holding.wait(20)
    procs.append(ctx.Process(target=_busy_process, args=(directory, log, first_holding)))
    procs[1].start()
    assert first_holding.wait(20)
    procs.append(ctx.Process(target=_idle_process, args=(directory, log, waiting)))
    procs[2].start()
    assert waiting.wait(20)
    time.sleep(0.2)                           # both are polling now
    release.set()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    got = {who: float(t) for who, t in (line.split() for line in open(log))}
    assert got["idle"] - got["released"] < 0.5
    assert got["busy"] > got["idle"]


def _two_uploads(directory: str, log_path: str, name: str, poll_s: float, first_s: float,
                 first_holding, go_second) -> None:
    """One analysis of ``first_s`` seconds, then (once ``go_second`` is set) a second waits too."""
    slots = HostSlots(directory, 2, poll_s=poll_s)

    def first():
        with slots.hold():
            first_holding.set()
            time.sleep(first_s)

    t = threading.Thread(target=first)
    t.start()
    assert go_second.wait(20)
    with slots.hold():
        with open(log_path, "a") as f:
            f.write(f"{name} {time.monotonic()}\n")
        time.sleep(0.1)
    t.join()


def test_a_process_freeing_its_last_slot_hands_it_to_its_own_waiting_upload(tmp_path):
    # "finisher" and "busy" each run one analysis and have a second upload waiting. When the
    # finisher's analysis ends, its own waiting upload gets the slot, not the busy process (which
    # polls 50 times as often): the finisher announces its waiter before it lets the slot go.
    directory, log = str(tmp_path / "slots"), str(tmp_path / "log")
    ctx = multiprocessing.get_context("fork")
    f_holding, b_holding, go_second = ctx.Event(), ctx.Event(), ctx.Event()
    finisher = ctx.Process(target=_two_uploads, args=(directory, log, "finisher", 0.05, 0.6, f_holding, go_second))
    finisher.start()
    assert f_holding.wait(20)
    busy = ctx.Process(target=_two_uploads, args=(directory, log, "busy", 0.001, 2.0, b_holding, go_second))
    busy.start()
    assert b_holding.wait(20)
    go_second.set()                           # both slots are held; both second uploads wait
    for p in (finisher, busy):
        p.join(30)
        assert p.exitcode == 0
    got = {who: float(t) for who, t in (line.split() for line in open(log))}
    assert got["finisher"] < got["busy"]
