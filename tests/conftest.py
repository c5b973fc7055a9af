"""Shared fixtures: the sample photos and the development dataset (skipped when absent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
DEV_DATASET = ROOT.parent / "shared" / "datasets" / "london-dev"


@pytest.fixture(scope="session")
def render_bytes() -> bytes:
    """A redistributable face photo at clinic-like resolution (see sample_images/README.md)."""
    return (SAMPLES / "astronaut_render.jpg").read_bytes()


@pytest.fixture(scope="session")
def analyzer():
    from pipelines.analysis import Analyzer

    return Analyzer()


def read_tem(path: Path) -> np.ndarray:
    """Psychomorph .tem landmarks as (N, 2) float image px."""
    lines = path.read_text().split("\n")
    n = int(lines[0])
    return np.array([[float(v) for v in line.split()] for line in lines[1:n + 1]])


@pytest.fixture(scope="session")
def dev_photos() -> list[Path]:
    if not DEV_DATASET.is_dir():
        pytest.skip("development dataset ../shared/datasets/london-dev not present")
    return sorted(DEV_DATASET.glob("*.jpg"))
