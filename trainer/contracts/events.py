"""The event-log contract between logs, Beam jobs and the trainer.

One event = a timestamp (``event_ts``, int seconds since the Unix epoch, UTC), one or
more labels (0/1), categorical features (strings; null = missing) and numeric features
(float; null = missing). Logs live in hourly partitions::

    ROOT/dt=YYYY-MM-DD/hour=HH/part-00000.parquet   (primary)
    ROOT/dt=YYYY-MM-DD/hour=HH/part-00000.jsonl     (accepted)

ROOT is a local path or ``gs://bucket/prefix``. Records that break the contract (bad
JSON, wrong types, missing label or timestamp, absurd values) are never dropped
silently: they become :class:`DeadLetter` rows with their file, line and reason.

No Beam import here: these are plain functions that Beam DoFns, data sources and the
trainer all call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainer.contracts import storage
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

HOUR_FORMAT = "%Y-%m-%dT%H"
MIN_TS = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp())
MAX_TS = int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp())
MAX_ABS_NUMERIC = 1e15
MAX_STRING_LEN = 1024
_PARTITION_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})")


class MissingPartitionError(FileNotFoundError):
    """An hour partition that was asked for does not exist."""


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A record that broke the contract: where it came from and why."""

    source: str
    line: int  # 1-based line (JSON lines) or row (Parquet) number
    reason: str
    record: str  # the raw record, truncated to 2,000 characters

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# ----------------------------------------------------------------------------- hours


def parse_hour(text: str) -> dt.datetime:
    """Parses ``YYYY-MM-DDTHH`` (UTC) into an aware datetime.

    Raises:
        ValueError: naming the bad text and the expected format.
    """
    try:
        return dt.datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(
            f"invalid hour {text!r}: expected YYYY-MM-DDTHH, e.g. 2026-01-01T05"
        ) from None


def format_hour(hour: dt.datetime) -> str:
    return hour.astimezone(dt.UTC).strftime(HOUR_FORMAT)


