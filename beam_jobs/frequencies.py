"""Feature frequencies as Beam transforms: batched counts, top-k dictionaries, tiers.

Counting is done inside batches: every batch of events (a ``pa.Table``) becomes ONE
Arrow table of partial counts per feature (``pc.value_counts``), and a CombineFn merges
partial tables with Arrow ``group_by(...).aggregate(sum)`` (measured by the issue's
author: 1.7M events/s against 0.2M/s for ``(key, count)`` pairs). Accumulators are
compacted into one fresh chunk before they are pickled: a chunked or sliced table drags
its source buffers along (16 MB of counts grew to 1.4 GB). With ``capacity`` set, counts
become a Misra-Gries summary (:mod:`beam_jobs.sketch`), under-counting by at most
``N / (capacity + 1)``.

Dictionaries rank values by count descending, then value ascending (byte order), so
ties are broken deterministically; values with line breaks never enter a dictionary.

Example:
    >>> with beam.Pipeline() as p:  # doctest: +SKIP
    ...     counts = p | beam.Create([table]) | CountFeatureValues(["item"])
    ...     dicts = counts | TopKDictionary(spec) | FrequencyTiers(spec)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_jobs import continuous, sketch
from trainer.contracts import artifacts
from trainer.contracts.features import FeatureConfig, FeatureSpec, tier_boundaries

logger = logging.getLogger(__name__)

_MIN_MERGE_ROWS = 1 << 20  # merge pending partial tables once they hold this many rows


# ------------------------------------------------------------------------- counting


@dataclasses.dataclass
class FeatureCounts:
    """Counts of one feature's values (exact, or a Misra-Gries summary).

    Attributes:
        table: ``value`` (string, unique, no nulls) and ``count`` (int64).
        total: Non-missing values seen (exact even for a summary).
        missing: Missing (null) values seen.
        error: Largest possible under-count of any value (0 when exact).
    """

    table: pa.Table
    total: int = 0
    missing: int = 0
    error: int = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["table"] = compact_table(self.table)
        return state


def compact_table(table: pa.Table) -> pa.Table:
    """One chunk with fresh, right-sized buffers.

    ``combine_chunks()`` alone returns a single-chunk slice as is, and pickling a slice
    writes its parent's whole buffers; concatenating forces a copy.
    """
    return pa.concat_tables([table, table.schema.empty_table()]).combine_chunks()


def merge_count_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Sums ``count`` per ``value`` over tables; returns one contiguous table."""
    tables = [t for t in tables if t.num_rows] or [
        artifacts.COUNTS_SCHEMA.empty_table()
    ]
    if len(tables) == 1:
        return tables[0].combine_chunks()
    merged = pa.concat_tables(tables).group_by("value").aggregate([("count", "sum")])
    return pa.table(
        {"value": merged["value"], "count": merged["count_sum"]},
        schema=artifacts.COUNTS_SCHEMA,
    ).combine_chunks()


def sort_counts(table: pa.Table) -> pa.Table:
    """Count descending, value ascending (the dictionary order)."""
    return table.sort_by(
        [("count", "descending"), ("value", "ascending")]
    ).combine_chunks()


def count_column(
    column: pa.ChunkedArray | pa.Array, capacity: int | None
) -> FeatureCounts:
    """Counts one batch column: one partial count table, nulls counted as missing."""
    missing = column.null_count
    present = column.drop_null() if missing else column
    if pa.types.is_large_string(present.type) or not pa.types.is_string(present.type):
        present = pc.cast(present, pa.string())
    vc = pc.value_counts(present)
    table = pa.table(
        {"value": vc.field("values"), "count": vc.field("counts")},
        schema=artifacts.COUNTS_SCHEMA,
    )
    error = 0
    if capacity is not None:
        table, error = sketch.misra_gries_reduce(table, capacity)
    return FeatureCounts(table, len(present), missing, error)


def batch_counts(
    batch: pa.Table, features: Sequence[str], capacity: int | None = None
) -> Iterator[tuple[str, FeatureCounts]]:
    """One partial count table per feature for a batch of events."""
    for name in features:
        yield name, count_column(batch[name], capacity)


class CountsCombineFn(beam.CombineFn):
    """Merges partial :class:`FeatureCounts` with Arrow group-by sums.

    Partial tables are buffered and merged once they hold as many rows as the merged
    table (amortized linear). With ``capacity``, every merge ends in a Misra-Gries cut.
    """

    def __init__(self, capacity: int | None = None) -> None:
        super().__init__()
        self._capacity = capacity

    def create_accumulator(self) -> list[FeatureCounts]:
        return []

    def add_input(
        self, acc: list[FeatureCounts], element: FeatureCounts
    ) -> list[FeatureCounts]:
        acc.append(element)
        pending = sum(c.table.num_rows for c in acc[1:])
        if len(acc) > 2 and pending >= max(acc[0].table.num_rows, _MIN_MERGE_ROWS):
            return [self._merge(acc)]
        return acc

    def merge_accumulators(self, accs: Any) -> list[FeatureCounts]:
        return [self._merge([c for acc in accs for c in acc])]

    def compact(self, acc: list[FeatureCounts]) -> list[FeatureCounts]:
        return [self._merge(acc)] if len(acc) != 1 else acc

    def extract_output(self, acc: list[FeatureCounts]) -> FeatureCounts:
        merged = self._merge(acc)
        return dataclasses.replace(merged, table=sort_counts(merged.table))

    def _merge(self, parts: Sequence[FeatureCounts]) -> FeatureCounts:
        table = merge_count_tables([p.table for p in parts])
        error = sum(p.error for p in parts)
        if self._capacity is not None:
            table, delta = sketch.misra_gries_reduce(table, self._capacity)
            error += delta
        return FeatureCounts(
            table,
            total=sum(p.total for p in parts),
            missing=sum(p.missing for p in parts),
            error=error,
        )


