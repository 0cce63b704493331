"""Two local pipeline runs of one hour at once: one version, one consistent record.

Each run is its own process calling ``pipeline.local.run_hour`` (kfp.local with the
SubprocessRunner, the Beam DirectRunner and real training), on one work directory and
one registry. Both train, both are blessed, both try to register the hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from beam_jobs import synthetic
from components.lib import registry
from trainer.contracts import storage

pytestmark = pytest.mark.e2e

HOUR = "2026-01-01T00"

_RUN = textwrap.dedent(
    """
    import json, sys
    from pipeline import local
    from trainer.config import load_config
    repo, logs, workdir = sys.argv[1:4]
    cfg = load_config(
        repo + "/specs/experiments/synthetic_hybrid.yaml",
        {"training.batch_size": 256, "training.epochs": 1},
    )
    spec = repo + "/specs/features/synthetic_hybrid.yaml"
    trainer = {**cfg.to_dict(), "feature_spec": spec}
    s = local.LocalSettings(logs=logs, workdir=workdir, feature_spec=spec,
                            trainer_config=trainer, min_value=0.0, max_regression=1.0)
    print(json.dumps(local.run_hour(sys.argv[4], s), sort_keys=True))
    """
)


def test_two_concurrent_runs_of_one_hour_register_once_and_agree(
    repo_root, tmp_path
) -> None:
    logs = str(tmp_path / "logs")
    synthetic.write_stream(
        logs, synthetic.SyntheticConfig(seed=5, events_per_hour=800), hours=2
    )
    work = str(tmp_path / "work")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, str(repo_root), logs, work, HOUR],
            cwd=repo_root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    records = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        records.append(json.loads(out.strip().splitlines()[-1]))

    reg = storage.join(work, "registry")
    (only,) = registry.list_versions(reg)
    assert registry.get_alias(reg) == only.version
    a, b = records
    assert a == b  # both runs report the one record that was kept
    kept = json.loads(storage.read_text(storage.join(work, "hours", f"{HOUR}.json")))
    assert kept == a
    assert kept["registered_version"] == only.version
    assert kept["serving_model"] == only.model_uri  # the registry's copy
    assert kept["metrics"] == only.metadata["metrics"]
    assert kept["size_bytes"] == only.metadata["size_bytes"]
    assert only.metadata["hour"] == HOUR
