"""The embedded default data source: a power-law synthetic event stream with drift.

Each hour holds ``events_per_hour`` events over six categorical features whose values
follow a Zipf law over up to millions of ids (``u123``, ``i42``, ``p7``, ``c3``, ``d1``,
``cc12``), two numeric features (``price``, lognormal per item; ``position`` 1..10) and
a label drawn from a hidden logistic model with feature interactions (see
:mod:`beam_jobs.synthetic_model`). Popularity drifts smoothly from hour to hour and
new ids are born every hour, so dictionaries, frequency tiers and hashing all get
exercised.

An hour depends only on ``(config, hour_index)``: generating hour 7 alone gives the
same bytes as generating hours 0..7 in order.

Example:
    >>> config = SyntheticConfig(seed=1, events_per_hour=1000, num_users=1000)
    >>> table = generate_hour(config, 0)
    >>> table.num_rows, table.column_names[:3]
    (1000, ['event_ts', 'label', 'user_id'])

CLI::

    python -m beam_jobs.synthetic --out /tmp/stream --hours 3 --events-per-hour 100000
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import logging
import pathlib
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_jobs import cli_common
from beam_jobs import synthetic_model as model
from trainer.contracts import events
from trainer.contracts.features import FeatureSpec

logger = logging.getLogger(__name__)

DEFAULT_START_HOUR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEFAULT_SPEC_PATH = (
    pathlib.Path(__file__).resolve().parents[1]
    / "specs"
    / "features"
    / "synthetic.yaml"
)
MAX_HOUR_INDEX = 1_000_000
NUM_POSITIONS = 10
_POSITION_EXPONENT = 0.7  # P(position = k) ~ k^-0.7
_PRICE_NOISE = 0.1  # per-event log-price noise around the item's list price
_CALIBRATION_EVENTS = 200_000
_HOUR_STREAM, _CALIBRATION_STREAM = 0, 1

# (feature, value prefix, vocabulary field of SyntheticConfig, gets new ids)
CATEGORICAL_FEATURES: tuple[tuple[str, str, str, bool], ...] = (
    ("user_id", "u", "num_users", True),
    ("item_id", "i", "num_items", True),
    ("publisher", "p", "num_publishers", True),
    ("category", "c", "num_categories", False),
    ("device", "d", "num_devices", False),
    ("country", "cc", "num_countries", False),
)
NUMERIC_FEATURES = ("price", "position")
SCHEMA = pa.schema(
    [pa.field("event_ts", pa.int64(), nullable=False)]
    + [pa.field("label", pa.float32(), nullable=False)]
    + [pa.field(name, pa.string()) for name, *_ in CATEGORICAL_FEATURES]
    + [pa.field(name, pa.float64()) for name in NUMERIC_FEATURES]
)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic stream.

    Attributes:
        seed: Seed of every random and hashed quantity.
        events_per_hour: Events in each hour partition.
        start_hour: Hour of ``hour_index`` 0 (aware UTC datetime, on the hour).
        num_users: Live ``user_id`` values at any hour (likewise for the other
            ``num_*`` vocabulary sizes).
        zipf_exponent: Rank-frequency exponent of every categorical feature.
        new_id_fraction: Share of the user, item and publisher vocabularies reborn
            with never-seen ids each hour.
        drift_per_hour: Typical hourly change of an id's popularity score
            (scores have unit spread; 0 = static popularity apart from new ids).
        label_base_rate: Target label mean (the bias is calibrated on hour 0).
        label_signal: Strength of the hidden model (0 = labels are coin flips).
    """

    seed: int = 0
    events_per_hour: int = 100_000
    start_hour: dt.datetime = DEFAULT_START_HOUR
    num_users: int = 2_000_000
    num_items: int = 1_000_000
    num_publishers: int = 50_000
    num_categories: int = 1_000
    num_devices: int = 20
    num_countries: int = 200
    zipf_exponent: float = 1.1
    new_id_fraction: float = 0.005
    drift_per_hour: float = 0.05
    label_base_rate: float = 0.2
    label_signal: float = 1.0

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0)
        _check_int("events_per_hour", self.events_per_hour, 0)
        for _, _, field, _ in CATEGORICAL_FEATURES:
            _check_int(field, getattr(self, field), 1)
        _check_hour(self.start_hour)
        _check_range("zipf_exponent", self.zipf_exponent, 0.1, 5.0)
        _check_range("new_id_fraction", self.new_id_fraction, 0.0, 0.5)
        _check_range("drift_per_hour", self.drift_per_hour, 0.0, 1.0)
        _check_range("label_base_rate", self.label_base_rate, 0.01, 0.99)
        _check_range("label_signal", self.label_signal, 0.0, 10.0)

    def hour(self, hour_index: int) -> dt.datetime:
        """The UTC hour of ``hour_index``."""
        return self.start_hour + dt.timedelta(hours=hour_index)


