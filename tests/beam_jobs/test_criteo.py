"""Criteo rows -> events: the real Kaggle sample against csv-module counts, dead
letters from hand-written malformed files, Id-less dac rows, chunking and the CLI."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from beam_jobs import criteo
from trainer.contracts import events, storage
from trainer.contracts.features import load_feature_spec

SAMPLE = "criteo-sample/criteo_kaggle_train_rows.csv"
BASE = int(dt.datetime(2014, 9, 1, tzinfo=dt.UTC).timestamp())
HEADER = ",".join(criteo.KAGGLE_HEADER)


@pytest.fixture(scope="module")
def spec(repo_root):
    return load_feature_spec(str(repo_root / "specs" / "features" / "criteo.yaml"))


@pytest.fixture(scope="module")
def sample_path(shared_data) -> str:
    return str(shared_data / SAMPLE)


@pytest.fixture(scope="module")
def csv_rows(sample_path) -> list[dict[str, str]]:
    with open(sample_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sample_out(sample_path, spec, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("criteo") / "events")
    counts, dead, dead_uri = criteo.run(sample_path, root, spec)
    return root, counts, dead, dead_uri


def _read_all(root: str, spec) -> pa.Table:
    tables = [
        events.read_partition(root, h, spec)[0] for h in events.list_partitions(root)
    ]
    return pa.concat_tables(tables)


def test_spec_names_match_event_columns(spec):
    assert set(spec.categorical_names) == set(criteo.CAT_NAMES)
    assert set(spec.numeric_names) == set(criteo.INT_NAMES)


def test_sample_counts_match_csv_module(sample_out, csv_rows, spec):
    root, counts, dead, dead_uri = sample_out
    assert len(csv_rows) == 6435 and dead == []
    assert storage.read_text(dead_uri) == ""
    assert sum(c[0] for c in counts.values()) == 6435
    assert sum(c[1] for c in counts.values()) == 1506
    assert sum(r["Label"] == "1" for r in csv_rows) == 1506
    per_hour = collections.Counter(
        int((int(r["Id"]) - 10_000_000) / 45_840_617 * 168) for r in csv_rows
    )
    got = {int((h.timestamp() - BASE) // 3600): c[0] for h, c in counts.items()}
    assert got == dict(per_hour)
    assert len(got) == 159 and got[0] == 3982
    table = _read_all(root, spec)
    assert table.num_rows == 6435
    for name in ("C1", "C9", "C26"):
        distinct = {r[name] for r in csv_rows if r[name]}
        assert _distinct(table, name) == distinct
    assert len({r["C1"] for r in csv_rows if r["C1"]}) == 145
    assert table["I1"].null_count == sum(r["I1"] == "" for r in csv_rows) == 2807


def _distinct(table: pa.Table, name: str) -> set[str]:
    return {v for v in table[name].to_pylist() if v is not None}


def test_sample_rows_equal_csv_rows(sample_path, csv_rows, spec):
    with open(sample_path) as f:
        lines = f.read().splitlines()[1:]
    table, dead = criteo.parse_kaggle(lines, sample_path, 2, spec)
    assert dead == [] and table.num_rows == len(csv_rows)
    for got, want in zip(table.to_pylist()[::97], csv_rows[::97], strict=True):
        assert got["label"] == float(want["Label"])
        offset = (int(want["Id"]) - 10_000_000) * 604_800 // 45_840_617
        assert got["event_ts"] == BASE + offset
        for name in criteo.INT_NAMES:
            assert got[name] == (float(want[name]) if want[name] else None)
        for name in criteo.CAT_NAMES:
            assert got[name] == (want[name] or None)


def test_kaggle_timestamps_span_seven_days():
    ts = criteo.kaggle_timestamps(np.array([10_000_000, 55_840_616]))
    assert ts[0] == BASE
    assert (
        events.format_hour(dt.datetime.fromtimestamp(ts[1], dt.UTC)) == "2014-09-07T23"
    )


# ---------------------------------------------------------------- malformed input

H = "0a1b2c3d"  # a made-up hashed value
GOOD_FEATS = ["1"] * 13 + [H] * 26


def _kaggle_line(id_: str, label: str, ints=None, cats=None) -> str:
    return ",".join([id_, label, *(ints or ["1"] * 13), *(cats or [H] * 26)])


MALFORMED = [
    HEADER,  # 1
    _kaggle_line("10000000", "1"),  # 2 ok
    "10000001,0,1,2",  # 3 field count
    _kaggle_line("abc", "0"),  # 4 Id
    _kaggle_line("5", "0"),  # 5 Id below range
    _kaggle_line("10000002", ""),  # 6 missing label
    _kaggle_line("10000003", "2"),  # 7 label 2
    _kaggle_line("10000004", "0", ints=["1.5"] + ["1"] * 12),  # 8 I1 float
    _kaggle_line("10000005", "0", cats=["xyz!"] + [H] * 25),  # 9 C1 not hex
    "",  # 10 blank
    _kaggle_line("10000006", "0", ints=[""] + ["1"] * 11 + ["10" * 9]),  # 11 I13 absurd
    _kaggle_line(
        "10000007", "0", ints=[""] + ["-2"] * 12, cats=[""] + [H.upper()] * 25
    ),
]


def test_malformed_kaggle_rows_become_dead_letters(tmp_path, spec):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(MALFORMED) + "\n")
    root = str(tmp_path / "out")
    counts, dead, dead_uri = criteo.run(str(path), root, spec)
    assert {d.line: d.reason for d in dead} == {
        3: "expected 41 fields, got 4",
        4: "Id: not an integer: 'abc'",
        5: "Id: below the Kaggle train range 10000000: '5'",
        6: "Label: must be 0 or 1: ''",
        7: "Label: must be 0 or 1: '2'",
        8: "I1: not an integer: '1.5'",
        9: "C1: not hex: 'xyz!'",
        11: "I13: absurd numeric value",
    }
    assert all(d.source == str(path) for d in dead)
    assert dead[0].record == "10000001,0,1,2"
    saved = [json.loads(s) for s in storage.read_text(dead_uri).splitlines()]
    assert sorted(d["line"] for d in saved) == [3, 4, 5, 6, 7, 8, 9, 11]
    table = _read_all(root, spec)
    assert table["label"].to_pylist() == [1.0, 0.0]
    last = table.to_pylist()[1]
    assert last["I1"] is None and last["I2"] == -2.0
    assert last["C1"] is None and last["C2"] == H  # hex is lower-cased
    assert sum(c[0] for c in counts.values()) == 2


def test_kaggle_test_file_is_rejected(tmp_path, capsys):
    path = tmp_path / "test.csv"
    header = ",".join(h for h in criteo.KAGGLE_HEADER if h != "Label")
    path.write_text(header + "\n" + ",".join(["60000000", *GOOD_FEATS]) + "\n")
    assert criteo.main(["--input", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "Kaggle test files have no Label" in capsys.readouterr().err


# --------------------------------------------------------------------- dac / chunks


def _dac_lines(n: int) -> list[str]:
    return [
        "\t".join([str(i % 2), *[str(i)] * 13, *[f"{i:08x}"] * 26]) for i in range(n)
    ]


def test_dac_rows_get_start_hour_and_rate(tmp_path, spec):
    lines = _dac_lines(5)
    lines[3] = "1\t2\t3"  # wrong field count
    path = tmp_path / "dac.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    root = str(tmp_path / "out")
    counts, dead, _ = criteo.run(
        str(path), root, spec, start_hour="2020-01-01T00", rows_per_hour=2
    )
    assert [(d.line, d.reason) for d in dead] == [(4, "expected 40 fields, got 3")]
    assert {events.format_hour(h): c for h, c in counts.items()} == {
        "2020-01-01T00": [2, 1],
        "2020-01-01T01": [1, 0],  # row 3 (line 4) is dead; row 2 stays in hour 1
        "2020-01-01T02": [1, 0],
    }
    table = _read_all(root, spec)
    start = int(dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp())
    assert table["event_ts"].to_pylist() == [
        start,
        start + 1800,
        start + 3600,
        start + 7200,
    ]
    assert table["C1"].to_pylist() == ["00000000", "00000001", "00000002", "00000004"]


def test_chunked_run_equals_single_chunk(tmp_path, spec):
    path = tmp_path / "dac.txt"
    path.write_text("\n".join(_dac_lines(10)) + "\n")
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    criteo.run(str(path), whole, spec, rows_per_hour=4)
    counts, _, _ = criteo.run(str(path), parts, spec, rows_per_hour=4, chunk_lines=3)
    assert sum(c[0] for c in counts.values()) == 10
    first_hour = events.partition_path(parts, min(counts))
    assert len(storage.list_files(first_hour)) == 2  # rows 0-2 and 3 from two chunks
    assert _read_all(parts, spec).equals(_read_all(whole, spec))


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end(sample_path, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert criteo.main(["--input", sample_path, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "per-hour summary" in printed and "(159 hours)" in printed
    assert "2014-09-01T00  events=3982" in printed
    assert "total: 6435 events in 159 hours (2014-09-01T00..2014-09-07T23)" in printed
    assert "label_mean=0.2340, 0 dead letters" in printed


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "/no/such.csv"], "is not a file"),
        (["--start-hour", "2020-01-01"], "--start-hour: invalid hour"),
        (["--rows-per-hour", "0"], "--rows-per-hour must be >= 1"),
    ],
)
def test_cli_bad_arguments(sample_path, tmp_path, capsys, args, message):
    argv = ["--input", sample_path, "--out", str(tmp_path / "o"), *args]
    assert criteo.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not os.path.exists(tmp_path / "o")


def test_cli_rejects_unknown_format(tmp_path, capsys):
    path = tmp_path / "x.txt"
    path.write_text("hello world\n")
    assert criteo.main(["--input", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "neither a Kaggle CSV header nor tab-separated" in capsys.readouterr().err
