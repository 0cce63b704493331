"""The hourly stats job: event partitions -> dictionaries, tiers, boundaries, hashing.

::

    python -m beam_jobs.feature_stats --logs ROOT --hours START[:END] \\
        --spec specs/features/synthetic.yaml --out DIR [--previous PREV_DIR] \\
        [--half-life-hours 24] [--max-bad-share 0.01] [--approx-capacity M] \\
        [--runner DataflowRunner --project P --region R --temp_location gs://... \\
         --setup_file ./setup.py]

Reads every file of the hours (Parquet or JSON lines), validates rows with
:mod:`trainer.contracts.events` (malformed ones go to ``DIR/dead_letter/*.jsonl``), counts
categorical values in Arrow batches, builds the top-k dictionaries, MGQE tiers, numeric
bucket boundaries and hashing diagnostics, and writes the artifact described in
docs/ARCHITECTURE.md. ``manifest.json`` is written last by the driver, and only when the
share of malformed records is at most ``--max-bad-share``: a failed run publishes
nothing. With ``--previous`` the run is continuous (decayed counts, stable rows, remaps;
see :mod:`beam_jobs.continuous`). Unknown flags go to Beam's ``PipelineOptions``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from beam_jobs import cli_common, continuous, diagnostics
from beam_jobs.frequencies import (
    CountFeatureValues,
    FeatureDictionary,
    FrequencyTiers,
    TopKDictionary,
)
from beam_jobs.sketch import DEFAULT_SAMPLE_SIZE, NumericBoundaries, NumericStats
from beam_jobs.stats_manifest import BadInputError, build_manifest, check_bad_share
from trainer.contracts import artifacts, events, runners, storage
from trainer.contracts.features import FeatureConfig, FeatureSpec, load_feature_spec

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 1 << 20
SUMMARY_FILE = ("_run", "summary.json")
CLAIM_FILE = ("_run", "claim.json")
Item = tuple[str, str, Any]  # (kind, name, payload) rows of the run summary


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    """Settings of one stats run (everything but paths).

    Attributes:
        half_life_hours: Continuous mode: half-life of the decayed counts.
        max_bad_share: Fail when malformed records exceed this share of all records.
        approx_capacity: Misra-Gries counters per feature; None counts exactly.
        batch_rows: Events per Arrow batch.
        sample_size: Numeric values kept per feature for quantiles (exact below it).
        min_state_weight: Continuous mode: values below this weight leave the state.
        direct_num_workers: DirectRunner workers unless the flags set them (0 = cores).
        direct_running_mode: DirectRunner ``in_memory``, ``multi_threading`` or
            ``multi_processing`` unless the flags set it. bench/beam_stats.py, 5M
            events on a shared 2-core machine: multi_threading:2 5.3 s (8.2 s as
            the first job of a process), in_memory:1 6.5 s (9.5 s first),
            multi_processing:2 11.5 s. Arrow releases the GIL, so threads overlap;
            processes pay for pickling every batch and accumulator.
        diagnostics: Compute hashing diagnostics (imports TensorFlow for the hashes).
    """

    half_life_hours: float = 24.0
    max_bad_share: float = 0.01
    approx_capacity: int | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    sample_size: int = DEFAULT_SAMPLE_SIZE
    min_state_weight: float = 0.1
    direct_num_workers: int = 2
    direct_running_mode: str = "multi_threading"
    diagnostics: bool = True

    def __post_init__(self) -> None:
        checks = {
            "half_life_hours": self.half_life_hours > 0,
            "max_bad_share": 0.0 <= self.max_bad_share <= 1.0,
            "approx_capacity": self.approx_capacity is None or self.approx_capacity > 0,
            "batch_rows": self.batch_rows > 0,
            "sample_size": self.sample_size > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid `{name}`: {getattr(self, name)!r}")


# ------------------------------------------------------------------------ transforms


class ReadEventBatchesFn(beam.DoFn):
    """File path -> validated event batches; tagged outputs ``dead`` and ``files``."""

    DEAD = "dead"
    FILES = "files"

    def __init__(self, spec: FeatureSpec, batch_rows: int) -> None:
        self._spec = spec
        self._batch_rows = batch_rows

    def process(self, path: str) -> Iterator[Any]:
        result = events.read_file_counted(path, self._spec)
        table, dead = result.table, result.dead
        counts = {"read": result.read, "good": result.good, "dead": result.dead_rows}
        yield beam.pvalue.TaggedOutput(self.FILES, (path, counts))
        for d in dead:
            yield beam.pvalue.TaggedOutput(self.DEAD, d)
        if table.num_rows == 0:
            yield table  # every feature gets counted, even for an empty hour
        for start in range(0, table.num_rows, self._batch_rows):
            yield table.slice(start, self._batch_rows)


def _dead_letter_uri(out: str, source: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._=-]+", "_", source.rstrip("/").rsplit("/", 1)[-1])
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:10]
    return storage.join(artifacts.dead_letter_dir(out), f"{base}-{digest}.jsonl")


def write_dead_letters(
    out: str, source: str, dead: Sequence[events.DeadLetter]
) -> Item:
    """Writes one JSON-lines file of dead letters per source file (idempotent)."""
    ordered = sorted(dead, key=lambda d: (d.line, d.reason))
    uri = _dead_letter_uri(out, source)
    events.write_dead_letters(uri, ordered)
    return "dead", source, uri


def write_feature(out: str, config: FeatureConfig, fd: FeatureDictionary) -> Item:
    """Writes one categorical feature's files; returns its manifest entry."""
    sha = None
    if config.uses_dictionary:
        sha = artifacts.write_vocab(out, config.name, fd.values)
        artifacts.write_tiers(out, config.name, fd.row_tier)
    artifacts.write_counts(out, config.name, fd.counts.table)
    artifacts.write_state(out, config.name, fd.ranking)
    if fd.update is not None:
        artifacts.write_remap(out, config.name, fd.update.remap)
    return "feature", config.name, diagnostics.feature_summary(config, fd, sha)


