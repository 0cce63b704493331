"""A small REAL stats artifact: the synthetic stream through the Beam stats job."""

from __future__ import annotations

import pathlib

import pytest

from beam_jobs import feature_stats, synthetic

SPEC = "specs/features/synthetic.yaml"


@pytest.fixture(scope="session")
def synthetic_stats(tmp_path_factory, repo_root) -> pathlib.Path:
    """4,000 synthetic events (seed 3) counted by beam_jobs.feature_stats (Direct)."""
    root = tmp_path_factory.mktemp("planner_stats")
    spec = str(repo_root / SPEC)
    logs, out = root / "logs", root / "stats"
    assert (
        synthetic.main(
            ["--out", str(logs), "--hours", "1", "--events-per-hour", "4000"]
            + ["--seed", "3", "--spec", spec]
        )
        == 0
    )
    feature_stats.compute_stats(
        str(logs),
        "2026-01-01T00",
        spec,
        str(out),
        pipeline_args=["--runner=DirectRunner"],
    )
    return out


@pytest.fixture(scope="session")
def spec_path(repo_root) -> str:
    return str(repo_root / SPEC)
