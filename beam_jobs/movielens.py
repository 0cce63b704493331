"""MovieLens-1M as a CTR event stream, and the preparation of its data directory.

Events join ``ratings.dat`` (UserID::MovieID::Rating::Timestamp; a gzipped partial
file is accepted) with ``users.dat`` (UserID::Gender::Age::Occupation::Zip) and
``movies.dat`` (MovieID::Title::Genres, latin-1). Each rating is one event:

    event_ts = Timestamp, label = 1 if Rating >= 4 else 0,
    user_id, movie_id, gender, age, occupation, zip, genre (the first listed genre)
    as categorical strings, and year (from the title) as a number.

Events go to hourly Parquet partitions under ROOT (see :mod:`trainer.contracts.events`);
malformed lines and ratings of unknown users or movies go to
``ROOT/_dead_letter/movielens.jsonl``. Everything is vectorized with pyarrow/NumPy.

CLI::

    python -m beam_jobs.movielens --data-dir DIR --out ROOT [--max-users N]
    python -m beam_jobs.movielens prepare --zip ml-1m.zip --out DIR

``prepare`` turns GroupLens' ``ml-1m.zip`` (download it yourself from
https://files.grouplens.org/datasets/movielens/ml-1m.zip) into the layout that
``--data-dir`` expects, with a SASRec-format ``ml-1m.txt`` for
:mod:`trainer.data.sequences`.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import zipfile
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_jobs import cli_common
from beam_jobs.cli_common import DelimitedRecords, HourCounts
from trainer.contracts import events, storage
from trainer.contracts.events import DeadLetter
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

RATINGS_FILES = ("ratings.dat", "ratings.users-1-2999.partial.dat.gz")
USERS_FILE, MOVIES_FILE, SASREC_FILE = "users.dat", "movies.dat", "ml-1m.txt"
POSITIVE_RATING = 4
_REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SPEC = _REPO / "specs" / "features" / "movielens.yaml"
DEFAULT_DATA_DIR = _REPO.parent / "shared" / "data" / "ml-1m"
_YEAR_RE = r"\((?P<year>[0-9]{4})\)\s*$"
_ZIP_MEMBERS = {  # name in ml-1m.zip -> name in the data directory
    "ratings.dat": "ratings.dat",
    USERS_FILE: USERS_FILE,
    MOVIES_FILE: MOVIES_FILE,
    "README": "GROUPLENS_ml-1m_README.txt",
}


def ratings_path(data_dir: str) -> str:
    """The ratings file of ``data_dir``; a full ``ratings.dat`` wins over the partial.

    Raises:
        FileNotFoundError: if neither exists.
    """
    for name in RATINGS_FILES:
        path = storage.join(data_dir, name)
        if storage.exists(path):
            return path
    raise FileNotFoundError(
        f"no ratings file in {data_dir}: expected one of {RATINGS_FILES}"
    )


def read_users(path: str) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads ``users.dat`` into (user_id int64, gender, age, occupation, zip)."""
    recs = DelimitedRecords(cli_common.read_lines(path, "latin-1"), "::", 5, path)
    ids = recs.unique_ints(0, "UserID")
    names = ("gender", "age", "occupation", "zip")
    cols = {n: recs.columns[j + 1] for j, n in enumerate(names)}
    return pa.table({"user_id": ids, **cols}), recs.dead


def read_movies(path: str) -> tuple[pa.Table, list[DeadLetter]]:
    """Reads ``movies.dat`` (latin-1) into (movie_id int64, genre, year float64)."""
    recs = DelimitedRecords(cli_common.read_lines(path, "latin-1"), "::", 3, path)
    ids = recs.unique_ints(0, "MovieID")
    genre = pc.list_element(pc.split_pattern(recs.columns[2], "|"), 0)
    genre = pc.if_else(pc.equal(genre, ""), pa.scalar(None, pa.string()), genre)
    year = pc.struct_field(pc.extract_regex(recs.columns[1], _YEAR_RE), "year")
    return pa.table(
        {"movie_id": ids, "genre": genre, "year": pc.cast(year, pa.float64())}
    ), recs.dead


def read_ratings(
    path: str,
    max_users: int | None = None,
    known: dict[str, np.ndarray] | None = None,
) -> tuple[pa.Table, np.ndarray, list[DeadLetter]]:
    """Reads ratings into (user_id, movie_id, rating, event_ts) int64 columns.

    Args:
        path: ``ratings.dat`` or a gzipped ratings file.
        max_users: Keep only the ``max_users`` smallest UserIDs (for quick runs).
        known: Valid ids per column (``user_id``, ``movie_id``); a rating of any
            other id is a dead letter.

    Returns:
        The table, each row's 1-based line number in ``path``, and dead letters.
    """
    recs = DelimitedRecords(cli_common.read_lines(path, "latin-1"), "::", 4, path)
    names = ("user_id", "movie_id", "rating", "event_ts")
    for j, name in enumerate(names):
        recs.ints(j, name)
    rating = recs.int_column(2).to_numpy()
    recs.reject((rating < 1) | (rating > 5), "rating: not in 1..5", recs.columns[2])
    if max_users is not None:
        users = recs.int_column(0).to_numpy()
        recs.keep(np.isin(users, np.unique(users)[:max_users]))
    for j, name in enumerate(names):
        if known and name in known:
            unknown = ~np.isin(recs.int_column(j).to_numpy(), known[name])
            recs.reject(unknown, f"unknown {name}", recs.columns[j])
    table = pa.table({n: recs.int_column(j) for j, n in enumerate(names)})
    return table, recs.line_numbers, recs.dead


