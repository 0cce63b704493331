"""DPQ / MGQE search once per distinct id of the batch (issue: quantized steps near
full-embedding cost) and stay bit-identical to searching every position: outputs, VQ
losses and every weight gradient, for heavily repeated ids, on both search paths."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.layers.test_vq_ops import MGQE_CASES, _forward_backward, _plant
from trainer.layers import dpq_embedding, vq_ops
from trainer.layers.dpq_embedding import DPQEmbedding
from trainer.layers.mgqe_embedding import MGQEEmbedding


@pytest.fixture
def searched_rows(monkeypatch):
    """Records how many query rows each search got (the distinct ids, when dedup works)."""
    rows: list[int] = []
    real = dpq_embedding.VQEmbeddingBase._distinct_codes

    def counting(self, flat, queries, codes_of):
        def counted(q, ids):
            rows.append(q.shape[0])  # None while tracing
            return codes_of(q, ids)

        return real(self, flat, queries, counted)

    monkeypatch.setattr(dpq_embedding.VQEmbeddingBase, "_distinct_codes", counting)
    return rows


def _every_position(monkeypatch) -> None:
    """The reference path: search every position of the batch."""
    monkeypatch.setattr(
        dpq_embedding.VQEmbeddingBase,
        "_distinct_codes",
        lambda self, flat, queries, codes_of: codes_of(queries, flat),
    )


def _zipf_ids(seed: int, n: int, shape) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(rng.zipf(1.3, shape), n - 1).astype(np.int64)


def _layers():
    yield (
        "dpq",
        lambda: DPQEmbedding(60, output_dim=8, num_subspaces=8, num_centroids=16),
    )
    yield (
        "dpq_s2",
        lambda: DPQEmbedding(60, output_dim=8, num_subspaces=4, num_centroids=16),
    )
    for case, kwargs in MGQE_CASES.items():
        yield (
            f"mgqe_{case}",
            lambda kw=kwargs: MGQEEmbedding(60, 8, num_subspaces=8, **kw),
        )


@pytest.mark.parametrize("exhaustive", [False, True], ids=["scalar", "exhaustive"])
@pytest.mark.parametrize(
    "make", [m for _, m in _layers()], ids=[n for n, _ in _layers()]
)
def test_distinct_id_search_is_bit_identical_to_every_position(
    make, exhaustive, monkeypatch, searched_rows
):
    ids = _zipf_ids(7, 60, (50, 4))
    results = []
    for reference in (False, True):
        keras.utils.set_random_seed(0)
        layer = make()
        layer.build()
        _plant(layer, grid=False, seed=3)
        with monkeypatch.context() as m:
            if reference:
                _every_position(m)
            if exhaustive:
                m.setattr(vq_ops, "_exhaustive_only", True)
            results.append(_forward_backward(layer, ids, graph=True))
    for got, expected in zip(*results, strict=True):
        np.testing.assert_array_equal(got, expected)
    # Eagerly, the deduplicated path searches only the distinct ids of the batch.
    searched_rows.clear()
    layer(ids, training=True)
    assert searched_rows == [len(np.unique(ids))] and len(np.unique(ids)) < ids.size


def test_batch_normalised_responses_search_every_position(searched_rows):
    keras.utils.set_random_seed(0)
    layer = DPQEmbedding(
        60, output_dim=8, num_subspaces=8, num_centroids=16, response_batchnorm=True
    )
    ids = _zipf_ids(1, 60, (30,))
    layer(ids, training=True)
    assert searched_rows == [ids.size]  # batch statistics need the whole batch
