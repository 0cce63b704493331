"""Streaming feature stats: a dictionary per hourly event-time window.

::

    python -m beam_jobs.streaming --subscription projects/P/subscriptions/S \\
        --spec specs/features/synthetic.yaml --out gs://bucket/stats-stream \\
        --allowed-lateness-s 3600 --runner DataflowRunner --project P --region R \\
        --temp_location gs://bucket/tmp --setup_file ./setup.py

JSON events from Pub/Sub are validated (:func:`trainer.contracts.events.validate_record`) and
stamped with their ``event_ts``; malformed ones become dead letters. Events fall into
``FixedWindows(window_s)``; the ``AfterWatermark`` trigger fires an on-time pane when
the watermark passes the window end and a late pane for every late event that arrives
within the allowed lateness, with ACCUMULATING panes (each pane holds the window's
full counts so far). Events later than that are not left for Beam to drop silently:
:class:`beam_jobs.late_events.RouteLateEventsFn` (``--late-shards`` keys, each
learning the watermark from an event-time timer walking the grid of window expiries)
writes them as dead letters to ``OUT/dead_letter/late-*.jsonl`` and counts them in the ``late_events`` metric. A
Python DoFn cannot read the watermark itself, so an event can still be dropped by Beam
only if its shard had seen no event of that window or a later one before the window
expired (a sparse stream). Each pane (re)writes
the window's dictionary under ``OUT/window=YYYY-MM-DDTHH/`` in the batch artifact
layout, plus ``panes/<feature>.json`` with the pane index and timing.

The runner is explicit: ``--runner`` defaults to Beam's ``BundleBasedDirectRunner``
(streaming-capable, in process; Beam's ``DirectRunner`` would first try to download
the Prism runner).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from beam_jobs import cli_common
from beam_jobs.frequencies import (
    CountFeatureValues,
    FeatureDictionary,
    FrequencyTiers,
    TopKDictionary,
)
from beam_jobs.late_events import DEFAULT_LATE_SHARDS, RouteLateEvents
from trainer.contracts import artifacts, events, storage
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 3600
DEFAULT_ALLOWED_LATENESS_S = 3600


class ParseEventFn(beam.DoFn):
    """JSON message -> validated event row with its event time; dead letters tagged."""

    DEAD = "dead"

    def __init__(self, spec: FeatureSpec, source: str = "pubsub") -> None:
        self._spec = spec
        self._source = source

    def process(self, message: bytes | str) -> Iterator[Any]:
        row, letter = events.parse_record(message, self._spec, self._source, 0)
        if letter is not None:
            yield beam.pvalue.TaggedOutput(self.DEAD, letter)
            return
        yield window.TimestampedValue(row, row[self._spec.timestamp_key])


class WindowedFeatureStats(
    beam.PTransform[
        beam.PCollection[dict[str, Any]],
        beam.PCollection[tuple[str, FeatureDictionary]],
    ]
):
    """Per event-time window: counts, top-k dictionary and tiers of every categorical.

    Example:
        >>> dicts = rows | WindowedFeatureStats(spec, 3600, 600)  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: FeatureSpec,
        window_s: int = DEFAULT_WINDOW_S,
        allowed_lateness_s: int = DEFAULT_ALLOWED_LATENESS_S,
        batch_size: int = 10_000,
        capacity: int | None = None,
    ) -> None:
        super().__init__()
        if window_s <= 0 or allowed_lateness_s < 0:
            raise ValueError(
                f"need window_s > 0 and allowed_lateness_s >= 0, got {window_s}, "
                f"{allowed_lateness_s}"
            )
        self._spec = spec
        self._window_s = window_s
        self._lateness = allowed_lateness_s
        self._batch_size = batch_size
        self._capacity = capacity

    def expand(self, rows):
        return (
            rows
            | "HourlyWindows"
            >> beam.WindowInto(
                window.FixedWindows(self._window_s),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=self._lateness),
            )
            | "Batch"
            >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
            | "ToArrow" >> beam.Map(events.rows_to_table, self._spec)
            | "CountValues"
            >> CountFeatureValues(self._spec.categorical_names, self._capacity)
            | "TopK" >> TopKDictionary(self._spec)
            | "Tiers" >> FrequencyTiers(self._spec)
        )


def window_dir(out: str, start: dt.datetime) -> str:
    """``OUT/window=YYYY-MM-DDTHH`` for a window starting at ``start``."""
    return storage.join(out, f"window={events.format_hour(start)}")


