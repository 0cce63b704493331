"""trainer.serving.tables: THE size accounting and THE post-training SQ of a table.

The ranking models' "model size %" on ML-1M's sizes must stay the reproduction tables'
numbers (GMF DPQ 30.42 %, SQ 25.05 %, MGQE 24.80 %, compact MGQE 19.17 %).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.models import planted_pairs
from trainer.config import EmbeddingConfig
from trainer.data import samples as ranking_samples
from trainer.data.sequences import from_pairs
from trainer.models.gmf import GMF
from trainer.models.neumf import NeuMF
from trainer.serving import sizes, tables

ML1M_USERS, ML1M_ITEMS = 6040, 3416


@pytest.fixture(scope="module")
def task() -> ranking_samples.RankingTask:
    return ranking_samples.prepare_task(from_pairs(*planted_pairs()))


def _size(model_cls, kind: str, **kw) -> float:
    cfg = EmbeddingConfig(kind=kind, **kw)
    return tables.model_size(model_cls(ML1M_USERS, ML1M_ITEMS, cfg), cfg).percent


def test_model_size_of_gmf_matches_algorithms_2_5():
    assert _size(GMF, "full") == 100.0
    dpq = _size(GMF, "dpq", num_subspaces=64, num_centroids=(256,))
    want = sizes.model_size_percent(
        [
            sizes.dpq_bits(ML1M_USERS, 64, 64, 256),
            sizes.dpq_bits(ML1M_ITEMS, 64, 64, 256),
        ],
        65,
        [sizes.full_bits(ML1M_USERS, 64), sizes.full_bits(ML1M_ITEMS, 64)],
    )
    assert dpq == pytest.approx(want) and round(dpq, 2) == 30.42
    assert round(_size(GMF, "sq", bits=8), 2) == 25.05
    assert round(_size(GMF, "lrf", rank=48), 2) == 76.02
    assert (
        round(_size(GMF, "mgqe", num_subspaces=64, num_centroids=(256, 64)), 2) == 24.80
    )
    compact = _size(GMF, "mgqe", num_subspaces=64, num_centroids=(256, 16))
    assert round(compact, 2) == 19.17


def test_model_size_counts_dense_weights_and_only_compressed_tables():
    cfg = EmbeddingConfig(
        kind="dpq", dim=8, num_subspaces=4, num_centroids=(16,), compress_users=False
    )
    model = NeuMF(30, 20, cfg, hidden_units=(8, 4))
    size = tables.model_size(model, cfg)
    assert size.dense_params == 16 * 8 + 8 + 8 * 4 + 4 + 12 + 1
    assert size.table_bits["gmf_user"] == sizes.full_bits(30, 8)
    assert size.table_bits["gmf_item"] == sizes.dpq_bits(20, 8, 4, 16)
    assert size.serving_bits == sum(size.table_bits.values()) + 32 * size.dense_params


def test_serving_tables_quantizes_sq_tables_and_restores_them(task):
    cfg = EmbeddingConfig(kind="sq", dim=8, bits=2)
    keras.utils.set_random_seed(0)
    model = GMF(task.num_users, task.num_items, cfg)
    before = keras.ops.convert_to_numpy(model.item_embedding.embeddings).copy()
    with tables.serving_tables(model, cfg):
        inside = keras.ops.convert_to_numpy(model.item_embedding.embeddings)
        assert max(len(np.unique(inside[:, j])) for j in range(8)) <= 4
        assert not np.array_equal(inside, before)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.item_embedding.embeddings), before
    )


def test_size_of_takes_a_baseline_and_sq_bits_per_table():
    cfg = EmbeddingConfig(kind="full", dim=4)
    model = GMF(10, 20, cfg)
    t = model.embedding_tables()
    size = tables.size_of(model, t, {"item": 8}, {"user": 1000, "item": 2000})
    assert size.table_bits == {
        "user": sizes.full_bits(10, 4),
        "item": sizes.sq_bits(20, 4, 8),
    }
    assert size.full_bits == 3000 + 32 * 5 and size.dense_params == 5
    assert size.percent == pytest.approx(100 * size.serving_bits / size.full_bits)


def test_serving_layer_forms(task):
    keras.utils.set_random_seed(0)
    full = GMF(task.num_users, task.num_items, EmbeddingConfig(kind="full", dim=4))
    assert tables.serving_layer(full.item_embedding) is None  # served as trained
    sq, what = tables.serving_layer(full.item_embedding, sq_bits=8)
    assert "ScalarQuantizedEmbedding(8)" in what
    assert tables.table_bits(sq) == tables.table_bits(full.item_embedding, 8)
    mgqe_cfg = EmbeddingConfig(
        kind="mgqe", dim=4, num_subspaces=2, num_centroids=(8, 4), tier_shares=(0.2,)
    )
    mgqe = GMF(task.num_users, task.num_items, mgqe_cfg)
    compact, what = tables.serving_layer(mgqe.item_embedding, packed_codes=True)
    assert what == "MGQEEmbedding -> CompactCodebookEmbedding"
    assert compact.serving_bits() == mgqe.item_embedding.serving_bits()
    ids = np.arange(task.num_items)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(compact(ids)),
        keras.ops.convert_to_numpy(mgqe.item_embedding(ids, training=False)),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="float table"):
        tables.serving_layer(compact, sq_bits=8)
