"""Criteo Display Advertising Challenge rows as an hourly CTR event stream.

Two inputs are accepted (plain or ``.gz``):

* Kaggle CSV: header ``Id,Label,I1..I13,C1..C26``, comma-separated;
* raw ``dac`` text: ``label, I1..I13, C1..C26`` tab-separated, no header and no Id.

Empty fields are missing values. ``I*`` become numeric features (float), ``C*`` (32-bit
hashes in hex) categorical strings, ``Label`` the 0/1 label. Malformed rows (wrong field
count, non-integer Id or I*, non-hex C*, missing or invalid label) become dead letters
with file and line, written to ``ROOT/_dead_letter/criteo.jsonl``.

Timestamps are **approximate and synthetic**: the data has none. Kaggle's train set
(45,840,617 rows, Ids 10000000..55840616) is in chronological order over 7 days, so a
row gets ``BASE_HOUR + (Id - 10000000) / 45840617 * 168`` hours, with the arbitrary base
``2014-09-01T00`` UTC. Rows without an Id (``dac``) get ``--start-hour`` plus their row
index divided by ``--rows-per-hour`` (default: the Kaggle train rate, 272,861 rows/h),
spread evenly within the hour.

CLI::

    python -m beam_jobs.criteo --input FILE --out ROOT \\
        [--start-hour YYYY-MM-DDTHH --rows-per-hour N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import itertools
import logging
import os
import pathlib
import sys
import zlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_jobs import cli_common
from beam_jobs.cli_common import DelimitedRecords, HourCounts
from trainer.contracts import events, storage
from trainer.contracts.events import DeadLetter
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

INT_NAMES = tuple(f"I{i}" for i in range(1, 14))
CAT_NAMES = tuple(f"C{i}" for i in range(1, 27))
KAGGLE_HEADER = ("Id", "Label", *INT_NAMES, *CAT_NAMES)
ID_BASE = 10_000_000
KAGGLE_TRAIN_ROWS = 45_840_617
TRAIN_SECONDS = 7 * 24 * 3600
BASE_HOUR = "2014-09-01T00"
DEFAULT_ROWS_PER_HOUR = KAGGLE_TRAIN_ROWS // 168
HEX_PATTERN = r"^[0-9a-fA-F]{1,16}$"
CHUNK_LINES = 500_000
DEFAULT_SPEC = (
    pathlib.Path(__file__).resolve().parents[1] / "specs/features/criteo.yaml"
)


def _base_ts(hour: str) -> int:
    return int(events.parse_hour(hour).timestamp())


def kaggle_timestamps(ids: np.ndarray, base_hour: str = BASE_HOUR) -> np.ndarray:
    """Synthetic event time of Kaggle rows: Id order spread evenly over 7 days."""
    offset = (ids.astype(np.int64) - ID_BASE) * TRAIN_SECONDS // KAGGLE_TRAIN_ROWS
    return _base_ts(base_hour) + offset


def dac_timestamps(rows: np.ndarray, start_hour: str, rows_per_hour: int) -> np.ndarray:
    """Synthetic event time of row ``rows[i]`` (0-based) of an Id-less file."""
    rows = rows.astype(np.int64)
    within = (rows % rows_per_hour) * 3600 // rows_per_hour
    return _base_ts(start_hour) + (rows // rows_per_hour) * 3600 + within


def _feature_columns(recs: DelimitedRecords, first: int) -> dict[str, pa.Array]:
    """Validates I* and C* starting at field ``first``; returns their columns."""
    for j, name in enumerate(INT_NAMES):
        recs.ints(first + j, name, allow_empty=True)
    for j, name in enumerate(CAT_NAMES):
        col = recs.columns[first + len(INT_NAMES) + j]
        ok = pc.or_(pc.match_substring_regex(col, HEX_PATTERN), pc.equal(col, ""))
        recs.reject(~ok.to_numpy(zero_copy_only=False), f"{name}: not hex", col)
    out = {
        name: pc.cast(recs.int_column(first + j), pa.float64(), safe=False)
        for j, name in enumerate(INT_NAMES)
    }
    for j, name in enumerate(CAT_NAMES):
        out[name] = pc.utf8_lower(recs.columns[first + len(INT_NAMES) + j])
    return out


def _labels(recs: DelimitedRecords, j: int) -> None:
    col = recs.columns[j]
    ok = pc.is_in(col, value_set=pa.array(["0", "1"])).to_numpy(zero_copy_only=False)
    recs.reject(~ok, "Label: must be 0 or 1", col)


def parse_kaggle(
    lines: list[str], source: str, first_line: int, spec: FeatureSpec
) -> tuple[pa.Table, list[DeadLetter]]:
    """Parses Kaggle CSV data lines (no header) into valid events."""
    recs = DelimitedRecords(lines, ",", len(KAGGLE_HEADER), source, first_line)
    recs.ints(0, "Id")
    ids = recs.int_column(0).to_numpy()
    recs.reject(
        ids < ID_BASE, f"Id: below the Kaggle train range {ID_BASE}", recs.columns[0]
    )
    _labels(recs, 1)
    feats = _feature_columns(recs, 2)
    ts = kaggle_timestamps(recs.int_column(0).to_numpy())
    return _finish(recs, ts, recs.columns[1], feats, spec)


def parse_dac(
    lines: list[str],
    source: str,
    first_line: int,
    spec: FeatureSpec,
    start_hour: str = BASE_HOUR,
    rows_per_hour: int = DEFAULT_ROWS_PER_HOUR,
) -> tuple[pa.Table, list[DeadLetter]]:
    """Parses tab-separated ``dac`` lines; row index = line number - 1."""
    recs = DelimitedRecords(
        lines, "\t", 1 + len(INT_NAMES) + len(CAT_NAMES), source, first_line
    )
    _labels(recs, 0)
    feats = _feature_columns(recs, 1)
    ts = dac_timestamps(recs.line_numbers - 1, start_hour, rows_per_hour)
    return _finish(recs, ts, recs.columns[0], feats, spec)


def _finish(
    recs: DelimitedRecords,
    ts: np.ndarray,
    label: pa.Array,
    feats: dict[str, pa.Array],
    spec: FeatureSpec,
) -> tuple[pa.Table, list[DeadLetter]]:
    table = pa.table(
        {
            spec.timestamp_key: pa.array(ts, pa.int64()),
            spec.label_key: pc.cast(pc.cast(label, pa.int64()), pa.float32()),
            **feats,
        }
    )
    clean, dead = cli_common.finalize(table, recs.line_numbers, spec, recs.source)
    return clean, recs.dead + dead


class InputFileError(ValueError):
    """The input file cannot be read as (gzipped) text: not gzip, truncated, ..."""


def _open_binary(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_chunks(
    path: str, chunk_lines: int = CHUNK_LINES, dead: list[DeadLetter] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Yields ``(first_line, lines)`` chunks of a local text file, without newlines.

    Splits on ``\\n`` only. A line that is not valid UTF-8 becomes a dead letter in
    ``dead`` and a blank line in the chunk (blank lines are skipped, numbers kept).

    Raises:
        InputFileError: if the file is not gzip or its gzip stream is truncated.
    """
    try:
        with _open_binary(path) as f:
            first = 1
            while chunk := list(itertools.islice(f, chunk_lines)):
                yield (
                    first,
                    [_decode(b, path, first + i, dead) for i, b in enumerate(chunk)],
                )
                first += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputFileError(
            f"not a readable gzip file ({type(e).__name__}: {e}); rows before the "
            "damage may already be written under --out"
        ) from None


