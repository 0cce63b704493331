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

The record and table checks live in :mod:`trainer.contracts.event_records` and are
re-exported here. No Beam import: plain functions that Beam DoFns, data sources and
the trainer all call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainer.contracts import storage
from trainer.contracts.event_records import MAX_ABS_NUMERIC as MAX_ABS_NUMERIC
from trainer.contracts.event_records import MAX_STRING_LEN as MAX_STRING_LEN
from trainer.contracts.event_records import MAX_TS as MAX_TS
from trainer.contracts.event_records import MIN_TS as MIN_TS
from trainer.contracts.event_records import DeadLetter as DeadLetter
from trainer.contracts.event_records import empty_table as empty_table
from trainer.contracts.event_records import parse_json_lines as parse_json_lines
from trainer.contracts.event_records import parse_lines, split_json_lines
from trainer.contracts.event_records import parse_record as parse_record
from trainer.contracts.event_records import rows_to_table as rows_to_table
from trainer.contracts.event_records import schema_for as schema_for
from trainer.contracts.event_records import validate_record as validate_record
from trainer.contracts.event_records import validate_table as validate_table
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

HOUR_FORMAT = "%Y-%m-%dT%H"
_PARTITION_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})")
_PARTITION_DIR_RE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}$")


class MissingPartitionError(FileNotFoundError):
    """An hour partition that was asked for does not exist."""


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
    table, dead, read = parse_lines(split_json_lines(data), spec, path, 1)
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
