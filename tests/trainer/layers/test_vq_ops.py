"""Tests of the scalar nearest-centroid search (``vq_ops.scalar_codes``).

Every comparison is against the exhaustive ``(D, N, K)`` argmax and must be bit-equal.
The fallback passed in returns -1 codes, so a test also sees whether the scalar path
(window + certificate + repair) or the exhaustive fallback answered.
"""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from trainer.layers import mgqe_unshared, vq_ops
from trainer.layers.dpq_embedding import DPQEmbedding
from trainer.layers.mgqe_embedding import MGQEEmbedding


def _exhaustive(queries: np.ndarray, table: np.ndarray) -> np.ndarray:
    response = vq_ops.vq_response(queries[:, :, None], table[:, :, None])
    return ops.convert_to_numpy(vq_ops.response_codes(response))


def _scalar(queries: np.ndarray, tables: list[np.ndarray], tiers=None) -> np.ndarray:
    shape = queries.shape
    codes = vq_ops.scalar_codes(
        queries, tables, tiers, fallback=lambda: ops.full(shape, -1, "int32")
    )
    return ops.convert_to_numpy(codes)


def _grid_data(rng: np.random.Generator, n: int, d: int, k: int):
    """Centroids on a coarse grid (many duplicates) and queries on the half-steps
    between grid points (exact midpoints), all exactly representable."""
    table = rng.integers(-4, 5, (d, k)).astype(np.float32) / 4
    queries = rng.integers(-20, 21, (n, d)).astype(np.float32) / 8
    return queries, table


@pytest.mark.parametrize("k", [2, 7, 64, 256])
def test_random_normal_data_matches_exhaustive_without_fallback(k):
    rng = np.random.default_rng(k)
    queries = rng.normal(0.0, 0.01, (300, 16)).astype(np.float32)
    table = rng.normal(0.0, 0.01, (16, k)).astype(np.float32)
    np.testing.assert_array_equal(
        _scalar(queries, [table]), _exhaustive(queries, table)
    )


def test_hand_worked_ties_go_to_the_first_original_index():
    table = np.array([[0.5, -0.5, 0.5, 0.0, -0.5]], np.float32)
    queries = np.array([[0.25], [-0.25], [0.5], [1.0], [-2.0], [0.0]], np.float32)
    # 0.25: 0.5 (index 0) and 0.0 (index 3) tie; -0.25: -0.5 (1) and 0.0 (3) tie.
    expected = [[0], [1], [0], [0], [1], [3]]
    np.testing.assert_array_equal(_scalar(queries, [table]), expected)
    np.testing.assert_array_equal(_exhaustive(queries, table), expected)


@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(
    n=st.integers(1, 40),
    d=st.integers(1, 5),
    k=st.integers(2, 20),
    seed=st.integers(0, 2**16),
)
def test_duplicates_and_exact_midpoints_match_exhaustive(n, d, k, seed):
    queries, table = _grid_data(np.random.default_rng(seed), n, d, k)
    np.testing.assert_array_equal(
        _scalar(queries, [table]), _exhaustive(queries, table)
    )


@hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
@hypothesis.given(
    k_head=st.integers(2, 16),
    k_tail=st.integers(2, 16),
    unshared=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_tiers_match_the_masked_exhaustive_codes(k_head, k_tail, unshared, seed):
    k_head, k_tail = max(k_head, k_tail), min(k_head, k_tail)
    rng = np.random.default_rng(seed)
    offsets = [0, k_head] if unshared else [0, 0]
    total = k_head + k_tail if unshared else k_head
    queries, table = _grid_data(rng, 30, 3, total)
    tiers = rng.integers(0, 2, 30).astype(np.int32)
    slices, table3 = queries[:, :, None], table[:, :, None]
    expected = mgqe_unshared.masked_codes(
        vq_ops.vq_response(slices, table3), tiers, offsets, [k_head, k_tail]
    )
    tables = [
        table[:, o : o + k] for o, k in zip(offsets, [k_head, k_tail], strict=True)
    ]
    np.testing.assert_array_equal(
        _scalar(queries, tables, tiers), ops.convert_to_numpy(expected)
    )


def _crowded(num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Twelve centroids one float32 ulp apart, queries among them: float32 rounding
    of the response decides, and the 4-value window cannot be certified."""
    start = np.float32(0.3)
    cluster = [start]
    for _ in range(11):
        cluster.append(np.nextafter(cluster[-1], np.float32(1.0)))
    rng = np.random.default_rng(0)
    table = np.array([rng.permutation([*cluster, -0.2, 0.9, 0.1, 0.5])], np.float32)
    offsets = rng.integers(0, 12, (num_queries, 1))
    queries = np.asarray(cluster, np.float32)[offsets] + np.float32(1e-9)
    return queries.astype(np.float32), table


def test_uncertified_positions_are_repaired_exhaustively():
    queries, table = _crowded(200)
    window_only = ops.convert_to_numpy(vq_ops.scalar_codes(queries, [table]))
    expected = _exhaustive(queries, table)
    assert (window_only != expected).any()  # the window alone would be wrong
    np.testing.assert_array_equal(_scalar(queries, [table]), expected)


def test_more_uncertified_positions_than_the_budget_fall_back():
    queries, table = _crowded(vq_ops.BUDGET + 50)
    assert (_scalar(queries, [table]) == -1).all()
    codes = vq_ops.nearest_codes(queries[:, :, None], table[:, :, None])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(codes), _exhaustive(queries, table)
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2.0**61])
def test_non_finite_or_huge_values_fall_back(bad):
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(5, 3)).astype(np.float32)
    table = rng.normal(size=(3, 8)).astype(np.float32)
    bad_queries = queries.copy()
    bad_queries[2, 1] = bad
    assert (_scalar(bad_queries, [table]) == -1).all()
    bad_table = table.copy()
    bad_table[0, 3] = bad
    assert (_scalar(queries, [bad_table]) == -1).all()


def test_scalar_search_serves_only_float32_scalar_subspaces():
    scalar = np.zeros((4, 8, 1), np.float32)
    assert vq_ops.scalar_search_enabled(scalar)
    assert not vq_ops.scalar_search_enabled(np.zeros((4, 8, 2), np.float32))
    assert not vq_ops.scalar_search_enabled(scalar.astype(np.float16))
    with vq_ops.exhaustive_search():
        assert not vq_ops.scalar_search_enabled(scalar)
    assert vq_ops.scalar_search_enabled(scalar)


# ------------------------------------------------------------------ layers, both paths

MGQE_CASES = {
    "shared_masked": dict(variant="shared", num_centroids=[16, 4]),
    "shared_groupwise": dict(
        variant="shared", num_centroids=[16, 4], lookup="groupwise"
    ),
    "unshared_k": dict(variant="unshared_k", num_centroids=[16, 4]),
    "unshared_d": dict(  # tier 0 scalar (s = 1), tier 1 s = 2 (exhaustive)
        variant="unshared_d", num_centroids=[16], num_subspaces_per_tier=[8, 4]
    ),
}


@pytest.fixture
def scalar_calls(monkeypatch):
    """Counts scalar searches; their fallback returns -1 codes, so an answer that
    needed the exhaustive fallback would break the equality checks."""
    calls = []
    real = vq_ops.scalar_codes

    def no_fallback(queries, tables, tiers=None, fallback=None):
        calls.append(1)
        shape = ops.shape(queries)
        return real(queries, tables, tiers, lambda: ops.full(shape, -1, "int32"))

    monkeypatch.setattr(vq_ops, "scalar_codes", no_fallback)
    return calls


def _plant(layer, grid: bool, seed: int) -> None:
    """Grid data (duplicated centroids, queries at exact midpoints) or N(0, 0.01)."""
    rng = np.random.default_rng(seed)
    tables = layer.centroid_tables() if hasattr(layer, "centroid_tables") else []
    for w in [layer.embeddings, *(tables or [layer.centroids])]:
        if grid:
            scale = 8 if w is layer.embeddings else 4
            values = rng.integers(
                -20 if scale == 8 else -4, 21 if scale == 8 else 5, w.shape
            )
            w.assign(values.astype(np.float32) / scale)
        else:
            w.assign(rng.normal(0.0, 0.01, w.shape).astype(np.float32))
    if hasattr(layer, "set_row_tiers"):
        layer.set_row_tiers(rng.integers(0, 2, layer.num_rows))


def _forward_backward(layer, ids: np.ndarray, graph: bool) -> list[np.ndarray]:
    """Output, total loss and every weight gradient of a training call, and codes."""
    w = tf.random.stateless_normal(ids.shape + (layer.output_dim,), seed=[3, 1])

    def step(ids):
        with tf.GradientTape() as tape:
            out = layer(ids, training=True)
            loss = tf.reduce_sum(out * w) + tf.add_n(layer.losses)
        grads = tape.gradient(loss, layer.trainable_variables)
        return [out, loss, *(tf.convert_to_tensor(g) for g in grads)]

    step = tf.function(step) if graph else step
    return [np.asarray(x) for x in step(tf.constant(ids))] + [layer.compute_codes()]


def _assert_both_paths_equal(layer, ids: np.ndarray, graph: bool, calls: list) -> None:
    with vq_ops.exhaustive_search():
        expected = _forward_backward(layer, ids, graph)
    assert not calls
    got = _forward_backward(layer, ids, graph)
    assert calls, "the scalar search was not used"
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("grid", [True, False], ids=["grid", "normal"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_dpq_layer_is_bit_identical_on_both_paths(grid, graph, scalar_calls):
    keras.utils.set_random_seed(0)
    layer = DPQEmbedding(60, output_dim=8, num_subspaces=8, num_centroids=16)
    layer.build()
    _plant(layer, grid, seed=1)
    ids = np.random.default_rng(2).integers(0, 60, (40, 3))
    _assert_both_paths_equal(layer, ids, graph, scalar_calls)


@pytest.mark.parametrize("case", MGQE_CASES)
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "normal"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_mgqe_layer_is_bit_identical_on_both_paths(case, grid, graph, scalar_calls):
    keras.utils.set_random_seed(0)
    layer = MGQEEmbedding(60, 8, num_subspaces=8, **MGQE_CASES[case])
    layer.build()
    _plant(layer, grid, seed=4)
    ids = np.random.default_rng(5).integers(0, 60, 120)
    _assert_both_paths_equal(layer, ids, graph, scalar_calls)
