"""components.lib.registry on a local directory and on a real fake-gcs-server bucket."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from components.lib import registry
from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import storage


@pytest.fixture(params=["local", "gcs"])
def reg(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "registry")
    return request.getfixturevalue("gcs_bucket") + "/registry"


def _model(tmp_path, name: str, payload: str = "weights") -> str:
    d = tmp_path / "models" / name
    (d / "variables").mkdir(parents=True, exist_ok=True)
    (d / "saved_model.pb").write_text(f"{name}:{payload}")
    (d / "variables" / "variables.index").write_text(f"{name}:index")
    return str(d)


def test_register_creates_versions_copies_files_and_moves_production(reg, tmp_path):
    assert registry.get_production(reg) is None
    assert registry.list_versions(reg) == []
    v1 = registry.register(
        reg, _model(tmp_path, "a"), {"hour": "2026-01-01T00"}, idempotency_key="h00"
    )
    v2 = registry.register(
        reg,
        _model(tmp_path, "b"),
        {"hour": "2026-01-01T01", "metrics": {"auc": 0.7}},
        idempotency_key="h01",
        checkpoint_uri=_model(tmp_path, "ckpt"),
    )
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.parent_version, v2.parent_version) == (None, 1)
    assert registry.get_production(reg) == v2
    assert [v.version for v in registry.list_versions(reg)] == [1, 2]
    assert (
        storage.read_text(storage.join(v2.model_uri, "saved_model.pb")) == "b:weights"
    )
    assert (
        storage.read_text(storage.join(v2.model_uri, "variables", "variables.index"))
        == "b:index"
    )
    assert (
        storage.read_text(storage.join(v2.checkpoint_uri, "saved_model.pb"))
        == "ckpt:weights"
    )
    assert v1.checkpoint_uri is None
    assert v2.metadata == {"hour": "2026-01-01T01", "metrics": {"auc": 0.7}}
    assert registry.get_version(reg, 2) == v2


def test_register_is_idempotent_per_key(reg, tmp_path):
    first = registry.register(reg, _model(tmp_path, "a"), {"n": 1}, idempotency_key="h")
    again = registry.register(reg, _model(tmp_path, "b"), {"n": 2}, idempotency_key="h")
    assert again == first
    assert [v.version for v in registry.list_versions(reg)] == [1]
    assert (
        storage.read_text(storage.join(first.model_uri, "saved_model.pb"))
        == "a:weights"
    )
    alias = json.loads(
        storage.read_text(storage.join(reg, "aliases", "production.json"))
    )
    assert alias["history"] == [1]  # the re-run did not move the alias again


def test_concurrent_registrations_get_distinct_versions_and_end_on_the_newest_key(
    reg, tmp_path
):
    n = 6
    models = [_model(tmp_path, f"m{i}") for i in range(n)]
    barrier = threading.Barrier(n)

    def one(i: int) -> registry.ModelVersion:
        barrier.wait()
        return registry.register(reg, models[i], {"i": i}, idempotency_key=f"k{i}")

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))

    assert sorted(v.version for v in results) == list(range(1, n + 1))
    for v in results:  # each version holds the model of the registration that got it
        i = v.metadata["i"]
        assert storage.read_text(storage.join(v.model_uri, "saved_model.pb")) == (
            f"m{i}:weights"
        )
    newest = next(v for v in results if v.idempotency_key == f"k{n - 1}")
    assert registry.get_production(reg) == newest
    _assert_history_moves_forward(reg)


def _alias_record(reg: str) -> dict:
    return json.loads(
        storage.read_text(storage.join(reg, "aliases", "production.json"))
    )


def _assert_history_moves_forward(reg: str) -> list[int]:
    """No move recorded twice, and every move went to a later order key."""
    history = _alias_record(reg)["history"]
    assert len(history) == len(set(history)), history
    keys = [registry.get_version(reg, n).order_key for n in history]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), keys
    return history


def test_concurrent_registrations_with_one_key_make_one_version(reg, tmp_path):
    n = 4
    model = _model(tmp_path, "same")
    barrier = threading.Barrier(n)

    def one(_: int) -> registry.ModelVersion:
        barrier.wait()
        return registry.register(reg, model, {}, idempotency_key="2026-01-01T05")

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))

    assert len({v.version for v in results}) == 1
    assert len({v.model_uri for v in results}) == 1
    assert len(registry.list_versions(reg)) == 1
    assert registry.get_production(reg) == results[0]
    assert _alias_record(reg)["history"] == [results[0].version]


def test_failed_model_copy_leaves_registry_consistent_and_rerun_completes(
    reg, tmp_path
):
    good = registry.register(reg, _model(tmp_path, "good"), {}, idempotency_key="h00")
    broken = _model(tmp_path, "broken")
    # A dangling link: listing sees it, reading it fails half-way through the copy.
    os.symlink(str(tmp_path / "missing"), os.path.join(broken, "zz_shard"))

    with pytest.raises(FileNotFoundError):
        registry.register(reg, broken, {}, idempotency_key="h01")

    assert registry.list_versions(reg) == [good]
    assert registry.get_production(reg) == good
    # Some files of the failed attempt were written, but no marker: invisible.
    assert any(
        "saved_model.pb" in f
        for f in storage.list_files(storage.join(reg, "versions", "2"))
    )
    os.unlink(os.path.join(broken, "zz_shard"))
    retried = registry.register(reg, broken, {"retry": True}, idempotency_key="h01")
    assert retried.version == 2
    assert registry.get_production(reg) == retried
    other = registry.register(reg, _model(tmp_path, "next"), {}, idempotency_key="h02")
    assert other.version == 3


def test_rerun_completes_an_alias_move_that_did_not_happen(reg, tmp_path):
    model = _model(tmp_path, "a")
    staged = registry.register(reg, model, {}, idempotency_key="h", alias=None)
    assert registry.get_production(reg) is None  # as if it crashed before the CAS
    assert registry.register(reg, model, {}, idempotency_key="h") == staged
    assert registry.get_production(reg) == staged


def test_set_alias_rolls_back_and_rejects_unknown_versions(reg, tmp_path):
    for i in range(3):
        registry.register(reg, _model(tmp_path, f"m{i}"), {}, idempotency_key=f"k{i}")
    registry.set_alias(reg, registry.PRODUCTION, 1)
    assert registry.get_production(reg).version == 1
    registry.set_alias(reg, "canary", 3)
    assert registry.get_alias(reg, "canary") == 3
    with pytest.raises(registry.RegistryError, match="v9"):
        registry.set_alias(reg, registry.PRODUCTION, 9)


def test_register_rejects_empty_model_dir_and_key(reg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no files"):
        registry.register(reg, str(empty), {}, idempotency_key="k")
    with pytest.raises(ValueError, match="idempotency_key"):
        registry.register(reg, str(empty), {}, idempotency_key="")
    assert registry.list_versions(reg) == []


def test_a_late_older_hour_registers_but_never_moves_production_back(reg, tmp_path):
    newer = registry.register(
        reg, _model(tmp_path, "h05"), {}, idempotency_key="2026-01-01T05"
    )
    older = registry.register(
        reg, _model(tmp_path, "h04"), {}, idempotency_key="2026-01-01T04"
    )
    assert (newer.version, older.version) == (1, 2)
    assert registry.get_version(reg, 2) == older  # registered and visible
    assert registry.get_production(reg) == newer  # but production stays on T05
    assert _alias_record(reg)["history"] == [1]
    # The operator may still roll back explicitly; a re-run never undoes that.
    registry.set_alias(reg, registry.PRODUCTION, older.version)
    assert registry.get_production(reg) == older
    registry.register(reg, _model(tmp_path, "h05"), {}, idempotency_key="2026-01-01T05")
    assert registry.get_production(reg) == older
    assert registry.version_for_key(reg, "2026-01-01T05") == newer
    assert registry.version_for_key(reg, "2026-01-01T09") is None


def test_order_key_decides_over_the_idempotency_key(reg, tmp_path):
    a = registry.register(
        reg, _model(tmp_path, "a"), {}, idempotency_key="zz-run", order_key="01"
    )
    b = registry.register(
        reg, _model(tmp_path, "b"), {}, idempotency_key="aa-run", order_key="02"
    )
    assert (a.order_key, b.order_key) == ("01", "02")
    assert registry.get_production(reg) == b
    assert _alias_record(reg)["order_key"] == "02"


def test_alias_written_before_order_keys_reads_the_marker(reg, tmp_path):
    registry.register(reg, _model(tmp_path, "a"), {}, idempotency_key="2026-01-01T03")
    uri = storage.join(reg, "aliases", "production.json")
    old_style = {"version": 1, "history": [1]}  # as older registries wrote it
    data, generation = storage.read_with_generation(uri)
    storage.write_if_generation_match(uri, json.dumps(old_style).encode(), generation)
    registry.register(reg, _model(tmp_path, "b"), {}, idempotency_key="2026-01-01T02")
    assert registry.get_alias(reg) == 1
    registry.register(reg, _model(tmp_path, "c"), {}, idempotency_key="2026-01-01T04")
    assert registry.get_alias(reg) == 3


# ------------------------------------------------------- real processes, with kills

_REPO = pathlib.Path(__file__).resolve().parents[3]
_HOURS = [f"2026-01-01T{h:02d}" for h in range(8)]


@pytest.fixture(params=["local", "gcs"])
def target(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str]:
    """(registry URI, fake-gcs endpoint or "") for the worker processes."""
    if request.param == "local":
        return str(tmp_path / "registry"), ""
    bucket = request.getfixturevalue("gcs_bucket")
    return bucket + "/registry", request.getfixturevalue("gcs_server").endpoint


def _worker(target, model: str, key: str, *extra: str) -> subprocess.Popen:
    reg, endpoint = target
    cmd = [sys.executable, "-m", "tests.components.lib.registry_worker"]
    cmd += ["--registry", reg, "--model", model, "--key", key, *extra]
    if endpoint:
        cmd += ["--gcs-endpoint", endpoint]
    return subprocess.Popen(
        cmd, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: pathlib.Path, procs: list[subprocess.Popen]) -> None:
    for _ in range(12000):  # bounded: 120 s
        if path.exists():
            return
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(p.stderr.read())
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def _race(target, tmp_path, models: list[str], keys: list[str]) -> list[dict]:
    """Starts one worker per (model, key), releases them at once, returns versions."""
    sync = pathlib.Path(tempfile.mkdtemp(dir=tmp_path, prefix="race-"))
    go = sync / "go"
    ready = [sync / f"ready-{i}" for i in range(len(keys))]
    procs = [
        _worker(target, m, k, "--ready", str(r), "--go", str(go))
        for m, k, r in zip(models, keys, ready, strict=True)
    ]
    for r in ready:
        _wait_for(r, procs)
    go.write_text("")
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _kill_at(target, tmp_path, model: str, key: str, point: str) -> None:
    paused = tmp_path / f"paused-{key}-{point}"
    proc = _worker(target, model, key, "--pause-at", point, "--paused", str(paused))
    try:
        _wait_for(paused, [proc])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_processes_racing_eight_hours_leave_production_on_the_newest(target, tmp_path):
    models = [_model(tmp_path, f"m{i}") for i in range(len(_HOURS))]
    results = _race(target, tmp_path, models, _HOURS)
    reg = target[0]
    assert sorted(r["version"] for r in results) == list(range(1, 9))
    production = registry.get_production(reg)
    assert production.idempotency_key == _HOURS[-1]
    assert storage.read_text(storage.join(production.model_uri, "saved_model.pb")) == (
        "m7:weights"
    )
    _assert_history_moves_forward(reg)


def test_processes_racing_one_hour_make_one_version_and_one_move(target, tmp_path):
    model = _model(tmp_path, "same")
    results = _race(target, tmp_path, [model] * 8, [_HOURS[3]] * 8)
    reg = target[0]
    assert len({r["version"] for r in results}) == 1
    assert len({r["model_uri"] for r in results}) == 1
    (only,) = registry.list_versions(reg)
    assert only.version == results[0]["version"]
    assert _alias_record(reg)["history"] == [only.version]


def test_killed_registrations_retry_forward_and_never_back(target, tmp_path):
    reg = target[0]
    # Killed after the marker, before the alias: visible, but not production.
    _kill_at(target, tmp_path, _model(tmp_path, "h00"), _HOURS[0], "alias")
    assert [v.version for v in registry.list_versions(reg)] == [1]
    assert registry.get_production(reg) is None
    # Killed after reserving v2 for hour 02, before copying anything: invisible.
    _kill_at(target, tmp_path, _model(tmp_path, "h02"), _HOURS[2], "publish")
    assert [v.version for v in registry.list_versions(reg)] == [1]
    # Hour 01 registers normally and becomes production.
    h01 = registry.register(reg, _model(tmp_path, "h01"), {}, idempotency_key=_HOURS[1])
    assert registry.get_production(reg) == h01
    # The stale retry of hour 00 completes its registration but not the alias move.
    (retried,) = _race(target, tmp_path, [_model(tmp_path, "h00")], [_HOURS[0]])
    assert retried["version"] == 1
    assert registry.get_production(reg) == h01
    # The retry of hour 02 completes its reserved version and moves forward.
    (h02,) = _race(target, tmp_path, [_model(tmp_path, "h02")], [_HOURS[2]])
    assert h02["version"] == 2
    assert registry.get_production(reg).version == 2
    assert _assert_history_moves_forward(reg) == [h01.version, 2]


def test_many_rounds_of_racing_threads_never_record_a_move_twice(reg, tmp_path):
    """The race the issue saw in 2 of 19 rounds ([1, 1]): now checked 12 times."""
    n = 8
    model = _model(tmp_path, "same")
    for round_ in range(12):
        where = storage.join(reg, f"round-{round_}")
        hours = (_HOURS[3], _HOURS[round_ % 8])  # two hours racing (or one)
        barrier = threading.Barrier(n)

        def one(i: int, where=where, hours=hours, barrier=barrier):
            barrier.wait()
            return registry.register(where, model, {}, idempotency_key=hours[i % 2])

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            list(pool.map(one, range(n)))
        history = _assert_history_moves_forward(where)
        assert registry.get_production(where).idempotency_key == max(hours)
        assert len(registry.list_versions(where)) == len(set(hours))
        assert len(history) <= 2
