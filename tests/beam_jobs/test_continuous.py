"""Continuous mode: decay, stable rows, remaps that round-trip, churn."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_jobs import continuous
from beam_jobs.frequencies import (
    CountsCombineFn,
    FeatureCounts,
    assign_tiers,
    build_dictionary,
    rank_tiers,
)
from trainer.contracts import artifacts
from trainer.contracts.features import FeatureConfig, Treatment

CONFIG = FeatureConfig(
    name="item",
    treatment=Treatment.MGQE,
    top_k=4,
    tier_shares=(0.5,),
    num_centroids=(4, 2),
)


def _counts(pairs: dict[str, int]) -> FeatureCounts:
    table = pa.table(
        {"value": list(pairs), "count": pa.array(list(pairs.values()), pa.int64())}
    )
    return CountsCombineFn().extract_output([FeatureCounts(table, sum(pairs.values()))])


def _next_hour(fd, counts: dict[str, int], decay: float = 0.5, config=CONFIG):
    previous = continuous.PreviousState(fd.values, fd.ranking, "v0", decay)
    return assign_tiers(config, build_dictionary(config, _counts(counts), previous))


def test_decay_factor_and_merge() -> None:
    assert continuous.decay_factor(24, 24) == 0.5
    assert continuous.decay_factor(0, 24) == 1.0
    assert continuous.decay_factor(1, 24) == pytest.approx(2 ** (-1 / 24))
    with pytest.raises(ValueError, match="half_life"):
        continuous.decay_factor(1, 0)
    previous = pa.table({"value": ["a", "b"], "weight": [8.0, 2.0]})
    counts = pa.table({"value": ["b", "c"], "count": pa.array([3, 4], pa.int64())})
    merged = continuous.decay_merge(previous, counts, 0.5)
    assert merged.to_pylist() == [
        {"value": "a", "weight": 4.0},
        {"value": "b", "weight": 4.0},
        {"value": "c", "weight": 4.0},
    ]  # ties -> value ascending


def test_stable_update_recycles_evicted_rows_in_rank_order() -> None:
    u = continuous.stable_update(["a", "b", "c", "d"], ["d", "x", "b", "y"], "v0")
    # b and d keep rows 1 and 3; x (rank 1) takes the lowest free row 0, y row 2
    assert u.values == ["x", "b", "y", "d"]
    assert u.ranks.tolist() == [1, 2, 3, 0]
    assert u.remap.old_to_new == {1: 1, 3: 3}
    assert u.remap.promoted == ["x", "y"]
    assert u.remap.evicted == ["a", "c"]
    assert u.jaccard == pytest.approx(2 / 6)
    assert u.churn == pytest.approx(4 / 6)
    assert u.remap.gather_index().tolist() == [-1, 1, -1, 3]


def test_shrinking_dictionary_moves_kept_values_past_the_end() -> None:
    u = continuous.stable_update(["a", "b", "c", "d", "e"], ["e", "b"])
    assert u.values == ["e", "b"]
    assert u.remap.old_to_new == {4: 0, 1: 1}
    assert u.remap.evicted == ["a", "c", "d"] and u.remap.promoted == []


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    old=st.lists(st.integers(0, 40), unique=True, max_size=25),
    new=st.lists(st.integers(0, 40), unique=True, max_size=25),
)
def test_remap_round_trips(old, new) -> None:
    old_values = [f"v{x}" for x in old]
    top = [f"v{x}" for x in new]
    u = continuous.stable_update(old_values, top)
    assert sorted(u.values) == sorted(top) and len(set(u.values)) == len(top)
    for o, n in u.remap.old_to_new.items():
        assert u.values[n] == old_values[o]  # applying the remap to the old vocab
    kept = set(old_values) & set(top)
    assert {old_values[o] for o in u.remap.old_to_new} == kept
    assert set(u.remap.promoted) == set(top) - set(old_values)
    assert set(u.remap.evicted) == set(old_values) - set(top)
    for v in kept:  # a value that stays keeps its row whenever the row still exists
        if old_values.index(v) < len(top):
            assert u.values.index(v) == old_values.index(v)
    assert [top[r] for r in u.ranks] == u.values
    restored = artifacts.Remap.from_dict(u.remap.to_dict())
    assert restored == u.remap


def test_rows_stay_stable_across_hours_and_tiers_follow_rank() -> None:
    hour0 = assign_tiers(
        CONFIG,
        build_dictionary(CONFIG, _counts({"a": 50, "b": 40, "c": 30, "d": 20, "e": 1})),
    )
    assert hour0.values == ["a", "b", "c", "d"] and hour0.row_tier.tolist() == [
        0,
        0,
        1,
        1,
    ]
    # hour 1: d surges, a fades, f arrives strongly; b, c, d stay in the top 4
    hour1 = _next_hour(hour0, {"d": 200, "f": 90, "b": 10, "c": 5})
    # weights: d 210, f 90, b 30, c 20, a 25, e 0.5 -> top-4 = d, f, b, a ... c drops
    assert set(hour1.values) == {"d", "f", "b", "a"}
    for v in ("a", "b", "d"):
        assert hour1.values.index(v) == hour0.values.index(v)
    assert hour1.values[2] == "f"  # c's row recycled
    assert hour1.update.remap.evicted == ["c"] and hour1.update.remap.promoted == ["f"]
    order = np.argsort(hour1.ranks)
    expected = rank_tiers(CONFIG, hour1.weights[order])
    assert hour1.row_tier[order].tolist() == expected.tolist()
    assert dict(zip(hour1.values, hour1.row_tier.tolist(), strict=True)) == {
        "d": 0,
        "f": 0,
        "b": 1,
        "a": 1,
    }
    assert hour1.weights.tolist() == [25.0, 30.0, 90.0, 210.0]
    assert hour1.update.jaccard == pytest.approx(3 / 5)
    hour2 = _next_hour(hour1, {"d": 5, "b": 5, "f": 5, "a": 5})
    assert hour2.values == hour1.values and hour2.update.churn == 0.0


def test_state_pruning_keeps_dictionary_values() -> None:
    hour0 = build_dictionary(CONFIG, _counts({"a": 3, "b": 2, "c": 1, "d": 1, "e": 1}))
    previous = continuous.PreviousState(hour0.values, hour0.ranking, "v0", 0.01)
    fd = build_dictionary(CONFIG, _counts({"x": 1}), previous, min_state_weight=0.5)
    # every decayed weight is < 0.5 but the 4 dictionary values stay in the state
    assert set(fd.ranking["value"].to_pylist()) == set(fd.values) | {"x"}
    assert "x" in fd.values and len(fd.values) == 4
