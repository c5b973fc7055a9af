#!/usr/bin/env python3
"""One entry point for setting up and running mesoscan from a fresh clone.

    python3 dev.py run     # create .venv if needed, install, run the service (mesoscan serve --demo)
    python3 dev.py test    # create .venv if needed, install, run the whole test suite
                           # (as root with apt-get: installs /usr/bin/chromium for tests/browser)

Only the Python standard library is used here, so it works before anything is installed.
The install is skipped when pyproject.toml has not changed since the last one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".mesoscan-install-stamp"
CHROMIUM = Path("/usr/bin/chromium")   # tests/browser drive the Debian package, never a downloaded build


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_installed() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"mesoscan needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not PY.exists():
        print("creating virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    print("installing mesoscan and its dependencies into .venv ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(_fingerprint())


def ensure_browser() -> None:
    """tests/browser need /usr/bin/chromium. As root with apt-get (CI, containers), install the
    Debian package unattended; otherwise say once that those tests will be skipped. Never
    `playwright install`: it downloads a browser build."""
    if CHROMIUM.exists():
        return
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"{CHROMIUM} not found: the browser tests will be skipped (apt-get install chromium)", flush=True)
        return
    print("installing chromium for the browser tests (apt-get install chromium) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not CHROMIUM.exists():
        tail = "\n".join(done.stdout.strip().splitlines()[-5:])
        print(f"chromium could not be installed (apt-get exit {done.returncode}); the browser tests will be "
              f"skipped:\n{tail}", flush=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    rest = argv[1:]
    ensure_installed()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if command == "test":
        ensure_browser()
        return subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
    if command == "run":
        args = rest or ["serve", "--demo"]
        return subprocess.run([str(BIN / "mesoscan"), *args], cwd=ROOT, env=env).returncode
    sys.exit(f"usage: python3 dev.py [run|test] [args...]  (got {command!r})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
