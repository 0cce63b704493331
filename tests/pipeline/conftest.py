"""Fixtures for the pipeline tests: the loopback KFP API server."""

from tests.fixtures.kfp_api import kfp_api  # noqa: F401  (re-exported fixture)
