"""Racing trainers claim one output directory: exactly one of several writers with
different settings wins (``request.json`` is created create-only), on a local path
and on the real fake-gcs-server. Each writer is its own process."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer import task
from trainer.contracts import storage

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]

_CLAIM = textwrap.dedent(
    """
    import os, sys, time
    from trainer import task
    from trainer.config import ConfigError
    from trainer.contracts import storage
    out, seed, endpoint, go, ready = sys.argv[1:6]
    if endpoint:
        from tests.fixtures.gcs import _make_client
        storage.set_gcs_client(_make_client(endpoint))
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    try:
        task._claim_out_dir(out, {"config": {"seed": int(seed)}, "train": "logs"})
    except ConfigError as e:
        print("refused", e)
    else:
        print("claimed")
    """
)


@pytest.fixture(params=["local", "gcs"])
def target(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str]:
    if request.param == "local":
        return str(tmp_path / "out"), ""
    bucket = request.getfixturevalue("gcs_bucket")
    return bucket + "/out", request.getfixturevalue("gcs_server").endpoint


def _race(target, tmp_path, seeds: list[int]) -> list[str]:
    out, endpoint = target
    sync = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    go = sync / "go"
    ready = [sync / f"ready-{i}" for i in range(len(seeds))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM, out, str(seed), endpoint, str(go), str(r)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed, r in zip(seeds, ready, strict=True)
    ]
    for _ in range(12000):  # every process imported and waiting (bounded: 120 s)
        if all(r.exists() for r in ready) or any(p.poll() for p in procs):
            break
        time.sleep(0.01)
    go.write_text("")
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        results.append(stdout.strip())
    return results


@pytest.mark.parametrize("round_", range(2))
def test_one_of_eight_writers_with_other_settings_claims_the_output(
    target, tmp_path, round_
) -> None:
    out = storage.join(target[0], str(round_))
    results = _race((out, target[1]), tmp_path, list(range(8)))
    claimed = [i for i, r in enumerate(results) if r == "claimed"]
    assert len(claimed) == 1, results
    assert all(
        "holds a run with other settings" in r for r in results if r != "claimed"
    )
    stored = storage.read_text(storage.join(out, task.REQUEST_FILE))
    assert f'"seed": {claimed[0]}' in stored  # the winner's request is the one kept


def test_writers_with_the_same_settings_all_proceed(target, tmp_path) -> None:
    assert _race(target, tmp_path, [7, 7, 7]) == ["claimed"] * 3
