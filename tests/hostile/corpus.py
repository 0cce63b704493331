"""A corpus of hostile event files, each with its expected counts built independently.

Every kind is one file of an hour partition (or a layout trick such as a nested
``retry/`` folder) together with what a correct reader must report for it, counted
here by construction, never by calling the reader: how many records the file holds
(``read``; None when a broken Parquet footer makes it unknowable), how many are valid
(``good``) and how many are dead letters (``dead``), or None where the corpus cannot
know the split (a corrupted data page may decode to garbage or fail).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from trainer.contracts.features import FeatureSpec

HOUR = dt.datetime(2026, 1, 1, 0, tzinfo=dt.UTC)
TS = int(HOUR.timestamp())

SPEC = FeatureSpec.from_dict(
    {
        "name": "hostile",
        "features": [
            {"name": "user", "treatment": "hybrid", "top_k": 3, "hash_buckets": 64},
            {"name": "item", "treatment": "hash", "hash_buckets": 16},
            {"name": "price", "kind": "numeric", "num_buckets": 4},
        ],
    }
)


def record(i: int = 0, **over: object) -> dict:
    rec = {"event_ts": TS + i, "label": i % 2, "user": f"u{i % 5}", "item": f"i{i}"}
    rec["price"] = 1.5 + i
    rec.update(over)
    return rec


def line(i: int = 0, **over: object) -> bytes:
    return json.dumps(record(i, **over)).encode()


def valid_lines(n: int, start: int = 0) -> list[bytes]:
    return [line(start + i) for i in range(n)]


def raw(prefix_fields: str) -> bytes:
    """A record written by hand: ``{"event_ts": TS, "label": 0, <prefix_fields>}``."""
    return f'{{"event_ts": {TS}, "label": 0, {prefix_fields}}}'.encode()


@dataclasses.dataclass(frozen=True)
class Kind:
    """One hostile input: file name (in the partition), its bytes, expected counts."""

    name: str
    filename: str
    data: bytes
    read: int | None
    good: int | None
    dead: int | None
    skipped: bool = False  # the reader must list it as not read, not read it

    @property
    def unknown_rows(self) -> bool:
        return self.read is None and not self.skipped


def jsonl(name: str, good: list[bytes], bad: list[bytes], sep: bytes = b"\n") -> Kind:
    """Valid lines, then bad lines, then valid again; counts from the two lists."""
    half = len(good) // 2
    data = sep.join([*good[:half], *bad, *good[half:]]) + sep
    return Kind(name, f"{name}.jsonl", data, len(good) + len(bad), len(good), len(bad))


def _parquet(table: pa.Table, **kw: object) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def _valid_table(n: int, start: int = 0) -> pa.Table:
    rows = [record(start + i) for i in range(n)]
    return pa.table(
        {
            "event_ts": pa.array([r["event_ts"] for r in rows], pa.int64()),
            "label": pa.array([float(r["label"]) for r in rows], pa.float32()),
            "user": pa.array([r["user"] for r in rows], pa.string()),
            "item": pa.array([r["item"] for r in rows], pa.string()),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
        }
    )


def _invalid_utf8_table() -> pa.Table:
    """5 rows whose ``user`` column holds invalid UTF-8 in rows 2 and 4 (1-based)."""
    t = _valid_table(5)
    values = [b"u0", b"caf\xe9", b"u2", b"caf\xff", b"u4"]
    bad = pa.array(values, pa.binary()).view(pa.string())  # no UTF-8 validation
    return t.set_column(t.schema.get_field_index("user"), "user", bad)


def _corrupt_page() -> bytes:
    """Two row groups of 50 rows; bytes inside the first group's pages overwritten."""
    data = bytearray(_parquet(_valid_table(100), row_group_size=50, compression="none"))
    meta = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    col = meta.row_group(0).column(3)  # "item"
    at = col.data_page_offset + 4
    data[at : at + 40] = b"\xff" * 40
    return bytes(data)