def _check_int(field: str, value: Any, minimum: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise ValueError(
            f"`{field}` must be an integer >= {minimum}. Received: {value!r}"
        )


def _check_range(field: str, value: Any, lo: float, hi: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:
        raise ValueError(
            f"`{field}` must be a number in [{lo}, {hi}]. Received: {value!r}"
        )


def _check_hour(value: Any) -> None:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ValueError(
            f"`start_hour` must be an aware UTC datetime. Received: {value!r}"
        )
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValueError(f"`start_hour` must be on the hour. Received: {value!r}")


# ------------------------------------------------------------------------- generation


def popularity(config: SyntheticConfig, feature: str) -> model.Popularity:
    """The popularity process of one categorical feature under ``config``.

    Raises:
        KeyError: if ``feature`` is not one of :data:`CATEGORICAL_FEATURES`.
    """
    for name, _, field, churns in CATEGORICAL_FEATURES:
        if name == feature:
            vocab = getattr(config, field)
            fraction = config.new_id_fraction if churns else 0.0
            return model.Popularity(
                name=name,
                vocab_size=vocab,
                exponent=float(config.zipf_exponent),
                new_per_hour=int(np.ceil(fraction * vocab)),
                drift_per_hour=float(config.drift_per_hour),
                seed=config.seed,
            )
    raise KeyError(f"no synthetic feature {feature!r}")


def _sample_events(
    config: SyntheticConfig, hour_index: int, n: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Integer ids per feature, positions and prices of ``n`` events."""
    ids = {
        name: model.sample_ids(popularity(config, name), hour_index, n, rng)
        for name, *_ in CATEGORICAL_FEATURES
    }
    weights = np.arange(1, NUM_POSITIONS + 1, dtype=np.float64) ** -_POSITION_EXPONENT
    position = 1.0 + rng.choice(NUM_POSITIONS, size=n, p=weights / weights.sum())
    log_price = model.item_log_price(config.seed, ids["item_id"])
    price = np.round(np.exp(log_price + _PRICE_NOISE * rng.standard_normal(n)), 2)
    return ids, position, price


@functools.lru_cache(maxsize=8)
def _bias(key: SyntheticConfig) -> float:
    rng = np.random.default_rng([key.seed, _CALIBRATION_STREAM])
    ids, position, price = _sample_events(key, 0, _CALIBRATION_EVENTS, rng)
    z = model.logit(key.seed, key.label_signal, ids, position, price)
    return model.calibrate_bias(z, key.label_base_rate)


def label_bias(config: SyntheticConfig) -> float:
    """The hidden model's bias, calibrated so hour 0's label mean is the base rate.

    It depends neither on ``events_per_hour`` nor on ``start_hour``.
    """
    key = dataclasses.replace(config, events_per_hour=0, start_hour=DEFAULT_START_HOUR)
    return _bias(key)


def generate_hour(config: SyntheticConfig, hour_index: int) -> pa.Table:
    """The events of one hour, sorted by ``event_ts``, with schema :data:`SCHEMA`.

    Args:
        config: Stream parameters.
        hour_index: Hours after ``config.start_hour`` (0-based).

    Returns:
        A table of ``config.events_per_hour`` rows; a pure function of its arguments.

    Raises:
        ValueError: if ``hour_index`` is negative or absurdly large.
    """
    _check_int("hour_index", hour_index, 0)
    if hour_index > MAX_HOUR_INDEX:
        raise ValueError(
            f"`hour_index` must be <= {MAX_HOUR_INDEX}. Received: {hour_index}"
        )
    n = config.events_per_hour
    rng = np.random.default_rng([config.seed, _HOUR_STREAM, hour_index])
    ids, position, price = _sample_events(config, hour_index, n, rng)
    z = model.logit(config.seed, config.label_signal, ids, position, price)
    label = rng.random(n) < model.sigmoid(label_bias(config) + z)
    hour_ts = int(config.hour(hour_index).timestamp())
    # events are i.i.d., so sorting the timestamps alone sorts the hour by event_ts
    ts = hour_ts + np.sort(rng.integers(0, 3600, size=n))
    columns: dict[str, Any] = {"event_ts": ts, "label": label.astype(np.float32)}
    for name, prefix, *_ in CATEGORICAL_FEATURES:
        columns[name] = _format_ids(prefix, ids[name])
    columns["price"] = price
    columns["position"] = position
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _format_ids(prefix: str, ids: np.ndarray) -> pa.Array:
    digits = pc.cast(pa.array(ids, pa.int64()), pa.string())
    return pc.binary_join_element_wise(prefix, digits, "")


def _parse_ids(column: pa.ChunkedArray, prefix: str) -> np.ndarray:
    """``"u123"`` -> 123; null -> -1.

    Raises:
        ValueError: if a value does not look like ``prefix`` + digits.
    """
    present = pc.fill_null(pc.starts_with(column, prefix), True)
    if not pc.all(present).as_py():
        raise ValueError(f"values without prefix {prefix!r} in a synthetic column")
    try:
        digits = pc.cast(pc.utf8_slice_codeunits(column, len(prefix)), pa.int64())
    except pa.ArrowInvalid as e:
        raise ValueError(f"non-numeric id after prefix {prefix!r}: {e}") from None
    return pc.fill_null(digits, -1).to_numpy()


def true_probability(config: SyntheticConfig, table: pa.Table) -> np.ndarray:
    """The hidden model's click probability for each event of ``table``.

    Args:
        config: The stream parameters the events were generated with.
        table: Events with the columns of :data:`SCHEMA` (labels are not read).

    Returns:
        Float64 probabilities, one per row: the best any model can predict.

    Raises:
        ValueError: if a categorical column holds values the generator never makes.
    """
    ids = {
        name: _parse_ids(table[name], prefix)
        for name, prefix, *_ in CATEGORICAL_FEATURES
    }
    position = table["position"].to_numpy().astype(np.float64)
    price = table["price"].to_numpy().astype(np.float64)
    z = model.logit(config.seed, config.label_signal, ids, position, price)
    return model.sigmoid(label_bias(config) + z)


# ------------------------------------------------------------------------------ write


@functools.lru_cache(maxsize=1)
def _default_spec() -> FeatureSpec:
    """The feature names of :data:`SCHEMA` as a spec, for :func:`events.summarize`."""
    features = [{"name": name} for name, *_ in CATEGORICAL_FEATURES]
    features += [{"name": name, "kind": "numeric"} for name in NUMERIC_FEATURES]
    return FeatureSpec.from_dict({"name": "synthetic", "features": features})


def write_stream(
    root: str,
    config: SyntheticConfig,
    hours: int,
    fmt: str = "parquet",
    *,
    first_hour: int = 0,
    spec: FeatureSpec | None = None,
) -> list[dict[str, Any]]:
    """Generates and writes hours ``first_hour .. first_hour + hours - 1``.

    Args:
        root: Local path or ``gs://`` URI of the event log.
        config: Stream parameters.
        hours: Number of hour partitions to write.
        fmt: ``parquet`` or ``jsonl``.
        first_hour: Index of the first hour written.
        spec: Feature spec used for the summaries (default: the generator's columns).

    Returns:
        Per hour: ``hour`` (``YYYY-MM-DDTHH``), ``uri`` and :func:`events.summarize`.

    Raises:
        ValueError: on a negative ``hours``/``first_hour`` or an unknown ``fmt``.
    """
    _check_int("hours", hours, 0)
    _check_int("first_hour", first_hour, 0)
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"`fmt` must be 'parquet' or 'jsonl'. Received: {fmt!r}")
    spec = spec or _default_spec()
    summaries = []
    for hour_index in range(first_hour, first_hour + hours):
        hour = config.hour(hour_index)
        table = generate_hour(config, hour_index)
        uri = events.write_partition(root, hour, table, fmt)
        summary = {"hour": events.format_hour(hour), "uri": uri}
        summary.update(events.summarize(table, spec))
        logger.info("wrote %s events to %s", table.num_rows, uri)
        summaries.append(summary)
    return summaries


# -------------------------------------------------------------------------------- CLI


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _hour_arg(text: str) -> dt.datetime:
    try:
        return events.parse_hour(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m beam_jobs.synthetic", description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", required=True, help="event log root (path or gs://)")
    p.add_argument("--hours", type=_count(1), required=True)
    p.add_argument("--events-per-hour", type=_count(0), default=100_000)
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--start-hour", type=_hour_arg, default=DEFAULT_START_HOUR)
    p.add_argument("--first-hour", type=_count(0), default=0, help="first hour index")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--spec", default=str(DEFAULT_SPEC_PATH), help="feature spec YAML")
    for flag in (
        "zipf-exponent",
        "new-id-fraction",
        "drift-per-hour",
        "label-base-rate",
    ):
        p.add_argument(f"--{flag}", type=float, default=None)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log every hour written"
    )
    return p


def _config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    overrides = {
        k: getattr(args, k)
        for k in (
            "zipf_exponent",
            "new_id_fraction",
            "drift_per_hour",
            "label_base_rate",
        )
        if getattr(args, k) is not None
    }
    return SyntheticConfig(
        seed=args.seed,
        events_per_hour=args.events_per_hour,
        start_hour=args.start_hour,
        **overrides,
    )


def _format_table(summaries: list[dict[str, Any]]) -> str:
    names = [name for name, *_ in CATEGORICAL_FEATURES]
    header = ["hour", "events", *names, "label_mean"]
    rows = [
        [s["hour"], s["events"], *(s[f"distinct_{n}"] for n in names), s["label_mean"]]
        for s in summaries
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=True))
        for line in [header, *rows]
    )


def main(argv: list[str] | None = None) -> int:
    """Writes a synthetic stream, prints a per-hour summary, returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        config = _config_from_args(args)
        spec = cli_common.load_spec(args.spec)
        cli_common.check_out_dir(args.out)
    except ValueError as e:  # FeatureSpecError and UsageError are ValueErrors
        parser.error(str(e))
    if events.schema_for(spec) != SCHEMA:
        parser.error(f"{args.spec}: its event schema is not the synthetic stream's")
    summaries = write_stream(
        args.out, config, args.hours, args.format, first_hour=args.first_hour, spec=spec
    )
    print(_format_table(summaries))
    print(f"wrote {len(summaries)} hour(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
