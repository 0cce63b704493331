"""Shared pytest fixtures: repository paths, shared data, the synthetic feature spec.

Package-specific fixtures live next to their tests (``tests/<pkg>/conftest.py``) or in
``tests/fixtures/``. Tests that need ``../shared/data`` fail loudly on CI when it is
missing; they never skip silently.
"""

from __future__ import annotations

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("COMPACTREC_DATA_DIR", REPO_ROOT.parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """``../shared/data`` (or $COMPACTREC_DATA_DIR); fails, never skips, when absent."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"shared data not found at {SHARED_DATA}; set COMPACTREC_DATA_DIR "
            "(see README: 'Data')"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_spec():
    from trainer.contracts.features import load_feature_spec

    return load_feature_spec(str(REPO_ROOT / "specs" / "features" / "synthetic.yaml"))


# A real fake-gcs-server on loopback for gs:// tests (see tests/fixtures/gcs.py).
from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: E402,F401
