"""The event-log contract between logs, Beam jobs and the trainer.

One event = a timestamp (``event_ts``, int seconds since the Unix epoch, UTC), one or
more labels (0/1), categorical features (strings; null = missing) and numeric features
(float; null = missing). Logs live in hourly partitions::

    ROOT/dt=YYYY-MM-DD/hour=HH/part-00000.parquet   (primary)
    ROOT/dt=YYYY-MM-DD/hour=HH/part-00000.jsonl     (accepted)

ROOT is a local path or ``gs://bucket/prefix``. Records that break the contract (bad
JSON, invalid UTF-8, wrong types, missing label or timestamp, absurd values, or any
other error while decoding one record) are never dropped silently: they become
:class:`DeadLetter` rows with their file, line and reason, and every file is
accounted for as ``read = good + dead`` (:class:`FileRead`).

Which files of a partition are read (:func:`scan_partition`): the direct children of
``hour=HH/`` whose names end, in any letter case, in ``.parquet``,
``.parquet.snappy`` (Parquet) or ``.jsonl``, ``.ndjson``, ``.json`` (JSON Lines).
Names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc``) are bookkeeping and
ignored; any other file, and everything in nested folders (``hour=00/retry/``), is
listed as skipped, never read.

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
_PARTITION_DIR_RE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}$")


class MissingPartitionError(FileNotFoundError):
    """An hour partition that was asked for does not exist."""


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A record that broke the contract: where it came from and why."""

    source: str
    line: int  # 1-based line (JSON lines) or row (Parquet) number; 0 = whole file
    reason: str
    record: str  # the raw record, truncated to 2,000 characters
    rows: int = 1  # records it stands for (an unreadable row group: all of them)

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
    hours = {
        hour_of_path(p)
        for p in storage.list_files(root)
        if _is_data_file(p) and _PARTITION_DIR_RE.search(p.rsplit("/", 1)[0])
    }
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

    Integers are compared exactly (never converted to float first), so a 400-digit
    integer is an out-of-range value, not an ``OverflowError``.

    Returns:
        ``(clean_row, "")`` for a valid record, or ``(None, reason)``.
    """
    if not isinstance(record, Mapping):
        return None, f"record is a {type(record).__name__}, not an object"
    out: dict[str, Any] = {}
    ts = record.get(spec.timestamp_key)
    if ts is None:
        return None, f"missing timestamp field {spec.timestamp_key!r}"
    if not _is_number(ts) or (isinstance(ts, float) and not math.isfinite(ts)):
        return None, f"{spec.timestamp_key}: not a number: {_short(ts)}"
    if not MIN_TS <= ts < MAX_TS:
        return None, f"{spec.timestamp_key}: {_short(ts)} outside [2000, 2100)"
    out[spec.timestamp_key] = int(ts)
    for key in spec.label_keys:
        y = record.get(key)
        if y is None:
            return None, f"missing label {key!r}"
        if isinstance(y, bool):
            y = int(y)
        if not _is_number(y) or y not in (0, 1):
            return None, f"{key}: label must be 0 or 1, got {_short(y)}"
        out[key] = float(y)
    for name in spec.categorical_names:
        v, reason = _categorical(name, record.get(name))
        if reason:
            return None, reason
        out[name] = v
    for name in spec.numeric_names:
        v = record.get(name)
        if v is None:
            out[name] = None
            continue
        if not _is_number(v):
            return None, f"{name}: numeric value must be a number, got {_short(v)}"
        if isinstance(v, float) and not math.isfinite(v) or abs(v) > MAX_ABS_NUMERIC:
            return None, f"{name}: absurd numeric value {_short(v)}"
        out[name] = float(v)
    return out, ""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _short(v: Any) -> str:
    """``repr`` for reasons, cut short (a 4,000-digit integer stays readable)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _categorical(name: str, v: Any) -> tuple[str | None, str]:
    """One categorical value -> ``(value or None, "")`` or ``(None, reason)``."""
    if v is None or v == "":
        return None, ""
    if isinstance(v, bool):
        return None, f"{name}: categorical value must be a string or integer, got {v!r}"
    if isinstance(v, int):
        if v.bit_length() > 3 * MAX_STRING_LEN:  # str() would exceed the length
            return None, f"{name}: value longer than {MAX_STRING_LEN} characters"
        v = str(v)
    if not isinstance(v, str):
        return None, (
            f"{name}: categorical value must be a string, got {type(v).__name__}"
        )
    if len(v) > MAX_STRING_LEN:
        return None, f"{name}: value longer than {MAX_STRING_LEN} characters"
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            return None, f"{name}: not valid Unicode ({e.reason} at {e.start})"
    return v, ""


