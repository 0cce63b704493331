"""Counting, top-k dictionaries, tiers, sketches, boundaries and hashing diagnostics."""

from __future__ import annotations

import math
import pickle
import random
import string
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_jobs import diagnostics, sketch
from beam_jobs.frequencies import (
    CountFeatureValues,
    CountsCombineFn,
    FeatureCounts,
    FrequencyTiers,
    TopKDictionary,
    build_dictionary,
    count_column,
    rank_tiers,
)
from tests.beam_jobs.conftest import read_parquet, write_batches
from trainer.contracts.features import FeatureConfig, FeatureSpec, Treatment

ROWS = [
    {"user": "u1", "item": "i1"},
    {"user": "u2", "item": "i1"},
    {"user": "u1", "item": None},
    {"user": "u3", "item": "i2"},
    {"user": None, "item": "i1"},
    {"user": "u1", "item": "i3"},
]


def _plain(item):
    name, c = item
    return name, c.table.to_pylist(), c.total, c.missing, c.error


def _counts(pairs: dict[str, int]) -> FeatureCounts:
    table = pa.table(
        {"value": list(pairs), "count": pa.array(list(pairs.values()), pa.int64())}
    )
    return FeatureCounts(table, total=sum(pairs.values()))


def _spec(**item_overrides) -> FeatureSpec:
    return FeatureSpec.from_dict(
        {
            "name": "t",
            "features": [{"name": "item", "treatment": "mgqe", **item_overrides}],
        }
    )


# ----------------------------------------------------------------------------- counting


def test_count_feature_values_on_hand_written_rows() -> None:
    batches = [pa.Table.from_pylist(ROWS[:4]), pa.Table.from_pylist(ROWS[4:])]
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(batches)
            | CountFeatureValues(["user", "item"])
            | beam.Map(_plain)
        )
        assert_that(
            out,
            equal_to(
                [
                    (
                        "user",
                        [
                            {"value": "u1", "count": 3},
                            {"value": "u2", "count": 1},
                            {"value": "u3", "count": 1},
                        ],
                        5,
                        1,
                        0,
                    ),
                    (
                        "item",
                        [
                            {"value": "i1", "count": 3},
                            {"value": "i2", "count": 1},
                            {"value": "i3", "count": 1},
                        ],
                        5,
                        1,
                        0,
                    ),
                ]
            ),
        )


def _counter_rows(table: pa.Table, column: str) -> list:
    counter = Counter(v for v in table[column].to_pylist() if v is not None)
    return sorted(
        ({"value": v, "count": c} for v, c in counter.items()),
        key=lambda r: (-r["count"], r["value"]),
    )


def test_exact_counts_match_counter_on_criteo_sample(
    criteo_table: pa.Table, tmp_path
) -> None:
    features = criteo_table.column_names
    assert len(features) == 26 and criteo_table.num_rows > 6000
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(write_batches(tmp_path, criteo_table, 7))
            | beam.Map(read_parquet)
            | CountFeatureValues(features)
            | beam.MapTuple(
                lambda name, c: (name, c.table.to_pylist(), c.total + c.missing)
            )
        )
        expected = [
            (f, _counter_rows(criteo_table, f), criteo_table.num_rows) for f in features
        ]
        assert_that(out, equal_to(expected))


def test_exact_counts_match_counter_on_movielens_movies(
    movielens_movies: pa.Table, tmp_path
) -> None:
    counter = Counter(movielens_movies["movie"].to_pylist())
    assert len(counter) > 3000 and movielens_movies.num_rows > 400_000
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(write_batches(tmp_path, movielens_movies, 5))
            | beam.Map(read_parquet)
            | CountFeatureValues(["movie"])
            | beam.MapTuple(
                lambda _, c: (
                    dict(
                        zip(
                            c.table["value"].to_pylist(),
                            c.table["count"].to_pylist(),
                            strict=True,
                        )
                    ),
                    c.total,
                )
            )
        )
        assert_that(out, equal_to([(dict(counter), movielens_movies.num_rows)]))


def test_combine_fn_accumulator_is_contiguous_when_pickled() -> None:
    rng = np.random.default_rng(0)
    fn = CountsCombineFn()
    acc = fn.create_accumulator()
    for _ in range(20):
        values = pa.array([f"v{x}" for x in rng.integers(0, 500, 2000)])
        acc = fn.add_input(acc, count_column(values, None))
    acc = fn.compact(acc)
    assert len(acc) == 1 and acc[0].table["value"].num_chunks == 1
    # A slice of a big table must not drag the whole buffer into the pickle.
    big = count_column(pa.array([f"w{x}" for x in range(200_000)]), None)
    small = FeatureCounts(big.table.slice(0, 10), 10)
    assert len(pickle.dumps(small)) < 5_000
    merged = fn.extract_output(fn.merge_accumulators([acc, fn.compact([small])]))
    assert merged.total == 40_010 and merged.table.num_rows == 510


# ------------------------------------------------------------------------ dictionaries