class WriteWindowArtifactsFn(beam.DoFn):
    """Writes a pane's dictionary into its window directory; yields its summary."""

    def __init__(self, out: str, spec: FeatureSpec) -> None:
        self._out = out
        self._spec = spec

    def process(
        self,
        item: tuple[str, FeatureDictionary],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[dict[str, Any]]:
        name, fd = item
        start = dt.datetime.fromtimestamp(float(win.start), tz=dt.UTC)
        base = window_dir(self._out, start)
        if self._spec.feature(name).uses_dictionary:
            artifacts.write_vocab(base, name, fd.values)
            artifacts.write_tiers(base, name, fd.row_tier)
        artifacts.write_counts(base, name, fd.counts.table)
        summary = {
            "feature": name,
            "window_start": events.format_hour(start),
            "pane_index": int(pane.index),
            "timing": _timing_name(pane.timing),
            "total_count": fd.counts.total,
            "missing_count": fd.counts.missing,
            "vocab_size": len(fd.values),
            "coverage": fd.coverage,
        }
        storage.write_text(
            storage.join(base, "panes", f"{name}.json"), json.dumps(summary)
        )
        yield summary


def _timing_name(timing: int) -> str:
    from apache_beam.utils.windowed_value import PaneInfoTiming

    return str(PaneInfoTiming.to_string(timing))


class _WriteDeadLettersFn(beam.DoFn):
    """Writes a window pane of dead letters to ``OUT/dead_letter/window=...jsonl``."""

    def __init__(self, out: str) -> None:
        self._out = out

    def process(
        self,
        item: tuple[str, Any],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[int]:
        lines = sorted(item[1])
        start = dt.datetime.fromtimestamp(float(win.start), tz=dt.UTC)
        name = f"window={start:%Y-%m-%dT%H%M%S}-pane{int(pane.index)}.jsonl"
        uri = storage.join(artifacts.dead_letter_dir(self._out), name)
        storage.write_text(uri, "".join(f"{line}\n" for line in lines))
        yield len(lines)


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description="Streaming per-window feature stats")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--subscription", help="Pub/Sub subscription path")
    source.add_argument("--topic", help="Pub/Sub topic path")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--window-s", type=int, default=DEFAULT_WINDOW_S)
    parser.add_argument(
        "--allowed-lateness-s", type=int, default=DEFAULT_ALLOWED_LATENESS_S
    )
    parser.add_argument("--approx-capacity", type=int, default=None)
    parser.add_argument(
        "--late-shards",
        type=int,
        default=DEFAULT_LATE_SHARDS,
        help="keys of the late-event router (each learns the watermark on its own)",
    )
    parser.add_argument(
        "--runner",
        default="BundleBasedDirectRunner",
        help="Beam runner (default BundleBasedDirectRunner, in process)",
    )
    args, rest = cli_common.parse_known_args(parser, argv)
    return args, [f"--runner={args.runner}", *rest]


def build_pipeline(
    messages: beam.PCollection,
    spec: FeatureSpec,
    out: str,
    window_s: int = DEFAULT_WINDOW_S,
    allowed_lateness_s: int = DEFAULT_ALLOWED_LATENESS_S,
    capacity: int | None = None,
    late_shards: int = DEFAULT_LATE_SHARDS,
) -> beam.PCollection:
    """Parse -> route too-late rows -> windowed stats -> write; dead letters to
    ``OUT/dead_letter``.

    Returns:
        The pane summaries written (one dict per feature, window and pane).
    """
    parsed = messages | "Parse" >> beam.ParDo(ParseEventFn(spec)).with_outputs(
        ParseEventFn.DEAD, main="rows"
    )
    routed = parsed.rows | "Late" >> RouteLateEvents(
        spec, out, window_s, allowed_lateness_s, late_shards
    )
    _ = (
        parsed[ParseEventFn.DEAD]
        | "DeadWindows" >> beam.WindowInto(window.FixedWindows(window_s))
        | "DeadJson" >> beam.Map(lambda d: ("dead", d.to_json()))
        | "GroupDead" >> beam.GroupByKey()
        | "WriteDead" >> beam.ParDo(_WriteDeadLettersFn(out))
    )
    return (
        routed.rows
        | "Stats"
        >> WindowedFeatureStats(spec, window_s, allowed_lateness_s, capacity=capacity)
        | "Write" >> beam.ParDo(WriteWindowArtifactsFn(out, spec))
    )


def run(argv: Sequence[str] | None = None) -> None:
    """Starts the streaming job (runs until cancelled on a streaming runner)."""
    args, pipeline_args = _parse_args(argv)
    for flag, value, low in (
        ("--window-s", args.window_s, 1),
        ("--allowed-lateness-s", args.allowed_lateness_s, 0),
        ("--late-shards", args.late_shards, 1),
    ):
        if value < low:
            raise cli_common.UsageError(f"{flag} must be >= {low}, got {value}")
    spec = cli_common.load_spec(args.spec)
    cli_common.check_out_dir(args.out)
    options = PipelineOptions(pipeline_args)
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        messages = p | "ReadPubSub" >> beam.io.ReadFromPubSub(
            subscription=args.subscription, topic=args.topic
        )
        build_pipeline(
            messages,
            spec,
            args.out,
            args.window_s,
            args.allowed_lateness_s,
            args.approx_capacity,
            args.late_shards,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 2 with one ``error:`` line for bad flags, spec or paths."""
    logging.basicConfig(level=logging.INFO)
    try:
        run(argv)
    except cli_common.UsageError as e:
        return cli_common.fail(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
