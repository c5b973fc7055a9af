"""glibc accepts every malloc setting the service and batch workers apply (service/malloc.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_glibc_accepts_the_settings():
    # in a child: the settings last for the process
    out = subprocess.run([sys.executable, "-c", "from service.malloc import keep_freed_memory as k; print(k())"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