def parse_hour_range(text: str) -> list[dt.datetime]:
    """Parses ``START[:END]`` (both inclusive) into the list of hours."""
    start_s, _, end_s = text.partition(":")
    start = parse_hour(start_s)
    end = parse_hour(end_s) if end_s else start
    if end < start:
        raise ValueError(f"invalid hour range {text!r}: end is before start")
    n = int((end - start).total_seconds() // 3600) + 1
    return [start + dt.timedelta(hours=i) for i in range(n)]


def partition_path(root: str, hour: dt.datetime) -> str:
    hour = hour.astimezone(dt.UTC)
    return storage.join(root, f"dt={hour:%Y-%m-%d}", f"hour={hour:%H}")


def hour_of_path(path: str) -> dt.datetime | None:
    m = _PARTITION_RE.search(path)
    if not m:
        return None
    return dt.datetime.strptime(f"{m[1]}T{m[2]}", HOUR_FORMAT).replace(tzinfo=dt.UTC)


def list_partitions(root: str) -> list[dt.datetime]:
    """Hours that have at least one data file under ``root``, sorted."""
    hours = {hour_of_path(p) for p in storage.list_files(root) if _is_data_file(p)}
    return sorted(h for h in hours if h is not None)


# ---------------------------------------------------------------------------- schema


def schema_for(spec: FeatureSpec) -> pa.Schema:
    """The Arrow schema of valid events for ``spec`` (the Parquet file schema)."""
    fields = [pa.field(spec.timestamp_key, pa.int64(), nullable=False)]
    fields += [pa.field(k, pa.float32(), nullable=False) for k in spec.label_keys]
    fields += [pa.field(n, pa.string()) for n in spec.categorical_names]
    fields += [pa.field(n, pa.float64()) for n in spec.numeric_names]
    return pa.schema(fields)


def empty_table(spec: FeatureSpec) -> pa.Table:
    return schema_for(spec).empty_table()


# -------------------------------------------------------------------- validate: rows


def validate_record(
    record: Any, spec: FeatureSpec
) -> tuple[dict[str, Any] | None, str]:
    """Checks one decoded record against the contract.

    Returns:
        ``(clean_row, "")`` for a valid record, or ``(None, reason)``.
    """
    if not isinstance(record, Mapping):
        return None, f"record is a {type(record).__name__}, not an object"
    out: dict[str, Any] = {}
    ts = record.get(spec.timestamp_key)
    if ts is None:
        return None, f"missing timestamp field {spec.timestamp_key!r}"
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None, f"{spec.timestamp_key}: not a number: {ts!r}"
    if not MIN_TS <= ts < MAX_TS:
        return None, f"{spec.timestamp_key}: {ts!r} outside [2000, 2100)"
    out[spec.timestamp_key] = int(ts)
    for key in spec.label_keys:
        y = record.get(key)
        if y is None:
            return None, f"missing label {key!r}"
        if isinstance(y, bool):
            y = int(y)
        if not isinstance(y, int | float) or y not in (0, 1):
            return None, f"{key}: label must be 0 or 1, got {y!r}"
        out[key] = float(y)
    for name in spec.categorical_names:
        v = record.get(name)
        if v is None or v == "":
            out[name] = None
        elif isinstance(v, bool):
            return (
                None,
                f"{name}: categorical value must be a string or integer, got {v!r}",
            )
        elif isinstance(v, int):
            out[name] = str(v)
        elif isinstance(v, str):
            if len(v) > MAX_STRING_LEN:
                return None, f"{name}: value longer than {MAX_STRING_LEN} characters"
            out[name] = v
        else:
            return (
                None,
                f"{name}: categorical value must be a string, got {type(v).__name__}",
            )
    for name in spec.numeric_names:
        v = record.get(name)
        if v is None:
            out[name] = None
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None, f"{name}: numeric value must be a number, got {v!r}"
        if not math.isfinite(v) or abs(v) > MAX_ABS_NUMERIC:
            return None, f"{name}: absurd numeric value {v!r}"
        out[name] = float(v)
    return out, ""


def rows_to_table(rows: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> pa.Table:
    schema = schema_for(spec)
    return pa.Table.from_pylist(list(rows), schema=schema)


def parse_json_lines(
    lines: Iterable[str], spec: FeatureSpec, source: str, first_line: int = 1
) -> tuple[pa.Table, list[DeadLetter]]:
    """Parses and validates JSON lines; blank lines are skipped."""
    rows: list[dict[str, Any]] = []
    dead: list[DeadLetter] = []
    for i, line in enumerate(lines, start=first_line):
        text = line.strip()
        if not text:
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            dead.append(DeadLetter(source, i, f"bad JSON: {e.msg}", text[:2000]))
            continue
        row, reason = validate_record(rec, spec)
        if row is None:
            dead.append(DeadLetter(source, i, reason, text[:2000]))
        else:
            rows.append(row)
    return rows_to_table(rows, spec), dead


# ------------------------------------------------------------------ validate: tables


def validate_table(
    table: pa.Table, spec: FeatureSpec, source: str
) -> tuple[pa.Table, list[DeadLetter]]:
    """Vectorized validation of an Arrow table (e.g. one Parquet file).

    Columns with the wrong type are cast where that is lossless (int -> string for
    categoricals, int -> float for numerics); a missing required column or a column
    that cannot be cast rejects the whole file with one dead letter per row.
    """
    n = table.num_rows
    required = [spec.timestamp_key, *spec.label_keys]
    for col in required:
        if col not in table.column_names:
            reason = f"missing column {col!r}"
            return empty_table(spec), _dead_rows(table, range(n), source, reason)
    cols: dict[str, pa.Array] = {}
    try:
        cols[spec.timestamp_key] = _as_int64(table[spec.timestamp_key])
        for k in spec.label_keys:
            cols[k] = pc.cast(table[k], pa.float64()).combine_chunks()
        for name in spec.categorical_names:
            cols[name] = _as_string(table, name, n)
        for name in spec.numeric_names:
            cols[name] = _as_float(table, name, n)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as e:
        reason = f"column type error: {e}"
        return empty_table(spec), _dead_rows(table, range(n), source, reason)

    bad = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, reason: str) -> None:
        new = mask & ~bad
        reasons[new] = reason
        bad[:] |= mask

    ts = cols[spec.timestamp_key]
    ts_np = ts.to_numpy(zero_copy_only=False).astype("float64")  # nulls -> nan
    flag(np.isnan(ts_np), f"missing timestamp field {spec.timestamp_key!r}")
    flag(
        ~((ts_np >= MIN_TS) & (ts_np < MAX_TS)),
        f"{spec.timestamp_key} outside [2000, 2100)",
    )
    for k in spec.label_keys:
        y = cols[k].to_numpy(zero_copy_only=False).astype("float64")
        flag(np.isnan(y), f"missing label {k!r}")
        flag(~np.isin(y, (0.0, 1.0)), f"{k}: label must be 0 or 1")
    for name in spec.numeric_names:
        x = cols[name].to_numpy(zero_copy_only=False).astype("float64")
        present = ~pc.is_null(cols[name]).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            absurd = present & ~(np.isfinite(x) & (np.abs(x) <= MAX_ABS_NUMERIC))
        flag(absurd, f"{name}: absurd numeric value")
    for name in spec.categorical_names:
        lens = pc.fill_null(pc.utf8_length(cols[name]), 0).to_numpy(
            zero_copy_only=False
        )
        flag(
            lens > MAX_STRING_LEN,
            f"{name}: value longer than {MAX_STRING_LEN} characters",
        )

    dead: list[DeadLetter] = []
    if bad.any():
        idx = np.flatnonzero(bad)
        bad_rows = table.take(pa.array(idx)).to_pylist()
        for i, row, reason in zip(idx, bad_rows, reasons[idx], strict=True):
            dead.append(DeadLetter(source, int(i) + 1, str(reason), _dump(row)))
    keep = pa.array(~bad)
    clean = pa.table(
        {
            spec.timestamp_key: ts,
            **{k: pc.cast(cols[k], pa.float32()) for k in spec.label_keys},
            **{name: cols[name] for name in spec.categorical_names},
            **{name: cols[name] for name in spec.numeric_names},
        },
    ).filter(keep)
    clean = clean.cast(schema_for(spec))
    return clean, dead


def _as_int64(col: pa.ChunkedArray) -> pa.Array:
    col = col.combine_chunks()
    if pa.types.is_floating(col.type):
        return pc.cast(pc.floor(col), pa.int64(), safe=False)
    if pa.types.is_timestamp(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    return pc.cast(col, pa.int64())


def _as_string(table: pa.Table, name: str, n: int) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(n, pa.string())
    col = table[name].combine_chunks()
    if pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
        col = pc.cast(col, pa.string())
    elif pa.types.is_integer(col.type):
        col = pc.cast(col, pa.string())
    elif not pa.types.is_string(col.type):
        raise TypeError(f"{name}: categorical column has type {col.type}, want string")
    # "" means missing, like null
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _as_float(table: pa.Table, name: str, n: int) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(n, pa.float64())
    col = table[name].combine_chunks()
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise TypeError(f"{name}: numeric column has type {col.type}, want a number")
    return pc.cast(col, pa.float64())


def _dump(row: Mapping[str, Any]) -> str:
    return json.dumps(row, default=str, sort_keys=True)[:2000]


def _dead_rows(
    table: pa.Table, idx: Iterable[int], source: str, reason: str
) -> list[DeadLetter]:
    rows = table.to_pylist()
    return [DeadLetter(source, i + 1, reason, _dump(rows[i])) for i in idx]


# ------------------------------------------------------------------------------ I/O


def _is_data_file(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    if base.startswith((".", "_")):
        return False
    return base.endswith((".parquet", ".jsonl", ".json"))


def partition_files(root: str, hour: dt.datetime) -> list[str]:
    """Data files of one hour partition.

    Raises:
        MissingPartitionError: if the partition has no data files at all.
    """
    path = partition_path(root, hour)
    files = [p for p in storage.list_files(path) if _is_data_file(p)]
    if not files:
        raise MissingPartitionError(
            f"missing hour partition {format_hour(hour)}: no .parquet/.jsonl files under {path}"
        )
    return files


def read_file(path: str, spec: FeatureSpec) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads and validates one Parquet or JSON-lines file."""
    data = storage.read_bytes(path)
    if path.endswith(".parquet"):
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as e:
            return empty_table(spec), [
                DeadLetter(path, 0, f"unreadable Parquet: {e}", "")
            ]
        return validate_table(table, spec, path)
    text = data.decode("utf-8", errors="replace")
    return parse_json_lines(text.splitlines(), spec, path)


def read_partition(
    root: str, hour: dt.datetime, spec: FeatureSpec
) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads one hour: all its files, validated, concatenated."""
    tables, dead = [], []
    for path in partition_files(root, hour):
        t, d = read_file(path, spec)
        tables.append(t)
        dead.extend(d)
    return pa.concat_tables(tables) if tables else empty_table(spec), dead


def iter_hours(
    root: str, hours: Sequence[dt.datetime], spec: FeatureSpec
) -> Iterator[tuple[dt.datetime, pa.Table, list[DeadLetter]]]:
    for hour in hours:
        table, dead = read_partition(root, hour, spec)
        yield hour, table, dead


def write_partition(
    root: str,
    hour: dt.datetime,
    table: pa.Table,
    fmt: str = "parquet",
    part: int = 0,
) -> str:
    """Writes ``table`` as one file of an hour partition; returns its URI."""
    base = partition_path(root, hour)
    if fmt == "parquet":
        uri = storage.join(base, f"part-{part:05d}.parquet")
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        storage.write_bytes(uri, buf.getvalue())
    elif fmt == "jsonl":
        uri = storage.join(base, f"part-{part:05d}.jsonl")
        lines = (json.dumps(r, separators=(",", ":")) for r in table.to_pylist())
        storage.write_text(uri, "\n".join(lines) + "\n")
    else:
        raise ValueError(f"unknown format {fmt!r}; use 'parquet' or 'jsonl'")
    return uri


def write_dead_letters(uri: str, dead: Sequence[DeadLetter]) -> None:
    """Writes dead letters as JSON lines (an empty file when there are none)."""
    storage.write_text(uri, "".join(d.to_json() + "\n" for d in dead))


def summarize(table: pa.Table, spec: FeatureSpec) -> dict[str, Any]:
    """Events, distinct values per categorical feature and label mean of a table."""
    out: dict[str, Any] = {"events": table.num_rows}
    for name in spec.categorical_names:
        out[f"distinct_{name}"] = pc.count_distinct(table[name]).as_py()
    label = spec.label_key
    out["label_mean"] = (
        round(float(pc.mean(table[label]).as_py()), 4)
        if table.num_rows
        else float("nan")
    )
    return out
