"""Continuous mode: decayed counts carried between runs, stable rows, remaps and churn.

Each run merges its counts into the previous run's state with exponential decay,
``weight = previous_weight * 0.5 ** (delta_hours / half_life_hours) + count``, ranks by
weight (descending, then value ascending), and takes the top k. Rows stay STABLE so
that the trainer can warm-start embeddings:

1. a value that stays in the top k keeps its row (if that row still exists);
2. rows of evicted values, and rows past the old size, are free; they are filled in
   ascending row order by the entrants (new values, and kept values whose old row no
   longer fits a smaller dictionary) in rank order.

The :class:`trainer.contracts.artifacts.Remap` records old row -> new row for kept values, and
the promoted and evicted values. Churn is ``1 - Jaccard`` of the two top-k sets.

Example:
    >>> u = stable_update(["a", "b", "c"], ["c", "d", "a"])
    >>> u.values, u.remap.old_to_new
    (['a', 'd', 'c'], {0: 0, 2: 2})
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.contracts import artifacts, storage

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PreviousState:
    """What one feature carries over from the previous run.

    Attributes:
        values: The previous dictionary in row order (empty if it had none).
        state: Previous ranking weights ``(value, weight)``.
        version: The previous artifact's version.
        decay: Factor applied to the previous weights in this run.
    """

    values: list[str]
    state: pa.Table
    version: str
    decay: float


@dataclasses.dataclass(frozen=True)
class DictionaryUpdate:
    """A new dictionary with stable rows.

    Attributes:
        values: Value of each new row.
        ranks: int64, frequency rank of each new row's value.
        remap: Old row -> new row, promoted and evicted values.
        jaccard: |old ∩ new| / |old ∪ new| of the two dictionaries (1.0 if both empty).
    """

    values: list[str]
    ranks: np.ndarray
    remap: artifacts.Remap
    jaccard: float

    @property
    def churn(self) -> float:
        return 1.0 - self.jaccard


def decay_factor(delta_hours: float, half_life_hours: float) -> float:
    """``0.5 ** (delta_hours / half_life_hours)``.

    Raises:
        ValueError: if ``half_life_hours <= 0`` or ``delta_hours < 0``.
    """
    if half_life_hours <= 0:
        raise ValueError(f"`half_life_hours` must be > 0. Received: {half_life_hours}")
    if delta_hours < 0:
        raise ValueError(f"the previous state is {-delta_hours} h in the future")
    return float(0.5 ** (delta_hours / half_life_hours))


def rank(table: pa.Table) -> pa.Table:
    """Sorts ``(value, weight)`` by weight descending, then value ascending."""
    return table.sort_by(
        [("weight", "descending"), ("value", "ascending")]
    ).combine_chunks()


def decay_merge(previous: pa.Table, counts: pa.Table, decay: float) -> pa.Table:
    """``previous.weight * decay + counts.count`` per value (outer join), ranked."""
    old = pa.table(
        {
            "value": previous["value"],
            "weight": pc.multiply(pc.cast(previous["weight"], pa.float64()), decay),
        },
        schema=artifacts.STATE_SCHEMA,
    )
    new = pa.table(
        {"value": counts["value"], "weight": pc.cast(counts["count"], pa.float64())},
        schema=artifacts.STATE_SCHEMA,
    )
    merged = (
        pa.concat_tables([old, new]).group_by("value").aggregate([("weight", "sum")])
    )
    return rank(pa.table({"value": merged["value"], "weight": merged["weight_sum"]}))


def prune_state(ranking: pa.Table, keep: Sequence[str], min_weight: float) -> pa.Table:
    """Drops values below ``min_weight`` unless they are in ``keep``, the dictionary."""
    if min_weight <= 0 or not ranking.num_rows:
        return ranking
    mask = pc.greater_equal(ranking["weight"], min_weight)
    if keep:
        mask = pc.or_(
            mask, pc.is_in(ranking["value"], value_set=pa.array(keep, pa.string()))
        )
    return ranking.filter(mask)


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """Jaccard similarity of two sets of values (1.0 when both are empty)."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


def stable_update(
    old_values: Sequence[str], top: Sequence[str], previous_version: str = ""
) -> DictionaryUpdate:
    """Places the new top-k values on rows, keeping the old rows of retained values.

    Args:
        old_values: Previous dictionary, row order.
        top: New dictionary values in rank order.
        previous_version: Recorded in the remap.
    """
    size = len(top)
    old_row = {v: r for r, v in enumerate(old_values)}
    rows: list[str | None] = [None] * size
    entrants = []
    for v in top:
        r = old_row.get(v)
        if r is not None and r < size:
            rows[r] = v
        else:
            entrants.append(v)
    free = [r for r, v in enumerate(rows) if v is None]
    for r, v in zip(free, entrants, strict=True):
        rows[r] = v
    values = [v for v in rows if v is not None]
    new_row = {v: r for r, v in enumerate(values)}
    rank_of = {v: i for i, v in enumerate(top)}
    top_set = set(top)
    remap = artifacts.Remap(
        old_to_new={old_row[v]: new_row[v] for v in top if v in old_row},
        promoted=[v for v in top if v not in old_row],
        evicted=[v for v in old_values if v not in top_set],
        old_size=len(old_values),
        new_size=size,
        previous_version=previous_version,
    )
    return DictionaryUpdate(
        values=values,
        ranks=np.array([rank_of[v] for v in values], dtype=np.int64),
        remap=remap,
        jaccard=jaccard(old_values, top),
    )


def load_previous(previous_dir: str, feature: str, decay: float) -> PreviousState:
    """Reads one feature's dictionary and state from the previous artifact.

    A feature the previous run did not have starts from an empty state.
    """
    manifest = artifacts.load_manifest(previous_dir)
    summary = manifest.get("features", {}).get(feature)
    empty = artifacts.STATE_SCHEMA.empty_table()
    if summary is None:
        logger.warning(
            "%s: not in the previous artifact %s; starting fresh", feature, previous_dir
        )
        return PreviousState([], empty, str(manifest["version"]), decay)
    values = (
        artifacts.read_vocab(previous_dir, feature)
        if summary["uses_dictionary"]
        else []
    )
    uri = artifacts.state_path(previous_dir, feature)
    state = (
        artifacts.load_state(previous_dir, feature) if storage.exists(uri) else empty
    )
    return PreviousState(values, state, str(manifest["version"]), decay)