def _side_rows(side: pa.Table, key: str, queries: pa.ChunkedArray) -> pa.Table:
    """Rows of ``side`` (unique ``key``) matching each query; all must exist."""
    keys = side[key].to_numpy()
    order = np.argsort(keys)
    return side.take(pa.array(order[np.searchsorted(keys[order], queries.to_numpy())]))


def build_events(
    data_dir: str, spec: FeatureSpec, max_users: int | None = None
) -> tuple[pa.Table, list[DeadLetter]]:
    """Joins ratings with users and movies into valid events of ``spec``'s schema.

    Returns:
        Events in ratings-file order, and every dead letter of the three files.
    """
    users, dead = read_users(storage.join(data_dir, USERS_FILE))
    movies, dead_movies = read_movies(storage.join(data_dir, MOVIES_FILE))
    source = ratings_path(data_dir)
    known = {k: t[k].to_numpy() for k, t in (("user_id", users), ("movie_id", movies))}
    ratings, lines, dead_ratings = read_ratings(source, max_users, known)
    dead += dead_movies + dead_ratings
    u_side = _side_rows(users, "user_id", ratings["user_id"])
    m_side = _side_rows(movies, "movie_id", ratings["movie_id"])
    label = pc.cast(pc.greater_equal(ratings["rating"], POSITIVE_RATING), pa.float32())
    table = pa.table(
        {
            spec.timestamp_key: ratings["event_ts"],
            spec.label_key: label,
            "user_id": pc.cast(ratings["user_id"], pa.string()),
            "movie_id": pc.cast(ratings["movie_id"], pa.string()),
            **{c: u_side[c] for c in ("gender", "age", "occupation", "zip")},
            "genre": m_side["genre"],
            "year": m_side["year"],
        }
    )
    clean, invalid = cli_common.finalize(table, lines, spec, source)
    return clean, dead + invalid


def run(
    data_dir: str,
    root: str,
    spec: FeatureSpec,
    max_users: int | None = None,
    fmt: str = "parquet",
) -> tuple[HourCounts, list[DeadLetter], str]:
    """Builds the events, writes hourly partitions and dead letters under ``root``.

    Returns:
        Per-hour ``[events, positives]``, the dead letters and their file's URI.
    """
    table, dead = build_events(data_dir, spec, max_users)
    counts = cli_common.write_hourly(table, root, spec, fmt)
    dead_uri = storage.join(root, "_dead_letter", "movielens.jsonl")
    events.write_dead_letters(dead_uri, dead)
    logger.info("%d events, %d hours, %d dead", table.num_rows, len(counts), len(dead))
    return counts, dead, dead_uri


# ----------------------------------------------------------------------------- prepare