def rows_to_table(rows: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> pa.Table:
    schema = schema_for(spec)
    return pa.Table.from_pylist(list(rows), schema=schema)


_JSON_SPACE = b" \t\r"


def parse_record(
    raw: bytes | str, spec: FeatureSpec, source: str, line: int
) -> tuple[dict[str, Any] | None, DeadLetter | None]:
    """Decodes and validates one JSON Lines record; never raises.

    Any error while decoding or validating it (invalid UTF-8, bad JSON, nesting too
    deep, an integer literal over Python's digit limit, ...) is a dead letter.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            shown = raw[:2000].decode("utf-8", "backslashreplace")
            reason = f"invalid UTF-8 at byte {e.start}"
            return None, DeadLetter(source, line, reason, shown)
    else:
        text = raw
    try:
        row, reason = validate_record(json.loads(text), spec)
    except json.JSONDecodeError as e:
        row, reason = None, f"bad JSON: {e.msg}"
    except RecursionError:
        row, reason = None, "bad JSON: nested too deeply"
    except Exception as e:  # noqa: BLE001 - one bad record never stops a file
        row, reason = None, f"bad record: {type(e).__name__}: {str(e)[:200]}"
    if row is None:
        return None, DeadLetter(source, line, reason, _excerpt(text))
    return row, None


def _excerpt(text: str) -> str:
    text = text[:2000]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def parse_json_lines(
    lines: Iterable[str | bytes], spec: FeatureSpec, source: str, first_line: int = 1
) -> tuple[pa.Table, list[DeadLetter]]:
    """Parses and validates JSON lines; blank lines are skipped.

    ``lines`` must already be split on ``\\n`` only (:func:`split_json_lines`).
    """
    table, dead, _ = _parse_lines(lines, spec, source, first_line)
    return table, dead


def split_json_lines(data: bytes) -> list[bytes]:
    """JSON Lines framing: split on ``\\n`` only, never on U+2028, U+2029 or U+0085."""
    return data.split(b"\n")


def _parse_lines(
    lines: Iterable[str | bytes], spec: FeatureSpec, source: str, first_line: int
) -> tuple[pa.Table, list[DeadLetter], int]:
    rows: list[dict[str, Any]] = []
    where: list[int] = []
    dead: list[DeadLetter] = []
    read = 0
    for i, line in enumerate(lines, start=first_line):
        raw = (
            line.strip(_JSON_SPACE)
            if isinstance(line, bytes)
            else line.strip(" \t\r\n")
        )
        if not raw:
            continue
        read += 1
        row, letter = parse_record(raw, spec, source, i)
        if letter is not None:
            dead.append(letter)
        else:
            rows.append(row)
            where.append(i)
    try:
        table = rows_to_table(rows, spec)
    except Exception:  # noqa: BLE001 - find the rows Arrow refuses, one by one
        table, more = _rows_to_table_one_by_one(rows, where, spec, source)
        dead = sorted([*dead, *more], key=lambda d: d.line)
    return table, dead, read


def _rows_to_table_one_by_one(
    rows: Sequence[Mapping[str, Any]],
    where: Sequence[int],
    spec: FeatureSpec,
    source: str,
) -> tuple[pa.Table, list[DeadLetter]]:
    good, dead = [], []
    for row, line in zip(rows, where, strict=True):
        try:
            rows_to_table([row], spec)
            good.append(row)
        except Exception as e:  # noqa: BLE001
            reason = f"bad record: {type(e).__name__}: {str(e)[:200]}"
            dead.append(DeadLetter(source, line, reason, _dump(row)))
    return rows_to_table(good, spec), dead


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
        # out-of-range or non-finite floats become 0 (flagged "outside [2000, 2100)")
        # before the cast, which would otherwise wrap them into the valid range
        ok = pc.and_(pc.greater_equal(col, MIN_TS), pc.less(col, MAX_TS))
        col = pc.if_else(pc.fill_null(ok, True), col, 0.0)
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


PARQUET_SUFFIXES = (".parquet", ".parquet.snappy")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def file_format(path: str) -> str | None:
    """``"parquet"``, ``"jsonl"`` or None (not a data file), by name, any case."""
    base = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if base.startswith((".", "_")):
        return None
    if base.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if base.endswith(JSON_SUFFIXES):
        return "jsonl"
    return None


def _is_data_file(path: str) -> bool:
    return file_format(path) is not None


def _is_bookkeeping(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1].startswith((".", "_"))


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file in an hour partition that the readers will not read, and why."""

    source: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def scan_partition(root: str, hour: dt.datetime) -> tuple[list[str], list[SkippedFile]]:
    """Data files of one hour partition and the files that will not be read.

    Only direct children of the partition folder are read; files in nested folders
    (``hour=00/retry/part-0.jsonl``) and files with other extensions are returned as
    skipped. Bookkeeping files (``_SUCCESS``, names starting with ``.``) are ignored.
    """
    path = partition_path(root, hour)
    prefix = path.rstrip("/") + "/"
    files, skipped = [], []
    for p in storage.list_files(path):
        rel = p[len(prefix) :] if p.startswith(prefix) else p.rsplit("/", 1)[-1]
        if "/" in rel.replace("\\", "/"):
            skipped.append(SkippedFile(p, "in a nested folder (never read)"))
        elif _is_data_file(p):
            files.append(p)
        elif not _is_bookkeeping(p):
            skipped.append(
                SkippedFile(
                    p,
                    "unknown extension (read: .parquet, .parquet.snappy, "
                    ".jsonl, .ndjson, .json, any case)",
                )
            )
    return files, skipped


def partition_files(root: str, hour: dt.datetime) -> list[str]:
    """Data files of one hour partition (see :func:`scan_partition`).

    Raises:
        MissingPartitionError: if the partition has no data files at all.
    """
    files, skipped = scan_partition(root, hour)
    if not files:
        extra = (
            f" ({len(skipped)} files skipped, e.g. {skipped[0].source})"
            if skipped
            else ""
        )
        raise MissingPartitionError(
            f"missing hour partition {format_hour(hour)}: no .parquet/.jsonl files "
            f"under {partition_path(root, hour)}{extra}"
        )
    return files


@dataclasses.dataclass
class FileRead:
    """One file read: its valid events, its dead letters and how many records it held.

    Attributes:
        read: Records in the file (non-blank lines; Parquet rows by its metadata), or
            None when the file is unreadable and its row count unknown.
    """

    source: str
    table: pa.Table
    dead: list[DeadLetter]
    read: int | None

    @property
    def good(self) -> int:
        return self.table.num_rows

    @property
    def dead_rows(self) -> int:
        return sum(d.rows for d in self.dead)

    @property
    def balanced(self) -> bool:
        """``read = good + dead`` (always true when the row count is known)."""
        return self.read is None or self.read == self.good + self.dead_rows


def _unknown(path: str, spec: FeatureSpec, reason: str) -> FileRead:
    letter = DeadLetter(path, 0, f"{reason}; rows unknown", "", rows=0)
    return FileRead(path, empty_table(spec), [letter], None)


def read_file_counted(path: str, spec: FeatureSpec) -> FileRead:
    """Reads and validates one Parquet or JSON Lines file; never raises on content.

    JSON Lines: split on ``\\n`` only, each line decoded as strict UTF-8 and parsed
    on its own; blank lines are not records. Parquet: read row group by row group;
    an unreadable row group is one dead letter standing for all its rows (counted
    from the footer); a file whose footer cannot be read has unknown rows.
    """
    try:
        data = storage.read_bytes(path)
    except Exception as e:  # noqa: BLE001 - an unreadable file is bad input
        return _unknown(path, spec, f"unreadable file: {type(e).__name__}: {e}")
    if file_format(path) == "parquet":
        return _read_parquet(data, spec, path)
    table, dead, read = _parse_lines(split_json_lines(data), spec, path, 1)
    return FileRead(path, table, dead, read)


def _read_parquet(data: bytes, spec: FeatureSpec, path: str) -> FileRead:
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
    except Exception as e:  # noqa: BLE001
        return _unknown(path, spec, f"unreadable Parquet: {e}")
    tables, dead, start = [], [], 0
    for g in range(pf.num_row_groups):
        n = meta.row_group(g).num_rows
        try:
            group = pf.read_row_group(g)
            if group.num_rows != n:
                raise ValueError(f"{group.num_rows} rows, footer says {n}")
            clean, d = _validate_group(group, spec, path)
        except Exception as e:  # noqa: BLE001
            reason = (
                f"unreadable Parquet row group {g} (rows {start + 1}-{start + n}): "
                f"{type(e).__name__}: {str(e)[:200]}"
            )
            dead.append(DeadLetter(path, start + 1, reason, "", rows=n))
            start += n
            continue
        tables.append(clean)
        dead.extend(dataclasses.replace(x, line=x.line + start) for x in d)
        start += n
    table = pa.concat_tables(tables) if tables else empty_table(spec)
    return FileRead(path, table, dead, meta.num_rows)


def _validate_group(
    table: pa.Table, spec: FeatureSpec, path: str
) -> tuple[pa.Table, list[DeadLetter]]:
    """:func:`validate_table` after moving rows with invalid UTF-8 to dead letters."""
    bad = np.zeros(table.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name in table.column_names:
        col = table[name]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = pc.cast(
            col, pa.binary() if pa.types.is_string(col.type) else pa.large_binary()
        )
        for i, b in enumerate(raw.to_pylist()):
            if b is None or bad[i]:
                continue
            try:
                b.decode("utf-8")
            except UnicodeDecodeError as e:
                bad[i] = True
                reasons[i] = f"{name}: invalid UTF-8 at byte {e.start}"
    if not bad.any():
        return validate_table(table, spec, path)
    dead = [
        DeadLetter(path, i + 1, reasons[i], "") for i in np.flatnonzero(bad).tolist()
    ]
    keep_idx = np.flatnonzero(~bad)
    kept = table.take(pa.array(keep_idx))
    clean, more = validate_table(kept, spec, path)
    more = [dataclasses.replace(x, line=int(keep_idx[x.line - 1]) + 1) for x in more]
    return clean, sorted([*dead, *more], key=lambda d: d.line)


def read_file(path: str, spec: FeatureSpec) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads and validates one Parquet or JSON-lines file (:func:`read_file_counted`)."""
    result = read_file_counted(path, spec)
    return result.table, result.dead


def read_partition(
    root: str, hour: dt.datetime, spec: FeatureSpec
) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads one hour: all its files, validated, concatenated.

    Skipped files (:func:`scan_partition`) are logged as a warning.
    """
    files, skipped = scan_partition(root, hour)
    for s in skipped:
        logger.warning("%s: not read: %s", s.source, s.why)
    tables, dead = [], []
    for path in partition_files(root, hour) if not files else files:
        t, d = read_file(path, spec)
        tables.append(t)
        dead.extend(d)
    return pa.concat_tables(tables) if tables else empty_table(spec), dead


def dead_count(dead: Sequence[DeadLetter]) -> int:
    """Records the dead letters stand for (a lost row group counts all its rows)."""
    return sum(d.rows for d in dead)


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
