"""Session fixtures: a tiny synthetic event log, its stats artifact and a trained model.

Built once per test session, in a temp dir, through the real code paths:
``beam_jobs.synthetic`` writes two hours (2026-01-01T00 and T01), the Beam stats job
(DirectRunner) runs over T00 and ``trainer.task.run`` trains wide-and-deep on T00 for a
few steps. The feature spec is ``specs/features/synthetic.yaml`` scaled down (smaller
hash tables, a 128-wide MGQE ``item_id``) so that the files stay small and the MGQE
query table is a visible part of the model, as it is at full scale.

Fixtures: ``synthetic_logs`` (logs root), ``fixture_spec_path`` (the scaled-down spec),
``stats_dir`` (stats artifact of T00), ``trained_model_dir`` (``trainer.task`` output).
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN_HOUR = "2026-01-01T00"
EVAL_HOUR = "2026-01-01T01"
EVENTS_PER_HOUR = 3000
TRAIN_STEPS = 8

# Per-feature changes to specs/features/synthetic.yaml for the tiny fixture model.
_SPEC_CHANGES = {
    "user_id": {"hash_buckets": 1024},
    "publisher": {"hash_buckets": 512},
    "item_id": {"embedding_dim": 128},
}
_CROSS_BUCKETS = 1024


@pytest.fixture(scope="session")
def synthetic_logs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Event log root with hours 2026-01-01T00 and T01 (3,000 events each, seed 0)."""
    from beam_jobs import synthetic

    root = str(tmp_path_factory.mktemp("logs"))
    config = synthetic.SyntheticConfig(seed=0, events_per_hour=EVENTS_PER_HOUR)
    synthetic.write_stream(root, config, hours=2)
    return root


@pytest.fixture(scope="session")
def fixture_spec_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The scaled-down copy of specs/features/synthetic.yaml (module docstring)."""
    raw = yaml.safe_load(
        (REPO_ROOT / "specs" / "features" / "synthetic.yaml").read_text()
    )
    for feature in raw["features"]:
        feature.update(_SPEC_CHANGES.get(feature["name"], {}))
    for cross in raw.get("crosses", []):
        cross["hash_buckets"] = _CROSS_BUCKETS
    raw["name"] = "synthetic_tiny"
    path = tmp_path_factory.mktemp("spec") / "synthetic_tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def stats_dir(
    synthetic_logs: str,
    fixture_spec_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The Beam stats artifact of hour T00 (DirectRunner)."""
    from beam_jobs import feature_stats

    out = str(tmp_path_factory.mktemp("stats") / "stats0")
    config = feature_stats.StatsConfig(
        direct_num_workers=1, direct_running_mode="in_memory", diagnostics=False
    )
    feature_stats.compute_stats(
        synthetic_logs, TRAIN_HOUR, fixture_spec_path, out, config=config
    )
    return out


def trainer_config(spec_path: str, max_steps: int = TRAIN_STEPS, seed: int = 0):
    """A small wide-and-deep ``TrainerConfig`` over ``spec_path``."""
    from trainer.config import TrainerConfig

    return TrainerConfig.from_dict(
        {
            "name": "fixture",
            "feature_spec": spec_path,
            "model": {"name": "wide_deep", "hidden_units": [32, 16]},
            "optimizer": {"name": "sparse_adagrad", "learning_rate": 0.05},
            "wide_optimizer": {"name": "sparse_ftrl", "learning_rate": 0.05},
            "training": {
                "batch_size": 256,
                "max_steps": max_steps,
                "seed": seed,
                "checkpoint_every": 1000,
                "log_every": 1000,
            },
        }
    )


@pytest.fixture(scope="session")
def trained_model_dir(
    synthetic_logs: str,
    stats_dir: str,
    fixture_spec_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A ``trainer.task`` output trained on T00 for a few steps (seed 0)."""
    from trainer import task

    out = str(tmp_path_factory.mktemp("model") / "model0")
    meta = task.run(
        trainer_config(fixture_spec_path),
        synthetic_logs,
        stats_dir,
        out,
        hours=TRAIN_HOUR,
    )
    assert meta["steps"] == TRAIN_STEPS, meta
    return out
