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
    assert cfg.wide_optimizer.name == "sparse_ftrl"
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
        ({"model": {}}, "name: required"),
        ({"name": "x", "training": {"epochs": 2.0}}, "training.epochs: must be an"),
        ({"name": "x", "training": {"epochs": True}}, "training.epochs: must be an"),
        ({"name": "x", "training": {"mixed_precision": 1}}, "must be true or false"),
        ({"name": "x", "model": {"dropout": float("nan")}}, "model.dropout: must be a"),
        (
            {"name": "x", "model": {"embedding": {"knd": "dpq"}}},
            "model.embedding.knd: unknown field (did you mean 'kind'?)",
        ),
        (
            {"name": "x", "model": {"hidden_units": [64, "wide"]}},
            "model.hidden_units[1]: must be an integer",
        ),
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


def test_load_config_rejects_bad_files_naming_them(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: x\ntraining:\n  epochs: 1\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=rf"^{dup}: .*duplicate key 'epochs'"):
        load_config(str(dup))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{latin}: not UTF-8"):
        load_config(str(latin))
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a directory"):
        load_config(str(tmp_path))
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: x\ntraining: 3\n")
    with pytest.raises(ConfigError, match=r"training: is not a section"):
        load_config(str(ok), {"training.epochs": 2})


def test_embedding_kinds_are_the_contracts_list():
    from trainer.contracts import features

    assert EmbeddingConfig(kind="lrf").kind == "lrf"
    for kind in features.EMBEDDING_KINDS:
        if kind in ("dpq", "mgqe"):
            EmbeddingConfig(kind=kind, dim=64, num_subspaces=8)
        else:
            EmbeddingConfig(kind=kind)
