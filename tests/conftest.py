"""Shared test fixtures: the location of BLIS's parity fixtures (../shared/parity)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def parity_root() -> Path:
    env = os.environ.get("BLIS_PARITY_DIR")
    root = Path(env) if env else REPO.parent / "shared" / "parity"
    if not root.is_dir():
        raise FileNotFoundError(
            f"parity fixtures not found at {root}: the tests need BLIS's outputs from ../shared/parity "
            "(or set BLIS_PARITY_DIR)")
    return root


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return parity_root()
