"""Streaming stats under TestStream: on-time, late-but-allowed and too-late events."""

from __future__ import annotations

import json
import pathlib

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_pipeline, test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_jobs import late_events, streaming
from tests.beam_jobs.conftest import event, hour_text, ts_of
from trainer.contracts import artifacts

LATENESS_S = 600


def _msg(item: str | None, ts: int) -> TimestampedValue:
    """A Pub/Sub-like JSON message stamped with its event time."""
    return TimestampedValue(json.dumps(event(ts, "u1", item)).encode(), ts)


def _stream() -> test_stream.TestStream:
    end0 = ts_of(1)  # end of the first hourly window
    return (
        test_stream.TestStream()
        .advance_watermark_to(ts_of(0))
        .add_elements(
            [_msg("a", ts_of(0, 10)), _msg("b", ts_of(0, 20)), _msg("a", ts_of(0, 30))]
        )
        .add_elements([_msg("c", ts_of(1, 5)), b"{broken json"])
        .advance_watermark_to(end0 + 1)  # on-time pane of hour 0
        .add_elements([_msg("c", ts_of(0, 40))])  # late, within the allowed lateness
        .advance_watermark_to(end0 + LATENESS_S + 60)  # hour 0 expires
        .add_elements([_msg("d", ts_of(0, 50))])  # too late: a dead letter
        .advance_watermark_to_infinity()
    )


def _options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def test_windows_fire_on_time_then_late_and_route_too_late_data(tiny_spec) -> None:
    with test_pipeline.TestPipeline(options=_options()) as p:
        parsed = (
            p
            | _stream()
            | beam.ParDo(streaming.ParseEventFn(tiny_spec)).with_outputs(
                streaming.ParseEventFn.DEAD, main="rows"
            )
        )
        panes = (
            parsed.rows
            | streaming.WindowedFeatureStats(tiny_spec, allowed_lateness_s=LATENESS_S)
            | beam.Filter(lambda kv: kv[0] == "item")
            | beam.ParDo(_PaneFn())
        )
        assert_that(
            panes,
            equal_to(
                [
                    (hour_text(0), "ON_TIME", 0, ["a", "b"], 3),
                    (hour_text(0), "LATE", 1, ["a", "b", "c"], 4),  # accumulated
                    (hour_text(1), "ON_TIME", 0, ["c"], 1),
                ]
            ),
            label="Panes",
        )
        dead = parsed[streaming.ParseEventFn.DEAD] | beam.Map(lambda d: d.reason[:8])
        assert_that(dead, equal_to(["bad JSON"]), label="Dead")


class _PaneFn(beam.DoFn):
    def process(self, item, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        import datetime as dt

        from trainer.contracts import events

        _, fd = item
        start = events.format_hour(
            dt.datetime.fromtimestamp(float(win.start), tz=dt.UTC)
        )
        timing = streaming._timing_name(pane.timing)
        yield start, timing, int(pane.index), fd.values, fd.counts.total


def test_each_pane_rewrites_its_window_artifacts(
    tiny_spec, tmp_path: pathlib.Path
) -> None:
    out = str(tmp_path / "stream")
    with test_pipeline.TestPipeline(options=_options()) as p:
        messages = p | _stream()
        summaries = streaming.build_pipeline(messages, tiny_spec, out, 3600, LATENESS_S)
        assert_that(
            summaries
            | beam.Map(lambda s: (s["feature"], s["window_start"], s["timing"])),
            equal_to(
                [
                    (f, hour_text(0), t)
                    for f in ("user", "item", "tag")
                    for t in ("ON_TIME", "LATE")
                ]
                + [(f, hour_text(1), "ON_TIME") for f in ("user", "item", "tag")]
            ),
        )
    hour0 = str(tmp_path / "stream" / f"window={hour_text(0)}")
    assert artifacts.read_vocab(hour0, "item") == ["a", "b", "c"]  # the late pane won
    pane = json.loads(pathlib.Path(hour0, "panes", "item.json").read_text())
    assert (
        pane["timing"] == "LATE"
        and pane["total_count"] == 4
        and pane["pane_index"] == 1
    )
    assert artifacts.read_tiers(hour0, "item").tolist() == [0, 1, 2]
    dead_dir = tmp_path / "stream" / "dead_letter"
    [bad_json] = [p for p in dead_dir.glob("window=*.jsonl")]
    assert "bad JSON" in bad_json.read_text()
    [late_file] = list(dead_dir.glob("late-*.jsonl"))
    [late] = [json.loads(line) for line in late_file.read_text().splitlines()]
    assert late["reason"] == (
        f"late: window {hour_text(0)} expired (allowed lateness {LATENESS_S} s)"
    )
    assert json.loads(late["record"])["item"] == "d"  # the too-late event, kept


def test_too_late_events_are_dead_letters_with_a_count(
    tiny_spec, tmp_path: pathlib.Path
) -> None:
    """Too-late events are routed, including a window's first event (case B)."""
    out = str(tmp_path / "late")
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(ts_of(0))
        .add_elements([_msg("a", ts_of(0, 1)), _msg("c", ts_of(2, 3))])
        .advance_watermark_to(ts_of(2) + LATENESS_S + 1)  # hours 0 and 1 expire
        .add_elements([_msg(f"late{i}", ts_of(0, 10 + i)) for i in range(5)])
        .add_elements([_msg("first-of-hour-1", ts_of(1, 9))])  # no event of it before
        .add_elements([_msg("b", ts_of(2, 7))])  # hour 2 is still open
        .advance_watermark_to_infinity()
    )
    with test_pipeline.TestPipeline(options=_options()) as p:
        routed = (
            p
            | stream
            | beam.ParDo(streaming.ParseEventFn(tiny_spec)).with_outputs(
                streaming.ParseEventFn.DEAD, main="rows"
            )
        ).rows | late_events.RouteLateEvents(tiny_spec, out, 3600, LATENESS_S, shards=1)
        late = routed[late_events.RouteLateEventsFn.LATE] | beam.Map(
            lambda d: json.loads(d.record)["item"]
        )
        expected_late = [f"late{i}" for i in range(5)] + ["first-of-hour-1"]
        assert_that(late, equal_to(expected_late), label="Late")
        on_time = routed.rows | beam.Map(lambda r: r["item"])
        assert_that(on_time, equal_to(["a", "c", "b"]), label="OnTime")
    letters = [
        json.loads(line)
        for f in (tmp_path / "late" / "dead_letter").glob("late-*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(json.loads(d["record"])["item"] for d in letters) == sorted(
        expected_late
    )