class CountFeatureValues(
    beam.PTransform[
        beam.PCollection[pa.Table], beam.PCollection[tuple[str, FeatureCounts]]
    ]
):
    """Counts each categorical feature's values over batches of events.

    Example:
        >>> counts = batches | CountFeatureValues(["user", "item"])  # doctest: +SKIP
    """

    def __init__(self, features: Sequence[str], capacity: int | None = None) -> None:
        super().__init__()
        if capacity is not None and capacity < 1:
            raise ValueError(f"`capacity` must be >= 1 or None. Received: {capacity}")
        self._features = tuple(features)
        self._capacity = capacity

    def expand(self, batches):
        return (
            batches
            | "PartialCounts"
            >> beam.FlatMap(batch_counts, self._features, self._capacity)
            | "MergeCounts" >> beam.CombinePerKey(CountsCombineFn(self._capacity))
        )


# ----------------------------------------------------------------------- dictionaries


@dataclasses.dataclass(frozen=True)
class FeatureDictionary:
    """One feature's dictionary and everything computed about it.

    Attributes:
        feature: Feature name.
        values: Dictionary value of each row (rank order, or stable rows in continuous
            mode). Empty for treatments without a dictionary.
        ranks: int64, frequency rank of each row (0 = most frequent).
        weights: float64, ranking weight of each row (count, or decayed count).
        counts: This run's counts, sorted count desc, value asc.
        ranking: ``(value, weight)`` of every value kept as state, weight desc.
        in_dict: Events of this run whose value is in the dictionary.
        rejected: Values kept out of the dictionary because they hold line breaks.
        update: Continuous mode only: remap and churn against the previous run.
        row_tier: int32 tier of each row (set by :class:`FrequencyTiers`).
        diagnostics: Hashing diagnostics (set by ``diagnostics.HashingDiagnostics``).
    """

    feature: str
    values: list[str]
    ranks: np.ndarray
    weights: np.ndarray
    counts: FeatureCounts
    ranking: pa.Table
    in_dict: int
    rejected: int = 0
    update: continuous.DictionaryUpdate | None = None
    row_tier: np.ndarray | None = None
    diagnostics: dict[str, Any] | None = None

    @property
    def coverage(self) -> float:
        """Share of events with a value whose value is in the dictionary."""
        return self.in_dict / self.counts.total if self.counts.total else 0.0

    @property
    def oov_share(self) -> float:
        """Share of all events that take the OOV row (missing or not in dictionary)."""
        events = self.counts.total + self.counts.missing
        return (events - self.in_dict) / events if events else 0.0


def select_top_k(ranked: pa.Table, k: int) -> tuple[list[str], int]:
    """First ``k`` values of a ranked table that can be vocabulary lines.

    Returns:
        ``(values, rejected)``: values in rank order and how many were skipped.
    """
    values: list[str] = []
    rejected = 0
    start = 0
    while len(values) < k and start < ranked.num_rows:
        chunk = ranked["value"].slice(start, k - len(values)).to_pylist()
        start += len(chunk)
        safe = [v for v in chunk if artifacts.is_vocab_safe(v)]
        rejected += len(chunk) - len(safe)
        values.extend(safe)
    if rejected:
        logger.warning(
            "%d values with line breaks kept out of the dictionary", rejected
        )
    return values, rejected


def _in_dict_count(counts: pa.Table, values: Sequence[str]) -> int:
    if not values or not counts.num_rows:
        return 0
    mask = pc.is_in(counts["value"], value_set=pa.array(values, pa.string()))
    return int(pc.sum(pc.filter(counts["count"], mask)).as_py() or 0)


def _weights_of(ranking: pa.Table, values: Sequence[str]) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype=np.float64)
    idx = pc.index_in(pa.array(values, pa.string()), value_set=ranking["value"])
    return np.asarray(ranking["weight"].take(idx).to_numpy(), dtype=np.float64)


