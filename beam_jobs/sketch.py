"""Mergeable summaries: heavy hitters, numeric samples, and bucket boundaries from them.

* **Heavy hitters** (Misra-Gries, in the mergeable form of Agarwal et al., "Mergeable
  Summaries", PODS 2012): a count table is cut back to at most ``m`` counters by
  subtracting the ``(m+1)``-th largest count ``delta`` from every counter and dropping
  the ones that reach 0. Each cut removes at least ``(m+1) * delta`` from the counters,
  which never exceeds the stream length ``N``, so the deltas of all cuts anywhere in a
  merge tree add up to at most ``N / (m+1)``. Every estimate is a lower bound and
  ``true - error <= estimate <= true`` with ``error = sum(deltas) <= N / (m+1)``; every
  value occurring more than ``N / (m+1)`` times survives.
* **Numeric samples** (bottom-k sampling): each value gets a pseudo-random priority
  and a summary keeps the ``capacity`` values of smallest priority, which is a uniform
  sample without replacement and merges by concatenation + cut. Below ``capacity``
  values it holds everything, so quantiles are exact.

The summaries are plain NumPy/pyarrow and deterministic (priorities are seeded from
the batch content); :class:`NumericBoundaries` is the Beam transform over the samples.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"value": ["a", "b", "c"], "count": [5, 2, 1]})
    >>> cut, delta = misra_gries_reduce(t, capacity=1)
    >>> cut.to_pylist(), delta
    ([{'value': 'a', 'count': 3}], 2)
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from trainer.contracts.features import FeatureConfig, FeatureSpec, Treatment


def error_bound(total: int, capacity: int) -> float:
    """The Misra-Gries guarantee: no count is under-estimated by more than N/(m+1)."""
    return total / (capacity + 1)


def misra_gries_reduce(table: pa.Table, capacity: int) -> tuple[pa.Table, int]:
    """Cuts a (value, count) table with unique values down to at most ``capacity`` rows.

    Args:
        table: Columns ``value`` and ``count`` (int64), values unique.
        capacity: m, the number of counters kept.

    Returns:
        ``(table, delta)``: the surviving counters (each lowered by ``delta``) and the
        amount subtracted, which bounds the error this cut adds.
    """
    if capacity < 1:
        raise ValueError(f"`capacity` must be >= 1. Received: {capacity}")
    n = table.num_rows
    if n <= capacity:
        return table, 0
    counts = table["count"].to_numpy()
    delta = int(np.partition(counts, n - capacity - 1)[n - capacity - 1])
    keep = counts > delta
    kept = table.filter(pa.array(keep))
    kept = kept.set_column(
        kept.schema.get_field_index("count"), "count", pa.array(counts[keep] - delta)
    )
    return kept.combine_chunks(), delta


@dataclasses.dataclass
class NumericSample:
    """A bottom-k sample of one numeric feature's values.

    Attributes:
        priorities: float64 priorities of the kept values (uniform in [0, 1)).
        values: float64 kept values, aligned with ``priorities``.
        count: Non-missing values seen (all of them, not just the kept ones).
        missing: Missing (null) values seen.
    """

    priorities: np.ndarray
    values: np.ndarray
    count: int = 0
    missing: int = 0

    @property
    def exact(self) -> bool:
        """True while the sample still holds every value seen."""
        return len(self.values) == self.count

    @classmethod
    def empty(cls) -> NumericSample:
        return cls(np.zeros(0, np.float64), np.zeros(0, np.float64))


def sample_values(
    values: np.ndarray, capacity: int, missing: int = 0, salt: str = ""
) -> NumericSample:
    """Bottom-k sample of one batch; priorities seeded by its content and ``salt``."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    seed = zlib.crc32(values.tobytes(), zlib.crc32(salt.encode("utf-8")))
    priorities = np.random.default_rng(seed).random(len(values))
    sample = NumericSample(priorities, values, count=len(values), missing=missing)
    return _cut(sample, capacity)


def merge_samples(samples: Sequence[NumericSample], capacity: int) -> NumericSample:
    """Merges bottom-k samples into one of at most ``capacity`` values."""
    if not samples:
        return NumericSample.empty()
    merged = NumericSample(
        np.concatenate([s.priorities for s in samples]),
        np.concatenate([s.values for s in samples]),
        count=sum(s.count for s in samples),
        missing=sum(s.missing for s in samples),
    )
    return _cut(merged, capacity)


