"""One event record and one table of events against the contract (no I/O, no Beam).

The schema of valid events, :class:`DeadLetter`, and the checks that turn decoded
JSON records (:func:`validate_record`, :func:`parse_record`) and Arrow tables
(:func:`validate_table`) into valid rows plus dead letters. Any error while decoding or
validating one record makes that record a dead letter; nothing here raises on data.
:mod:`trainer.contracts.events` (hour partitions and file reading) re-exports these
names: import them from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.contracts.features import FeatureSpec

MIN_TS = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp())
MAX_TS = int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp())
MAX_ABS_NUMERIC = 1e15
MAX_STRING_LEN = 1024


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
    table, dead, _ = parse_lines(lines, spec, source, first_line)
    return table, dead


def split_json_lines(data: bytes) -> list[bytes]:
    """JSON Lines framing: split on ``\\n`` only, never on U+2028, U+2029 or U+0085."""
    return data.split(b"\n")


def parse_lines(
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
