"""The process analyzer runs at most its number of slots at once, whatever the request threads."""
from __future__ import annotations

import threading
import time

from service.extensions import BoundedAnalyzer
from service.slots import ProcessSlots


class _Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.config = "cfg"

    def analyze(self, data: bytes):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        return data[::-1]


def _run(slots: int, threads: int = 8) -> int:
    rec = _Recorder()
    bounded = BoundedAnalyzer(rec, ProcessSlots(slots))
    results = []
    workers = [threading.Thread(target=lambda i=i: results.append(bounded.analyze(bytes([i, 1])))) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert sorted(results) == sorted(bytes([1, i]) for i in range(threads))   # every call answered
    assert bounded.config == "cfg"                                            # other attributes pass through
    return rec.peak


def test_one_slot_serialises_analyses():
    assert _run(1) == 1


def test_two_slots_allow_two_and_no_more():
    assert _run(2) == 2
