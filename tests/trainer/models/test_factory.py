"""trainer.models.factory: every model name builds its class, sizes are checked."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.wide_deep_testing import TINY_ROWS, random_ids, tiny_spec
from trainer.config import MODEL_NAMES, ModelConfig, TrainerConfig
from trainer.models import factory
from trainer.models.factory import build_ranking_model
from trainer.models.gmf import GMF
from trainer.models.neumf import NeuMF
from trainer.models.sasrec import SASRec
from trainer.models.wide_deep import WideAndDeep

EMBEDDING = {"kind": "full", "dim": 4}


def _config(name: str) -> ModelConfig:
    return TrainerConfig.from_dict(
        {"name": "t", "model": {"name": name, "embedding": EMBEDDING}}
    ).model


def test_every_configurable_model_name_has_a_builder():
    assert {n: factory.required_sizes(n) for n in MODEL_NAMES} == {
        "gmf": ("num_users", "num_items"),
        "neumf": ("num_users", "num_items"),
        "sasrec": ("num_items",),
        "wide_deep": ("feature_spec", "table_rows"),
    }


@pytest.mark.parametrize(
    "name,cls", [("gmf", GMF), ("neumf", NeuMF), ("sasrec", SASRec)]
)
def test_ranking_backbones_are_built_with_the_configured_sizes(name, cls):
    keras.utils.set_random_seed(0)
    config = _config(name)
    sizes = {"num_users": 7, "num_items": 11}
    model = factory.build_model(
        config, **{k: sizes[k] for k in factory.required_sizes(name)}
    )
    assert type(model) is cls and model.name == name
    rows = {r: t.num_rows for r, t in model.embedding_tables().items()}
    want = {r: 7 if "user" in r else 11 + (name == "sasrec") for r in rows}  # + pad row
    assert rows == want
    scores = model.score_items(
        np.zeros((2, config.maxlen), np.int64)
        if name == "sasrec"
        else np.array([0, 6]),
        np.arange(1, 5),
    )
    assert tuple(scores.shape) == (2, 4)


def test_wide_deep_takes_the_feature_spec_and_table_rows():
    keras.utils.set_random_seed(0)
    config = TrainerConfig.from_dict(
        {"name": "t", "model": {"name": "wide_deep", "hidden_units": [8, 4]}}
    ).model
    spec = tiny_spec()
    model = factory.build_model(
        config, feature_spec=spec.to_dict(), table_rows=dict(TINY_ROWS)
    )
    assert isinstance(model, WideAndDeep) and model.name == "wide_and_deep"
    assert model.hidden_units == (8, 4) and model.table_rows == TINY_ROWS
    batch = random_ids(spec, TINY_ROWS, 3, np.random.default_rng(0))
    assert tuple(model(batch).shape) == (3,)


def test_missing_or_unexpected_sizes_are_named():
    with pytest.raises(ValueError, match=r"missing \['num_users'\]"):
        factory.build_model(_config("gmf"), num_items=3)
    with pytest.raises(ValueError, match=r"unexpected \['num_users'\]"):
        factory.build_model(_config("sasrec"), num_items=3, num_users=2)
    with pytest.raises(ValueError, match="`name`"):
        factory.required_sizes("dlrm")


def test_build_ranking_model_uses_the_factory_and_refuses_wide_deep():
    class Task:
        num_users, num_items = 5, 9

    cfg = TrainerConfig.from_dict(
        {"name": "t", "model": {"name": "sasrec", "embedding": EMBEDDING}}
    )
    model = build_ranking_model(cfg.model, Task())
    assert isinstance(model, SASRec) and model.item_embedding.num_rows == 10
    with pytest.raises(ValueError, match="not a ranking backbone"):
        build_ranking_model(_config("wide_deep"), Task())