def test_top_k_breaks_ties_by_value_and_keeps_full_counts() -> None:
    spec = _spec(top_k=3, tier_shares=[0.5], num_centroids=[4, 2])
    counts = _counts({"b": 3, "a": 3, "d": 5, "c": 3, "e": 1})
    sorted_counts = FeatureCounts(
        pa.table({"value": ["d", "a", "b", "c", "e"], "count": [5, 3, 3, 3, 1]}),
        total=15,
    )
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create([("item", CountsCombineFn().extract_output([counts]))])
            | TopKDictionary(spec)
            | FrequencyTiers(spec)
            | beam.MapTuple(
                lambda _, fd: (
                    fd.values,
                    fd.row_tier.tolist(),
                    fd.in_dict,
                    fd.counts.table.to_pylist(),
                )
            )
        )
        assert_that(
            out,
            equal_to(
                [(["d", "a", "b"], [0, 0, 1], 11, sorted_counts.table.to_pylist())]
            ),
        )


def test_dictionary_keeps_values_with_line_breaks_out() -> None:
    config = FeatureConfig(name="item", treatment=Treatment.FULL, top_k=3)
    counts = CountsCombineFn().extract_output(
        [_counts({"x\ny": 9, "a": 5, "b\u2028c": 4, "d": 3, "e": 2})]
    )
    fd = build_dictionary(config, counts)
    assert fd.values == ["a", "d", "e"]
    assert fd.rejected == 2
    assert fd.coverage == pytest.approx(10 / 23)
    assert fd.oov_share == pytest.approx(13 / 23)


def test_hash_treatment_counts_but_has_no_dictionary() -> None:
    config = FeatureConfig(name="tag", treatment=Treatment.HASH, hash_buckets=8)
    fd = build_dictionary(
        config, CountsCombineFn().extract_output([_counts({"a": 2, "b": 1})])
    )
    assert fd.values == [] and fd.coverage == 0.0 and fd.ranking.num_rows == 2


@pytest.mark.parametrize(
    ("vocab", "shares", "expected_sizes"),
    [
        (21, [0.1], [3, 18]),
        (10, [0.1], [1, 9]),
        (21, [0.1, 0.5], [3, 8, 10]),
        (0, [0.1], [0, 0]),
    ],
)
def test_tier_shares_round_up(vocab, shares, expected_sizes) -> None:
    config = FeatureConfig(
        name="item",
        treatment=Treatment.MGQE,
        tier_shares=tuple(shares),
        num_centroids=(4,) * len(expected_sizes),
    )
    tiers = rank_tiers(config, np.arange(vocab, 0, -1, dtype=np.float64))
    assert np.bincount(tiers, minlength=len(expected_sizes)).tolist() == expected_sizes
    assert np.all(np.diff(tiers) >= 0)


def test_tier_min_counts_thresholds() -> None:
    config = FeatureConfig(
        name="item",
        treatment=Treatment.MGQE,
        tier_min_counts=(100, 10),
        num_centroids=(8, 4, 2),
    )
    tiers = rank_tiers(config, np.array([500.0, 100.0, 99.0, 10.0, 9.9, 1.0]))
    assert tiers.tolist() == [0, 0, 1, 1, 2, 2]


# ---------------------------------------------------------------------------- sketches


def test_misra_gries_bound_on_movielens(movielens_movies: pa.Table, tmp_path) -> None:
    capacity = 100
    exact = Counter(movielens_movies["movie"].to_pylist())
    n = movielens_movies.num_rows
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(write_batches(tmp_path, movielens_movies, 6))
            | beam.Map(read_parquet)
            | CountFeatureValues(["movie"], capacity=capacity)
            | beam.MapTuple(lambda _, c: (c.table.to_pylist(), c.total, c.error))
        )

        def check(results):
            [(rows, total, error)] = results
            assert total == n and len(rows) <= capacity
            assert 0 < error <= sketch.error_bound(n, capacity)
            est = {r["value"]: r["count"] for r in rows}
            for value, true in exact.items():
                assert est.get(value, 0) <= true <= est.get(value, 0) + error
                if true > n / (capacity + 1):
                    assert value in est

        assert_that(out, check)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    stream=st.lists(st.integers(0, 30), min_size=1, max_size=300),
    capacity=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 299), max_size=5),
)
def test_misra_gries_merge_tree_keeps_the_bound(stream, capacity, cuts) -> None:
    edges = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    fn = CountsCombineFn(capacity)
    accs = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        part = count_column(pa.array([str(x) for x in stream[a:b]]), capacity)
        accs.append(fn.add_input(fn.create_accumulator(), part))
    out = fn.extract_output(fn.merge_accumulators(accs))
    exact = Counter(str(x) for x in stream)
    est = dict(
        zip(out.table["value"].to_pylist(), out.table["count"].to_pylist(), strict=True)
    )
    assert out.error <= len(stream) / (capacity + 1)
    assert len(est) <= capacity
    for value, true in exact.items():
        assert est.get(value, 0) <= true <= est.get(value, 0) + out.error