def _cut(sample: NumericSample, capacity: int) -> NumericSample:
    if len(sample.values) <= capacity:
        return sample
    keep = np.argpartition(sample.priorities, capacity - 1)[:capacity]
    return dataclasses.replace(
        sample, priorities=sample.priorities[keep], values=sample.values[keep]
    )


def quantile_boundaries(values: np.ndarray, num_buckets: int) -> list[float]:
    """``num_buckets - 1`` boundaries at the i/num_buckets quantiles, deduplicated.

    Quantiles use NumPy's default linear interpolation; the result is strictly
    increasing (ties collapse, so constant data gives one boundary or none).
    """
    if num_buckets < 2 or len(values) == 0:
        return []
    qs = np.arange(1, num_buckets) / num_buckets
    cuts = np.quantile(np.asarray(values, dtype=np.float64), qs)
    return [float(b) for b in np.unique(cuts) if math.isfinite(b)]


# ------------------------------------------------------------------------- boundaries

DEFAULT_SAMPLE_SIZE = 200_000


@dataclasses.dataclass(frozen=True)
class NumericStats:
    """Bucket boundaries of one ``bucketized`` numeric feature.

    Attributes:
        feature: Feature name.
        boundaries: Strictly increasing, at most ``num_buckets - 1``.
        count: Non-missing values seen.
        missing: Missing values seen.
        method: ``exact`` (all values kept) or ``sample`` (uniform bottom-k sample).
        sample_size: Values the quantiles were computed from.
    """

    feature: str
    boundaries: list[float]
    count: int
    missing: int
    method: str
    sample_size: int


def batch_samples(
    batch: pa.Table, features: Sequence[str], capacity: int
) -> Iterator[tuple[str, NumericSample]]:
    """One bottom-k sample per numeric feature for a batch of events."""
    for name in features:
        column = batch[name]
        values = column.drop_null().to_numpy()
        yield name, sample_values(values, capacity, column.null_count, salt=name)


class SampleCombineFn(beam.CombineFn):
    """Merges bottom-k samples (at most ``capacity`` values per accumulator)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._capacity = capacity

    def create_accumulator(self) -> NumericSample:
        return NumericSample.empty()

    def add_input(self, acc: NumericSample, element: NumericSample):
        return merge_samples([acc, element], self._capacity)

    def merge_accumulators(self, accs: Any) -> NumericSample:
        return merge_samples(list(accs), self._capacity)

    def extract_output(self, acc: NumericSample) -> NumericSample:
        return acc


def numeric_stats(config: FeatureConfig, sample: NumericSample) -> NumericStats:
    """Boundaries at the ``i / num_buckets`` quantiles of the (sampled) values."""
    return NumericStats(
        feature=config.name,
        boundaries=quantile_boundaries(sample.values, config.num_buckets),
        count=sample.count,
        missing=sample.missing,
        method="exact" if sample.exact else "sample",
        sample_size=len(sample.values),
    )


def _numeric_stats_item(
    item: tuple[str, NumericSample], spec: FeatureSpec
) -> tuple[str, NumericStats]:
    name, sample = item
    return name, numeric_stats(spec.feature(name), sample)


class NumericBoundaries(
    beam.PTransform[
        beam.PCollection[pa.Table], beam.PCollection[tuple[str, NumericStats]]
    ]
):
    """Percentile bucket boundaries for the spec's ``bucketized`` numeric features.

    Quantiles are exact up to ``sample_size`` values per feature, and computed from a
    uniform bottom-k sample of that size beyond (rank error about 1/sqrt(sample_size)).
    """

    def __init__(
        self, spec: FeatureSpec, sample_size: int = DEFAULT_SAMPLE_SIZE
    ) -> None:
        super().__init__()
        if sample_size < 1:
            raise ValueError(f"`sample_size` must be >= 1. Received: {sample_size}")
        self._spec = spec
        self._features = tuple(
            f.name for f in spec.numeric if f.treatment is Treatment.BUCKETIZED
        )
        self._sample_size = sample_size

    def expand(self, batches):
        return (
            batches
            | "SampleNumerics"
            >> beam.FlatMap(batch_samples, self._features, self._sample_size)
            | "MergeSamples" >> beam.CombinePerKey(SampleCombineFn(self._sample_size))
            | "Boundaries" >> beam.Map(_numeric_stats_item, self._spec)
        )
