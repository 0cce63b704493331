"""trainer.contracts.storage on a local directory and on a real fake-gcs-server bucket.

Every test runs twice through the ``root`` fixture: once under ``tmp_path`` and once
under ``gs://<fresh bucket>`` served on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import pytest

from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import storage


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("gcs_bucket") + "/prefix"


def test_write_read_exists_delete(root: str) -> None:
    uri = storage.join(root, "a", "b.txt")
    assert not storage.exists(uri)
    storage.write_text(uri, "héllo")
    assert storage.exists(uri)
    assert storage.read_text(uri) == "héllo"
    assert storage.read_bytes(uri) == "héllo".encode()
    storage.write_bytes(uri, b"\x00\x01")  # overwrite
    assert storage.read_bytes(uri) == b"\x00\x01"
    assert storage.exists(storage.join(root, "a"))  # a directory / prefix
    storage.delete(uri)
    assert not storage.exists(uri)


def test_list_files_is_recursive_sorted_and_full_uris(root: str) -> None:
    names = ["z.txt", "a/1.txt", "a/b/2.txt", "m.bin"]
    for n in names:
        storage.write_text(storage.join(root, *n.split("/")), n)
    got = storage.list_files(root)
    assert got == sorted(storage.join(root, *n.split("/")) for n in names)
    assert storage.list_files(storage.join(root, "a")) == [
        storage.join(root, "a", "1.txt"),
        storage.join(root, "a", "b", "2.txt"),
    ]
    assert len(storage.list_files(root, max_results=1)) == 1
    assert storage.list_files(storage.join(root, "nothing-here")) == []


def test_read_missing_raises_file_not_found_naming_uri(root: str) -> None:
    uri = storage.join(root, "missing.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        storage.read_bytes(uri)


def test_upload_and_download_dir_round_trip(root: str, tmp_path) -> None:
    src = tmp_path / "src"
    files = {"x.txt": b"x", "sub/y.bin": b"\xff" * 100, "sub/deeper/z.json": b"{}"}
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    dest = storage.join(root, "copy")
    written = storage.upload_dir(str(src), dest)
    assert sorted(written) == sorted(storage.join(dest, *r.split("/")) for r in files)
    out = tmp_path / "out"
    local = storage.download_dir(dest, str(out))
    assert len(local) == len(files)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data


def test_create_if_absent_only_first_call_wins(root: str) -> None:
    uri = storage.join(root, "lock", "owner")
    assert storage.create_if_absent(uri, b"first") is True
    assert storage.create_if_absent(uri, b"second") is False
    assert storage.read_bytes(uri) == b"first"


def test_create_if_absent_concurrent_exactly_one_winner(root: str) -> None:
    uri = storage.join(root, "race", "marker")
    n = 8
    barrier = threading.Barrier(n)

    def attempt(i: int) -> bool:
        barrier.wait()
        return storage.create_if_absent(uri, f"writer-{i}".encode())

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(attempt, range(n)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert storage.read_bytes(uri) == f"writer-{winner}".encode()


def test_absent_file_has_generation_zero_and_cas_zero_creates(root: str) -> None:
    uri = storage.join(root, "state.json")
    assert storage.read_with_generation(uri) == (b"", 0)
    storage.write_if_generation_match(uri, b"v1", 0)
    data, gen = storage.read_with_generation(uri)
    assert data == b"v1" and gen != 0
    with pytest.raises(storage.PreconditionFailed):
        storage.write_if_generation_match(uri, b"again", 0)  # no longer absent


def test_cas_with_stale_generation_raises(root: str) -> None:
    uri = storage.join(root, "state.json")
    storage.write_bytes(uri, b"v1")
    _, gen1 = storage.read_with_generation(uri)
    storage.write_if_generation_match(uri, b"v2", gen1)
    data, gen2 = storage.read_with_generation(uri)
    assert data == b"v2" and gen2 != gen1
    with pytest.raises(storage.PreconditionFailed, match="state.json"):
        storage.write_if_generation_match(uri, b"stale", gen1)
    assert storage.read_bytes(uri) == b"v2"
    assert storage.list_files(root) == [uri]  # no lock or temp files listed


def test_cas_concurrent_increments_lose_no_update(root: str) -> None:
    """Read-modify-write loops under CAS: every increment lands exactly once."""
    uri = storage.join(root, "counter")
    storage.write_bytes(uri, b"0")

    def increment() -> None:
        while True:
            data, gen = storage.read_with_generation(uri)
            try:
                storage.write_if_generation_match(uri, str(int(data) + 1).encode(), gen)
                return
            except storage.PreconditionFailed:
                continue

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: increment(), range(12)))
    assert storage.read_bytes(uri) == b"12"


def test_gcs_uri_without_object_is_rejected(request: pytest.FixtureRequest) -> None:
    bucket = request.getfixturevalue("gcs_bucket")
    with pytest.raises(ValueError, match="names a bucket"):
        storage.read_bytes(bucket)
    with pytest.raises(ValueError, match="no bucket"):
        storage.read_bytes("gs:///x")


def test_join_and_is_gcs() -> None:
    assert storage.join("gs://b/p", "x", "y") == "gs://b/p/x/y"
    assert storage.join("/tmp/a", "x") == os.path.join("/tmp/a", "x")
    assert storage.is_gcs("gs://b") and not storage.is_gcs("/gs://b")


def test_local_dir_problem_names_the_file_in_the_way_and_creates_nothing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fresh = tmp_path / "new" / "deeper"
    assert storage.local_dir_problem(str(fresh)) is None
    assert not (tmp_path / "new").exists()  # checked, not created
    assert storage.local_dir_problem(str(tmp_path)) is None
    assert storage.local_dir_problem("gs://bucket/any/where") is None
    for path in (a_file, a_file / "below"):
        problem = storage.local_dir_problem(str(path))
        assert problem == f"{a_file} is a file, not a directory"
