"""GMF, NeuMF and SASRec: configs hold the constructor arguments; ``.keras`` round trips.

A round trip perturbs every trainable weight first (so a reload that re-initialised
any table or layer would score differently), saves the model as ``.keras``, reloads it
in the same process and compares the forward pass and full-ranking scores exactly.
"""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest

from trainer.config import EmbeddingConfig
from trainer.models.gmf import GMF
from trainer.models.neumf import NeuMF
from trainer.models.sasrec import SASRec

SEED = 7
KINDS = ("full", "lrf", "sq", "dpq", "mgqe", "hash", "double_hash", "hybrid")
USERS = np.array([0, 3, 6, 6])
ITEMS = np.array([1, 8, 2, 0])
SEQUENCES = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 20], [0, 0, 0, 0, 0, 9]])


def _embedding(kind: str, **overrides) -> EmbeddingConfig:
    fields = dict(
        kind=kind,
        dim=8,
        rank=3,
        bits=4,
        num_subspaces=4,
        num_centroids=(16, 4) if kind == "mgqe" else (16,),
        hash_buckets=16,
        top_k=3,
    )
    return EmbeddingConfig(**{**fields, **overrides})


def _as_config(fields: dict) -> EmbeddingConfig:
    """The ``embedding`` entry of a model's get_config, back as the dataclass."""
    return EmbeddingConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    )


def _perturb(model: keras.Model) -> None:
    rng = np.random.default_rng(SEED)
    for v in model.trainable_variables:
        value = keras.ops.convert_to_numpy(v)
        v.assign(value + rng.normal(0.0, 0.1, value.shape).astype(value.dtype))


def _reload(model: keras.Model, tmp_path: pathlib.Path) -> keras.Model:
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return keras.saving.load_model(path)


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------- configs


def test_gmf_config_holds_the_constructor_arguments() -> None:
    embedding = _embedding("mgqe", tier_shares=(0.3,), compress_users=False)
    model = GMF(5, 6, embedding, name="gmf_a")
    config = model.get_config()
    assert (config["name"], config["num_users"], config["num_items"]) == (
        "gmf_a",
        5,
        6,
    )
    assert _as_config(config["embedding"]) == embedding
    assert config["embedding"]["num_centroids"] == [16, 4]
    restored = GMF.from_config(config)
    assert (restored.num_users, restored.num_items) == (5, 6)
    assert restored.embedding_config == embedding
    # compress_users=False survives: the user table is full, the item table MGQE
    assert type(restored.user_embedding).__name__ == "FullEmbedding"
    assert type(restored.item_embedding).__name__ == "MGQEEmbedding"


def test_neumf_config_holds_the_constructor_arguments() -> None:
    embedding = _embedding("lrf", rank=2)
    model = NeuMF(5, 6, embedding, hidden_units=(8, 4), name="neumf_a")
    config = model.get_config()
    assert (config["name"], config["num_users"], config["num_items"]) == (
        "neumf_a",
        5,
        6,
    )
    assert config["hidden_units"] == [8, 4]
    assert _as_config(config["embedding"]) == embedding
    restored = NeuMF.from_config(config)
    assert restored.mlp.hidden_units == (8, 4)
    assert restored.embedding_config == embedding
    assert restored.prediction.kernel.shape == (8 + 4, 1)


def test_sasrec_config_holds_the_constructor_arguments() -> None:
    embedding = _embedding("dpq")
    model = SASRec(20, embedding, maxlen=6, num_blocks=3, dropout=0.3, name="s_a")
    config = model.get_config()
    assert {k: config[k] for k in ("name", "num_items", "maxlen", "num_blocks")} == {
        "name": "s_a",
        "num_items": 20,
        "maxlen": 6,
        "num_blocks": 3,
    }
    assert config["dropout"] == pytest.approx(0.3)
    assert _as_config(config["embedding"]) == embedding
    restored = SASRec.from_config(config)
    assert (restored.num_items, restored.maxlen, restored.num_blocks) == (20, 6, 3)
    assert restored.embedding_config == embedding


# ----------------------------------------------------------------- .keras files


@pytest.mark.parametrize("kind", KINDS)
def test_gmf_keras_save_round_trip(kind, tmp_path) -> None:
    keras.utils.set_random_seed(SEED)
    model = GMF(7, 9, _embedding(kind), name="gmf")
    inputs = {"user": USERS, "item": ITEMS}
    model(inputs)
    _perturb(model)
    reloaded = _reload(model, tmp_path)
    assert type(reloaded) is GMF
    assert reloaded.embedding_config == model.embedding_config
    np.testing.assert_array_equal(_np(reloaded(inputs)), _np(model(inputs)))
    full = _np(model.score_items(USERS, np.arange(9)))
    np.testing.assert_array_equal(_np(reloaded.score_items(USERS, np.arange(9))), full)
    assert np.unique(full.round(6)).size > 1, "constant scores: the check is vacuous"


@pytest.mark.parametrize("kind", ["full", "mgqe", "hybrid"])
def test_neumf_keras_save_round_trip(kind, tmp_path) -> None:
    keras.utils.set_random_seed(SEED)
    model = NeuMF(7, 9, _embedding(kind), hidden_units=(8, 4), name="neumf")
    inputs = {"user": USERS, "item": ITEMS}
    model(inputs)
    _perturb(model)
    reloaded = _reload(model, tmp_path)
    assert type(reloaded) is NeuMF
    assert reloaded.mlp.hidden_units == (8, 4)
    np.testing.assert_array_equal(_np(reloaded(inputs)), _np(model(inputs)))
    full = _np(model.score_items(USERS, np.arange(9)))
    np.testing.assert_array_equal(_np(reloaded.score_items(USERS, np.arange(9))), full)
    assert np.unique(full.round(6)).size > 1, "constant scores: the check is vacuous"


@pytest.mark.parametrize("kind", ["full", "dpq", "mgqe"])
def test_sasrec_keras_save_round_trip(kind, tmp_path) -> None:
    keras.utils.set_random_seed(SEED)
    model = SASRec(20, _embedding(kind), maxlen=6, num_blocks=2, dropout=0.2)
    model(SEQUENCES)
    _perturb(model)
    reloaded = _reload(model, tmp_path)
    assert type(reloaded) is SASRec
    np.testing.assert_array_equal(_np(reloaded(SEQUENCES)), _np(model(SEQUENCES)))
    items = np.arange(1, 21)
    full = _np(model.score_items(SEQUENCES, items))
    np.testing.assert_array_equal(_np(reloaded.score_items(SEQUENCES, items)), full)
    assert np.unique(full.round(6)).size > 1, "constant scores: the check is vacuous"