def build_dictionary(
    config: FeatureConfig,
    counts: FeatureCounts,
    previous: continuous.PreviousState | None = None,
    min_state_weight: float = 0.0,
) -> FeatureDictionary:
    """Ranks a feature's values and picks its dictionary (stable rows if ``previous``).

    Args:
        config: The feature (``top_k`` and whether it uses a dictionary).
        counts: This run's counts, sorted.
        previous: Continuous mode: the previous run's state, decay applied here.
        min_state_weight: Values ranked below this weight are not carried as state
            (dictionary values always are).
    """
    if previous is None:
        ranking = pa.table(
            {
                "value": counts.table["value"],
                "weight": pc.cast(counts.table["count"], pa.float64()),
            }
        )
    else:
        ranking = continuous.decay_merge(previous.state, counts.table, previous.decay)
    k = config.top_k if config.uses_dictionary else 0
    top, rejected = select_top_k(ranking, k)
    weights = _weights_of(ranking.slice(0, len(top) + rejected), top)
    update = None
    values, ranks = top, np.arange(len(top), dtype=np.int64)
    if previous is not None and config.uses_dictionary:
        update = continuous.stable_update(previous.values, top, previous.version)
        values, ranks = update.values, update.ranks
    return FeatureDictionary(
        feature=config.name,
        values=values,
        ranks=ranks,
        weights=weights[ranks],
        counts=counts,
        ranking=continuous.prune_state(ranking, top, min_state_weight),
        in_dict=_in_dict_count(counts.table, top),
        rejected=rejected,
        update=update,
    )


class TopKDictionary(
    beam.PTransform[
        beam.PCollection[tuple[str, FeatureCounts]],
        beam.PCollection[tuple[str, FeatureDictionary]],
    ]
):
    """Top-k dictionary per feature (k = ``feature.top_k``; none for hash treatments).

    Values are ranked by count descending, then value ascending. In continuous mode
    (``previous_dir``) the previous state is decayed by ``decay_factor`` and merged in
    first, and rows stay stable (see :mod:`beam_jobs.continuous`).

    Example:
        >>> dicts = counts | TopKDictionary(spec)  # doctest: +SKIP
        >>> # ("item_id", FeatureDictionary(values=["i1", "i7", ...], ...))
    """

    def __init__(
        self,
        spec: FeatureSpec,
        previous_dir: str | None = None,
        decay_factor: float = 1.0,
        min_state_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self._spec = spec
        self._previous_dir = previous_dir
        self._decay = decay_factor
        self._min_state_weight = min_state_weight

    def _build(self, name: str, counts: FeatureCounts) -> tuple[str, FeatureDictionary]:
        previous = None
        if self._previous_dir is not None:
            previous = continuous.load_previous(self._previous_dir, name, self._decay)
        config = self._spec.feature(name)
        return name, build_dictionary(config, counts, previous, self._min_state_weight)

    def expand(self, counts):
        return counts | "BuildDictionary" >> beam.MapTuple(self._build)


# ------------------------------------------------------------------------------ tiers


def rank_tiers(config: FeatureConfig, weights_by_rank: np.ndarray) -> np.ndarray:
    """Tier of each rank: by ``tier_min_counts`` thresholds, else by ``tier_shares``.

    ``tier_shares`` uses ``tier_boundaries`` (ceil rounding: Kang et al. 2020 do not say how they round the 10 % head);
    ``tier_min_counts`` ``[c0 > c1 ...]`` puts weights ``>= c0`` in tier 0, ``[c1, c0)``
    in tier 1, and so on.
    """
    n = len(weights_by_rank)
    if config.tier_min_counts:
        thresholds = np.asarray(config.tier_min_counts, dtype=np.float64)
        tiers = (np.asarray(weights_by_rank)[:, None] < thresholds[None, :]).sum(axis=1)
        return tiers.astype(np.int32)
    bounds = np.asarray(tier_boundaries(n, config.tier_shares), dtype=np.int64)
    return np.searchsorted(bounds, np.arange(n), side="right").astype(np.int32)


def assign_tiers(config: FeatureConfig, fd: FeatureDictionary) -> FeatureDictionary:
    """Sets ``row_tier``: tiers by frequency rank, written per (possibly stable) row."""
    order = np.argsort(fd.ranks, kind="stable")
    tier_by_rank = rank_tiers(config, fd.weights[order])
    return dataclasses.replace(fd, row_tier=tier_by_rank[fd.ranks])


def _assign_tiers_item(
    item: tuple[str, FeatureDictionary], spec: FeatureSpec
) -> tuple[str, FeatureDictionary]:
    name, fd = item
    return name, assign_tiers(spec.feature(name), fd)


class FrequencyTiers(
    beam.PTransform[
        beam.PCollection[tuple[str, FeatureDictionary]],
        beam.PCollection[tuple[str, FeatureDictionary]],
    ]
):
    """MGQE frequency tiers of each dictionary row (Kang et al. 2020, frequency partition).

    Example:
        >>> tiered = dicts | FrequencyTiers(spec)  # doctest: +SKIP
        >>> # row_tier = [0, 0, 1, 1, ...]: the top ceil(10 %) of rows are tier 0
    """

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self._spec = spec

    def expand(self, dictionaries):
        return dictionaries | "AssignTiers" >> beam.Map(_assign_tiers_item, self._spec)