def test_bottom_k_sample_is_exact_below_capacity_and_uniform_above() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=50_000)
    parts = [
        sketch.sample_values(v, 5_000, salt="x") for v in np.array_split(values, 9)
    ]
    merged = sketch.merge_samples(parts, 5_000)
    assert merged.count == 50_000 and len(merged.values) == 5_000 and not merged.exact
    assert np.isin(merged.values, values).all()
    true_q = np.quantile(values, [0.1, 0.5, 0.9])
    assert np.allclose(np.quantile(merged.values, [0.1, 0.5, 0.9]), true_q, atol=0.08)
    exact = sketch.merge_samples([sketch.sample_values(values[:100], 500)], 500)
    assert exact.exact and sorted(exact.values) == sorted(values[:100])


def test_numeric_boundaries_exact_sampled_and_deduplicated(tiny_spec) -> None:
    rng = np.random.default_rng(2)
    price = rng.lognormal(size=4_000)
    batches = [pa.table({"price": pa.array(b)}) for b in np.array_split(price, 4)]
    batches.append(pa.table({"price": pa.array([None, 7.0, 7.0], pa.float64())}))
    all_values = np.concatenate([price, [7.0, 7.0]])
    expected = np.quantile(all_values, [0.25, 0.5, 0.75]).tolist()
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(batches)
            | sketch.NumericBoundaries(tiny_spec, sample_size=10_000)
            | beam.MapTuple(
                lambda n, s: (n, s.boundaries, s.count, s.missing, s.method)
            )
        )
        assert_that(out, equal_to([("price", expected, 4_002, 1, "exact")]))
    assert sketch.quantile_boundaries(np.full(100, 3.0), 8) == [3.0]
    b = sketch.quantile_boundaries(np.array([1.0] * 50 + [2.0] * 30 + [5.0] * 20), 10)
    assert b == sorted(set(b)) and b[0] == 1.0 and b[-1] == 5.0


# ------------------------------------------------------------------------- diagnostics


def test_collision_rate_formula_matches_table_2_and_exact_small_cases() -> None:
    assert diagnostics.collision_rate(4_000_000, 2**22) == pytest.approx(
        0.3390, abs=1e-4
    )
    assert diagnostics.collision_rate(3_900_000, 2**44) == pytest.approx(
        2.457e-14, rel=1e-3
    )
    for n, b in [(1, 10), (5, 7), (40, 16)]:
        exact = (n - b + b * (1 - 1 / b) ** n) / b
        assert diagnostics.collision_rate(n, b) == pytest.approx(exact, rel=1e-9)
    assert diagnostics.collision_rate(0, 16) == 0.0


def test_private_formula_agrees_with_trainer_sizes() -> None:
    # beam_jobs may not import trainer.serving.sizes (ARCHITECTURE import rules): guard the copy
    from trainer.serving import sizes

    for n, b in [(1, 10), (40, 16), (3_900_000, 2**22), (3_900_000, 2**44), (0, 8)]:
        assert diagnostics.collision_rate(n, b) == pytest.approx(
            sizes.collision_rate(n, b), rel=1e-12, abs=0.0
        )


def _random_vocab(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return sorted({"".join(rng.choices(alphabet, k=12)) for _ in range(n)})


def test_measured_collisions_match_formulas_on_random_vocabulary() -> None:
    tail = _random_vocab(20_000, seed=3)
    n = len(tail)
    single = FeatureConfig(name="f", treatment=Treatment.HASH, hash_buckets=2**14)
    out = diagnostics.hashing_diagnostics(single, tail)
    s = out["single"]
    assert s["expected_rate"] == pytest.approx(diagnostics.collision_rate(n, 2**14))
    assert s["measured_rate"] == pytest.approx(s["expected_rate"], rel=0.03)
    double = FeatureConfig(name="f", treatment=Treatment.DOUBLE_HASH, hash_buckets=2**8)
    d = diagnostics.hashing_diagnostics(double, tail)["double"]
    assert d["buckets"] == 2**16
    # collisions ~ Poisson-like around ~2,800: a 6 % band is > 3 standard deviations
    assert d["collisions"] == pytest.approx(d["expected_collisions"], rel=0.06)
    assert "double" not in out and math.isclose(
        d["expected_rate"], diagnostics.collision_rate(n, 2**16)
    )


def test_hybrid_diagnostics_measure_only_the_tail() -> None:
    config = FeatureConfig(
        name="user", treatment=Treatment.HYBRID, top_k=2, hash_buckets=4
    )
    counts = CountsCombineFn().extract_output(
        [_counts({"a": 5, "b": 4, "c": 1, "d": 1, "e": 1})]
    )
    fd = diagnostics.diagnose(config, build_dictionary(config, counts))
    assert fd.diagnostics["tail_values"] == 3
    assert fd.diagnostics["oov_share"] == pytest.approx(3 / 12)
    assert fd.diagnostics["double"]["expected_rate"] == pytest.approx(
        diagnostics.collision_rate(3, 16)
    )
    assert sorted(diagnostics.tail_values(fd).tolist()) == [b"c", b"d", b"e"]
