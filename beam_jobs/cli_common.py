"""Shared code of the real-data source jobs (MovieLens, Criteo): parse, write, report.

Delimited text is validated column by column with pyarrow compute kernels, never row
loops: :class:`DelimitedRecords` splits lines into fields and turns every malformed
row into a :class:`~trainer.contracts.events.DeadLetter` naming its file, line and reason.
:func:`write_hourly` cuts an event table into hourly partitions, and
:func:`print_summary` prints the per-hour summary the CLIs show.

Example:
    >>> recs = DelimitedRecords(["1::a", "oops", "2::b"], "::", 2, "f.dat")
    >>> [d.line for d in recs.dead], recs.line_numbers.tolist()
    ([2], [1, 3])
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gzip
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.contracts import events, storage
from trainer.contracts.events import DeadLetter
from trainer.contracts.features import FeatureSpec, FeatureSpecError, load_feature_spec

INT_PATTERN = r"^-?[0-9]{1,18}$"
HourCounts = dict[dt.datetime, list[int]]  # hour -> [events, positives]


def read_lines(uri: str, encoding: str = "utf-8") -> list[str]:
    """Reads a (possibly gzipped) text file into lines without line terminators.

    Splits on ``\\n`` only: ``str.splitlines`` would also split on characters such as
    U+0085, which latin-1 text (MovieLens titles) can contain.
    """
    data = storage.read_bytes(uri)
    if uri.endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.decode(encoding).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


class DelimitedRecords:
    """Lines of a delimited file as string columns, with malformed rows rejected.

    Blank lines are skipped; rows with the wrong number of fields become dead letters.
    Later checks call :meth:`reject` to drop more rows, keeping every column aligned.

    Args:
        lines: The file's lines (no terminators).
        sep: Field separator (a literal string).
        num_fields: Expected number of fields per row.
        source: File name written into dead letters.
        first_line: 1-based line number of ``lines[0]``.
    """

    def __init__(
        self,
        lines: Sequence[str],
        sep: str,
        num_fields: int,
        source: str,
        first_line: int = 1,
    ) -> None:
        self.source = source
        self.dead: list[DeadLetter] = []
        raw = pa.array(lines, pa.string())
        numbers = np.arange(first_line, first_line + len(lines), dtype=np.int64)
        nonblank = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(raw)), 0)
        keep = nonblank.to_numpy(zero_copy_only=False)
        self.raw, self.line_numbers = raw.filter(keep), numbers[keep]
        parts = pc.split_pattern(self.raw, sep)
        counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        bad = counts != num_fields
        for i in np.flatnonzero(bad):
            self._dead(int(i), f"expected {num_fields} fields, got {counts[i]}")
        good = ~bad
        self.raw, self.line_numbers = self.raw.filter(good), self.line_numbers[good]
        parts = parts.filter(pa.array(good))
        self.columns = [pc.list_element(parts, j) for j in range(num_fields)]

    def __len__(self) -> int:
        return len(self.line_numbers)

    def _dead(self, i: int, reason: str) -> None:
        line = int(self.line_numbers[i])
        self.dead.append(
            DeadLetter(self.source, line, reason, self.raw[i].as_py()[:2000])
        )

    def reject(
        self, bad: np.ndarray, reason: str, values: pa.Array | None = None
    ) -> None:
        """Dead-letters rows where ``bad`` is True (``values`` quoted in the reason)."""
        if not bad.any():
            return
        for i in np.flatnonzero(bad):
            shown = f": {values[i].as_py()!r}" if values is not None else ""
            self._dead(int(i), f"{reason}{shown}")
        self.keep(~bad)

    def keep(self, mask: np.ndarray) -> None:
        """Keeps only rows where ``mask`` is True, without dead letters."""
        self.raw, self.line_numbers = self.raw.filter(mask), self.line_numbers[mask]
        self.columns = [c.filter(mask) for c in self.columns]

    def ints(self, j: int, name: str, allow_empty: bool = False) -> None:
        """Rejects rows whose field ``j`` is not an integer (or empty, if allowed)."""
        col = self.columns[j]
        ok = pc.match_substring_regex(col, INT_PATTERN)
        if allow_empty:
            ok = pc.or_(ok, pc.equal(col, ""))
        self.reject(~ok.to_numpy(zero_copy_only=False), f"{name}: not an integer", col)

    def unique_ints(self, j: int, name: str) -> np.ndarray:
        """Validates field ``j`` as integer keys; repeats after the first are dead."""
        self.ints(j, name)
        ids = self.int_column(j).to_numpy()
        _, first = np.unique(ids, return_index=True)
        repeat = np.ones(len(ids), dtype=bool)
        repeat[first] = False
        self.reject(repeat, f"duplicate {name}", self.columns[j])
        return ids[~repeat]

    def int_column(self, j: int) -> pa.Array:
        """Field ``j`` as int64 (empty -> null); call :meth:`ints` first."""
        col = self.columns[j]
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        return pc.cast(col, pa.int64())


def finalize(
    table: pa.Table, line_numbers: np.ndarray, spec: FeatureSpec, source: str
) -> tuple[pa.Table, list[DeadLetter]]:
    """Runs the event contract check; dead letters get file line numbers, not rows."""
    clean, dead = events.validate_table(table, spec, source)
    fixed = [
        DeadLetter(d.source, int(line_numbers[d.line - 1]), d.reason, d.record)
        for d in dead
    ]
    return clean, fixed


def write_hourly(
    table: pa.Table,
    root: str,
    spec: FeatureSpec,
    fmt: str = "parquet",
    next_part: dict[dt.datetime, int] | None = None,
) -> HourCounts:
    """Writes events into hourly partitions, sorted by time within each hour.

    Args:
        table: Valid events (the spec's schema).
        root: Partition root, local or gs://.
        spec: The feature spec (timestamp and label keys).
        fmt: ``parquet`` or ``jsonl``.
        next_part: Part number per hour, updated in place, so that a job writing
            several chunks into the same hour does not overwrite its earlier parts.

    Returns:
        ``{hour: [events, positives]}`` for the hours written.
    """
    next_part = {} if next_part is None else next_part
    ts = table[spec.timestamp_key].to_numpy()
    order = np.argsort(ts, kind="stable")
    table, ts = table.take(pa.array(order)), ts[order]
    hours, starts = np.unique(ts // 3600, return_index=True)
    ends = [*starts[1:], len(ts)]
    labels = table[spec.label_key].to_numpy()
    counts: HourCounts = {}
    for h, s, e in zip(hours, starts, ends, strict=True):
        hour = dt.datetime.fromtimestamp(int(h) * 3600, dt.UTC)
        part = next_part.get(hour, 0)
        events.write_partition(root, hour, table.slice(s, e - s), fmt=fmt, part=part)
        next_part[hour] = part + 1
        counts[hour] = [int(e - s), int(labels[s:e].sum())]
    return counts


def merge_counts(total: HourCounts, more: Mapping[dt.datetime, list[int]]) -> None:
    """Adds per-hour counts of one chunk into ``total`` in place."""
    for hour, (n, pos) in more.items():
        cur = total.setdefault(hour, [0, 0])
        cur[0] += n
        cur[1] += pos


def _hour_line(hour: dt.datetime, summary: Mapping[str, object]) -> str:
    distinct = " ".join(
        f"{k.removeprefix('distinct_')}={v}"
        for k, v in summary.items()
        if k.startswith("distinct_")
    )
    return (
        f"{events.format_hour(hour)}  events={summary['events']:<7} "
        f"label_mean={summary['label_mean']:.4f}  distinct: {distinct}"
    )


def print_summary(
    root: str,
    spec: FeatureSpec,
    counts: HourCounts,
    dead: Sequence[DeadLetter],
    dead_uri: str,
    head: int = 5,
    tail: int = 3,
    out: TextIO | None = None,
) -> None:
    """Prints per-hour rows (first ``head``, last ``tail``) and totals.

    The hour rows are read back from the written partitions, so they also check that
    what was written is readable and valid.
    """
    out = sys.stdout if out is None else out  # looked up late: tests capture it
    hours = sorted(counts)
    shown = hours if len(hours) <= head + tail else [*hours[:head], *hours[-tail:]]
    print(f"per-hour summary of {root} ({len(hours)} hours):", file=out)
    for i, hour in enumerate(shown):
        if len(shown) < len(hours) and i == head:
            print(f"... {len(hours) - head - tail} more hours ...", file=out)
        table, _ = events.read_partition(root, hour, spec)
        print("  " + _hour_line(hour, events.summarize(table, spec)), file=out)
    n = sum(c[0] for c in counts.values())
    pos = sum(c[1] for c in counts.values())
    mean = pos / n if n else float("nan")
    span = (
        f"{events.format_hour(hours[0])}..{events.format_hour(hours[-1])}"
        if hours
        else "-"
    )
    print(
        f"total: {n} events in {len(hours)} hours ({span}), label_mean={mean:.4f}, "
        f"{len(dead)} dead letters -> {dead_uri}",
        file=out,
    )
    # group by "field: problem", leaving out the quoted value
    reasons = collections.Counter(": ".join(d.reason.split(": ")[:2]) for d in dead)
    for reason, k in reasons.most_common(5):
        print(f"  dead letters: {k} x {reason}", file=out)


def check_out_root(root: str) -> str | None:
    """Returns an error message if ``root`` already holds files, else None."""
    existing = storage.list_files(root, max_results=1)
    if existing:
        return (
            f"--out {root} is not empty (found {existing[0]}); use an empty directory"
        )
    return None


def setup_logging() -> None:
    """Log verbosity of the source CLIs (called from their ``main`` only)."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


class UsageError(ValueError):
    """A bad flag, spec or path: the CLI prints one ``error:`` line and exits 2."""


def parse_known_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """``parser.parse_known_args`` raising :class:`UsageError` instead of exiting."""

    def error(message: str) -> NoReturn:
        raise UsageError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_known_args(argv)


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``parser.parse_args`` raising :class:`UsageError` instead of exiting."""
    args, rest = parse_known_args(parser, argv)
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    return args


def load_spec(path: str, flag: str = "--spec") -> FeatureSpec:
    """Loads a feature spec; any problem with it is a :class:`UsageError`."""
    try:
        return load_feature_spec(path)
    except (FeatureSpecError, OSError, UnicodeDecodeError, ValueError) as e:
        text = str(e) if path in str(e) else f"{path}: {e}"
        raise UsageError(f"{flag}: {text}") from None


def check_out_dir(out: str, flag: str = "--out") -> None:
    """Rejects an output path that is (or lies below) a file, or is not writable."""
    problem = storage.local_dir_problem(out)
    if problem:
        raise UsageError(f"{flag} {out}: {problem}")


def check_readable_root(root: str, flag: str) -> None:
    """Rejects an input directory that is a file or cannot be read (local paths)."""
    if storage.is_gcs(root) or not os.path.exists(root):
        return
    if not os.path.isdir(root):
        raise UsageError(f"{flag} {root}: is a file, not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UsageError(f"{flag} {root}: not readable")


def check_input_file(path: str, flag: str) -> None:
    """Rejects an input file that is missing, a directory or unreadable (local)."""
    if storage.is_gcs(path):
        return
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{flag} {path}: not readable")


def fail(message: str) -> int:
    """Prints a CLI error to stderr and returns the exit status for bad arguments."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line
    return 2
