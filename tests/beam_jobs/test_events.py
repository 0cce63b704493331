"""The event-log contract: hours, partitions, validation, dead letters, round trips."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest

from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import events, storage
from trainer.contracts.events import DeadLetter, MissingPartitionError
from trainer.contracts.features import FeatureSpec

SPEC = FeatureSpec.from_dict(
    {
        "name": "tiny",
        "features": [
            {"name": "user_id"},
            {"name": "item_id"},
            {"name": "price", "kind": "numeric"},
        ],
    }
)
TS = 1_700_000_000  # 2023-11-14T22:13:20Z
HOUR = dt.datetime(2023, 11, 14, 22, tzinfo=dt.UTC)


def _row(**kw) -> dict:
    row = {"event_ts": TS, "label": 1, "user_id": "u1", "item_id": "i1", "price": 9.5}
    row.update(kw)
    return row


def _table(rows: list[dict]) -> pa.Table:
    return events.rows_to_table(
        [events.validate_record(r, SPEC)[0] for r in rows], SPEC
    )


# ----------------------------------------------------------------------------- hours


def test_parse_and_format_hour() -> None:
    h = events.parse_hour("2026-01-01T05")
    assert h == dt.datetime(2026, 1, 1, 5, tzinfo=dt.UTC)
    assert events.format_hour(h) == "2026-01-01T05"
    est = dt.timezone(dt.timedelta(hours=-5))
    assert events.format_hour(dt.datetime(2026, 1, 1, 0, tzinfo=est)) == "2026-01-01T05"


@pytest.mark.parametrize(
    "bad", ["2026-01-01", "2026-01-01T5:00", "2026-13-01T00", "x", ""]
)
def test_parse_hour_rejects_bad_text(bad: str) -> None:
    with pytest.raises(ValueError, match=r"invalid hour .*expected YYYY-MM-DDTHH"):
        events.parse_hour(bad)


def test_parse_hour_range_is_inclusive_and_crosses_days() -> None:
    hours = events.parse_hour_range("2026-01-01T22:2026-01-02T01")
    assert [events.format_hour(h) for h in hours] == [
        "2026-01-01T22",
        "2026-01-01T23",
        "2026-01-02T00",
        "2026-01-02T01",
    ]
    assert events.parse_hour_range("2026-03-01T07") == [
        events.parse_hour("2026-03-01T07")
    ]
    with pytest.raises(ValueError, match="end is before start"):
        events.parse_hour_range("2026-01-02T00:2026-01-01T23")


def test_partition_paths_local_and_gcs() -> None:
    assert events.partition_path("/r", HOUR) == "/r/dt=2023-11-14/hour=22"
    assert events.partition_path("gs://b/p", HOUR) == "gs://b/p/dt=2023-11-14/hour=22"
    assert (
        events.hour_of_path("gs://b/p/dt=2023-11-14/hour=22/part-00000.parquet") == HOUR
    )
    assert events.hour_of_path("/r/_dead_letter/x.jsonl") is None


# ------------------------------------------------------------------------ JSON lines

JSON_LINES = [
    json.dumps(_row()),  # 1 valid
    '{"event_ts": 1700000000, "label": 1,',  # 2 bad JSON
    json.dumps([1, 2]),  # 3 not an object
    json.dumps(_row(label=None)),  # 4 missing label
    json.dumps(_row(label=2)),  # 5 label 2
    '{"event_ts": 1700000000, "label": 0, "price": NaN}',  # 6 NaN
    '{"event_ts": 1700000000, "label": 0, "price": Infinity}',  # 7 inf
    json.dumps(_row(price=1e300)),  # 8 absurd
    json.dumps(_row(event_ts=946684799)),  # 9 1999-12-31
    json.dumps(_row(event_ts="1700000000")),  # 10 ts as string
    json.dumps(_row(user_id=["a"])),  # 11 categorical list
    json.dumps(_row(price="cheap")),  # 12 numeric string
    "",  # 13 blank: skipped, not a dead letter
    json.dumps(_row(user_id=42, item_id="", price=None, label=False)),  # 14 valid
    json.dumps({"label": 1}),  # 15 no timestamp
    json.dumps(_row(user_id="x" * 2000)),  # 16 too long
    json.dumps(_row(event_ts=4102444800)),  # 17 year 2100
    json.dumps(_row(label=True, event_ts=TS + 0.9)),  # 18 valid, ts floored
]
EXPECTED_DEAD = {
    2: "bad JSON",
    3: "not an object",
    4: "missing label 'label'",
    5: "label must be 0 or 1, got 2",
    6: "price: absurd numeric value nan",
    7: "price: absurd numeric value inf",
    8: "price: absurd numeric value 1e+300",
    9: "outside [2000, 2100)",
    10: "event_ts: not a number",
    11: "user_id: categorical value must be a string",
    12: "price: numeric value must be a number",
    15: "missing timestamp field 'event_ts'",
    16: "user_id: value longer than 1024",
    17: "outside [2000, 2100)",
}


def test_parse_json_lines_dead_letters_and_valid_rows() -> None:
    table, dead = events.parse_json_lines(JSON_LINES, SPEC, "gs://b/f.jsonl")
    assert {d.line: d.reason for d in dead}.keys() == EXPECTED_DEAD.keys()
    for d in dead:
        assert EXPECTED_DEAD[d.line] in d.reason, (d.line, d.reason)
        assert d.source == "gs://b/f.jsonl"
        assert d.record == JSON_LINES[d.line - 1][:2000]
    assert table.schema == events.schema_for(SPEC)
    assert table.to_pylist() == [
        {"event_ts": TS, "label": 1.0, "user_id": "u1", "item_id": "i1", "price": 9.5},
        {"event_ts": TS, "label": 0.0, "user_id": "42", "item_id": None, "price": None},
        {"event_ts": TS, "label": 1.0, "user_id": "u1", "item_id": "i1", "price": 9.5},
    ]


def test_parse_json_lines_first_line_offset() -> None:
    _, dead = events.parse_json_lines(
        ["{", json.dumps(_row())], SPEC, "f", first_line=10
    )
    assert [d.line for d in dead] == [10]


def test_dead_letter_json_round_trip(tmp_path) -> None:
    dead = [DeadLetter("f", 3, "bad", "{"), DeadLetter("g", 0, "x", "")]
    uri = str(tmp_path / "dl" / "d.jsonl")
    events.write_dead_letters(uri, dead)
    lines = storage.read_text(uri).splitlines()
    assert [DeadLetter(**json.loads(s)) for s in lines] == dead
    events.write_dead_letters(uri, [])
    assert storage.read_text(uri) == ""


# ----------------------------------------------------------------------- tables


def test_validate_table_flags_rows_and_keeps_valid() -> None:
    table = pa.table(
        {
            "event_ts": pa.array([TS, None, 5, TS, TS, TS, TS, TS + 1], pa.int64()),
            "label": pa.array([1, 0, 0, 2, None, 0, 0, 0], pa.int64()),
            "user_id": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.int64()),  # int -> str
            "price": [1.0, 2.0, 3.0, 4.0, 5.0, math.nan, 1e300, None],
        }
    )
    clean, dead = events.validate_table(table, SPEC, "f.parquet")
    assert [(d.line, d.reason) for d in dead] == [
        (2, "missing timestamp field 'event_ts'"),
        (3, "event_ts outside [2000, 2100)"),
        (4, "label: label must be 0 or 1"),
        (5, "missing label 'label'"),
        (6, "price: absurd numeric value"),
        (7, "price: absurd numeric value"),
    ]
    assert json.loads(dead[0].record)["user_id"] == 2
    assert clean.schema == events.schema_for(SPEC)
    assert clean.to_pylist() == [
        {"event_ts": TS, "label": 1.0, "user_id": "1", "item_id": None, "price": 1.0},
        {
            "event_ts": TS + 1,
            "label": 0.0,
            "user_id": "8",
            "item_id": None,
            "price": None,
        },
    ]


def test_validate_table_long_string_and_empty_is_missing() -> None:
    table = pa.table(
        {"event_ts": [TS, TS], "label": [0.0, 1.0], "user_id": ["", "y" * 1025]}
    )
    clean, dead = events.validate_table(table, SPEC, "f")
    assert [d.line for d in dead] == [2] and "longer than 1024" in dead[0].reason
    assert clean["user_id"].to_pylist() == [None]


def test_validate_table_float_and_timestamp_times() -> None:
    table = pa.table(
        {
            "event_ts": pa.array([TS + 0.7], pa.float64()),
            "label": pa.array([True]),
        }
    )
    clean, dead = events.validate_table(table, SPEC, "f")
    assert not dead and clean["event_ts"].to_pylist() == [TS]
    stamps = pa.array(
        [dt.datetime.fromtimestamp(TS, dt.UTC)], pa.timestamp("ms", "UTC")
    )
    clean, dead = events.validate_table(
        pa.table({"event_ts": stamps, "label": [1]}), SPEC, "f"
    )
    assert not dead and clean["event_ts"].to_pylist() == [TS]


@pytest.mark.parametrize(
    "columns,reason",
    [
        ({"event_ts": [TS, TS]}, "missing column 'label'"),
        ({"label": [0, 1]}, "missing column 'event_ts'"),
        (
            {"event_ts": [TS, TS], "label": [0, 1], "user_id": [1.5, 2.5]},
            "column type error: user_id: categorical column has type double",
        ),
        (
            {"event_ts": [TS, TS], "label": [0, 1], "price": ["a", "b"]},
            "column type error: price: numeric column has type string",
        ),
        ({"event_ts": ["x", "y"], "label": [0, 1]}, "column type error"),
    ],
)
def test_validate_table_rejects_whole_file(columns: dict, reason: str) -> None:
    clean, dead = events.validate_table(pa.table(columns), SPEC, "bad.parquet")
    assert clean.num_rows == 0 and clean.schema == events.schema_for(SPEC)
    assert [d.line for d in dead] == [1, 2]
    assert all(d.reason.startswith(reason) and d.source == "bad.parquet" for d in dead)


# ------------------------------------------------------------------------------ I/O


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "events")
    return request.getfixturevalue("gcs_bucket") + "/events"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_write_read_partition_round_trip(root: str, fmt: str) -> None:
    rows = [_row(), _row(user_id=None, price=None, label=0), _row(item_id="ü")]
    table = _table(rows)
    uri = events.write_partition(root, HOUR, table, fmt=fmt)
    assert uri == storage.join(root, "dt=2023-11-14", "hour=22", f"part-00000.{fmt}")
    events.write_partition(root, HOUR, table.slice(0, 1), fmt=fmt, part=1)
    storage.write_text(storage.join(root, "_dead_letter", "x.jsonl"), "{}\n")
    got, dead = events.read_partition(root, HOUR, SPEC)
    assert dead == []
    assert got.schema == events.schema_for(SPEC)
    assert got.to_pylist() == table.to_pylist() + table.slice(0, 1).to_pylist()
    assert events.list_partitions(root) == [HOUR]
    [(hour, again, _)] = list(events.iter_hours(root, [HOUR], SPEC))
    assert hour == HOUR and again.equals(got)


def test_missing_partition_error_names_hour_and_path(root: str) -> None:
    events.write_partition(root, HOUR, _table([_row()]))
    other = HOUR + dt.timedelta(hours=1)
    with pytest.raises(MissingPartitionError) as err:
        events.read_partition(root, other, SPEC)
    msg = str(err.value)
    assert "missing hour partition 2023-11-14T23" in msg
    assert events.partition_path(root, other) in msg
    assert isinstance(err.value, FileNotFoundError)


def test_read_partition_with_bad_files_dead_letters(root: str) -> None:
    base = events.partition_path(root, HOUR)
    storage.write_bytes(storage.join(base, "part-00000.parquet"), b"not parquet")
    storage.write_text(
        storage.join(base, "part-00001.jsonl"),
        json.dumps(_row()) + "\n" + json.dumps(_row(label=7)) + "\n",
    )
    table, dead = events.read_partition(root, HOUR, SPEC)
    assert table.num_rows == 1
    assert [(d.line, d.reason.split(":")[0]) for d in dead] == [
        (0, "unreadable Parquet"),
        (2, "label"),
    ]


def test_write_partition_rejects_unknown_format(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        events.write_partition(str(tmp_path), HOUR, _table([_row()]), fmt="csv")


def test_summarize() -> None:
    table = _table([_row(), _row(user_id="u2", label=0), _row(user_id=None, label=0)])
    s = events.summarize(table, SPEC)
    assert s == {
        "events": 3,
        "distinct_user_id": 2,
        "distinct_item_id": 1,
        "label_mean": round(1 / 3, 4),
    }
    empty = events.summarize(events.empty_table(SPEC), SPEC)
    assert empty["events"] == 0 and np.isnan(empty["label_mean"])
