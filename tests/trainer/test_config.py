"""Tests of trainer.config: typed experiment configs with errors naming the field."""

import pathlib

import pytest

from trainer.config import ConfigError, EmbeddingConfig, TrainerConfig, load_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_and_nested_parsing():
    cfg = TrainerConfig.from_dict(
        {
            "name": "x",
            "model": {
                "name": "gmf",
                "embedding": {
                    "kind": "mgqe",
                    "dim": 64,
                    "num_subspaces": 64,
                    "num_centroids": [256, 64],
                },
            },
            "training": {"batch_size": 8},
        }
    )
    assert cfg.model.embedding.num_centroids == (256, 64)
    assert cfg.training.batch_size == 8
    assert cfg.wide_optimizer.name == "ftrl"
    assert TrainerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"name": "x", "model": {"name": "foo"}}, "model.name: 'foo' is not one of"),
        (
            {
                "name": "x",
                "model": {"embedding": {"kind": "dpq", "dim": 10, "num_subspaces": 3}},
            },
            "model.embedding.num_subspaces: dim 10 is not divisible by 3",
        ),
        (
            {"name": "x", "training": {"batch_size": -1}},
            "training.batch_size: must be a positive",
        ),
        ({"name": "x", "trainin": {}}, "trainin: unknown field"),
        (
            {"name": "x", "optimizer": {"learning_rate": "a"}},
            "optimizer.learning_rate: must be a number",
        ),
        (
            {"name": "x", "model": {"embedding": {"num_centroids": [64, 256]}}},
            "model.embedding.num_centroids: must not increase",
        ),
        ({"model": {}}, "missing 1 required positional argument: 'name'"),
    ],
)
def test_errors_name_the_field(raw, message):
    with pytest.raises(ConfigError) as e:
        TrainerConfig.from_dict(raw, source="exp.yaml")
    assert str(e.value).startswith("exp.yaml: ")
    assert message in str(e.value)


def test_embedding_config_rejects_bad_kind():
    with pytest.raises(ConfigError, match="kind: 'nope'"):
        EmbeddingConfig(kind="nope")


def test_shipped_experiment_specs_load():
    paths = sorted((REPO / "specs" / "experiments").glob("*.yaml"))
    assert paths, "no experiment specs shipped"
    for p in paths:
        cfg = load_config(str(p))
        assert cfg.name


def test_load_config_overrides_and_missing_file(tmp_path):
    p = REPO / "specs" / "experiments" / "synthetic_hybrid.yaml"
    cfg = load_config(str(p), {"training.max_steps": 3, "model.dropout": 0.1})
    assert cfg.training.max_steps == 3 and cfg.model.dropout == 0.1
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: training.epochs"):
        load_config(str(bad))
