"""Helpers of the browser tests (fixtures in conftest.py; a unique module name, since every
conftest is called "conftest"): the app served on 127.0.0.1 in a background thread, the
headless Debian chromium, and the test photos."""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_images" / "astronaut_render.jpg"
CHROMIUM = Path("/usr/bin/chromium")
# Never `playwright install` (it downloads a browser build): drive the Debian package.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
TABLET = {"width": 1024, "height": 768}   # landscape tablet

EMAIL = "dr@rose.example"
PASSWORD = "correct horse battery"
FAST_HASH = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}   # argon2id, test speed only


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None. `python3 dev.py test` installs both."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]', or run: python3 dev.py test)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium, or run: python3 dev.py test as root)"
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)


def make_app(data_dir: Path, analyzer=None):
    """An app on SQLite in ``data_dir`` with one clinic and one practitioner (EMAIL, PASSWORD)."""
    from service.app import create_app
    from service.storage import repository as repo

    app = create_app({"TESTING": True, "DATA_DIR": data_dir, "DATABASE_URL": f"sqlite:///{data_dir / 'mesoscan.db'}",
                      "SECRET_KEY": "browser-test-secret-" + "x" * 32, "PASSWORD_HASH_PARAMS": FAST_HASH,
                      "PRELOAD_MODEL": False, "ANALYZER": analyzer})
    st = app.extensions["mesoscan"]
    with st.storage.session() as s:
        clinic = repo.create_clinic(s, "Rose Clinic")
        repo.create_user(s, clinic.id, EMAIL, st.hasher.hash(PASSWORD), "practitioner")
    return app


@dataclass
class LiveServer:
    """The WSGI app served by werkzeug on 127.0.0.1, on a free port, in a daemon thread."""

    app: object
    url: str = ""

    def __enter__(self) -> "LiveServer":
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def has_endpoint(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.app.view_functions)


def blurred_photo(path: Path) -> Path:
    """The sample photo blurred (Gaussian, sigma 12 px): the quality gate rejects it as blurred."""
    import cv2

    img = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    cv2.imwrite(str(path), cv2.GaussianBlur(img, (0, 0), 12), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def variant_photo(path: Path, brighter: int) -> Path:
    """The same face re-encoded ``brighter`` grey levels brighter: another file (another sha256),
    as a photo of the same patient at another visit."""
    import cv2

    img = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    cv2.imwrite(str(path), cv2.convertScaleAbs(img, alpha=1.0, beta=brighter), [cv2.IMWRITE_JPEG_QUALITY, 93])
    return path
