"""resolve_hour: the hour a run trains on (and the next one, which it is scored on)."""

from typing import NamedTuple

from kfp import dsl

from components import images


@dsl.component(base_image=images.BEAM_IMAGE, install_kfp_package=False)
def resolve_hour(hour: str, hour_lag: int) -> NamedTuple(
    "Hours", [("hour", str), ("eval_hour", str)]
):
    """Returns the training hour (``hour`` minus ``hour_lag``) and the hour after it.

    The model trained on hour H is evaluated on hour H+1 (progressive validation), so
    H+1 must be complete when the run starts. Manual runs pass H and ``hour_lag=0``.
    KFP recurring runs pass the ``[[ScheduledTime.2006-01-02T15]]`` macro (KFP fills in
    the tick's hour) and ``hour_lag=2``: a run fired at 07:05 trains on 05 and scores
    on 06. Vertex schedules cannot fill in parameters: they pass ``hour=""``, the hour
    the run starts in. (Vertex's schedule-time placeholder would be exact, but
    ``kfp.local`` cannot resolve it, and the same spec must run locally.)

    Args:
        hour: An hour, or a timestamp that starts with one; "" = now (UTC).
        hour_lag: Hours to go back.
    """
    import datetime as dt

    from trainer.contracts import events

    start = events.parse_hour(hour[:13]) if hour else dt.datetime.now(dt.UTC)
    train = start - dt.timedelta(hours=hour_lag)
    return (
        events.format_hour(train),
        events.format_hour(train + dt.timedelta(hours=1)),
    )
