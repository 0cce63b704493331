"""Every hostile event file is read without an exception and fully accounted for.

The expected counts come from tests/hostile/corpus.py, built by construction; the
readers under test are the ones the stats job, the transform step and the trainer use.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.hostile import corpus
from trainer.contracts import events

KINDS = corpus.event_kinds()


def _write(root: pathlib.Path, kind: corpus.Kind) -> str:
    path = pathlib.Path(events.partition_path(str(root), corpus.HOUR)) / kind.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(kind.data)
    return str(path)


def test_the_corpus_has_at_least_40_kinds() -> None:
    assert len(KINDS) >= 40
    assert len([k for k in KINDS if k.dead]) >= 30  # most kinds are really hostile


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_kind_is_accounted_for(tmp_path: pathlib.Path, kind: corpus.Kind) -> None:
    path = _write(tmp_path, kind)
    files, skipped = events.scan_partition(str(tmp_path), corpus.HOUR)
    if kind.skipped:
        assert files == [] and [s.source for s in skipped] == [path]
        return
    assert files == [path] and skipped == []
    result = events.read_file_counted(path, corpus.SPEC)  # must not raise
    assert result.balanced
    assert result.read == kind.read
    if kind.unknown_rows:
        [letter] = result.dead
        assert letter.line == 0 and "rows unknown" in letter.reason
        assert result.good == 0
        return
    assert result.good + result.dead_rows == kind.read  # read = good + dead
    if kind.good is not None:
        assert (result.good, result.dead_rows) == (kind.good, kind.dead)
    for d in result.dead:
        assert d.source == path and 1 <= d.line and d.reason
        json.loads(d.to_json())  # every dead letter serialises (no lone surrogates)
    # the rows that survive are valid events of the spec's schema
    assert result.table.schema == events.schema_for(corpus.SPEC)


def test_dead_letters_name_the_line(tmp_path: pathlib.Path) -> None:
    """Line numbers follow ``\\n`` framing: U+2028 in a string shifts nothing."""
    tricky = json.dumps(corpus.record(0, user="a\u2028b"), ensure_ascii=False)
    data = b"\n".join([tricky.encode(), b"{bad", corpus.line(1), b"caf\xe9"]) + b"\n"
    path = tmp_path / "dt=2026-01-01" / "hour=00" / "p.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    result = events.read_file_counted(str(path), corpus.SPEC)
    assert [(d.line, d.reason.split(":")[0]) for d in result.dead] == [
        (2, "bad JSON"),
        (4, "invalid UTF-8 at byte 3"),
    ]
    assert result.table["user"].to_pylist() == ["a\u2028b", "u1"]


def test_invalid_utf8_ids_stay_distinct_dead_letters(tmp_path: pathlib.Path) -> None:
    """caf\\xe9, caf\\xe8, caf\\xff never collapse into one U+FFFD id."""
    [kind] = [k for k in KINDS if k.name == "invalid_utf8_ids"]
    result = events.read_file_counted(_write(tmp_path, kind), corpus.SPEC)
    assert "\ufffd" not in "".join(result.table["user"].to_pylist())
    shown = sorted(d.record for d in result.dead)
    assert len(set(shown)) == 3 and all("\\x" in s for s in shown)


def test_trainer_reader_accounts_for_a_mixed_partition(tmp_path, caplog) -> None:
    """read_partition (the trainer's and transform's reader) on all kinds at once."""
    for kind in KINDS:
        _write(tmp_path, kind)
    with caplog.at_level("WARNING", logger="trainer.contracts.events"):
        table, dead = events.read_partition(str(tmp_path), corpus.HOUR, corpus.SPEC)
    known = [k for k in KINDS if not k.skipped and k.good is not None]
    expected_good = sum(k.good for k in known)
    corrupt = [k for k in KINDS if not k.skipped and k.good is None and k.read]
    corrupt_rows = sum(k.read for k in corrupt)
    got_dead = events.dead_count(dead)
    assert expected_good <= table.num_rows <= expected_good + corrupt_rows
    assert table.num_rows + got_dead == sum(k.read or 0 for k in KINDS if not k.skipped)
    assert sum(1 for d in dead if "rows unknown" in d.reason) == len(
        [k for k in KINDS if k.unknown_rows]
    )
    for kind in KINDS:
        if kind.skipped:
            assert kind.filename.rsplit("/", 1)[-1] in caplog.text


GCS_KINDS = [
    "invalid_utf8_ids",
    "u2028_u2029_u0085_in_strings",
    "truncated_parquet",
    "corrupt_data_page",
    "upper_case_jsonl",
    "parquet_snappy",
    "nested_retry_copy",
    "unknown_extension",
]


def test_the_same_rules_on_gcs(gcs_bucket: str) -> None:
    """On gs:// (a real fake-gcs-server): same file rules, same counts."""
    from beam_jobs import feature_stats
    from trainer.contracts import storage

    root = gcs_bucket + "/logs"
    base = events.partition_path(root, corpus.HOUR)
    kinds = [k for k in KINDS if k.name in GCS_KINDS]
    for kind in kinds:
        storage.write_bytes(storage.join(base, kind.filename), kind.data)
    files, skipped = events.scan_partition(root, corpus.HOUR)
    assert sorted(s.source.rsplit("/", 1)[-1] for s in skipped) == [
        "part-00000.jsonl",
        "part.csv",
    ]
    by_name = {k.filename: k for k in kinds}
    for path in files:
        kind = by_name[path[len(base) + 1 :]]
        result = events.read_file_counted(path, corpus.SPEC)
        assert result.read == kind.read and result.balanced, kind.name
        if kind.good is not None:
            assert (result.good, result.dead_rows) == (kind.good, kind.dead)
    out = gcs_bucket + "/stats"
    feature_stats._claim(out, [corpus.HOUR])  # create-only on GCS too
    with pytest.raises(FileExistsError, match="claimed by another stats run"):
        feature_stats._claim(out, [corpus.HOUR])
