"""Benchmark: events/s of the full stats job vs a single-process pyarrow value count.

Generates N synthetic events (3 categorical features, Zipf(s) over ~1M values each,
plus 2 bucketized numerics) as Parquet hour files in a temp dir with a quick vectorized
NumPy generator, runs ``beam_jobs.feature_stats.compute_stats`` (counts, top-k, tiers,
boundaries, hashing diagnostics, artifact writes) on the local DirectRunner, and times
a single-process ``pyarrow`` read + ``value_counts`` + merge of the same files as the
practical limit. The last line printed is one JSON object with ``events_per_s``,
``limit_events_per_s`` and ``ratio``.

The job runs without hashing diagnostics (they import TensorFlow to hash the tail);
``--with-diagnostics`` times one more run with them. The limit is the best of 2 runs;
an untimed warm-up job on the first hour runs before the timed ones.

Usage:
    python bench/beam_stats.py [--events N] [--hours H] [--with-diagnostics]
        [--modes in_memory:1,multi_threading:2,multi_processing:2] [--seed S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beam_jobs import diagnostics, feature_stats
from beam_jobs.frequencies import merge_count_tables
from trainer.contracts import events, storage
from trainer.contracts.features import FeatureSpec

CATEGORICAL = ("user_id", "item_id", "publisher")
FIRST_HOUR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def bench_spec() -> FeatureSpec:
    return FeatureSpec.from_dict(
        {
            "name": "bench",
            "features": [
                {
                    "name": "user_id",
                    "treatment": "hybrid",
                    "top_k": 20000,
                    "hash_buckets": 16384,
                },
                {"name": "item_id", "treatment": "mgqe", "top_k": 50000},
                {
                    "name": "publisher",
                    "treatment": "double_hash",
                    "hash_buckets": 16384,
                },
                {"name": "price", "kind": "numeric", "num_buckets": 16},
                {"name": "position", "kind": "numeric", "num_buckets": 8},
            ],
        }
    )


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, s: float) -> np.ndarray:
    """n draws of ranks in [0, vocab) with P(rank i) proportional to (i+1)**-s."""
    cdf = np.cumsum(np.arange(1, vocab + 1, dtype=np.float64) ** -s)
    return np.searchsorted(cdf, rng.random(n) * cdf[-1]).astype(np.int64)


def generate(
    root: str, n: int, hours: int, files_per_hour: int, seed: int
) -> list[str]:
    """Writes n events as Parquet files; returns the hour range text."""
    rng = np.random.default_rng(seed)
    spec = bench_spec()
    vocab = 1_000_000
    names = {f: pa.array([f"{f[0]}{i}" for i in range(vocab)]) for f in CATEGORICAL}
    parts = hours * files_per_hour
    for p in range(parts):
        m = n // parts + (1 if p < n % parts else 0)
        hour = FIRST_HOUR + dt.timedelta(hours=p // files_per_hour)
        cols = {
            "event_ts": np.full(m, int(hour.timestamp()) + 1, dtype=np.int64),
            "label": (rng.random(m) < 0.1).astype(np.float32),
        }
        for f in CATEGORICAL:
            cols[f] = names[f].take(pa.array(zipf_ids(rng, m, vocab, 1.05)))
        cols["price"] = rng.lognormal(2.0, 1.0, m)
        cols["position"] = rng.integers(1, 50, m).astype(np.float64)
        table = pa.table(cols).cast(events.schema_for(spec))
        events.write_partition(root, hour, table, part=p % files_per_hour)
    return [
        events.format_hour(FIRST_HOUR),
        events.format_hour(FIRST_HOUR + dt.timedelta(hours=hours - 1)),
    ]


def limit(root: str) -> float:
    """Seconds for one process to read every file and value-count the categoricals."""
    start = time.perf_counter()
    partial: dict[str, list[pa.Table]] = {f: [] for f in CATEGORICAL}
    for path in (p for p in storage.list_files(root) if p.endswith(".parquet")):
        table = pq.read_table(path, columns=list(CATEGORICAL))
        for f in CATEGORICAL:
            vc = pc.value_counts(table[f])
            partial[f].append(
                pa.table({"value": vc.field("values"), "count": vc.field("counts")})
            )
    for f in CATEGORICAL:
        merge_count_tables(partial[f])
    return time.perf_counter() - start


def run_job(root: str, hours: str, mode: str, diagnostics: bool) -> tuple[float, dict]:
    """Times one job run; ``mode`` is ``RUNNING_MODE:WORKERS``."""
    running_mode, workers = mode.split(":")
    with tempfile.TemporaryDirectory() as out:
        config = feature_stats.StatsConfig(
            direct_num_workers=int(workers),
            direct_running_mode=running_mode,
            diagnostics=diagnostics,
        )
        start = time.perf_counter()
        manifest = feature_stats.compute_stats(
            root, hours, bench_spec(), out, config=config
        )
        return time.perf_counter() - start, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--hours", type=int, default=4)
    parser.add_argument("--files-per-hour", type=int, default=2)
    parser.add_argument(
        "--modes",
        default="in_memory:1",
        help="comma list of DirectRunner RUNNING_MODE:WORKERS to time, the best counts",
    )
    parser.add_argument(
        "--with-diagnostics",
        action="store_true",
        help="also time the first mode with hashing diagnostics (imports TensorFlow)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        first, last = generate(
            root, args.events, args.hours, args.files_per_hour, args.seed
        )
        hours = f"{first}:{last}"
        limit_s = min(limit(root) for _ in range(2))
        # Untimed warm-up on the first hour: the first job in a process pays ~3 s of
        # one-off imports and runner set-up, which would favour whichever mode runs 2nd.
        run_job(root, first, args.modes.split(",")[0], diagnostics=False)
        timings = {}
        for mode in args.modes.split(","):
            timings[mode], manifest = run_job(root, hours, mode, diagnostics=False)
            print(diagnostics.format_summary(manifest))
            print(f"{mode}: {timings[mode]:.1f}s")
        with_diag = None
        if args.with_diagnostics:
            with_diag, manifest = run_job(root, hours, args.modes.split(",")[0], True)
            print(diagnostics.format_summary(manifest))
    best = min(timings, key=timings.__getitem__)
    result = {
        "events": args.events,
        "seconds": round(timings[best], 2),
        "events_per_s": round(args.events / timings[best]),
        "limit_seconds": round(limit_s, 2),
        "limit_events_per_s": round(args.events / limit_s),
        "ratio": round(limit_s / timings[best], 3),
        "mode": best,
        "seconds_by_mode": {k: round(v, 2) for k, v in timings.items()},
        "seconds_with_diagnostics": with_diag and round(with_diag, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
