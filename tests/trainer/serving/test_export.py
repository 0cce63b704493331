"""Tests of trainer.serving.export, .scoring and .export_checks on a real, reloaded export."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tools.golden import GoldenCase
from tests.trainer.conftest import EVAL_HOUR
from trainer import preprocessing
from trainer.contracts import artifacts, events
from trainer.contracts.features import FeatureSpec, transformed_name
from trainer.data import examples as data
from trainer.layers.compact_embedding import CompactCodebookEmbedding
from trainer.models.wide_deep import WideAndDeep, dummy_inputs
from trainer.serving import checks as export_checks
from trainer.serving import export, scoring, tables

ITEM_DIM = 128  # tests/trainer/conftest.py: item_id is a 128-wide MGQE feature


@pytest.fixture(scope="module")
def exported(trained_model_dir, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("export") / "serving")
    return out, export.export_serving_model(trained_model_dir, None, out)


@pytest.fixture(scope="module")
def trained(trained_model_dir):
    model, _meta = export.load_trained(trained_model_dir)
    return model


@pytest.fixture(scope="module")
def eval_raw(trained, synthetic_logs) -> dict[str, np.ndarray]:
    """Hour T01 (after the dictionaries) with forced unseen, missing and "" values."""
    spec = trained.spec
    table, _bad = data.read_events(
        synthetic_logs, events.parse_hour_range(EVAL_HOUR), spec
    )
    raw = data.table_to_raw(table, spec)
    raw["user_id"][0:50] = [f"never-seen-user-{i}" for i in range(50)]
    raw["item_id"][50:100] = ""
    raw["publisher"][100:150] = ""
    raw["category"][150:200] = "never-seen-category"
    raw["device"][200:210] = ""
    raw["price"][210:260] = np.nan
    raw["position"][260:300] = np.nan
    return raw


def _trained_logits(model, model_dir: str, raw) -> np.ndarray:
    transform = preprocessing.FeatureTransform(
        model.spec, os.path.join(model_dir, "artifacts")
    )
    ids = data.transform_raw(raw, transform)
    features = {k: v for k, v in ids.items() if k not in model.spec.label_keys}
    return keras.ops.convert_to_numpy(model(features, training=False))


# ----------------------------------------------------------------------------- scores


def test_exported_scores_equal_trained_scores_incl_unseen_and_missing(
    exported, trained, trained_model_dir, eval_raw
):
    out, _info = exported
    transform = preprocessing.FeatureTransform(
        trained.spec, os.path.join(trained_model_dir, "artifacts")
    )
    ids = data.transform_raw(eval_raw, transform)
    oov = transform.vocabulary_sizes
    assert (ids["user_id_xf"][:50, 0] == oov["user_id"]).all()  # hybrid: row k, hashed
    assert (ids["item_id_xf"][50:100] == oov["item_id"]).all()
    assert (ids["category_xf"][150:200] == oov["category"]).all()
    natural_unseen = ids["item_id_xf"][300:] == oov["item_id"]
    assert natural_unseen.sum() > 100  # T01 brings many items T00 never saw
    scores = scoring.load_scorer(out, batch_size=1000)(eval_raw)
    reference = _trained_logits(trained, trained_model_dir, eval_raw)
    assert scores["logit"].shape == (len(eval_raw["label"]),)
    np.testing.assert_allclose(scores["logit"], reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        scores["probability"], 1 / (1 + np.exp(-reference)), rtol=0, atol=1e-5
    )
    assert np.std(scores["logit"]) > 1e-3  # a trained model, not a constant


def test_transform_signature_equals_python_transform(
    exported, trained, trained_model_dir, eval_raw
):
    out, _info = exported
    fn = tf.saved_model.load(out).signatures[export.TRANSFORM_SIGNATURE]
    got = fn(
        **{f.name: scoring.raw_tensor(eval_raw[f.name]) for f in trained.spec.features}
    )
    transform = preprocessing.FeatureTransform(
        trained.spec, os.path.join(trained_model_dir, "artifacts")
    )
    expected = data.transform_raw(eval_raw, transform)
    for f in trained.spec.features:
        key = transformed_name(f.name)
        np.testing.assert_array_equal(got[key].numpy(), expected[key], err_msg=key)


def test_golden_file_through_a_saved_serving_module(tmp_path):
    # Same golden file as tests/trainer/test_preprocessing.py, but through this
    # module's saved object and its transform_features signature.
    case = GoldenCase.read()
    transform = preprocessing.FeatureTransform(
        case.spec, vocabularies=case.vocabularies, boundaries=case.boundaries
    )
    module = export.ServingModule(transform)
    assert list(module.signatures()) == [export.TRANSFORM_SIGNATURE]
    tf.saved_model.save(
        module, str(tmp_path / "golden"), signatures=module.signatures()
    )
    fn = tf.saved_model.load(str(tmp_path / "golden")).signatures[
        export.TRANSFORM_SIGNATURE
    ]
    features = [f.name for f in case.spec.features]
    outputs = fn(**case.tensors(features))
    case.assert_matches(outputs, [k for k in case.expected if k != "label"])


# ------------------------------------------------------------------- compact content


def test_mgqe_query_table_is_not_in_the_savedmodel(exported, trained):
    out, _info = exported
    n = trained.table_rows["item_id"]
    on_disk = tf.train.list_variables(os.path.join(out, "variables", "variables"))
    shapes = [tuple(shape) for _name, shape in on_disk]
    assert (n, ITEM_DIM) not in shapes  # the trained query table
    assert (n, 1) in shapes  # the wide item table is kept
    loaded = tf.saved_model.load(out)
    variables = {v.name: v for v in loaded.model_variables}
    codes = [v for v in variables.values() if "emb_item_id/codes" in v.name]
    assert len(codes) == 1 and codes[0].dtype == tf.uint8
    assert tuple(codes[0].shape) == (n, 8)
    assert not any(
        tuple(v.shape) == (n, ITEM_DIM) and v.dtype == tf.float32
        for v in variables.values()
    )
    assert any(tuple(v.shape) == (8, 256, ITEM_DIM // 8) for v in variables.values())


def test_savedmodel_is_smaller_than_the_keras_model_file(exported, trained_model_dir):
    out, info = exported
    keras_bytes = os.path.getsize(os.path.join(trained_model_dir, "model.keras"))
    files = [
        os.path.join(r, f)
        for r, _d, fs in os.walk(out)
        for f in fs
        if "assets.extra" not in r and f != scoring.EXPORT_METADATA
    ]
    assert info["size_bytes"] == sum(os.path.getsize(f) for f in files)
    assert info["size_bytes"] < keras_bytes
    assert info["keras_model_bytes"] == keras_bytes


def test_metadata_fields(exported, trained, trained_model_dir):
    out, info = exported
    with open(os.path.join(out, scoring.EXPORT_METADATA)) as f:
        assert json.load(f) == json.loads(json.dumps(info))
    with open(os.path.join(trained_model_dir, "metadata.json")) as f:
        assert info["serving_bits"] == json.load(f)["serving_bits"]
    bits, full = info["model_bits_by_table"], info["full_bits_by_table"]
    assert info["serving_bits"] == sum(bits.values())
    assert info["full_embedding_bits"] == sum(full.values())
    assert info["compression_ratio"] == pytest.approx(
        info["full_embedding_bits"] / info["serving_bits"]
    )
    n = trained.table_rows["item_id"]
    tiers = artifacts.load_feature_artifacts(
        trained_model_dir + "/artifacts", "item_id"
    )
    head, tail = tiers.tier_sizes[0], tiers.tier_sizes[1] + 1  # OOV row: coldest tier
    assert bits["emb_item_id"] == head * 8 * 8 + tail * 8 * 6 + 32 * 256 * ITEM_DIM
    assert full["emb_item_id"] == 32 * n * ITEM_DIM
    assert full["emb_user_id"] == 32 * trained.table_rows["user_id"] * 16
    assert full["wide_device_x_category"] == bits["wide_device_x_category"] == 32 * 1024
    assert info["compact_layers"] == {
        "item_id": "MGQEEmbedding -> CompactCodebookEmbedding"
    }
    assert info["check"]["max_abs_logit_diff"] <= export_checks.TOLERANCE
    assert info["check"]["events"] > 1000  # probe events + training-source events
    assert FeatureSpec.from_dict(info["feature_spec"]) == trained.spec
    extra = os.path.join(out, scoring.EXTRA_ARTIFACTS)
    assert artifacts.read_vocab(extra, "item_id") == tiers.values
    assert artifacts.read_tiers(extra, "item_id").tolist() == tiers.row_tier.tolist()


# ------------------------------------------------------------------------- variants


def test_scalar_quantized_and_packed_export(
    trained, trained_model_dir, eval_raw, tmp_path
):
    out = str(tmp_path / "sq")
    no_labels = {k: v for k, v in eval_raw.items() if k != "label"}
    info = export.export_serving_model(
        trained_model_dir,
        None,
        out,
        sq_bits=4,
        packed_codes=True,
        check_events=no_labels,
    )
    assert info["check"]["events"] == 256 + 1024 + len(eval_raw["label"])
    assert set(info["compact_layers"]) == {"item_id", "category", "device", "country"}
    rows = trained.table_rows["category"]
    assert info["model_bits_by_table"]["emb_category"] == rows * 8 * 4 + 2 * 8 * 32
    variables = tf.saved_model.load(out).model_variables
    packed = [v for v in variables if "emb_item_id/packed_codes" in v.name]
    assert (
        len(packed) == 1 and packed[0].dtype == tf.uint8 and packed[0].shape.rank == 1
    )
    assert [v.dtype for v in variables if "emb_category/codes" in v.name] == [tf.uint8]
    scores = scoring.load_scorer(out)(eval_raw)["logit"]
    unquantized = _trained_logits(trained, trained_model_dir, eval_raw)
    assert np.max(np.abs(scores - unquantized)) > 1e-4  # 4-bit tables change scores
    assert (
        info["check"]["max_abs_logit_diff"] <= export_checks.TOLERANCE
    )  # vs SQ reference
    assert (
        info["serving_bits"]
        < json.load(open(trained_model_dir + "/metadata.json"))["serving_bits"]
    )


def test_dpq_mgqe_and_sq_serving_model_matches_in_memory():
    spec = FeatureSpec.from_dict(
        {
            "name": "mini",
            "features": [
                {
                    "name": "a",
                    "treatment": "dpq",
                    "embedding_dim": 8,
                    "num_subspaces": 4,
                    "num_centroids": [16],
                },
                {
                    "name": "b",
                    "treatment": "mgqe",
                    "embedding_dim": 8,
                    "num_subspaces": 2,
                    "num_centroids": [16, 4],
                },
                {"name": "c", "treatment": "full", "embedding_dim": 4},
                {
                    "name": "d",
                    "treatment": "hash",
                    "embedding_dim": 4,
                    "hash_buckets": 32,
                },
                {"name": "p", "kind": "numeric", "treatment": "bucketized"},
            ],
        }
    )
    rows = {"a": 50, "b": 40, "c": 10, "d": 32, "p": 6}
    keras.utils.set_random_seed(0)
    model = WideAndDeep(spec.to_dict(), rows, hidden_units=[8])
    model(dummy_inputs(spec))
    serving, info = export.build_serving_model(model, sq_bits=16)
    assert isinstance(serving.deep_embeddings["a"], CompactCodebookEmbedding)
    assert isinstance(serving.deep_embeddings["b"], CompactCodebookEmbedding)
    assert not any(w.shape == (50, 8) for w in serving.weights)  # no query tables
    rng = np.random.default_rng(0)
    ids = {transformed_name(k): rng.integers(0, n, size=64) for k, n in rows.items()}
    want = keras.ops.convert_to_numpy(model(ids, training=False))
    got = keras.ops.convert_to_numpy(serving(ids, training=False))
    np.testing.assert_allclose(got, want, atol=1e-4)  # 16-bit SQ of table c


def test_verify_raises_when_the_export_differs(
    exported, trained, trained_model_dir, eval_raw
):
    out, _info = exported
    transform = preprocessing.FeatureTransform(
        trained.spec, os.path.join(trained_model_dir, "artifacts")
    )
    table = keras.ops.convert_to_numpy(trained.deep_embeddings["category"].embeddings)
    wrong = tables.ServingInfo(sq_tables={"category": table + 0.5})  # not saved
    with pytest.raises(export_checks.ExportCheckError, match="differ"):
        export_checks.verify(out, trained, wrong, transform, eval_raw)
    np.testing.assert_array_equal(  # the reference swap is undone
        keras.ops.convert_to_numpy(trained.deep_embeddings["category"].embeddings),
        table,
    )


def test_refuses_existing_export_and_mismatched_artifacts(
    exported, trained_model_dir, tmp_path
):
    out, _info = exported
    with pytest.raises(FileExistsError):
        export.export_serving_model(trained_model_dir, None, out)
    bad = str(tmp_path / "artifacts")
    shutil.copytree(os.path.join(trained_model_dir, "artifacts"), bad)
    vocab = artifacts.read_vocab(bad, "category")
    artifacts.write_vocab(bad, "category", vocab[:-1])
    with pytest.raises(ValueError, match="category"):
        export.export_serving_model(trained_model_dir, bad, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x" / scoring.EXPORT_METADATA)


def test_cli(trained_model_dir, tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert export.main(["--model", trained_model_dir, "--out", out]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["size_bytes"] == scoring.savedmodel_bytes(out)
    assert export.main(["--model", trained_model_dir, "--out", out]) == 2
    assert "already holds a SavedModel" in capsys.readouterr().err
