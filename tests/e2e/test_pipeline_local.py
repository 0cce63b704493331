"""The hourly pipeline end to end under kfp.local (SubprocessRunner + Beam DirectRunner).

Tiny synthetic hours, real components in their own processes: stats -> transform ->
train (warm start) -> export -> evaluate on the next hour -> register if blessed.
"""

from __future__ import annotations

import os
import shutil

import pytest

from beam_jobs import synthetic
from components.lib import registry
from pipeline import local
from trainer.config import load_config

pytestmark = pytest.mark.e2e

HOURS = ["2026-01-01T00", "2026-01-01T01"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory, repo_root) -> str:
    root = str(tmp_path_factory.mktemp("pipeline_logs"))
    cfg = synthetic.SyntheticConfig(seed=3, events_per_hour=1500)
    synthetic.write_stream(root, cfg, hours=3)  # hour 02 is only evaluated on
    return root


def _settings(repo_root, logs: str, workdir: str, **blessing) -> local.LocalSettings:
    experiment = repo_root / "specs" / "experiments" / "synthetic_hybrid.yaml"
    cfg = load_config(
        str(experiment), {"training.batch_size": 256, "training.epochs": 1}
    )
    trainer = cfg.to_dict()
    spec = str(repo_root / "specs" / "features" / "synthetic_hybrid.yaml")
    trainer["feature_spec"] = spec
    return local.LocalSettings(
        logs=logs,
        workdir=workdir,
        feature_spec=spec,
        trainer_config=trainer,
        **blessing,
    )


def test_replay_registers_in_order_and_is_idempotent(repo_root, logs, tmp_path):
    s = _settings(
        repo_root, logs, str(tmp_path / "work"), min_value=0.0, max_regression=1.0
    )
    records = local.replay_hours(HOURS, s)
    assert [r["hour"] for r in records] == HOURS
    assert all(r["blessed"] for r in records)
    versions = registry.list_versions(s.registry)
    assert [v.version for v in versions] == [1, 2]
    assert [v.metadata["hour"] for v in versions] == HOURS
    assert registry.get_alias(s.registry) == 2
    assert records[0]["size_bytes"] > 0 and records[0]["metrics"]["events"] == 1500
    # Hour 01 continued hour 00's dictionaries and warm-started from its model.
    assert records[1]["stats"] != records[0]["stats"]

    # Replaying again redoes nothing.
    assert local.replay_hours(HOURS, s) == records
    # A lost record (a run killed after registering) re-runs the hour; the registry
    # refuses a duplicate for the hour and production stays where it was.
    os.remove(s.result_path(HOURS[1]))
    again = local.run_hour(HOURS[1], s)
    assert again["registered_version"] == 2
    assert [v.version for v in registry.list_versions(s.registry)] == [1, 2]
    assert registry.get_alias(s.registry) == 2

    # A missing hour partition fails the run clearly and leaves production untouched.
    shutil.rmtree(os.path.join(logs, "dt=2026-01-01", "hour=02"), ignore_errors=False)
    with pytest.raises(RuntimeError, match="compute-stats|transform|evaluate"):
        local.run_hour("2026-01-01T05", s)
    assert registry.get_alias(s.registry) == 2
    assert not os.path.exists(s.result_path("2026-01-01T05"))


def test_model_missing_thresholds_is_not_registered(
    repo_root, tmp_path, tmp_path_factory
):
    root = str(tmp_path_factory.mktemp("logs_strict"))
    synthetic.write_stream(
        root, synthetic.SyntheticConfig(seed=4, events_per_hour=1000), hours=2
    )
    s = _settings(repo_root, root, str(tmp_path / "strict"), min_value=1.01)  # AUC > 1
    rec = local.run_hour(HOURS[0], s)
    assert rec["blessed"] is False
    assert rec["registered_version"] is None
    assert registry.list_versions(s.registry) == []
    assert registry.get_alias(s.registry) is None