def event_kinds() -> list[Kind]:
    """At least 40 kinds of hostile or tricky event files."""
    g = valid_lines(6)
    big = "1" + "0" * 400
    k: list[Kind] = [
        jsonl("huge_int_price", g, [raw(f'"user": "u", "price": {big}')]),
        jsonl("huge_int_event_ts", g, [f'{{"event_ts": {big}, "label": 0}}'.encode()]),
        jsonl("huge_int_label", g, [f'{{"event_ts": {TS}, "label": {big}}}'.encode()]),
        jsonl("int_5000_digits", g, [raw(f'"price": {"7" * 5000}')]),
        jsonl("int_4000_digits_id", g, [raw(f'"user": {"7" * 4000}')]),
        jsonl("nested_200000_deep", g, [b"[" * 200_000 + b"]" * 200_000]),
        jsonl("nested_object_deep", g, [b'{"a":' * 100_000 + b"1" + b"}" * 100_000]),
        jsonl("lone_surrogate_id", g, [raw('"user": "\\ud83d"')]),
        jsonl("lone_low_surrogate_item", g, [raw('"item": "x\\udc00y"')]),
        jsonl(
            "invalid_utf8_ids",
            g,
            [
                raw('"user": "caf\xe9"').replace(b"\xc3\xa9", bc)
                for bc in (b"\xe9", b"\xe8", b"\xff")
            ],
        ),
        jsonl("overlong_utf8", g, [raw('"user": "X"').replace(b"X", b"\xc0\xaf")]),
        jsonl("utf16_line", g, [line(99).decode().encode("utf-16")]),
        jsonl("nul_bytes", g, [b"\x00" * 30]),
        jsonl("bom_line", g, ["\ufeff".encode() + line(50)]),
        jsonl("top_level_array", g, [b"[1, 2, 3]"]),
        jsonl("top_level_string", g, [b'"event"']),
        jsonl("top_level_null", g, [b"null"]),
        jsonl("nan_price", g, [raw('"price": NaN')]),
        jsonl("infinity_ts", g, [b'{"event_ts": Infinity, "label": 0}']),
        jsonl("negative_ts", g, [line(0, event_ts=-5)]),
        jsonl("ts_string", g, [line(0, event_ts=str(TS))]),
        jsonl("ts_year_2200", g, [line(0, event_ts=7_258_118_400)]),
        jsonl("label_2", g, [line(0, label=2)]),
        jsonl("label_string", g, [line(0, label="1")]),
        jsonl("label_missing", g, [b'{"event_ts": %d, "user": "u"}' % TS]),
        jsonl("ts_missing", g, [b'{"label": 1, "user": "u"}']),
        jsonl("id_list", g, [line(0, user=["a", "b"])]),
        jsonl("id_object", g, [line(0, item={"a": 1})]),
        jsonl("id_bool", g, [line(0, user=True)]),
        jsonl("id_2000_chars", g, [line(0, user="x" * 2000)]),
        jsonl("price_string", g, [line(0, price="12.5")]),
        jsonl("price_1e16", g, [line(0, price=1e16)]),
        jsonl("trailing_garbage", g, [line(0) + b" x"]),
        jsonl("two_objects_one_line", g, [line(0) + line(1)]),
        jsonl("truncated_last_line", g, [line(0)[:20]]),
        jsonl("many_bad", g, [b"{"] * 25),
        # valid but tricky: all good, nothing dead
        jsonl(
            "u2028_u2029_u0085_in_strings",
            [
                json.dumps(record(i, user=f"a{c}b"), ensure_ascii=False).encode()
                for i, c in enumerate("\u2028\u2029\u0085")
            ]
            + g,
            [],
        ),
        jsonl("crlf_line_ends", g, [], sep=b"\r\n"),
        jsonl("surrogate_pair_escape", [raw('"user": "\\ud83d\\ude00"'), *g], []),
        jsonl("label_true_ts_float", [line(0, label=True, event_ts=TS + 0.5), *g], []),
        jsonl(
            "duplicate_keys_extra_fields", [raw('"user": "a", "user": "b", "z": 1')], []
        ),
        Kind(
            "blank_and_space_lines",
            "blank.jsonl",
            b"\n".join([g[0], b"", b"   ", b"\t\r", g[1]]) + b"\n",
            2,
            2,
            0,
        ),
        Kind("empty_file", "empty.jsonl", b"", 0, 0, 0),
        Kind("no_final_newline", "nofinal.jsonl", b"\n".join(g), 6, 6, 0),
        # Parquet
        Kind(
            "truncated_parquet",
            "trunc.parquet",
            _parquet(_valid_table(40))[:-30],
            None,
            0,
            0,
        ),
        Kind("not_parquet", "garbage.parquet", b"PAR1 this is not parquet", None, 0, 0),
        Kind("empty_parquet_file", "zero.parquet", b"", None, 0, 0),
        Kind("corrupt_data_page", "corrupt.parquet", _corrupt_page(), 100, None, None),
        Kind(
            "parquet_missing_label",
            "nolabel.parquet",
            _parquet(_valid_table(7).drop_columns(["label"])),
            7,
            0,
            7,
        ),
        Kind(
            "parquet_list_column",
            "list.parquet",
            _parquet(_valid_table(4).set_column(2, "user", pa.array([[1]] * 4))),
            4,
            0,
            4,
        ),
        Kind(
            "parquet_invalid_utf8",
            "utf8.parquet",
            _parquet(_invalid_utf8_table()),
            5,
            3,
            2,
        ),
        Kind(
            "parquet_ts_inf_nan",
            "tsinf.parquet",
            _parquet(
                _valid_table(4).set_column(
                    0, "event_ts", pa.array([TS, float("inf"), float("nan"), 1e300])
                )
            ),
            4,
            1,
            3,
        ),
        Kind(
            "parquet_zero_rows", "zero_rows.parquet", _parquet(_valid_table(0)), 0, 0, 0
        ),
        Kind(
            "parquet_row_groups",
            "groups.parquet",
            _parquet(_valid_table(30), row_group_size=7),
            30,
            30,
            0,
        ),
        # partition layout: names read by the rule (any case, .ndjson, .parquet.snappy)
        Kind("upper_case_jsonl", "PART.JSONL", b"\n".join(g) + b"\n", 6, 6, 0),
        Kind("ndjson", "part.ndjson", b"\n".join(g) + b"\n", 6, 6, 0),
        Kind("upper_case_parquet", "PART.PARQUET", _parquet(_valid_table(9)), 9, 9, 0),
        Kind(
            "parquet_snappy",
            "part.parquet.snappy",
            _parquet(_valid_table(8), compression="snappy"),
            8,
            8,
            0,
        ),
        # not read: listed as skipped
        Kind(
            "nested_retry_copy",
            "retry/part-00000.jsonl",
            b"\n".join(g) + b"\n",
            None,
            None,
            None,
            skipped=True,
        ),
        Kind("unknown_extension", "part.csv", b"a,b\n", None, None, None, skipped=True),
        Kind(
            "gzipped_jsonl",
            "part.jsonl.gz",
            gzip.compress(b"\n".join(g)),
            None,
            None,
            None,
            skipped=True,
        ),
    ]
    names = [x.name for x in k]
    assert len(names) == len(set(names)), "kind names must be unique"
    return k