def write_numeric(out: str, stats: NumericStats) -> Item:
    """Writes one numeric feature's boundaries; returns its manifest entry."""
    meta = {
        k: v
        for k, v in dataclasses.asdict(stats).items()
        if k not in ("feature", "boundaries")
    }
    artifacts.write_boundaries(out, stats.feature, stats.boundaries, **meta)
    return "numeric", stats.feature, {"num_boundaries": len(stats.boundaries), **meta}


def _write_summary(out: str, items: list[Item]) -> None:
    rows = sorted(([k, n, p] for k, n, p in items), key=lambda r: (r[0], r[1]))
    storage.write_text(storage.join(out, *SUMMARY_FILE), json.dumps(rows))


def build_pipeline(
    p: beam.Pipeline,
    files: Sequence[str],
    spec: FeatureSpec,
    out: str,
    config: StatsConfig,
    previous: tuple[str, float] | None = None,
) -> None:
    """Read -> count/sample -> dictionaries, tiers, diagnostics -> write, on ``p``."""
    read = (
        p
        | "ListFiles" >> beam.Create(sorted(files))
        | "ReadEvents"
        >> beam.ParDo(ReadEventBatchesFn(spec, config.batch_rows)).with_outputs(
            ReadEventBatchesFn.DEAD, ReadEventBatchesFn.FILES, main="batches"
        )
    )
    prev_dir, decay = previous if previous else (None, 1.0)
    features = (
        read.batches
        | "CountValues"
        >> CountFeatureValues(spec.categorical_names, config.approx_capacity)
        | "TopK" >> TopKDictionary(spec, prev_dir, decay, config.min_state_weight)
        | "Tiers" >> FrequencyTiers(spec)
    )
    if config.diagnostics:
        features = features | "Diagnostics" >> diagnostics.HashingDiagnostics(spec)
    features = features | "WriteFeatures" >> beam.MapTuple(
        lambda n, fd: write_feature(out, spec.feature(n), fd)
    )
    numeric = (
        read.batches
        | "Boundaries" >> NumericBoundaries(spec, config.sample_size)
        | "WriteBoundaries" >> beam.MapTuple(lambda _, s: write_numeric(out, s))
    )
    dead = (
        read[ReadEventBatchesFn.DEAD]
        | "KeyBySource" >> beam.Map(lambda d: (d.source, d))
        | "GroupBySource" >> beam.GroupByKey()
        | "WriteDeadLetters"
        >> beam.MapTuple(lambda s, ds: write_dead_letters(out, s, list(ds)))
    )
    files_seen = read[ReadEventBatchesFn.FILES] | "FileItems" >> beam.MapTuple(
        lambda path, counts: ("file", path, counts)
    )
    _ = (
        (features, numeric, dead, files_seen)
        | "AllItems" >> beam.Flatten()
        | "Collect" >> beam.combiners.ToList()
        | "WriteSummary" >> beam.Map(lambda items: _write_summary(out, items))
    )