def _decode(raw: bytes, path: str, line: int, dead: list[DeadLetter] | None) -> str:
    raw = raw.rstrip(b"\r\n")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if dead is not None:
            shown = raw[:2000].decode("utf-8", "backslashreplace")
            dead.append(
                DeadLetter(path, line, f"invalid UTF-8 at byte {e.start}", shown)
            )
        return ""


def detect_format(first_line: str) -> str:
    """``kaggle`` for the Kaggle CSV header, else ``dac`` for tab-separated rows.

    Raises:
        ValueError: for a CSV header that is not Kaggle's labeled train header.
    """
    if first_line.startswith("Id,"):
        if tuple(first_line.split(",")) != KAGGLE_HEADER:
            raise ValueError(
                f"header is not {','.join(KAGGLE_HEADER[:3])}..C26 "
                "(Kaggle test files have no Label and cannot be used)"
            )
        return "kaggle"
    if "\t" in first_line:
        return "dac"
    raise ValueError("neither a Kaggle CSV header nor tab-separated dac rows")


def run(
    path: str,
    root: str,
    spec: FeatureSpec,
    start_hour: str = BASE_HOUR,
    rows_per_hour: int = DEFAULT_ROWS_PER_HOUR,
    fmt: str = "parquet",
    chunk_lines: int = CHUNK_LINES,
) -> tuple[HourCounts, list[DeadLetter], str]:
    """Converts a Criteo file into hourly partitions and dead letters under ``root``.

    Returns:
        Per-hour ``[events, positives]``, the dead letters and their file's URI.

    Raises:
        ValueError: if the file's format is not recognised.
    """
    counts: HourCounts = {}
    dead: list[DeadLetter] = []
    next_part: dict[dt.datetime, int] = {}
    kind = None
    for first, lines in iter_chunks(path, chunk_lines, dead):
        if kind is None:
            kind = detect_format(lines[0] if lines else "")
            if kind == "kaggle":
                first, lines = first + 1, lines[1:]
        if not lines:  # a header-only file
            continue
        if kind == "kaggle":
            table, bad = parse_kaggle(lines, path, first, spec)
        else:
            table, bad = parse_dac(lines, path, first, spec, start_hour, rows_per_hour)
        dead += bad
        cli_common.merge_counts(
            counts, cli_common.write_hourly(table, root, spec, fmt, next_part)
        )
    if kind is None:
        raise InputFileError("empty file: no header and no rows")
    if not counts and not dead:
        logger.warning("%s: no data rows (header only)", path)
    dead.sort(key=lambda d: d.line)
    dead_uri = storage.join(root, "_dead_letter", "criteo.jsonl")
    events.write_dead_letters(dead_uri, dead)
    n = sum(c[0] for c in counts.values())
    logger.info(
        "wrote %d events in %d hours, %d dead letters", n, len(counts), len(dead)
    )
    return counts, dead, dead_uri


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m beam_jobs.criteo",
        description="Criteo Kaggle CSV or dac TSV rows -> hourly CTR events "
        "(synthetic timestamps; see the module docstring).",
    )
    p.add_argument("--input", required=True, help="Kaggle CSV or dac TSV (.gz ok)")
    p.add_argument("--out", required=True, help="partition root (local or gs://)")
    p.add_argument("--spec", default=str(DEFAULT_SPEC))
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--start-hour", default=BASE_HOUR, help="dac rows: first hour")
    p.add_argument("--rows-per-hour", type=int, default=DEFAULT_ROWS_PER_HOUR)
    return p.parse_args(argv)


def _check_args(args: argparse.Namespace) -> str | None:
    if not os.path.isfile(args.input):
        return f"--input {args.input} is not a file"
    if args.rows_per_hour < 1:
        return f"--rows-per-hour must be >= 1, got {args.rows_per_hour}"
    try:
        events.parse_hour(args.start_hour)
    except ValueError as e:
        return f"--start-hour: {e}"
    return cli_common.check_out_root(args.out)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (2 for bad arguments or input)."""
    args = _parse_args(argv)
    cli_common.setup_logging()
    error = _check_args(args)
    if error:
        return cli_common.fail(error)
    try:
        spec = cli_common.load_spec(args.spec)
    except cli_common.UsageError as e:
        return cli_common.fail(str(e))
    try:
        counts, dead, dead_uri = run(
            args.input, args.out, spec, args.start_hour, args.rows_per_hour, args.format
        )
    except ValueError as e:
        return cli_common.fail(f"{args.input}: {e}")
    cli_common.print_summary(args.out, spec, counts, dead, dead_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