def sasrec_sequences(
    ratings: pa.Table, min_count: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SASRec-style (user, item) sequences from raw ratings.

    Keeps items and users with at least ``min_count`` ratings (counted over all
    ratings, as SASRec's preprocessing does), orders each user's ratings by time
    (ties keep their file order), numbers users 1.. in ascending UserID and items 1..
    by first appearance in that output. SASRec's published ``ml-1m.txt`` numbers users
    in a Python-2 dict order instead, so the numbering can differ from it; the
    sequences of each user are the same.

    Returns:
        ``(users, items)`` 1-based arrays in output order, and the original UserID and
        MovieID of each new user and item id (index ``id - 1``).
    """
    user, item = ratings["user_id"].to_numpy(), ratings["movie_id"].to_numpy()
    ts = ratings["event_ts"].to_numpy()
    u_ids, u_counts = np.unique(user, return_counts=True)
    i_ids, i_counts = np.unique(item, return_counts=True)
    keep = np.isin(user, u_ids[u_counts >= min_count]) & np.isin(
        item, i_ids[i_counts >= min_count]
    )
    user, item, ts = user[keep], item[keep], ts[keep]
    order = np.lexsort((ts, user))  # stable: ties keep file order
    user, item = user[order], item[order]
    user_map, new_user = np.unique(user, return_inverse=True)
    item_vals, first, inverse = np.unique(item, return_index=True, return_inverse=True)
    rank = np.empty(len(item_vals), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(item_vals))
    item_map = item_vals[np.argsort(rank)]
    return new_user + 1, rank[inverse] + 1, user_map, item_map


def prepare(zip_path: str, out_dir: str, min_count: int = 5) -> list[str]:
    """Turns GroupLens' ``ml-1m.zip`` into a ``--data-dir`` layout.

    Extracts ``ratings.dat``, ``users.dat``, ``movies.dat`` (and the README) and writes
    ``ml-1m.txt`` (see :func:`sasrec_sequences`) plus ``sasrec_user_map.tsv`` and
    ``sasrec_item_map.tsv`` mapping the new ids to the original ones.

    Raises:
        ValueError: if the zip lacks one of the three data files.

    Returns:
        The paths written.
    """
    with zipfile.ZipFile(zip_path) as zf:
        members = {pathlib.PurePosixPath(n).name: n for n in zf.namelist()}
        missing = {"ratings.dat", USERS_FILE, MOVIES_FILE} - set(members)
        if missing:
            raise ValueError(f"{zip_path}: no {', '.join(sorted(missing))} inside")
        outputs = {
            dest: zf.read(members[name])
            for name, dest in _ZIP_MEMBERS.items()
            if name in members
        }
    for name, data in outputs.items():
        storage.write_bytes(os.path.join(out_dir, name), data)
    ratings, _, dead = read_ratings(os.path.join(out_dir, "ratings.dat"))
    if dead:
        logger.warning("%d malformed ratings lines skipped: %s", len(dead), dead[0])
    users, items, user_map, item_map = sasrec_sequences(ratings, min_count)
    texts = {
        SASREC_FILE: "".join(f"{u} {i}\n" for u, i in zip(users, items, strict=True)),
        "sasrec_user_map.tsv": _map_tsv("sasrec_user_id", "ml1m_user_id", user_map),
        "sasrec_item_map.tsv": _map_tsv("sasrec_item_id", "ml1m_movie_id", item_map),
    }
    for name, text in texts.items():
        storage.write_text(os.path.join(out_dir, name), text)
    return [os.path.join(out_dir, name) for name in [*outputs, *texts]]


def _map_tsv(new: str, old: str, originals: np.ndarray) -> str:
    rows = "".join(f"{i}\t{o}\n" for i, o in enumerate(originals, start=1))
    return f"{new}\t{old}\n{rows}"


# --------------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str]) -> argparse.Namespace:
    if argv[:1] == ["prepare"]:
        p = argparse.ArgumentParser(prog="python -m beam_jobs.movielens prepare")
        p.add_argument("--zip", required=True, help="GroupLens ml-1m.zip")
        p.add_argument("--out", required=True, help="data directory to create")
        p.add_argument("--min-count", type=int, default=5)
        args = p.parse_args(argv[1:])
        args.command = "prepare"
        return args
    p = argparse.ArgumentParser(
        prog="python -m beam_jobs.movielens",
        description="MovieLens-1M ratings -> hourly CTR events. "
        "See also: python -m beam_jobs.movielens prepare --help",
    )
    default = str(DEFAULT_DATA_DIR) if DEFAULT_DATA_DIR.is_dir() else None
    p.add_argument("--data-dir", default=default, help=f"default: {default}")
    p.add_argument("--out", required=True, help="partition root (local or gs://)")
    p.add_argument("--spec", default=str(DEFAULT_SPEC))
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--max-users", type=int, default=None, help="first N UserIDs only")
    args = p.parse_args(argv)
    args.command = "events"
    return args


def _check_events_args(args: argparse.Namespace) -> str | None:
    if args.data_dir is None:
        return f"--data-dir is required (no default at {DEFAULT_DATA_DIR})"
    if not storage.exists(args.data_dir):
        return f"--data-dir {args.data_dir} does not exist"
    for name in (USERS_FILE, MOVIES_FILE):
        if not storage.exists(storage.join(args.data_dir, name)):
            return f"--data-dir {args.data_dir} has no {name}"
    if args.max_users is not None and args.max_users < 1:
        return f"--max-users must be >= 1, got {args.max_users}"
    return cli_common.check_out_root(args.out)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (2 for bad arguments)."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    cli_common.setup_logging()
    if args.command == "prepare":
        if not os.path.isfile(args.zip):
            return cli_common.fail(f"--zip {args.zip} does not exist")
        try:
            written = prepare(args.zip, args.out, args.min_count)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
            return cli_common.fail(f"--zip {args.zip}: {type(e).__name__}: {e}")
        for path in written:
            print(f"wrote {path}")
        return 0
    error = _check_events_args(args)
    if error:
        return cli_common.fail(error)
    try:
        spec = cli_common.load_spec(args.spec)
    except cli_common.UsageError as e:
        return cli_common.fail(str(e))
    try:
        counts, dead, dead_uri = run(
            args.data_dir, args.out, spec, args.max_users, args.format
        )
    except FileNotFoundError as e:  # no ratings file
        return cli_common.fail(str(e))
    except (EOFError, OSError, zlib.error) as e:  # truncated or not gzip
        return cli_common.fail(f"--data-dir {args.data_dir}: {type(e).__name__}: {e}")
    cli_common.print_summary(args.out, spec, counts, dead, dead_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