# ----------------------------------------------------------------------------- driver


def _previous_info(
    previous: str, hours: Sequence[dt.datetime], half_life: float
) -> dict[str, Any]:
    """Continuous mode: the previous run and the decay of its state.

    Raises:
        ValueError: if the previous run does not end before this one.
    """
    manifest = artifacts.load_manifest(previous)
    last = events.parse_hour(manifest["source_hours"][-1])
    delta = (hours[-1] - last).total_seconds() / 3600.0
    if delta <= 0:
        raise ValueError(
            f"--previous {previous} already covers {events.format_hour(last)}, "
            f"not before {events.format_hour(hours[-1])}"
        )
    return {
        "dir": previous,
        "version": manifest["version"],
        "delta_hours": delta,
        "half_life_hours": half_life,
        "decay_factor": continuous.decay_factor(delta, half_life),
    }


def _options(pipeline_args: Sequence[str], config: StatsConfig) -> PipelineOptions:
    """Beam options from the flags; local runner settings from ``config`` if unset.

    No ``--runner`` (or ``DirectRunner``) runs on Beam's in-process ``FnApiRunner``
    (:mod:`trainer.contracts.runners`): Beam 2.77's DirectRunner would first try to
    download the Prism runner.
    """
    args = runners.batch_runner_args(pipeline_args)
    options = PipelineOptions(args)
    runner = options.view_as(StandardOptions).runner
    direct = options.view_as(DirectOptions)
    given = " ".join(args)
    if runner == runners.LOCAL_BATCH_RUNNER:
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = config.direct_num_workers
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = config.direct_running_mode
    return options


def compute_stats(
    logs: str,
    hours: str | Sequence[dt.datetime],
    spec: FeatureSpec | str,
    out: str,
    previous: str | None = None,
    config: StatsConfig | None = None,
    pipeline_args: Sequence[str] = (),
    strict: bool = False,
) -> dict[str, Any]:
    """Runs the stats pipeline and publishes the artifact; returns the manifest.

    Args:
        logs: Event log root (local or ``gs://``).
        hours: ``START[:END]`` (inclusive) or a list of hours.
        spec: Feature spec or the path of its YAML file.
        out: Artifact directory of this run; claimed create-only
            (``out/_run/claim.json``), so two runs into one ``out`` cannot both
            succeed.
        previous: Previous run's artifact: enables continuous mode.
        config: Run settings; defaults to :class:`StatsConfig`.
        pipeline_args: Beam flags (``--runner`` ...) passed to ``PipelineOptions``.
        strict: Fail when a partition holds files the job will not read.

    Raises:
        events.MissingPartitionError: if an hour has no data files.
        BadInputError: if an hour's malformed records exceed ``config.max_bad_share``,
            or, with ``strict``, if a partition holds files that are not read.
        FileExistsError: if ``out`` already holds a manifest or another run's claim.
    """
    config = config or StatsConfig()
    spec = load_feature_spec(spec) if isinstance(spec, str) else spec
    hours = events.parse_hour_range(hours) if isinstance(hours, str) else list(hours)
    if storage.exists(artifacts.manifest_path(out)):
        raise FileExistsError(
            f"{out} already holds a finished stats artifact; use a new --out"
        )
    files, skipped = [], []
    for h in hours:
        found, skip = events.scan_partition(logs, h)
        if not found:
            events.partition_files(logs, h)  # raises MissingPartitionError
        files += found
        skipped += skip
    for sk in skipped:
        logger.warning("not read: %s: %s", sk.source, sk.why)
    if skipped and strict:
        raise BadInputError(
            f"--strict: {len(skipped)} files in the partitions will not be read, "
            f"e.g. {skipped[0].source} ({skipped[0].why})"
        )
    prev_info = None
    if previous is not None:
        prev_info = _previous_info(previous, hours, config.half_life_hours)
    _claim(out, hours)
    logger.info("stats over %d files of %d hours -> %s", len(files), len(hours), out)
    with beam.Pipeline(options=_options(pipeline_args, config)) as p:
        prev = (previous, prev_info["decay_factor"]) if prev_info else None
        build_pipeline(p, files, spec, out, config, prev)
    summary_uri = storage.join(out, *SUMMARY_FILE)
    items = json.loads(storage.read_text(summary_uri))
    manifest = build_manifest(
        items, spec, hours, config.approx_capacity, prev_info, skipped
    )
    if manifest["events"] == 0:
        logger.warning("no valid events in %s: writing an empty artifact", hours)
    check_bad_share(manifest, out, config.max_bad_share)
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
    if not storage.create_if_absent(artifacts.manifest_path(out), text.encode()):
        raise FileExistsError(f"{out}: another run published a manifest first")
    storage.delete(summary_uri)
    return manifest


