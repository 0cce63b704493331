"""Fixtures for the Beam stats tests: a tiny spec, hour writers, real shared samples."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.contracts import events
from trainer.contracts.features import FeatureSpec

HOUR0 = dt.datetime(2026, 1, 1, 0, tzinfo=dt.UTC)
CRITEO_CSV = pathlib.Path("criteo-sample") / "criteo_kaggle_train_rows.csv"
ML_RATINGS = pathlib.Path("ml-1m") / "ratings.users-1-2999.partial.dat.gz"


@pytest.fixture(scope="session")
def tiny_spec() -> FeatureSpec:
    """Three categoricals (hybrid, 3-tier mgqe, hash) and one bucketized numeric."""
    return FeatureSpec.from_dict(
        {
            "name": "tiny",
            "features": [
                {"name": "user", "treatment": "hybrid", "top_k": 3, "hash_buckets": 64},
                {
                    "name": "item",
                    "treatment": "mgqe",
                    "top_k": 4,
                    "tier_shares": [0.25, 0.5],
                    "num_centroids": [8, 4, 2],
                },
                {"name": "tag", "treatment": "hash", "hash_buckets": 16},
                {"name": "price", "kind": "numeric", "num_buckets": 4},
            ],
        }
    )


def event(
    ts: int, user: str | None, item: str | None, price: float | None = 1.0
) -> dict:
    return {
        "event_ts": ts,
        "label": 0,
        "user": user,
        "item": item,
        "tag": "t",
        "price": price,
    }


@pytest.fixture
def write_hour() -> Callable[..., str]:
    """``write_hour(root, hour_index, rows, spec, fmt="parquet", part=0)`` -> path.

    ``fmt`` is ``parquet``, ``jsonl`` or ``raw``: strings written verbatim as lines.
    """

    def _write(
        root: str,
        hour_index: int,
        rows: Sequence[Any],
        spec: FeatureSpec,
        fmt: str = "parquet",
        part: int = 0,
    ) -> str:
        hour = HOUR0 + dt.timedelta(hours=hour_index)
        if fmt == "raw":
            path = (
                pathlib.Path(events.partition_path(root, hour))
                / f"part-{part:05d}.jsonl"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{r}\n" for r in rows))
            return str(path)
        table = events.rows_to_table(list(rows), spec)
        return events.write_partition(root, hour, table, fmt=fmt, part=part)

    return _write


def hour_text(index: int) -> str:
    return events.format_hour(HOUR0 + dt.timedelta(hours=index))


def ts_of(index: int, second: int = 0) -> int:
    return int((HOUR0 + dt.timedelta(hours=index)).timestamp()) + second


@pytest.fixture(scope="session")
def criteo_table(shared_data: pathlib.Path) -> pa.Table:
    """The Criteo sample's C1..C26 as string columns (empty -> null)."""
    df = pd.read_csv(shared_data / CRITEO_CSV, dtype=str, keep_default_na=False)
    return pa.table(
        {
            f"C{i}": pa.array([v or None for v in df[f"C{i}"]], pa.string())
            for i in range(1, 27)
        }
    )


@pytest.fixture(scope="session")
def movielens_movies(shared_data: pathlib.Path) -> pa.Table:
    """MovieIDs of the MovieLens ratings sample (UserID::MovieID::Rating::Timestamp)."""
    df = pd.read_csv(
        shared_data / ML_RATINGS, sep=":", header=None, usecols=[0, 2, 4, 6], dtype=str
    )
    return pa.table({"movie": pa.array(df[2].tolist(), pa.string())})


def split_batches(table: pa.Table, n: int) -> list[pa.Table]:
    """``n`` roughly equal slices of a table."""
    edges = np.linspace(0, table.num_rows, n + 1).astype(int)
    return [table.slice(a, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def write_batches(directory: pathlib.Path, table: pa.Table, n: int) -> list[str]:
    """Writes ``n`` slices of a table as Parquet files; returns their paths.

    Pipelines read these with :func:`read_parquet` instead of ``beam.Create(tables)``,
    which would pickle (and bz2-compress) the data into the pipeline proto.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(split_batches(table, n)):
        path = directory / f"batch-{i:03d}.parquet"
        pq.write_table(part, path)
        paths.append(str(path))
    return paths


def read_parquet(path: str) -> pa.Table:
    return pq.read_table(path)
