"""components.lib.hour_record: racing runs of one hour keep one record naming the
registered model, on a local directory and on a real fake-gcs-server bucket."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from components.lib import hour_record, registry
from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import storage

HOUR = "2026-01-01T05"
_REPO = pathlib.Path(__file__).resolve().parents[3]

# The tail of pipeline.local.run_hour, in its own process: register (if blessed),
# then write the hour record from the registry.
_RUN_TAIL = textwrap.dedent(
    """
    import json, sys
    from components.lib import hour_record, registry
    from trainer.contracts import storage
    workdir, model, name, blessed, endpoint, go = sys.argv[1:7]
    if endpoint:
        from tests.fixtures.gcs import _make_client
        storage.set_gcs_client(_make_client(endpoint))
    import os, time
    while not os.path.exists(go):
        time.sleep(0.005)
    reg = storage.join(workdir, "registry")
    metrics = {"auc": 0.6 if name == "a" else 0.7}
    if blessed == "1":
        registry.register(
            reg, model, {"metrics": metrics, "size_bytes": len(name), "hour": sys.argv[7]},
            idempotency_key=sys.argv[7],
        )
    own = {"hour": sys.argv[7], "serving_model": model, "metrics": metrics,
           "blessed": blessed == "1", "run": name}
    path = storage.join(workdir, "hours", sys.argv[7] + ".json")
    kept = hour_record.publish(path, hour_record.with_registration(own, reg, sys.argv[7]))
    print(json.dumps(kept, sort_keys=True))
    """
)


@pytest.fixture(params=["local", "gcs"])
def target(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str]:
    if request.param == "local":
        return str(tmp_path / "work"), ""
    bucket = request.getfixturevalue("gcs_bucket")
    return bucket + "/work", request.getfixturevalue("gcs_server").endpoint


def _model(tmp_path: pathlib.Path, name: str) -> str:
    d = tmp_path / "models" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "saved_model.pb").write_text(f"model {name}")
    return str(d)


def _runs(target, tmp_path, runs: list[tuple[str, bool]]) -> list[dict]:
    workdir, endpoint = target
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_TAIL, workdir, _model(tmp_path, name)]
            + [name, "1" if blessed else "0", endpoint, str(go), HOUR],
            cwd=_REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, blessed in runs
    ]
    go.write_text("")
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_two_racing_runs_of_one_hour_keep_one_record_naming_the_registered_model(
    target, tmp_path
):
    a, b = _runs(target, tmp_path, [("a", True), ("b", True)])
    workdir = target[0]
    (only,) = registry.list_versions(storage.join(workdir, "registry"))
    assert a == b  # both runs report the same record
    kept = json.loads(storage.read_text(storage.join(workdir, "hours", f"{HOUR}.json")))
    assert kept == a
    assert kept["registered_version"] == only.version
    assert kept["serving_model"] == only.model_uri
    assert kept["metrics"] == only.metadata["metrics"]  # the winner's, not the loser's
    winner = storage.read_text(storage.join(only.model_uri, "saved_model.pb"))
    assert winner in ("model a", "model b")
    assert kept["metrics"]["auc"] == (0.6 if winner == "model a" else 0.7)


def test_a_record_without_a_registration_is_replaced_by_one_with_it(target, tmp_path):
    workdir, _ = target
    path = storage.join(workdir, "hours", f"{HOUR}.json")
    unblessed = hour_record.publish(
        path,
        hour_record.with_registration(
            {"hour": HOUR, "serving_model": "x", "blessed": False},
            storage.join(workdir, "registry"),
            HOUR,
        ),
    )
    assert unblessed["registered_version"] is None
    assert unblessed["candidate_model"] == "x"
    (later,) = _runs(target, tmp_path, [("a", True)])
    assert later["registered_version"] == 1
    assert json.loads(storage.read_text(path)) == later
    # and a later run that was not blessed does not take the registration away
    (again,) = _runs(target, tmp_path / "models", [("b", False)])
    assert again == later
