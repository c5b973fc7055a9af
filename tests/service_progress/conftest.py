"""Fixtures of the storage-backed progress tests: the storage tests' per-test databases
(SQLite, and PostgreSQL in a schema of its own when MESOSCAN_TEST_DATABASE_URL is set), and
synthetic visit photos analysed once per session."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import pytest

from storage.conftest import db, empty_db, session  # noqa: F401  (fixtures reused as they are)

from .synthetic_visits import WOBBLES, apply_wobble, encode_jpeg, plant_severity

FALLING = (1.0, 0.65, 0.3, 0.0)       # planted severity at visits 1-4 (0: all cleared)
WOBBLE_SEVERITY = 0.6                 # identical content of the wobble visits


@dataclass
class SyntheticVisits:
    """Photo bytes of the falling-severity and the wobble visits (made on first use), and an
    ``analyze`` that runs the real pipeline once per distinct photo (shared by both databases)."""

    analyzer: object
    rgb: object
    base_document: dict
    _cache: dict = field(default_factory=dict)

    @cached_property
    def falling(self) -> list[bytes]:
        return [encode_jpeg(plant_severity(self.rgb, self.base_document, s), 92) for s in FALLING]

    @cached_property
    def wobble(self) -> list[bytes]:
        content = plant_severity(self.rgb, self.base_document, WOBBLE_SEVERITY)
        return [apply_wobble(content, w) for w in WOBBLES]

    def analyze(self, data: bytes) -> dict:
        key = hashlib.sha256(data).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.analyzer.analyze(data).document
        return self._cache[key]


@pytest.fixture(scope="session")
def synthetic_visits(analyzer, render_bytes) -> SyntheticVisits:
    base = analyzer.analyze(render_bytes)
    return SyntheticVisits(analyzer, base.decoded.rgb, base.document)
