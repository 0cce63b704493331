"""components.lib.registry on a local directory and on a real fake-gcs-server bucket."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading

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
    (d / "variables").mkdir(parents=True)
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


def test_concurrent_registrations_get_distinct_versions_and_no_lost_alias_update(
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
    alias = json.loads(
        storage.read_text(storage.join(reg, "aliases", "production.json"))
    )
    assert sorted(alias["history"]) == list(range(1, n + 1))  # every move recorded once
    assert alias["version"] == alias["history"][-1]  # ends on the last CAS winner
    assert registry.get_production(reg).version == alias["history"][-1]


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
