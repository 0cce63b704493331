"""Benchmark: events/s of generating and writing one 1M-event synthetic hour.

Uses the default vocabularies (2M users, 1M items). The one-off label-bias
calibration is timed apart. The last line printed is one JSON object.

Usage:
    python bench/synthetic.py [--events N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from beam_jobs import synthetic


def run(events: int, seed: int) -> dict[str, float]:
    """Times the calibration, then generating + writing hour 1 as Parquet."""
    config = synthetic.SyntheticConfig(seed=seed, events_per_hour=events)
    start = time.perf_counter()
    synthetic.label_bias(config)
    calibration = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        synthetic.write_stream(root, config, hours=1, first_hour=1)
        seconds = time.perf_counter() - start
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "calibration_seconds": round(calibration, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.events, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