def _claim(out: str, hours: Sequence[dt.datetime]) -> None:
    """Claims ``out`` create-only: of two runs into one ``out``, one fails here.

    A claim left by a run that died on this host (its process is gone) is taken over
    by compare-and-swap, so a killed run can be retried into the same ``out`` while two
    retries still cannot both win.
    """
    claim = storage.join(out, *CLAIM_FILE)
    body = {
        "hours": [events.format_hour(h) for h in hours],
        "claimed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    data = json.dumps(body).encode()
    if storage.create_if_absent(claim, data):
        return
    held, generation = storage.read_with_generation(claim)
    if generation and _is_stale(held):
        try:
            storage.write_if_generation_match(claim, data, generation)
            logger.warning("took over the claim of a dead run: %s", claim)
            return
        except storage.PreconditionFailed:
            pass
    raise FileExistsError(
        f"--out {out} is claimed by another stats run ({claim}); use a new --out"
    )


def _is_stale(held: bytes) -> bool:
    """True if the claim names a process of this host that no longer runs."""
    try:
        owner = json.loads(held)
        if owner.get("host") != socket.gethostname():
            return False
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, PermissionError, OSError):
        return False
    return False


# -------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", required=True, help="event log root (local or gs://)")
    parser.add_argument(
        "--hours", required=True, help="START[:END], e.g. 2026-01-01T00"
    )
    parser.add_argument("--spec", required=True, help="feature spec YAML")
    parser.add_argument("--out", required=True, help="artifact directory of this run")
    parser.add_argument("--previous", help="previous artifact: continuous mode")
    parser.add_argument("--half-life-hours", type=float, default=24.0)
    parser.add_argument(
        "--max-bad-share",
        type=float,
        default=0.01,
        help="fail when any one hour has a larger share of malformed records",
    )
    parser.add_argument("--approx-capacity", type=int, default=None)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE)
    parser.add_argument("--min-state-weight", type=float, default=0.1)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when a partition holds files that will not be read",
    )
    parser.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="skip the hashing diagnostics (and the TensorFlow import they need)",
    )
    return cli_common.parse_known_args(parser, argv)


def _checked(args: argparse.Namespace) -> tuple[StatsConfig, FeatureSpec, list]:
    """Flags, spec and paths checked before any work; raises :class:`UsageError`."""
    try:
        hours = events.parse_hour_range(args.hours)
    except ValueError as e:
        raise cli_common.UsageError(f"--hours: {e}") from None
    try:
        config = StatsConfig(
            half_life_hours=args.half_life_hours,
            max_bad_share=args.max_bad_share,
            approx_capacity=args.approx_capacity,
            batch_rows=args.batch_rows,
            sample_size=args.sample_size,
            min_state_weight=args.min_state_weight,
            diagnostics=args.diagnostics,
        )
    except ValueError as e:
        flag = str(e).split("`")[1].replace("_", "-") if "`" in str(e) else "flags"
        raise cli_common.UsageError(f"--{flag}: {e}") from None
    spec = cli_common.load_spec(args.spec)
    cli_common.check_out_dir(args.out)
    cli_common.check_readable_root(args.logs, "--logs")
    if args.previous is not None:
        cli_common.check_readable_root(args.previous, "--previous")
    return config, spec, hours


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses flags (unknown ones go to Beam), runs :func:`compute_stats`, prints."""
    args, pipeline_args = _parse_args(argv)
    config, spec, hours = _checked(args)
    manifest = compute_stats(
        args.logs,
        hours,
        spec,
        args.out,
        args.previous,
        config,
        pipeline_args,
        strict=args.strict,
    )
    print(diagnostics.format_summary(manifest))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad flags/spec/paths, 1 on bad input."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        run(argv)
    except cli_common.UsageError as e:
        return cli_common.fail(str(e))
    except (BadInputError, events.MissingPartitionError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
