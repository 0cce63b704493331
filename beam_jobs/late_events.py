"""Too-late events of the streaming job: dead letters with a count, not Beam's drop.

Beam drops an event whose window expired (the watermark passed ``window end + allowed
lateness``) without a trace. :class:`RouteLateEvents` runs before the windowing of
:mod:`beam_jobs.streaming` and sends those events to ``OUT/dead_letter/late-*.jsonl``
and the ``late_events`` metric instead.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from trainer.contracts import artifacts, events, storage
from trainer.contracts.features import FeatureSpec

_FLOOR = userstate.ReadModifyWriteStateSpec("floor", VarIntCoder())
_MAX_EXPIRY = userstate.ReadModifyWriteStateSpec("max_expiry", VarIntCoder())
_NEXT = userstate.ReadModifyWriteStateSpec("next", VarIntCoder())
_TIMER = userstate.TimerSpec("expiry", TimeDomain.WATERMARK)
_FLOOR_PARAM = beam.DoFn.StateParam(_FLOOR)
_MAX_EXPIRY_PARAM = beam.DoFn.StateParam(_MAX_EXPIRY)
_NEXT_PARAM = beam.DoFn.StateParam(_NEXT)
_TIMER_PARAM = beam.DoFn.TimerParam(_TIMER)
DEFAULT_LATE_SHARDS = 8


class RouteLateEventsFn(beam.DoFn):
    """Sharded rows -> on-time rows; rows of expired windows become dead letters.

    A window expires when the watermark passes ``window end + allowed lateness``
    (when Beam would drop its data). A Python DoFn cannot read the watermark, so each
    shard learns it from an event-time timer that walks the grid of window expiries:
    it fires at the earliest pending expiry, records it as the shard's *floor* (the
    watermark is known to be past it), and re-arms one window later until it reaches
    the latest expiry the shard has seen. A row whose window expires at or below the
    floor is late: it is written (at bundle end) as a dead letter to
    ``OUT/dead_letter/late-<window>-<id>.jsonl``, counted in the ``late_events``
    metric and emitted on the ``late`` output. Only a row of a window that expired
    before the shard saw any row of that window or a later one can still reach Beam
    and be dropped; in a live stream every shard sees the current windows.
    """

    LATE = "late"

    def __init__(
        self, out: str | None, spec: FeatureSpec, window_s: int, lateness_s: int
    ):
        self._out = out
        self._spec = spec
        self._window_s = window_s
        self._lateness_s = lateness_s
        self._late_events = Metrics.counter("streaming", "late_events")
        self._pending: dict[int, list[events.DeadLetter]] = {}

    def start_bundle(self) -> None:
        self._pending = {}

    def _expiry(self, ts: int) -> tuple[int, int]:
        start = int(ts) // self._window_s * self._window_s
        return start, start + self._window_s + self._lateness_s

    def process(
        self,
        item: tuple[int, dict[str, Any]],
        floor: Any = _FLOOR_PARAM,
        max_expiry: Any = _MAX_EXPIRY_PARAM,
        next_fire: Any = _NEXT_PARAM,
        timer: Any = _TIMER_PARAM,
    ) -> Iterator[Any]:
        _, row = item
        start, expiry = self._expiry(row[self._spec.timestamp_key])
        known = floor.read()
        if known is not None and expiry <= known:
            letter = events.DeadLetter(
                "stream",
                0,
                f"late: window {_hour_text(start)} expired (allowed lateness "
                f"{self._lateness_s} s)",
                json.dumps(row, sort_keys=True, default=str)[:2000],
            )
            self._late_events.inc()
            self._pending.setdefault(start, []).append(letter)
            yield beam.pvalue.TaggedOutput(self.LATE, letter)
            return
        latest = max_expiry.read()
        if latest is None or expiry > latest:
            max_expiry.write(expiry)
        armed = next_fire.read()
        if armed is None or expiry < armed:
            timer.set(Timestamp(expiry))
            next_fire.write(expiry)
        yield window.TimestampedValue(row, row[self._spec.timestamp_key])

    @userstate.on_timer(_TIMER)
    def _on_expiry(
        self,
        fired: Any = beam.DoFn.TimestampParam,
        floor: Any = _FLOOR_PARAM,
        max_expiry: Any = _MAX_EXPIRY_PARAM,
        next_fire: Any = _NEXT_PARAM,
        timer: Any = _TIMER_PARAM,
    ) -> None:
        at = int(fired.micros // 1_000_000)
        floor.write(at)
        latest = max_expiry.read()
        if latest is not None and at < latest:
            timer.set(Timestamp(at + self._window_s))
            next_fire.write(at + self._window_s)
        else:
            next_fire.clear()

    def finish_bundle(self) -> None:
        if self._out is None:
            return
        for start, letters in self._pending.items():
            name = f"late-{_hour_text(start)}-{uuid.uuid4().hex[:12]}.jsonl"
            uri = storage.join(artifacts.dead_letter_dir(self._out), name)
            events.write_dead_letters(uri, letters)
        self._pending = {}


def _hour_text(start: int) -> str:
    return events.format_hour(dt.datetime.fromtimestamp(start, tz=dt.UTC))


class RouteLateEvents(beam.PTransform):
    """Timestamped rows -> on-time rows (main) and ``late`` dead letters."""

    def __init__(
        self,
        spec: FeatureSpec,
        out: str | None,
        window_s: int,
        lateness_s: int,
        shards: int = DEFAULT_LATE_SHARDS,
    ) -> None:
        super().__init__()
        self._spec, self._out = spec, out
        self._window_s, self._lateness_s = window_s, lateness_s
        self._shards = shards

    def expand(self, rows):
        key, n = self._spec.timestamp_key, self._shards
        return (
            rows
            | "Shard" >> beam.Map(lambda r: (int(r[key]) % n, r))
            | "RouteLate"
            >> beam.ParDo(
                RouteLateEventsFn(
                    self._out, self._spec, self._window_s, self._lateness_s
                )
            ).with_outputs(RouteLateEventsFn.LATE, main="rows")
        )