SpecCase = tuple[str, bytes | None, str]  # name, YAML bytes (None = a directory), match

GOOD_FEATURE = "  - {name: user, treatment: hash, hash_buckets: 8}\n"


def spec_kinds() -> list[SpecCase]:
    """Bad feature specs that the loaders reject with an error naming the problem."""
    return [
        ("not_yaml", b"name: [unclosed\n", "YAML"),
        ("non_utf8", b"name: caf\xe9\nfeatures: []\n", "spec"),
        ("a_directory", None, "spec"),
        ("empty_file", b"", "spec"),
        ("top_level_list", b"- 1\n- 2\n", "spec"),
        ("no_features", b"name: x\nfeatures: []\n", "feature"),
        (
            "unknown_treatment",
            b"name: x\nfeatures:\n  - {name: u, treatment: zip}\n",
            "treatment",
        ),
        (
            "feature_without_name",
            b"name: x\nfeatures:\n  - {treatment: hash}\n",
            "name",
        ),
        (
            "negative_buckets",
            b"name: x\nfeatures:\n  - {name: u, treatment: hash, hash_buckets: -4}\n",
            "hash_buckets",
        ),
        (
            "duplicate_feature",
            b"name: x\nfeatures:\n" + GOOD_FEATURE.encode() * 2,
            "user",
        ),
        ("unknown_kind", b"name: x\nfeatures:\n  - {name: u, kind: image}\n", "kind"),
        ("features_not_a_list", b"name: x\nfeatures: {a: 1}\n", "features"),
        (
            "unknown_top_level_key",
            b"name: x\nbogus: 1\nfeatures:\n" + GOOD_FEATURE.encode(),
            "bogus",
        ),
    ]


def spec_rules_h4() -> list[SpecCase]:
    """The spec loader's newer rules: unsafe names, overlapping columns, duplicates."""
    f = GOOD_FEATURE.encode()
    return [
        (
            "name_with_slash",
            b"name: x\nfeatures:\n  - {name: a/b, treatment: hash}\n",
            "a/b",
        ),
        (
            "name_dot_dot",
            b"name: x\nfeatures:\n  - {name: ../x, treatment: hash}\n",
            "../x",
        ),
        ("duplicate_label_keys", b"name: x\nlabel_keys: [y, y]\nfeatures:\n" + f, "y"),
        (
            "timestamp_is_label",
            b"name: x\ntimestamp_key: y\nlabel_keys: [y]\nfeatures:\n" + f,
            "y",
        ),
        ("duplicate_yaml_keys", b"name: x\nname: z\nfeatures:\n" + f, "name"),
        (
            "non_integer_size",
            b"name: x\nfeatures:\n  - {name: u, treatment: hash, hash_buckets: 8.5}\n",
            "hash_buckets",
        ),
    ]


Builder = Callable[[str], None]


def spec_rules_crosses() -> list[SpecCase]:
    """Crosses of a feature with itself or with an unknown feature."""
    two = b"  - {name: user, treatment: hash, hash_buckets: 8}\n" + (
        b"  - {name: item, treatment: hash, hash_buckets: 8}\n"
    )
    return [
        (
            "cross_with_itself",
            b"name: x\nfeatures:\n"
            + two
            + b"crosses:\n  - {features: [user, user], hash_buckets: 8}\n",
            "itself",
        ),
        (
            "cross_unknown_feature",
            b"name: x\nfeatures:\n"
            + two
            + b"crosses:\n  - {features: [user, nope], hash_buckets: 8}\n",
            "nope",
        ),
    ]
